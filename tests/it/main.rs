//! hookbox's integration tests: one binary, stages named as in `src/`.

mod support;

mod admin;
mod cli;
mod cluster;
mod contract;
mod crash;
mod filter;
mod forward;
mod fuzz_corpus;
mod ingest;
mod journal;
mod openapi;
mod pg_faults;
mod retention;
mod roundtrip;
mod runtime;
mod serve;
mod ui;
mod ui_browser;
mod verify_layer;
