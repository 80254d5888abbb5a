//! hookbox's integration tests: one binary, stages named as in `src/`.

mod support;

mod admin;
mod cli;
mod crash;
mod fuzz_corpus;
mod ingest;
mod journal;
mod retention;
mod roundtrip;
mod verify_layer;
