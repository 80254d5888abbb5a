//! The write-ahead log in front of redb: the commit point of everything the embedded
//! journal acknowledges.
//!
//! A batch of acknowledged writes (appends, memoised steps, redrives, replays) costs one
//! sequential write and one `fdatasync` here, instead of a durable redb commit that
//! rewrites and syncs the B-tree pages of every table it touched. redb gets appends
//! afterwards, from an applier thread, as non-durable commits (a read that starts
//! before they are in waits for them); every other write it gets first, before it is
//! logged. A durable redb commit (a *checkpoint*) follows about once a second, after
//! which the log below it is deleted. At open, the records past the checkpoint are applied to redb again; each
//! record carries the decisions its batch made (ids, dedup entries, what a redrive
//! moved), so applying one twice changes nothing.
//!
//! # Format, version 1
//!
//! The log is a directory of segments named by the sequence number of their first
//! record (`00000000000000000001.log`). A segment starts with a 16-byte header: the
//! magic `HOOKBOXWAL`, the format version (`u16`, little-endian) and four zero bytes.
//! Records follow, each:
//!
//! ```text
//! len   u32 LE   length of the payload
//! crc   u32 LE   CRC-32 (IEEE) of seq and payload
//! seq   u64 LE   the record's sequence number, one more than the previous record's
//! payload        `len` bytes (see `Record`)
//! ```
//!
//! Only one write is ever unsynced at a time (the next batch is written once the
//! previous one's `fdatasync` returned), so a crash tears at most the end of the last
//! segment: a record there that is cut short or fails its checksum is the torn tail and
//! is cut off with whatever follows it. A bad record anywhere else (in a sealed segment,
//! or followed by a whole record) is corruption: opening fails with an error naming
//! the segment and the offset, never skipping it silently.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The segment header's magic bytes.
const MAGIC: &[u8; 10] = b"HOOKBOXWAL";

/// The log format version this build writes and reads.
pub const VERSION: u16 = 1;

/// Bytes before the first record of a segment.
pub const HEADER_LEN: usize = 16;

/// Bytes before a record's payload.
const RECORD_HEAD: usize = 16;

/// The largest payload a record may declare (an event body is at most a few MiB).
const MAX_PAYLOAD: usize = 256 << 20;

/// A new segment is started at a checkpoint once the current one is this large.
const ROTATE_AT: u64 = 8 << 20;

/// A record's payload kinds.
const APPEND: u8 = 1;
const STEP: u8 = 2;
const REDRIVE: u8 = 3;
const REPLAY: u8 = 4;

/// One logged write, with the decisions its batch made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An event appended.
    Append {
        /// Its id.
        id: u64,
        /// Its source.
        source: String,
        /// When it was received (ms).
        received_ms: u64,
        /// The dedup entry written for it: the provider's delivery id and the time (ms).
        dedup: Option<(String, u64)>,
        /// Its ordering key, or empty.
        order_key: String,
        /// Its destinations (empty: the unnamed one).
        destinations: Vec<String>,
        /// The encoded event record.
        record: Vec<u8>,
    },
    /// A memoised step's result (the first writer wins).
    Step {
        /// The event.
        id: u64,
        /// The step's name.
        name: String,
        /// Its result.
        value: Vec<u8>,
    },
    /// Dead deliveries moved back to pending.
    Redrive {
        /// When (ms): they are due then.
        now_ms: u64,
        /// (source, event, destination) of each.
        moved: Vec<(String, u64, String)>,
    },
    /// A replay created.
    Replay {
        /// Its id.
        replay_id: u64,
        /// When (ms): its deliveries are due then.
        now_ms: u64,
        /// Its status as stored (JSON).
        status: Vec<u8>,
        /// (source, event, destination) of each delivery queued.
        queued: Vec<(String, u64, String)>,
    },
}

impl Record {
    /// The payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = Enc(&mut out);
        match self {
            Record::Append {
                id,
                source,
                received_ms,
                dedup,
                order_key,
                destinations,
                record,
            } => {
                e.u8(APPEND);
                e.u64(*id);
                e.str(source);
                e.u64(*received_ms);
                match dedup {
                    Some((did, at)) => {
                        e.u8(1);
                        e.str(did);
                        e.u64(*at);
                    }
                    None => e.u8(0),
                }
                e.str(order_key);
                e.u32(destinations.len() as u32);
                for d in destinations {
                    e.str(d);
                }
                e.bytes(record);
            }
            Record::Step { id, name, value } => {
                e.u8(STEP);
                e.u64(*id);
                e.str(name);
                e.bytes(value);
            }
            Record::Redrive { now_ms, moved } => {
                e.u8(REDRIVE);
                e.u64(*now_ms);
                e.triples(moved);
            }
            Record::Replay {
                replay_id,
                now_ms,
                status,
                queued,
            } => {
                e.u8(REPLAY);
                e.u64(*replay_id);
                e.u64(*now_ms);
                e.bytes(status);
                e.triples(queued);
            }
        }
        out
    }

    /// Reads a payload.
    pub fn decode(payload: &[u8]) -> Result<Record, String> {
        let mut d = Dec(payload);
        let r = match d.u8()? {
            APPEND => Record::Append {
                id: d.u64()?,
                source: d.str()?,
                received_ms: d.u64()?,
                dedup: match d.u8()? {
                    0 => None,
                    1 => Some((d.str()?, d.u64()?)),
                    n => return Err(format!("bad dedup flag {n}")),
                },
                order_key: d.str()?,
                destinations: {
                    let n = d.u32()? as usize;
                    let mut v = Vec::with_capacity(n.min(1024));
                    for _ in 0..n {
                        v.push(d.str()?);
                    }
                    v
                },
                record: d.bytes()?,
            },
            STEP => Record::Step {
                id: d.u64()?,
                name: d.str()?,
                value: d.bytes()?,
            },
            REDRIVE => Record::Redrive {
                now_ms: d.u64()?,
                moved: d.triples()?,
            },
            REPLAY => Record::Replay {
                replay_id: d.u64()?,
                now_ms: d.u64()?,
                status: d.bytes()?,
                queued: d.triples()?,
            },
            k => return Err(format!("unknown record kind {k}")),
        };
        if !d.0.is_empty() {
            return Err(format!("{} bytes after the record", d.0.len()));
        }
        Ok(r)
    }
}

struct Enc<'a>(&'a mut Vec<u8>);

impl Enc<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn triples(&mut self, v: &[(String, u64, String)]) {
        self.u32(v.len() as u32);
        for (a, id, b) in v {
            self.str(a);
            self.u64(*id);
            self.str(b);
        }
    }
}

struct Dec<'a>(&'a [u8]);

impl Dec<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "cut short: {n} bytes wanted, {} left",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn str(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?).map_err(|_| "a string is not UTF-8".to_owned())
    }
    fn triples(&mut self) -> Result<Vec<(String, u64, String)>, String> {
        let n = self.u32()? as usize;
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            v.push((self.str()?, self.u64()?, self.str()?));
        }
        Ok(v)
    }
}

/// Appends one framed record to `out`.
fn frame(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// A segment's header.
pub fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..MAGIC.len()].copy_from_slice(MAGIC);
    h[MAGIC.len()..MAGIC.len() + 2].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// What reading a segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The whole records, in order: (sequence number, payload).
    pub records: Vec<(u64, Vec<u8>)>,
    /// Where the whole records end: the length to cut a torn segment to.
    pub valid_len: usize,
    /// Set when the segment ends in a torn record (cut short or failing its checksum,
    /// with nothing whole after it): why.
    pub torn: Option<String>,
}

/// A segment that cannot be read: it is not a log segment, or a record before its end
/// is damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {problem}")]
pub struct ScanError {
    /// Where, from the start of the segment.
    pub offset: usize,
    /// What is wrong.
    pub problem: String,
}

/// A whole record read from a segment: its sequence number, its payload, and where it
/// ends.
type Framed<'a> = (u64, &'a [u8], usize);

/// The record framed at `at`: `Ok(Some(..))`, `Ok(None)` when it is cut short by the end
/// of `bytes`, `Err` when it fails its checksum or is implausible.
fn record_at(bytes: &[u8], at: usize) -> Result<Option<Framed<'_>>, String> {
    let Some(head) = bytes.get(at..at + RECORD_HEAD) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
    if len > MAX_PAYLOAD {
        return Err(format!("a record declares {len} payload bytes"));
    }
    let end = at + RECORD_HEAD + len;
    let Some(payload) = bytes.get(at + RECORD_HEAD..end) else {
        return Ok(None);
    };
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    if h.finalize() != crc {
        return Err("checksum mismatch".to_owned());
    }
    Ok(Some((seq, payload, end)))
}

/// Reads one segment. `last` says whether it is the log's last segment, the only one
/// whose end may be torn; in a sealed segment any bad record is an error.
pub fn scan(bytes: &[u8], last: bool) -> Result<Scan, ScanError> {
    let err = |offset, problem: String| ScanError { offset, problem };
    if bytes.len() < HEADER_LEN {
        if last && header().starts_with(bytes) {
            // Created, and its header torn or not yet written.
            return Ok(Scan {
                records: Vec::new(),
                valid_len: 0,
                torn: Some("the segment header is cut short".to_owned()),
            });
        }
        return Err(err(0, "not a hookbox log segment (too short)".to_owned()));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(err(0, "not a hookbox log segment (bad magic)".to_owned()));
    }
    let version = u16::from_le_bytes([bytes[MAGIC.len()], bytes[MAGIC.len() + 1]]);
    if version != VERSION {
        return Err(err(
            MAGIC.len(),
            format!("log format version {version}; this build reads version {VERSION}"),
        ));
    }
    let mut records = Vec::new();
    let mut at = HEADER_LEN;
    let mut prev: Option<u64> = None;
    while at < bytes.len() {
        let bad = match record_at(bytes, at) {
            Ok(Some((seq, payload, end))) => {
                if prev.is_some_and(|p| seq != p + 1) {
                    return Err(err(
                        at,
                        format!(
                            "record {seq} follows record {}: the sequence has a gap",
                            prev.unwrap_or_default()
                        ),
                    ));
                }
                prev = Some(seq);
                records.push((seq, payload.to_vec()));
                at = end;
                continue;
            }
            Ok(None) => "a record is cut short by the end of the segment".to_owned(),
            Err(problem) => problem,
        };
        // A bad record: the torn tail if it is the last segment and nothing whole
        // follows it anywhere after it; corruption otherwise.
        if !last {
            return Err(err(at, format!("{bad} in a sealed segment")));
        }
        if let Some(next) = (at + 1..bytes.len()).find(|&p| {
            matches!(record_at(bytes, p), Ok(Some((seq, _, _))) if prev.is_none_or(|q| seq > q))
        }) {
            return Err(err(
                at,
                format!("{bad}, and a whole record follows at byte {next}"),
            ));
        }
        return Ok(Scan {
            records,
            valid_len: at,
            torn: Some(format!("{bad} (at byte {at})")),
        });
    }
    Ok(Scan {
        records,
        valid_len: at,
        torn: None,
    })
}

/// Where the log's segments are kept: a directory, or (in tests) a simulated disk.
pub(crate) trait LogStore: Send + Sync + fmt::Debug + 'static {
    /// The segments, by first sequence number, ascending.
    fn list(&self) -> io::Result<Vec<u64>>;
    /// A segment's bytes.
    fn read(&self, segment: u64) -> io::Result<Vec<u8>>;
    /// Creates an empty segment, its directory entry durable.
    fn create(&self, segment: u64) -> io::Result<()>;
    /// Appends to a segment (not durable until [`LogStore::sync`]).
    fn append(&self, segment: u64, data: &[u8]) -> io::Result<()>;
    /// Makes what was appended to a segment durable (`fdatasync`).
    fn sync(&self, segment: u64) -> io::Result<()>;
    /// Cuts a segment to `len` bytes, durably.
    fn truncate(&self, segment: u64, len: u64) -> io::Result<()>;
    /// Deletes a segment.
    fn remove(&self, segment: u64) -> io::Result<()>;
}

/// Segments as files in a directory.
#[derive(Debug)]
pub(crate) struct DirStore {
    dir: PathBuf,
    /// The segment being appended to, kept open.
    open: Mutex<Option<(u64, std::fs::File)>>,
}

impl DirStore {
    /// The log directory `dir`, created if missing.
    pub(crate) fn new(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(DirStore {
            dir: dir.to_path_buf(),
            open: Mutex::new(None),
        })
    }

    fn path(&self, segment: u64) -> PathBuf {
        self.dir.join(format!("{segment:020}.log"))
    }

    fn sync_dir(&self) -> io::Result<()> {
        std::fs::File::open(&self.dir)?.sync_all()
    }

    fn with_file<T>(
        &self,
        segment: u64,
        f: impl FnOnce(&mut std::fs::File) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut open = self.open.lock().expect("log file lock");
        if open.as_ref().is_none_or(|(s, _)| *s != segment) {
            let file = std::fs::OpenOptions::new()
                .append(true)
                .open(self.path(segment))?;
            *open = Some((segment, file));
        }
        f(&mut open.as_mut().expect("just opened").1)
    }
}

impl LogStore for DirStore {
    fn list(&self) -> io::Result<Vec<u64>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_suffix(".log").and_then(|n| n.parse().ok()) {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn read(&self, segment: u64) -> io::Result<Vec<u8>> {
        std::fs::read(self.path(segment))
    }

    fn create(&self, segment: u64) -> io::Result<()> {
        std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(self.path(segment))?
            .sync_all()?;
        self.sync_dir()
    }

    fn append(&self, segment: u64, data: &[u8]) -> io::Result<()> {
        use std::io::Write;
        self.with_file(segment, |f| f.write_all(data))
    }

    fn sync(&self, segment: u64) -> io::Result<()> {
        self.with_file(segment, |f| f.sync_data())
    }

    fn truncate(&self, segment: u64, len: u64) -> io::Result<()> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.path(segment))?;
        f.set_len(len)?;
        f.sync_all()
    }

    fn remove(&self, segment: u64) -> io::Result<()> {
        let mut open = self.open.lock().expect("log file lock");
        if open.as_ref().is_some_and(|(s, _)| *s == segment) {
            *open = None;
        }
        std::fs::remove_file(self.path(segment))?;
        drop(open);
        self.sync_dir()
    }
}

/// A log that cannot be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenLogError {
    /// Reading or cutting a segment failed.
    #[error("log segment {segment}: {source}")]
    Io {
        /// The segment.
        segment: u64,
        /// What failed.
        source: io::Error,
    },
    /// A segment is damaged before its end.
    #[error("log segment {segment:020}.log {source}")]
    Corrupt {
        /// The segment.
        segment: u64,
        /// Where and how.
        source: ScanError,
    },
    /// A record does not decode.
    #[error("log segment {segment:020}.log, record {seq}: {problem}")]
    Record {
        /// The segment.
        segment: u64,
        /// The record's sequence number.
        seq: u64,
        /// What is wrong.
        problem: String,
    },
}

/// The log, as the journal's writer thread holds it.
#[derive(Debug)]
pub(crate) struct Wal {
    store: std::sync::Arc<dyn LogStore>,
    /// The segment written to, and its size.
    segment: u64,
    size: u64,
    /// Older segments, by first sequence number.
    sealed: Vec<u64>,
    /// The next record's sequence number.
    next_seq: u64,
    /// The frame buffer, reused.
    buf: Vec<u8>,
}

impl Wal {
    /// Opens the log: reads every segment, cuts a torn tail, and returns the records
    /// after `checkpoint` (the last sequence number redb holds durably), to apply.
    pub(crate) fn open(
        store: std::sync::Arc<dyn LogStore>,
        checkpoint: u64,
    ) -> Result<(Wal, Vec<(u64, Record)>), OpenLogError> {
        let io = |segment| move |source| OpenLogError::Io { segment, source };
        let segments = store.list().map_err(io(0))?;
        let mut pending = Vec::new();
        let mut next_seq = checkpoint + 1;
        let mut last_size = None;
        for (i, &seg) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let bytes = store.read(seg).map_err(io(seg))?;
            let scan = scan(&bytes, is_last).map_err(|source| OpenLogError::Corrupt {
                segment: seg,
                source,
            })?;
            if let Some(why) = &scan.torn {
                tracing::warn!(
                    segment = seg,
                    why,
                    "cutting the torn end of the journal log"
                );
                store
                    .truncate(seg, scan.valid_len as u64)
                    .map_err(io(seg))?;
            }
            for (seq, payload) in scan.records {
                next_seq = next_seq.max(seq + 1);
                if seq > checkpoint {
                    let r = Record::decode(&payload).map_err(|problem| OpenLogError::Record {
                        segment: seg,
                        seq,
                        problem,
                    })?;
                    pending.push((seq, r));
                }
            }
            if is_last {
                last_size = Some((seg, scan.valid_len as u64));
            }
        }
        let mut wal = Wal {
            store,
            segment: 0,
            size: 0,
            sealed: segments,
            next_seq,
            buf: Vec::new(),
        };
        match last_size {
            Some((seg, size)) if size >= HEADER_LEN as u64 => {
                wal.sealed.pop();
                wal.segment = seg;
                wal.size = size;
            }
            Some((seg, _)) => {
                // Created, its header lost: no record in it; made again below.
                wal.sealed.pop();
                wal.store.remove(seg).map_err(io(seg))?;
                wal.start_segment()?;
            }
            None => wal.start_segment()?,
        }
        Ok((wal, pending))
    }

    /// Starts a new segment at the next sequence number; the current one is sealed.
    fn start_segment(&mut self) -> Result<(), OpenLogError> {
        let seg = self.next_seq;
        let io = |source| OpenLogError::Io {
            segment: seg,
            source,
        };
        if self.size > 0 {
            self.sealed.push(self.segment);
        }
        if self.store.list().map_err(io)?.contains(&seg) {
            // An empty segment left by a crash right after its creation.
            self.store.remove(seg).map_err(io)?;
        }
        self.store.create(seg).map_err(io)?;
        self.store.append(seg, &header()).map_err(io)?;
        self.store.sync(seg).map_err(io)?;
        self.segment = seg;
        self.size = HEADER_LEN as u64;
        Ok(())
    }

    /// Writes `records` with one write (not yet durable: [`LogStore::sync`] of
    /// [`Wal::segment`] makes it so); returns
    /// the last one's sequence number.
    pub(crate) fn write(&mut self, records: &[Vec<u8>]) -> io::Result<u64> {
        self.buf.clear();
        for payload in records {
            frame(&mut self.buf, self.next_seq, payload);
            self.next_seq += 1;
        }
        self.store.append(self.segment, &self.buf)?;
        self.size += self.buf.len() as u64;
        Ok(self.next_seq - 1)
    }

    /// The segment [`Wal::write`] writes to, for [`LogStore::sync`].
    pub(crate) fn segment(&self) -> u64 {
        self.segment
    }

    /// The store, for syncing from another thread.
    pub(crate) fn store(&self) -> std::sync::Arc<dyn LogStore> {
        self.store.clone()
    }

    /// The sequence number of the last record written (0: none yet).
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Deletes every segment: redb holds all of the log durably, and it is not written
    /// to any more (the log was turned off).
    pub(crate) fn discard(&mut self) -> io::Result<()> {
        for seg in self.store.list()? {
            self.store.remove(seg)?;
        }
        self.sealed.clear();
        Ok(())
    }

    /// redb holds everything up to `seq` durably: segments wholly below it are
    /// deleted, and the current one is sealed once it is large.
    pub(crate) fn checkpointed(&mut self, seq: u64) -> io::Result<()> {
        if seq + 1 == self.next_seq && self.size >= ROTATE_AT {
            self.start_segment().map_err(|e| match e {
                OpenLogError::Io { source, .. } => source,
                other => io::Error::other(other.to_string()),
            })?;
        }
        // A sealed segment holds records up to the next segment's first, minus one.
        let mut keep = Vec::new();
        let bounds: Vec<u64> = self
            .sealed
            .iter()
            .skip(1)
            .copied()
            .chain(std::iter::once(self.segment))
            .collect();
        for (seg, next_first) in self.sealed.iter().zip(bounds) {
            if next_first <= seq + 1 {
                self.store.remove(*seg)?;
            } else {
                keep.push(*seg);
            }
        }
        self.sealed = keep;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = header().to_vec();
        for (seq, p) in records {
            frame(&mut out, *seq, p);
        }
        out
    }

    #[test]
    fn records_round_trip() {
        let rs = [
            Record::Append {
                id: 7,
                source: "gh".into(),
                received_ms: 9,
                dedup: Some(("d-1".into(), 10)),
                order_key: "k".into(),
                destinations: vec!["a".into(), "b".into()],
                record: vec![1, 2, 3],
            },
            Record::Step {
                id: 7,
                name: "charge".into(),
                value: b"\"ch_1\"".to_vec(),
            },
            Record::Redrive {
                now_ms: 5,
                moved: vec![("s".into(), 1, "".into())],
            },
            Record::Replay {
                replay_id: 3,
                now_ms: 4,
                status: b"{}".to_vec(),
                queued: vec![("s".into(), 2, "audit".into())],
            },
        ];
        for r in rs {
            assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn a_torn_tail_is_cut_and_damage_before_it_is_an_error() {
        let whole = segment(&[(1, b"one"), (2, b"two"), (3, b"three")]);
        let s = scan(&whole, true).unwrap();
        assert_eq!(s.records.len(), 3);
        assert_eq!((s.valid_len, s.torn.is_none()), (whole.len(), true));
        // Cut anywhere inside the last record: the two before it survive.
        let two = segment(&[(1, b"one"), (2, b"two")]).len();
        for cut in two..whole.len() {
            let s = scan(&whole[..cut], true).unwrap();
            assert_eq!(s.records.len(), 2, "cut at {cut}");
            assert_eq!(s.valid_len, two);
            assert_eq!(s.torn.is_some(), cut > two);
        }
        // The same cut in a sealed segment is an error.
        assert!(scan(&whole[..whole.len() - 1], false).is_err());
        // A flipped byte in the middle record, with a whole record after it.
        let mut bad = whole.clone();
        bad[two - 2] ^= 1;
        let e = scan(&bad, true).unwrap_err();
        assert!(e.problem.contains("whole record follows"), "{e}");
        // A flipped byte in the last record: torn.
        let mut tail = whole.clone();
        let n = tail.len() - 1;
        tail[n] ^= 1;
        assert_eq!(scan(&tail, true).unwrap().records.len(), 2);
        assert!(scan(b"garbage garbage garbage", true).is_err());
        assert!(scan(&header()[..5], true).unwrap().records.is_empty());
    }

    /// A store in memory, durable at once (the power-loss tests simulate losses).
    #[derive(Debug, Default)]
    struct Mem(Mutex<std::collections::BTreeMap<u64, Vec<u8>>>);

    impl LogStore for Mem {
        fn list(&self) -> io::Result<Vec<u64>> {
            Ok(self.0.lock().unwrap().keys().copied().collect())
        }
        fn read(&self, s: u64) -> io::Result<Vec<u8>> {
            Ok(self.0.lock().unwrap()[&s].clone())
        }
        fn create(&self, s: u64) -> io::Result<()> {
            self.0.lock().unwrap().insert(s, Vec::new());
            Ok(())
        }
        fn append(&self, s: u64, d: &[u8]) -> io::Result<()> {
            let mut m = self.0.lock().unwrap();
            let f = m.get_mut(&s).ok_or(io::ErrorKind::NotFound)?;
            f.extend_from_slice(d);
            Ok(())
        }
        fn sync(&self, _: u64) -> io::Result<()> {
            Ok(())
        }
        fn truncate(&self, s: u64, len: u64) -> io::Result<()> {
            self.0
                .lock()
                .unwrap()
                .get_mut(&s)
                .unwrap()
                .truncate(len as usize);
            Ok(())
        }
        fn remove(&self, s: u64) -> io::Result<()> {
            self.0.lock().unwrap().remove(&s);
            Ok(())
        }
    }

    #[test]
    fn a_segment_whose_header_was_lost_is_made_again_and_kept() {
        let store = std::sync::Arc::new(Mem::default());
        let (mut wal, pending) = Wal::open(store.clone(), 0).unwrap();
        assert!(pending.is_empty());
        wal.write(&[b"a".to_vec()]).unwrap();
        // A crash right after the next segment was created, before its header.
        store.create(2).unwrap();
        // (Checkpoint 1: record 1 is applied already, so it is not decoded again.)
        let (mut wal, pending) = Wal::open(store.clone(), 1).unwrap();
        assert!(pending.is_empty());
        assert_eq!(wal.segment(), 2);
        wal.write(&[b"b".to_vec()]).unwrap();
        wal.checkpointed(1).unwrap();
        assert_eq!(store.list().unwrap(), [2], "the current segment is kept");
        wal.write(&[b"c".to_vec()]).unwrap();
        assert_eq!(
            scan(&store.read(2).unwrap(), true).unwrap().records.len(),
            2
        );
    }
}
