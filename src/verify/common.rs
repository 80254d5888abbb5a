//! The crypto rules, kept in one place: header reading policy, decoding, constant-time
//! comparison, timestamp tolerance, keyed MACs and redacted secrets.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::Mac;
use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::EventMeta;
use crate::error::{BuildError, VerifyError};

/// Header values longer than this are `malformed_header`.
pub(crate) const MAX_HEADER_LEN: usize = 8 * 1024;

/// The tolerance applied when neither the provider documents one nor the user sets one.
pub(crate) const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Reads a header that must be present exactly once, as trimmed ASCII of at most 8 KiB.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    optional_header(headers, name)?.ok_or_else(|| VerifyError::missing(name))
}

/// Reads a header that may be absent; when present the same policy as [`header`] applies.
pub(crate) fn optional_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(VerifyError::malformed(format!(
            "header `{name}` was sent more than once"
        )));
    }
    if value.len() > MAX_HEADER_LEN {
        return Err(VerifyError::malformed(format!(
            "header `{name}` is {} bytes, over the 8 KiB limit",
            value.len()
        )));
    }
    let text = value
        .to_str()
        .map_err(|_| VerifyError::malformed(format!("header `{name}` is not visible ASCII")))?;
    Ok(Some(text.trim()))
}

/// Decodes lowercase or uppercase hex into `out`, returning the written prefix.
pub(crate) fn decode_hex<'o>(
    what: &str,
    text: &str,
    out: &'o mut [u8],
) -> Result<&'o [u8], VerifyError> {
    let n = text.len() / 2;
    if text.len() % 2 != 0 || n > out.len() || n == 0 {
        return Err(VerifyError::malformed(format!(
            "{what}: expected an even number of hex digits (at most {}), found {} characters",
            out.len() * 2,
            text.len()
        )));
    }
    hex::decode_to_slice(text, &mut out[..n])
        .map_err(|_| VerifyError::malformed(format!("{what}: not valid hex")))?;
    Ok(&out[..n])
}

/// Decodes standard base64 (padding optional) into `out`, returning the written prefix.
pub(crate) fn decode_b64<'o>(
    what: &str,
    text: &str,
    out: &'o mut [u8],
) -> Result<&'o [u8], VerifyError> {
    let bad = || VerifyError::malformed(format!("{what}: not valid base64"));
    if text.is_empty() || text.len() > out.len() / 3 * 4 + 4 {
        return Err(bad());
    }
    let n = B64_LENIENT
        .decode_slice(text.as_bytes(), &mut out[..])
        .map_err(|_| bad())?;
    Ok(&out[..n])
}

/// Standard alphabet, padding accepted or not.
pub(crate) const B64_LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(false),
);

/// Encodes standard base64 with padding.
pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Constant-time equality of two byte strings (the length is not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Seconds since the Unix epoch of `t`, negative before it.
pub(crate) fn unix_millis(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => -(e.duration().as_millis() as i128),
    }
}

/// Parses a decimal Unix timestamp in seconds (`malformed_header` otherwise).
pub(crate) fn parse_unix_secs(what: &str, text: &str) -> Result<i64, VerifyError> {
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::malformed(format!(
            "{what}: expected Unix seconds as decimal digits, found {:?}",
            truncate(text, 40)
        )));
    }
    text.parse()
        .map_err(|_| VerifyError::malformed(format!("{what}: timestamp out of range")))
}

/// Checks `|now - ts| <= tolerance`, inclusive, in both directions, in milliseconds.
pub(crate) fn check_tolerance(
    ts_millis: i128,
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let now_ms = unix_millis(now);
    let skew = now_ms - ts_millis;
    if skew.unsigned_abs() <= tolerance.as_millis() {
        return Ok(());
    }
    let (dir, by) = if skew > 0 {
        ("old", skew)
    } else {
        ("in the future", -skew)
    };
    Err(VerifyError::new(
        crate::ErrorKind::TimestampOutOfTolerance,
        format!(
            "timestamp {} is {:.3} s {dir}; tolerance is {} s",
            ts_millis / 1000,
            by as f64 / 1000.0,
            tolerance.as_secs_f64()
        ),
    ))
}

/// Checks a timestamp given in whole seconds.
pub(crate) fn check_tolerance_secs(
    ts: i64,
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    check_tolerance(ts as i128 * 1000, now, tolerance)
}

/// Cuts `s` to at most `n` characters for error messages.
pub(crate) fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A secret as configured: redacted in `Debug`, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret text. Handle with care: never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// The HMAC hash function of a scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA1 (legacy providers).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Algorithm {
    /// Parses `sha1`, `sha256` or `sha512`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sha1" => Some(Algorithm::Sha1),
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// The output of a MAC, held inline (no allocation).
#[derive(Clone, Copy)]
pub(crate) struct Tag {
    buf: [u8; 64],
    len: usize,
}

impl Tag {
    /// A zero-length tag, to fill fixed arrays.
    pub(crate) const EMPTY: Tag = Tag {
        buf: [0; 64],
        len: 0,
    };

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// An HMAC keyed once at configuration time; each use clones the keyed state, so the key
/// schedule is not recomputed per request. Debug is redacted.
#[derive(Clone)]
pub(crate) enum KeyedMac {
    Sha1(hmac::Hmac<sha1::Sha1>),
    Sha256(hmac::Hmac<sha2::Sha256>),
    Sha512(hmac::Hmac<sha2::Sha512>),
}

impl fmt::Debug for KeyedMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyedMac([redacted])")
    }
}

impl KeyedMac {
    /// Keys a MAC; HMAC accepts any key length, an empty key is refused.
    pub(crate) fn new(alg: Algorithm, key: &[u8]) -> Result<Self, BuildError> {
        if key.is_empty() {
            return Err(BuildError::secret("the secret is empty"));
        }
        let bad = |_| BuildError::secret("the key cannot be used for HMAC");
        Ok(match alg {
            Algorithm::Sha1 => KeyedMac::Sha1(hmac::Hmac::new_from_slice(key).map_err(bad)?),
            Algorithm::Sha256 => KeyedMac::Sha256(hmac::Hmac::new_from_slice(key).map_err(bad)?),
            Algorithm::Sha512 => KeyedMac::Sha512(hmac::Hmac::new_from_slice(key).map_err(bad)?),
        })
    }

    /// MAC over the concatenation of `parts`.
    pub(crate) fn tag(&self, parts: &[&[u8]]) -> Tag {
        fn run<M: Mac + Clone>(m: &M, parts: &[&[u8]]) -> Tag {
            let mut m = m.clone();
            for p in parts {
                m.update(p);
            }
            let out = m.finalize().into_bytes();
            let mut buf = [0u8; 64];
            buf[..out.len()].copy_from_slice(&out);
            Tag {
                buf,
                len: out.len(),
            }
        }
        match self {
            KeyedMac::Sha1(m) => run(m, parts),
            KeyedMac::Sha256(m) => run(m, parts),
            KeyedMac::Sha512(m) => run(m, parts),
        }
    }
}

/// HMAC keys for every configured secret (rotation), tried in turn.
#[derive(Clone, Debug)]
pub(crate) struct Keys(Vec<KeyedMac>);

impl Keys {
    /// Keys every secret with `to_key` turning the secret text into key bytes.
    pub(crate) fn new(
        alg: Algorithm,
        secrets: &[Secret],
        mut to_key: impl FnMut(&str) -> Result<Vec<u8>, BuildError>,
    ) -> Result<Self, BuildError> {
        if secrets.is_empty() {
            return Err(BuildError::NoSecret);
        }
        secrets
            .iter()
            .map(|s| KeyedMac::new(alg, &to_key(s.expose())?))
            .collect::<Result<_, _>>()
            .map(Keys)
    }

    /// Keys every secret's raw UTF-8 bytes.
    pub(crate) fn raw(alg: Algorithm, secrets: &[Secret]) -> Result<Self, BuildError> {
        Self::new(alg, secrets, |s| Ok(s.as_bytes().to_vec()))
    }

    /// How many secrets are active.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The first key, used for signing.
    pub(crate) fn first(&self) -> &KeyedMac {
        &self.0[0]
    }

    /// True when any key's MAC over `parts` equals any of `candidates`.
    pub(crate) fn matches_any<'c>(
        &self,
        parts: &[&[u8]],
        candidates: impl Iterator<Item = &'c [u8]> + Clone,
    ) -> bool {
        let mut ok = false;
        for key in &self.0 {
            let tag = key.tag(parts);
            for c in candidates.clone() {
                ok |= ct_eq(tag.as_bytes(), c);
            }
        }
        ok
    }
}

/// The usual failure when nothing matched.
pub(crate) fn no_match(what: &str, n_secrets: usize) -> VerifyError {
    VerifyError::mismatch(format!(
        "{what} does not match the HMAC of the received body under any of the {n_secrets} configured secret(s)"
    ))
}

/// Picks the delivery id and event type out of a JSON body by JSON pointers. Best
/// effort: a body that is not JSON yields an empty [`EventMeta`].
///
/// Only the objects on the pointers' paths are parsed into maps; every other value is
/// skipped as raw text, so a 16 KiB body costs a scan, not a tree of allocations.
pub(crate) fn json_meta(body: &[u8], id: Option<&str>, ty: Option<&str>) -> EventMeta {
    EventMeta {
        id: id.and_then(|p| json_pointer_str(body, p)),
        event_type: ty.and_then(|p| json_pointer_str(body, p)),
    }
}

/// The string (or number, as text) at JSON `pointer` (`/a/b`) in `json`.
pub(crate) fn json_pointer_str(json: &[u8], pointer: &str) -> Option<String> {
    use serde_json::value::RawValue;
    use std::borrow::Cow;
    use std::collections::HashMap;

    let mut current: &[u8] = json;
    for segment in pointer.split('/').skip(1) {
        let key = segment.replace("~1", "/").replace("~0", "~");
        let map: HashMap<Cow<'_, str>, &RawValue> = serde_json::from_slice(current).ok()?;
        current = map.get(key.as_str())?.get().as_bytes();
    }
    match serde_json::from_slice::<serde_json::Value>(current).ok()? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads a header for metadata: absent, repeated or non-ASCII yields `None`.
pub(crate) fn meta_header(headers: &HeaderMap, name: &str) -> Option<String> {
    optional_header(headers, name)
        .ok()
        .flatten()
        .map(str::to_owned)
}

/// Seconds since the Unix epoch, for signing.
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    (unix_millis(t).div_euclid(1000)) as i64
}

/// How a signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Hex digits, either case.
    Hex,
    /// Standard base64.
    Base64,
}

impl Encoding {
    /// Decodes a signature into `out`: `malformed_header` when it cannot be decoded.
    pub(crate) fn decode<'o>(
        self,
        what: &str,
        text: &str,
        out: &'o mut [u8; 96],
    ) -> Result<&'o [u8], VerifyError> {
        match self {
            Encoding::Hex => decode_hex(what, text, &mut out[..64]),
            Encoding::Base64 => decode_b64(what, text, &mut out[..]),
        }
    }

    /// Encodes a tag for signing.
    pub(crate) fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => b64(bytes),
        }
    }
}

/// The commonest scheme shape: one header holding `prefix || encode(HMAC(secret, body))`.
/// GitHub, Meta, Intercom, Shopify, Lemon Squeezy and others are this with other names.
#[derive(Debug, Clone)]
pub(crate) struct BodyHmac {
    /// The header holding the signature.
    pub(crate) header: &'static str,
    /// What precedes the encoded MAC (`sha256=`), matched exactly.
    pub(crate) prefix: &'static str,
    /// How the MAC is encoded.
    pub(crate) encoding: Encoding,
    /// One keyed MAC per active secret.
    pub(crate) keys: Keys,
}

impl BodyHmac {
    /// Keys every secret's raw bytes with `alg`.
    pub(crate) fn new(
        header: &'static str,
        prefix: &'static str,
        encoding: Encoding,
        alg: Algorithm,
        secrets: &[Secret],
    ) -> Result<Self, BuildError> {
        Ok(BodyHmac {
            header,
            prefix,
            encoding,
            keys: Keys::raw(alg, secrets)?,
        })
    }

    /// Verifies the header against the body.
    pub(crate) fn verify(&self, req: &super::Inbound<'_>) -> Result<(), VerifyError> {
        let value = header(req.headers, self.header)?;
        let encoded = value.strip_prefix(self.prefix).ok_or_else(|| {
            VerifyError::malformed(format!(
                "header `{}`: expected `{}` followed by the signature, found {:?}",
                self.header,
                self.prefix,
                truncate(value, 16)
            ))
        })?;
        let mut buf = [0u8; 96];
        let sig = self.encoding.decode(self.header, encoded, &mut buf)?;
        if self.keys.matches_any(&[req.body], std::iter::once(sig)) {
            Ok(())
        } else {
            Err(no_match(
                &format!("header `{}`", self.header),
                self.keys.len(),
            ))
        }
    }

    /// The header value the provider would send for `body`.
    pub(crate) fn sign(&self, body: &[u8]) -> super::Signed {
        let tag = self.keys.first().tag(&[body]);
        super::Signed::default().header(
            self.header,
            format!("{}{}", self.prefix, self.encoding.encode(tag.as_bytes())),
        )
    }
}

impl Keys {
    /// The first key whose MAC over `parts` equals one of `candidates`: the secret the
    /// sender actually used, for replies that must be keyed the same way (Zoom's URL
    /// validation during rotation). Which key matched is not secret; the comparison of
    /// each tag is still constant-time.
    pub(crate) fn find<'c>(
        &self,
        parts: &[&[u8]],
        candidates: impl Iterator<Item = &'c [u8]> + Clone,
    ) -> Option<&KeyedMac> {
        self.0.iter().find(|key| {
            let tag = key.tag(parts);
            candidates.clone().any(|c| ct_eq(tag.as_bytes(), c))
        })
    }
}

/// Decodes an `application/x-www-form-urlencoded` body into raw `(name, value)` byte
/// pairs, in order, without any UTF-8 requirement (`+` is a space, `%XX` a byte, a `%`
/// not followed by two hex digits is kept as is, empty `&&` segments are skipped), the
/// same rules as the `form_urlencoded` crate but without its lossy UTF-8 conversion:
/// bytes that are not UTF-8 are kept, not replaced by U+FFFD.
pub(crate) fn form_decode(body: &[u8]) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    fn unescape(s: &[u8]) -> Vec<u8> {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'+' => out.push(b' '),
                b'%' => match (
                    s.get(i + 1).and_then(|&b| hex(b)),
                    s.get(i + 2).and_then(|&b| hex(b)),
                ) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi << 4) | lo);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        out
    }
    body.split(|&b| b == b'&')
        .filter(|seg| !seg.is_empty())
        .map(|seg| match seg.iter().position(|&b| b == b'=') {
            Some(i) => (unescape(&seg[..i]), unescape(&seg[i + 1..])),
            None => (unescape(seg), Vec::new()),
        })
}
