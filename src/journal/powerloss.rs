//! Simulated power loss under the embedded journal.
//!
//! A SIGKILL leaves the page cache behind, so it cannot test fsync. Here both the log
//! and redb write to a simulated disk that keeps what was written but not yet synced
//! apart. At a cut point (the n-th write or sync, chosen at random) the power goes: every
//! later I/O fails, and what was not synced is thrown away, except possibly a torn
//! prefix of the writes since the last sync. The journal is then opened again on what
//! survived, and every acknowledged event must be there, exactly once.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderMap;
use proptest::prelude::*;

use super::wal::LogStore;
use super::{AppendOptions, Journal, RedbJournal};
use crate::{EventMeta, Inbound, Scheme, Verifier, VerifyError};

/// The power switch shared by every simulated file: I/O operations left before the cut.
#[derive(Debug)]
struct Power {
    left: AtomicU64,
}

impl Power {
    fn tick(&self) -> io::Result<()> {
        let left = self.left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(io::Error::other("power cut"));
        }
        self.left.store(left - 1, Ordering::SeqCst);
        Ok(())
    }
}

/// One write not yet synced.
#[derive(Debug, Clone)]
enum Pending {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

/// A file on the simulated disk: what is durable, and the writes since.
#[derive(Debug, Default)]
struct SimFile {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Pending>,
}

fn apply(buf: &mut Vec<u8>, p: &Pending) {
    match p {
        Pending::Write(at, data) => {
            let end = *at as usize + data.len();
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[*at as usize..end].copy_from_slice(data);
        }
        Pending::SetLen(len) => buf.resize(*len as usize, 0),
    }
}

impl SimFile {
    fn write(&mut self, p: Pending) {
        apply(&mut self.current, &p);
        self.pending.push(p);
    }

    fn sync(&mut self) {
        self.durable = self.current.clone();
        self.pending.clear();
    }

    /// The power went: the durable bytes, plus the first `keep` pending writes and
    /// `tear` bytes of the next one.
    fn crash(&mut self, keep: usize, tear: usize) {
        let mut survived = self.durable.clone();
        for (i, p) in self.pending.iter().enumerate() {
            if i < keep {
                apply(&mut survived, p);
            } else if i == keep {
                if let Pending::Write(at, data) = p {
                    let n = tear.min(data.len());
                    apply(&mut survived, &Pending::Write(*at, data[..n].to_vec()));
                }
            }
        }
        self.durable = survived.clone();
        self.current = survived;
        self.pending.clear();
    }
}

/// redb's storage on the simulated disk.
#[derive(Debug, Clone)]
struct SimBackend {
    file: Arc<Mutex<SimFile>>,
    power: Arc<Power>,
}

impl redb::StorageBackend for SimBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.lock().unwrap().current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let f = self.file.lock().unwrap();
        let end = offset as usize + out.len();
        let src = f
            .current
            .get(offset as usize..end)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.power.tick()?;
        self.file.lock().unwrap().write(Pending::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.power.tick()?;
        self.file.lock().unwrap().sync();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.power.tick()?;
        self.file
            .lock()
            .unwrap()
            .write(Pending::Write(offset, data.to_vec()));
        Ok(())
    }
}

/// The log's directory on the simulated disk. Creating and removing a segment is
/// durable at once (the real store syncs the directory).
#[derive(Debug)]
struct SimDir {
    files: Mutex<BTreeMap<u64, Arc<Mutex<SimFile>>>>,
    power: Arc<Power>,
}

impl SimDir {
    fn file(&self, segment: u64) -> io::Result<Arc<Mutex<SimFile>>> {
        self.files
            .lock()
            .unwrap()
            .get(&segment)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such segment"))
    }
}

impl LogStore for SimDir {
    fn list(&self) -> io::Result<Vec<u64>> {
        Ok(self.files.lock().unwrap().keys().copied().collect())
    }

    fn read(&self, segment: u64) -> io::Result<Vec<u8>> {
        Ok(self.file(segment)?.lock().unwrap().current.clone())
    }

    fn create(&self, segment: u64) -> io::Result<()> {
        self.power.tick()?;
        self.files
            .lock()
            .unwrap()
            .insert(segment, Arc::new(Mutex::new(SimFile::default())));
        Ok(())
    }

    fn append(&self, segment: u64, data: &[u8]) -> io::Result<()> {
        self.power.tick()?;
        let f = self.file(segment)?;
        let mut f = f.lock().unwrap();
        let at = f.current.len() as u64;
        f.write(Pending::Write(at, data.to_vec()));
        Ok(())
    }

    fn sync(&self, segment: u64) -> io::Result<()> {
        self.power.tick()?;
        self.file(segment)?.lock().unwrap().sync();
        Ok(())
    }

    fn truncate(&self, segment: u64, len: u64) -> io::Result<()> {
        self.power.tick()?;
        let f = self.file(segment)?;
        let mut f = f.lock().unwrap();
        f.write(Pending::SetLen(len));
        f.sync();
        Ok(())
    }

    fn remove(&self, segment: u64) -> io::Result<()> {
        self.power.tick()?;
        self.files.lock().unwrap().remove(&segment);
        Ok(())
    }
}

/// Accepts every request; the delivery id is the body.
#[derive(Debug)]
struct Trusting;

impl Scheme for Trusting {
    fn name(&self) -> &str {
        "trusting"
    }

    fn verify(&self, _: &Inbound<'_>, _: SystemTime) -> Result<(), VerifyError> {
        Ok(())
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        EventMeta {
            id: Some(String::from_utf8_lossy(req.body).into_owned()),
            event_type: Some("t".into()),
        }
    }
}

/// The simulated disk: redb's file, the log's directory, the power switch.
struct Disk {
    db: Arc<Mutex<SimFile>>,
    log: Arc<SimDir>,
    power: Arc<Power>,
}

impl Disk {
    fn new() -> Self {
        let power = Arc::new(Power {
            left: AtomicU64::new(u64::MAX),
        });
        Disk {
            db: Arc::default(),
            log: Arc::new(SimDir {
                files: Mutex::default(),
                power: power.clone(),
            }),
            power,
        }
    }

    /// The journal on this disk, with its write-ahead log or without (every
    /// acknowledged batch a durable redb commit).
    fn open(&self, log: bool) -> Result<RedbJournal, super::OpenError> {
        let backend = SimBackend {
            file: self.db.clone(),
            power: self.power.clone(),
        };
        let mut b = RedbJournal::builder()
            .cache_size(1 << 20)
            .checkpoint_every(Duration::from_millis(3));
        if log {
            b = b.log(true).log_store(self.log.clone());
        }
        b.open_backend(move || backend.clone())
    }

    /// The power goes: unsynced writes are lost, but for a torn prefix chosen by `seed`.
    fn crash(&self, seed: u64) {
        self.power.left.store(0, Ordering::SeqCst);
        let mut files = vec![self.db.clone()];
        files.extend(self.log.files.lock().unwrap().values().cloned());
        for (i, f) in files.iter().enumerate() {
            let mut f = f.lock().unwrap();
            let n = f.pending.len();
            let s = seed
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(i as u32 * 7);
            let keep = if n == 0 { 0 } else { (s as usize) % (n + 1) };
            f.crash(keep, (s >> 32) as usize % 4096);
        }
        self.power.left.store(u64::MAX, Ordering::SeqCst);
    }
}

/// Appends `ids` (a delivery id each; repeats are duplicates) in concurrent groups,
/// settling some deliveries, until the power is cut after `cut` I/O operations; returns
/// the acknowledged (delivery id, event id) pairs.
async fn run_until_cut(disk: &Disk, log: bool, ids: &[u16], cut: u64) -> Vec<(String, u64)> {
    let journal = Arc::new(disk.open(log).expect("a fresh journal opens"));
    disk.power.left.store(cut, Ordering::SeqCst);
    let verifier = Verifier::custom(Trusting);
    let opts = AppendOptions {
        dedup_window: Some(Duration::from_secs(3600)),
        order_key: None,
        destinations: vec!["a".into(), "b".into()],
    };
    let mut acked = Vec::new();
    for group in ids.chunks(5) {
        let appends = group.iter().map(|n| {
            let did = format!("d-{n}");
            let ev = verifier
                .verified_event(
                    "s",
                    HeaderMap::new(),
                    Bytes::from(did.clone()),
                    SystemTime::now(),
                )
                .unwrap();
            let fut = journal.append(&ev, &opts);
            async move { (did, fut.await) }
        });
        for (did, r) in futures_util::future::join_all(appends).await {
            if let Ok(a) = r {
                acked.push((did, a.id.0));
            }
        }
        // Some outcomes and checkpoints between the appends.
        if let Ok(claims) = journal.claim("s", SystemTime::now(), 3).await {
            for c in claims {
                let attempt = super::Attempt {
                    n: c.attempt,
                    started_ms: 0,
                    duration_ms: 0,
                    outcome: super::AttemptOutcome::Done,
                    error: None,
                    replay: None,
                    destination: c.destination.to_string(),
                };
                let _ = journal.settle(c, attempt, super::Next::Done).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    journal.shutdown();
    acked
}

/// After the crash: the journal opens, every acknowledged event is there under its
/// delivery id, and no delivery id is journaled twice.
async fn check_after_crash(disk: &Disk, log: bool, acked: &[(String, u64)]) {
    let journal = disk
        .open(log)
        .expect("the journal opens after a power loss");
    let mut by_did: HashMap<String, Vec<u64>> = HashMap::new();
    let mut cursor = None;
    loop {
        let page = journal
            .query(&super::Query {
                before: cursor,
                limit: 500,
                ..Default::default()
            })
            .await
            .unwrap();
        for e in &page.events {
            by_did
                .entry(e.delivery_id.clone().unwrap_or_default())
                .or_default()
                .push(e.id.0);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    for (did, ids) in &by_did {
        assert_eq!(ids.len(), 1, "{did} journaled {} times", ids.len());
    }
    for (did, id) in acked {
        assert_eq!(
            by_did.get(did).map(|v| v[0]),
            Some(*id),
            "acknowledged {did} ({id:x}) is missing"
        );
        assert!(journal.get(super::EventId(*id)).await.unwrap().is_some());
        assert_eq!(
            journal.lookup("s", did).await.unwrap(),
            Some(super::EventId(*id))
        );
    }
    assert_eq!(
        journal.count().await.unwrap(),
        by_did.len() as u64,
        "the count agrees with the listing"
    );
    journal.shutdown();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// At a random cut point, with a random torn tail on every file: every acknowledged
    /// event survives exactly once, and the journal opens; with the write-ahead log and
    /// without it.
    #[test]
    fn every_acknowledged_event_survives_a_power_loss(
        log in any::<bool>(),
        ids in proptest::collection::vec(0u16..40, 1..60),
        cut in 1u64..400,
        seed in any::<u64>(),
    ) {
        let disk = Disk::new();
        let rt = runtime();
        let acked = rt.block_on(run_until_cut(&disk, log, &ids, cut));
        disk.crash(seed);
        rt.block_on(check_after_crash(&disk, log, &acked));
        // And once more: a crash right after the recovery's own writes.
        disk.crash(seed.rotate_left(17));
        rt.block_on(check_after_crash(&disk, log, &acked));
    }
}

/// Without a cut the same run keeps everything, and a clean shutdown leaves no log to
/// apply (its final checkpoint).
#[test]
fn a_clean_run_keeps_everything() {
    let rt = runtime();
    let ids: Vec<u16> = (0..30).chain(0..10).collect();
    for log in [true, false] {
        let disk = Disk::new();
        let acked = rt.block_on(run_until_cut(&disk, log, &ids, u64::MAX));
        assert_eq!(acked.len(), 40, "duplicates are acknowledged too");
        rt.block_on(check_after_crash(&disk, log, &acked));
    }
}
