//! Storage faults on demand.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hookbox::RedbJournal;

/// A redb storage backend whose writes fail with "no space left on device" on demand
/// (and, when `reads_too`, whose reads fail with an I/O error as well: a dead disk).
#[derive(Debug)]
pub(crate) struct FullDisk {
    inner: redb::backends::FileBackend,
    full: Arc<AtomicBool>,
    reads_too: bool,
}

impl FullDisk {
    fn check(&self) -> Result<(), std::io::Error> {
        if self.full.load(Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
        } else {
            Ok(())
        }
    }

    fn check_read(&self) -> Result<(), std::io::Error> {
        if self.reads_too && self.full.load(Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(5)) // EIO
        } else {
            Ok(())
        }
    }
}

impl redb::StorageBackend for FullDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.check_read()?;
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.check_read()?;
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.check()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.check()?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }
}

/// A journal at `path` whose disk is full while `full` is set.
pub(crate) fn journal_on_full_disk(path: &Path, full: Arc<AtomicBool>) -> Arc<RedbJournal> {
    journal_on_faulty_disk(path, full, false)
}

/// A journal at `path` whose disk fails every read and write while `dead` is set: it
/// cannot even be reopened until the flag is cleared.
pub(crate) fn journal_on_dead_disk(path: &Path, dead: Arc<AtomicBool>) -> Arc<RedbJournal> {
    journal_on_faulty_disk(path, dead, true)
}

fn journal_on_faulty_disk(path: &Path, full: Arc<AtomicBool>, reads_too: bool) -> Arc<RedbJournal> {
    let path = path.to_path_buf();
    Arc::new(
        RedbJournal::builder()
            .open_backend(move || {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .unwrap();
                FullDisk {
                    inner: redb::backends::FileBackend::new(file).unwrap(),
                    full: full.clone(),
                    reads_too,
                }
            })
            .unwrap(),
    )
}
