//! The versioned on-disk encoding of an event record.
//!
//! ```text
//! u8   version (1)
//! u8   flags   (bit 0: body is LZ4 block-compressed)
//! u64  received_at, ms since the Unix epoch (LE)
//! str  source, scheme          (u16 LE length + bytes)
//! opt  delivery id, event type (u16 LE length + bytes; 0xFFFF = absent)
//! u16  header count, then per header: str name, str value
//! u32  raw body length
//! ...  body (compressed when flag 0 is set)
//! ```
//!
//! The body comes last so listing events decodes the metadata without touching it.
//! A reader refuses versions it does not know; `tests/it/journal.rs` pins a version-1
//! file so a format change breaks a test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::{EventId, State};
use crate::Event;

/// The newest record version this build writes and reads.
pub(crate) const VERSION: u8 = 1;

const FLAG_LZ4: u8 = 1;
const ABSENT: u16 = u16::MAX;

/// Bodies shorter than this are stored as they are.
const COMPRESS_MIN: usize = 256;

/// Headers never kept: hop-by-hop, framing, and credentials of other systems.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "proxy-authorization",
    "proxy-connection",
    "authorization",
    "cookie",
];

/// An event as read back from the journal.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// hookbox's id (time-ordered).
    pub id: EventId,
    /// The source it arrived on.
    pub source: String,
    /// The scheme that verified it.
    pub scheme: String,
    /// The provider's delivery id, if stated.
    pub delivery_id: Option<String>,
    /// The provider's event type, if stated.
    pub event_type: Option<String>,
    /// When hookbox received it.
    pub received_at: SystemTime,
    /// The headers worth keeping (hop-by-hop and credentials dropped).
    pub headers: HeaderMap,
    /// The raw body, decompressed.
    pub body: Bytes,
}

/// An event's metadata without headers or body, for listings, with its delivery state
/// as of the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSummary {
    /// hookbox's id.
    pub id: EventId,
    /// The source it arrived on.
    pub source: String,
    /// The provider's delivery id, if stated.
    pub delivery_id: Option<String>,
    /// The provider's event type, if stated.
    pub event_type: Option<String>,
    /// When hookbox received it.
    pub received_at: SystemTime,
    /// The raw body's length.
    pub body_len: u32,
    /// Its delivery state.
    pub state: State,
    /// Attempts of its original delivery so far (replays not counted).
    pub attempts: u32,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch `d` from now, saturating (a delay of ages is
/// "never", not a panic).
pub(crate) fn millis_after(d: std::time::Duration) -> u64 {
    millis(SystemTime::now()).saturating_add(duration_ms(d))
}

/// `d` in whole milliseconds, saturating at `u64::MAX`.
pub(crate) fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len().min(u16::MAX as usize - 1);
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&s[..n]);
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s.as_bytes()),
        None => out.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

/// Encodes `event` (compressing the body when that pays). Runs on the request's task,
/// not the writer thread, so encoding overlaps the writer's commits.
pub(crate) fn encode(event: &Event) -> Vec<u8> {
    let raw = &event.body[..];
    let compressed = (raw.len() >= COMPRESS_MIN)
        .then(|| lz4_flex::block::compress(raw))
        .filter(|c| c.len() < raw.len() - raw.len() / 8);
    let body: &[u8] = compressed.as_deref().unwrap_or(raw);
    let mut out = Vec::with_capacity(64 + body.len() + 48 * event.headers.len());
    out.push(VERSION);
    out.push(if compressed.is_some() { FLAG_LZ4 } else { 0 });
    out.extend_from_slice(&millis(event.received_at).to_le_bytes());
    put_str(&mut out, event.source.as_bytes());
    put_str(&mut out, event.scheme.as_bytes());
    put_opt(&mut out, event.delivery_id.as_deref());
    put_opt(&mut out, event.event_type.as_deref());
    let kept: Vec<_> = event
        .headers
        .iter()
        .filter(|(k, _)| !DROPPED.contains(&k.as_str()))
        .collect();
    out.extend_from_slice(&(kept.len().min(u16::MAX as usize) as u16).to_le_bytes());
    for (k, v) in kept.into_iter().take(u16::MAX as usize) {
        put_str(&mut out, k.as_str().as_bytes());
        put_str(&mut out, v.as_bytes());
    }
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// A cursor over a record's bytes; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    id: u64,
}

type Result<T> = std::result::Result<T, super::JournalError>;

impl<'a> Reader<'a> {
    fn corrupt(&self, problem: &str) -> super::JournalError {
        super::JournalError::Corrupt {
            id: self.id,
            problem: problem.to_owned(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(self.corrupt("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.corrupt("a string is not UTF-8"))
    }

    fn opt(&mut self) -> Result<Option<String>> {
        let n = self.u16()?;
        if n == ABSENT {
            return Ok(None);
        }
        let b = self.take(n as usize)?;
        String::from_utf8(b.to_vec())
            .map(Some)
            .map_err(|_| self.corrupt("a string is not UTF-8"))
    }
}

struct Head<'a> {
    flags: u8,
    summary: EventSummary,
    scheme: String,
    rest: Reader<'a>,
}

fn head(id: u64, bytes: &[u8]) -> Result<Head<'_>> {
    let mut r = Reader { buf: bytes, id };
    let version = r.u8()?;
    if version != VERSION {
        return Err(r.corrupt(&format!(
            "record version {version}, this build reads {VERSION}"
        )));
    }
    let flags = r.u8()?;
    let received_at = UNIX_EPOCH + Duration::from_millis(r.u64()?);
    let source = r.string()?;
    let scheme = r.string()?;
    let delivery_id = r.opt()?;
    let event_type = r.opt()?;
    Ok(Head {
        flags,
        summary: EventSummary {
            id: EventId(id),
            source,
            delivery_id,
            event_type,
            received_at,
            body_len: 0,
            state: State::Pending,
            attempts: 0,
        },
        scheme,
        rest: r,
    })
}

/// Decodes the metadata only; the state is left at `Pending` for the caller to fill.
pub(crate) fn decode_summary(id: u64, bytes: &[u8]) -> Result<EventSummary> {
    let Head {
        mut summary,
        mut rest,
        ..
    } = head(id, bytes)?;
    let n = rest.u16()?;
    for _ in 0..n {
        rest.bytes()?;
        rest.bytes()?;
    }
    summary.body_len = rest.u32()?;
    Ok(summary)
}

/// The raw body alone (decompressed when it is stored compressed), for filters that
/// read it: the headers are skipped, not decoded.
pub(crate) fn decode_body(id: u64, bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>> {
    let Head {
        flags, mut rest, ..
    } = head(id, bytes)?;
    let n = rest.u16()?;
    for _ in 0..n {
        rest.bytes()?;
        rest.bytes()?;
    }
    rest_body(flags, rest)
}

/// The body at the end of a record, `rest` placed at its length.
fn rest_body(flags: u8, mut rest: Reader<'_>) -> Result<std::borrow::Cow<'_, [u8]>> {
    let raw_len = rest.u32()? as usize;
    let stored = rest.buf;
    let body = if flags & FLAG_LZ4 != 0 {
        std::borrow::Cow::Owned(
            lz4_flex::block::decompress(stored, raw_len)
                .map_err(|_| rest.corrupt("body does not decompress"))?,
        )
    } else {
        std::borrow::Cow::Borrowed(stored)
    };
    if body.len() != raw_len {
        return Err(rest.corrupt("body length mismatch"));
    }
    Ok(body)
}

/// Decodes a whole record.
pub(crate) fn decode(id: u64, bytes: &[u8]) -> Result<StoredEvent> {
    let Head {
        flags,
        summary,
        scheme,
        mut rest,
    } = head(id, bytes)?;
    let n = rest.u16()?;
    let mut headers = HeaderMap::with_capacity(n as usize);
    for _ in 0..n {
        let name =
            HeaderName::from_bytes(rest.bytes()?).map_err(|_| rest.corrupt("header name"))?;
        let value =
            HeaderValue::from_bytes(rest.bytes()?).map_err(|_| rest.corrupt("header value"))?;
        headers.append(name, value);
    }
    let body = rest_body(flags, rest)?.into_owned();
    Ok(StoredEvent {
        id: summary.id,
        source: summary.source,
        scheme,
        delivery_id: summary.delivery_id,
        event_type: summary.event_type,
        received_at: summary.received_at,
        headers,
        body: Bytes::from(body),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn event(body: &[u8]) -> Event {
        let mut headers = HeaderMap::new();
        headers.insert("stripe-signature", "t=1,v1=ab".parse().unwrap());
        headers.insert("authorization", "Bearer nope".parse().unwrap());
        headers.append("x-multi", "a".parse().unwrap());
        headers.append("x-multi", "b".parse().unwrap());
        Event {
            source: Arc::from("stripe"),
            scheme: Arc::from("stripe"),
            delivery_id: Some("evt_1".into()),
            event_type: None,
            received_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            headers,
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn round_trip_small_and_compressed() {
        let json = br#"{"object":"event","data":{"object":{"id":"in_1","lines":[]}}}"#.repeat(40);
        for body in [&b"tiny"[..], &json[..], &[0xff, 0, 0x80][..]] {
            let bytes = encode(&event(body));
            let back = decode(7, &bytes).unwrap();
            assert_eq!(&back.body[..], body);
            assert_eq!(back.delivery_id.as_deref(), Some("evt_1"));
            assert_eq!(back.event_type, None);
            assert_eq!(millis(back.received_at), 1_700_000_000_123);
            assert!(
                back.headers.get("authorization").is_none(),
                "credentials are not kept"
            );
            assert_eq!(back.headers.get_all("x-multi").iter().count(), 2);
            assert_eq!(
                decode_summary(7, &bytes).unwrap().body_len as usize,
                body.len()
            );
            assert_eq!(&decode_body(7, &bytes).unwrap()[..], body);
        }
        assert!(
            encode(&event(&json)).len() < json.len() / 3,
            "realistic JSON shrinks"
        );
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let bytes = encode(&event(&br#"{"a":1}"#.repeat(100)));
        for cut in 0..bytes.len() {
            let _ = decode(1, &bytes[..cut]);
            let _ = decode_body(1, &bytes[..cut]);
        }
        let mut newer = bytes.clone();
        newer[0] = 2;
        assert!(decode(1, &newer).is_err());
    }
}
