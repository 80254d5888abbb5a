//! Replays the committed fuzz corpus, `fuzz/corpus/<target>/`, through the fuzz harness
//! (`fuzz/fuzz_targets/common.rs`) on stable Rust: no input may panic, every target has
//! seeds, and the seeds named `valid-*` (requests signed with `hookbox::sign`, or
//! providers' published vectors) must verify.

#[path = "../../fuzz/fuzz_targets/common.rs"]
pub(crate) mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_replays_without_panicking() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (target, run) in common::TARGETS {
        let dir = corpus_root().join(target);
        let seeds = files(&dir);
        assert!(!seeds.is_empty(), "{} holds no seeds", dir.display());
        for path in seeds {
            let data = std::fs::read(&path).expect("read a seed");
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            replayed += 1;
            match catch_unwind(AssertUnwindSafe(|| run(&data))) {
                Err(_) => failures.push(format!("{target}/{name}: panicked (message above)")),
                Ok(Some(Err(e))) if name.starts_with("valid") => {
                    failures.push(format!("{target}/{name}: expected to verify, got {e}"));
                }
                Ok(_) => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {replayed} corpus inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_corpus_directory_is_a_target() {
    for entry in std::fs::read_dir(corpus_root()).expect("fuzz/corpus exists") {
        let name = entry.expect("directory entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            common::TARGETS.iter().any(|(t, _)| *t == name),
            "fuzz/corpus/{name} belongs to no target of fuzz/fuzz_targets/common.rs"
        );
    }
}
