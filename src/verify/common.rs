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
/// An empty value is `missing_header`, as the providers' SDKs treat it: no signature.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    match raw_header(headers, name)? {
        Some("") => Err(VerifyError::new(
            crate::ErrorKind::MissingHeader,
            format!("expected header `{name}` with a value, found it empty"),
        )),
        Some(v) => Ok(v),
        None => Err(VerifyError::missing(name)),
    }
}

/// Reads a header that may be absent; when present the same policy as [`header`] applies,
/// and an empty value counts as absent.
pub(crate) fn optional_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, VerifyError> {
    Ok(raw_header(headers, name)?.filter(|v| !v.is_empty()))
}

/// The header's trimmed value, if present: once, visible ASCII, at most 8 KiB.
fn raw_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, VerifyError> {
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

/// Room for one decoded signature: more than the longest MAC (HMAC-SHA512, 64 bytes) and
/// the longest DER ECDSA P-256 signature (72 bytes).
pub(crate) const SIG_BUF: usize = 96;

/// A received signature that decoded.
///
/// The rule every scheme follows: text that is not valid in the signature's encoding is
/// `malformed_header`; text that is valid decodes, whatever its length, and a length that
/// no configured key produces is simply a signature that does not match
/// (`invalid_signature`). `v1=` with nothing after it decodes to zero bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sig<'o> {
    /// The decoded bytes; empty when they do not fit the buffer (no MAC or signature is
    /// empty, so such a signature can only mismatch).
    pub(crate) bytes: &'o [u8],
    /// The decoded length, also when the bytes did not fit.
    pub(crate) len: usize,
}

/// Decodes lowercase or uppercase hex into `out` (see [`Sig`]).
pub(crate) fn decode_hex<'o>(
    what: &str,
    text: &str,
    out: &'o mut [u8],
) -> Result<Sig<'o>, VerifyError> {
    if let Some((i, c)) = text
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_hexdigit())
    {
        return Err(VerifyError::malformed(format!(
            "{what}: expected hex digits, found {c:?} at character {}",
            i + 1
        )));
    }
    if text.len() % 2 != 0 {
        return Err(VerifyError::malformed(format!(
            "{what}: expected hex digits in pairs, found an odd number ({})",
            text.len()
        )));
    }
    let len = text.len() / 2;
    let Some(out) = out.get_mut(..len) else {
        return Ok(Sig { bytes: &[], len });
    };
    hex::decode_to_slice(text, out)
        .map_err(|_| VerifyError::malformed(format!("{what}: not valid hex")))?;
    Ok(Sig { bytes: out, len })
}

/// Decodes standard base64 (padding optional) into `out` (see [`Sig`]).
pub(crate) fn decode_b64<'o>(
    what: &str,
    text: &str,
    out: &'o mut [u8],
) -> Result<Sig<'o>, VerifyError> {
    let bad = || VerifyError::malformed(format!("{what}: not valid base64"));
    if text.len().div_ceil(4) * 3 <= out.len() {
        let len = B64_LENIENT
            .decode_slice(text.as_bytes(), &mut out[..])
            .map_err(|_| bad())?;
        return Ok(Sig {
            bytes: &out[..len],
            len,
        });
    }
    // Longer than any signature (the header is at most 8 KiB): decoded only to tell
    // whether it is base64 at all.
    let len = B64_LENIENT.decode(text).map_err(|_| bad())?.len();
    Ok(Sig { bytes: &[], len })
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
    /// The length of its MAC, in bytes.
    pub(crate) fn tag_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

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

    /// The length of its MAC, in bytes.
    pub(crate) fn tag_len(&self) -> usize {
        match self {
            KeyedMac::Sha1(_) => Algorithm::Sha1,
            KeyedMac::Sha256(_) => Algorithm::Sha256,
            KeyedMac::Sha512(_) => Algorithm::Sha512,
        }
        .tag_len()
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
pub(crate) struct Keys {
    macs: Vec<KeyedMac>,
    /// The positions (from 1) of raw secrets that contain whitespace, for the rejection.
    spaced: Vec<usize>,
}

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
        let macs = secrets
            .iter()
            .map(|s| KeyedMac::new(alg, &to_key(s.expose())?))
            .collect::<Result<_, _>>()?;
        Ok(Keys {
            macs,
            spaced: Vec::new(),
        })
    }

    /// Keys every secret's raw UTF-8 bytes. A secret with whitespace is kept as it is (it
    /// may be the key), and named when nothing matches, as stripe-node does: it is most
    /// often a stray newline or space from a file or a paste.
    pub(crate) fn raw(alg: Algorithm, secrets: &[Secret]) -> Result<Self, BuildError> {
        let mut keys = Self::new(alg, secrets, |s| Ok(s.as_bytes().to_vec()))?;
        keys.spaced = (1..)
            .zip(secrets)
            .filter(|(_, s)| s.expose().chars().any(char::is_whitespace))
            .map(|(i, _)| i)
            .collect();
        Ok(keys)
    }

    /// `e`, with a note naming the secrets that contain whitespace when it is a mismatch.
    pub(crate) fn explain(&self, e: VerifyError) -> VerifyError {
        if self.spaced.is_empty() || e.kind() != crate::ErrorKind::InvalidSignature {
            return e;
        }
        let which: Vec<String> = self.spaced.iter().map(usize::to_string).collect();
        let (noun, verb) = match which.len() {
            1 => ("secret", "contains"),
            _ => ("secrets", "contain"),
        };
        VerifyError::mismatch(format!(
            "{}; configured {noun} {} {verb} whitespace, which is part of the key (a stray \
             newline or space?)",
            e.detail(),
            which.join(", ")
        ))
    }

    /// How many secrets are active.
    pub(crate) fn len(&self) -> usize {
        self.macs.len()
    }

    /// The length of their MACs (every key has the same algorithm).
    pub(crate) fn tag_len(&self) -> usize {
        self.first().tag_len()
    }

    /// The first key, used for signing.
    pub(crate) fn first(&self) -> &KeyedMac {
        &self.macs[0]
    }

    /// True when any key's MAC over `parts` equals any of `candidates`.
    pub(crate) fn matches_any<'c>(
        &self,
        parts: &[&[u8]],
        candidates: impl Iterator<Item = &'c [u8]> + Clone,
    ) -> bool {
        let mut ok = false;
        for key in &self.macs {
            let tag = key.tag(parts);
            for c in candidates.clone() {
                ok |= ct_eq(tag.as_bytes(), c);
            }
        }
        ok
    }
}

/// The usual summary when nothing matched, for [`Tally::mismatch`].
pub(crate) fn no_match(what: &str, n_secrets: usize) -> String {
    format!(
        "{what} does not match the HMAC of the received body under any of the {n_secrets} configured secret(s)"
    )
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
///
/// `json` must be UTF-8 and every level a whole, valid JSON object (an array, trailing
/// bytes or a syntax error anywhere in it yields `None`); of a key repeated in one object
/// the last wins. Each level is one pass that compares keys in place and skips the other
/// members' values without building them: this runs on every ingested request.
pub(crate) fn json_pointer_str(json: &[u8], pointer: &str) -> Option<String> {
    use serde::de::DeserializeSeed;

    // Checked once here, so that skipping a member's string need not check it.
    let mut current: &str = std::str::from_utf8(json).ok()?;
    for segment in pointer.split('/').skip(1) {
        let key: std::borrow::Cow<'_, str> = if segment.contains('~') {
            segment.replace("~1", "/").replace("~0", "~").into()
        } else {
            segment.into()
        };
        let mut de = serde_json::Deserializer::from_str(current);
        let member = pointer::Member(&key).deserialize(&mut de).ok()?;
        de.end().ok()?;
        current = member?.get();
    }
    match current.trim_ascii_start().as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(current).ok(),
        b'-' | b'0'..=b'9' => serde_json::from_str::<serde_json::Number>(current)
            .ok()
            .map(|n| n.to_string()),
        _ => None,
    }
}

/// The serde visitors of [`json_pointer_str`]: one member of an object, found without
/// allocating.
mod pointer {
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    use serde_json::value::RawValue;

    /// Finds the member named `.0` of an object: its raw value, the last one if the key
    /// repeats, `None` when absent.
    pub(super) struct Member<'k>(pub(super) &'k str);

    impl<'de> DeserializeSeed<'de> for Member<'_> {
        type Value = Option<&'de RawValue>;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Member<'_> {
        type Value = Option<&'de RawValue>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(is_it) = map.next_key_seed(KeyIs(self.0))? {
                if is_it {
                    found = Some(map.next_value::<&'de RawValue>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }

    /// Whether an object key (unescaped) equals `.0`.
    struct KeyIs<'k>(&'k str);

    impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
        type Value = bool;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl Visitor<'_> for KeyIs<'_> {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string key")
        }

        fn visit_str<E>(self, key: &str) -> Result<bool, E> {
            Ok(key == self.0)
        }
    }
}

/// Reads a header for metadata: absent, empty, repeated or non-ASCII yields `None`.
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
    /// Decodes a received signature into `out` under the shared rule (see [`Sig`]):
    /// `malformed_header` only when it is not valid in this encoding.
    pub(crate) fn decode<'o>(
        self,
        what: &str,
        text: &str,
        out: &'o mut [u8; SIG_BUF],
    ) -> Result<Sig<'o>, VerifyError> {
        match self {
            Encoding::Hex => decode_hex(what, text, &mut out[..]),
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

/// What became of the signatures a request offered, for the verdict and its message.
///
/// Schemes that accept several signatures (Stripe's `v1=`, Paddle's `h1=`, Standard
/// Webhooks' space-separated entries, ...) skip one that cannot be decoded and check the
/// others, as the providers' SDKs do: the request is `malformed_header` only when none of
/// them decodes. One that decodes but matches nothing, whatever its length, is
/// `invalid_signature`. Single-signature schemes follow the same rule with one entry.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Signatures that decoded.
    decoded: usize,
    /// Signatures that could not be decoded, and why the first one could not.
    skipped: usize,
    first_error: Option<VerifyError>,
    /// How many decoded to a length no configured key produces, and the first such
    /// `(found, expected)`.
    wrong_length: usize,
    first_wrong: Option<(usize, usize)>,
}

impl Tally {
    /// Decodes one offered signature, recording the outcome; `None` when it cannot be
    /// decoded (it is skipped). `expected` is the length a matching one has.
    pub(crate) fn decode<'o>(
        &mut self,
        encoding: Encoding,
        what: &str,
        text: &str,
        expected: usize,
        out: &'o mut [u8; SIG_BUF],
    ) -> Option<Sig<'o>> {
        match encoding.decode(what, text, out) {
            Ok(sig) => {
                self.decoded(sig.len, expected);
                Some(sig)
            }
            Err(e) => {
                self.skip(e);
                None
            }
        }
    }

    /// Records a signature that decoded to `len` bytes where `expected` match.
    pub(crate) fn decoded(&mut self, len: usize, expected: usize) {
        self.decoded += 1;
        if len != expected {
            self.wrong_length += 1;
            self.first_wrong.get_or_insert((len, expected));
        }
    }

    /// Records a signature that could not be decoded, and why.
    pub(crate) fn skip(&mut self, why: VerifyError) {
        self.skipped += 1;
        self.first_error.get_or_insert(why);
    }

    /// How many signatures decoded.
    pub(crate) fn decoded_count(&self) -> usize {
        self.decoded
    }

    /// `Ok` when at least one signature decoded. Otherwise `malformed_header`: why the
    /// first offered one could not be decoded, or `none()` when none was offered.
    pub(crate) fn require_decoded(
        &mut self,
        none: impl FnOnce() -> VerifyError,
    ) -> Result<(), VerifyError> {
        if self.decoded > 0 {
            return Ok(());
        }
        Err(match (self.first_error.take(), self.skipped) {
            (None, _) => none(),
            (Some(e), 1) => e,
            (Some(e), n) => VerifyError::malformed(format!(
                "{}; none of the {n} signatures can be decoded",
                e.detail()
            )),
        })
    }

    /// `invalid_signature`: `summary`, then what was skipped and which lengths were wrong.
    pub(crate) fn mismatch(&self, summary: impl Into<String>) -> VerifyError {
        let mut detail = summary.into();
        if self.skipped > 0 {
            detail.push_str(&format!(
                "; {} more, which cannot be decoded, {} skipped",
                self.skipped,
                if self.skipped == 1 { "was" } else { "were" }
            ));
        }
        if let Some((found, expected)) = self.first_wrong {
            let length = match found {
                0 => "is empty".to_owned(),
                n => format!("decodes to {n} byte(s), where a match has {expected}"),
            };
            detail.push_str(&match (self.decoded, self.wrong_length) {
                (1, _) => format!("; it {length}"),
                (_, 1) => format!("; one of them {length}"),
                (_, n) => format!("; {n} of them have another length (the first {length})"),
            });
        }
        VerifyError::mismatch(detail)
    }
}

/// The decoded signatures of one header, kept for a check made after the header is read
/// (the signed content may depend on fields that come after them), at most `N`.
#[derive(Debug)]
pub(crate) struct Candidates<const N: usize> {
    slots: [[u8; 64]; N],
    lens: [usize; N],
    kept: usize,
    offered: usize,
    /// The outcome of every offer.
    pub(crate) tally: Tally,
}

impl<const N: usize> Candidates<N> {
    pub(crate) fn new() -> Self {
        Candidates {
            slots: [[0; 64]; N],
            lens: [0; N],
            kept: 0,
            offered: 0,
            tally: Tally::default(),
        }
    }

    /// Decodes and keeps one offered signature (one that cannot be decoded is recorded
    /// and skipped). `malformed_header` only when more than `N` are offered.
    pub(crate) fn offer(
        &mut self,
        encoding: Encoding,
        what: &str,
        text: &str,
        expected: usize,
    ) -> Result<(), VerifyError> {
        if self.offered == N {
            return Err(VerifyError::malformed(format!(
                "{what}: more than {N} signatures"
            )));
        }
        self.offered += 1;
        let mut buf = [0u8; SIG_BUF];
        if let Some(sig) = self.tally.decode(encoding, what, text, expected, &mut buf) {
            // Longer than any MAC: kept as empty, which matches nothing.
            let len = if sig.bytes.len() <= 64 {
                sig.bytes.len()
            } else {
                0
            };
            self.slots[self.kept][..len].copy_from_slice(&sig.bytes[..len]);
            self.lens[self.kept] = len;
            self.kept += 1;
        }
        Ok(())
    }

    /// How many signatures were offered, decodable or not.
    pub(crate) fn offered(&self) -> usize {
        self.offered
    }

    /// The decoded signatures.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> + Clone {
        self.slots[..self.kept]
            .iter()
            .zip(&self.lens)
            .map(|(s, &n)| &s[..n])
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
        let mut tally = Tally::default();
        let mut buf = [0u8; SIG_BUF];
        let sig = tally.decode(
            self.encoding,
            &format!("header `{}`", self.header),
            encoded,
            self.keys.tag_len(),
            &mut buf,
        );
        tally.require_decoded(|| VerifyError::missing(self.header))?;
        let sig = sig.map_or(&[][..], |s| s.bytes);
        if self.keys.matches_any(&[req.body], std::iter::once(sig)) {
            Ok(())
        } else {
            Err(self.keys.explain(tally.mismatch(no_match(
                &format!("header `{}`", self.header),
                self.keys.len(),
            ))))
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
        self.macs.iter().find(|key| {
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

#[cfg(test)]
mod tests {
    use super::json_pointer_str;
    use proptest::prelude::*;

    /// The straightforward lookup (a map of every member per level), as the model.
    fn model(json: &[u8], pointer: &str) -> Option<String> {
        use serde_json::value::RawValue;
        use std::collections::HashMap;

        let mut current: &[u8] = json;
        for segment in pointer.split('/').skip(1) {
            let key = segment.replace("~1", "/").replace("~0", "~");
            let map: HashMap<String, &RawValue> = serde_json::from_slice(current).ok()?;
            current = map.get(key.as_str())?.get().as_bytes();
        }
        match serde_json::from_slice::<serde_json::Value>(current).ok()? {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    #[test]
    fn finds_strings_and_numbers_at_any_depth() {
        let body =
            br#" { "type" : "invoice.paid", "data": {"object": {"id": "in_1", "n": -12.5e3}},
            "list": [1, {"a": 2}], "t": true } "#;
        assert_eq!(
            json_pointer_str(body, "/type").as_deref(),
            Some("invoice.paid")
        );
        assert_eq!(
            json_pointer_str(body, "/data/object/id").as_deref(),
            Some("in_1")
        );
        assert_eq!(
            json_pointer_str(body, "/data/object/n").as_deref(),
            Some("-12500.0")
        );
        // Not a string or number, absent, or through an array: none.
        for p in [
            "/t",
            "/data",
            "/list",
            "/list/1/a",
            "/missing",
            "/type/x",
            "/data/nope/id",
        ] {
            assert_eq!(json_pointer_str(body, p), None, "{p}");
        }
        assert_eq!(json_pointer_str(br#" "top" "#, "").as_deref(), Some("top"));
    }

    #[test]
    fn keys_are_compared_unescaped_and_the_last_duplicate_wins() {
        let body =
            br#"{"a/b": "slash", "m~n": "tilde", "\u0074ype": "escaped", "k": "1", "k": "2"}"#;
        assert_eq!(json_pointer_str(body, "/a~1b").as_deref(), Some("slash"));
        assert_eq!(json_pointer_str(body, "/m~0n").as_deref(), Some("tilde"));
        assert_eq!(json_pointer_str(body, "/type").as_deref(), Some("escaped"));
        assert_eq!(json_pointer_str(body, "/k").as_deref(), Some("2"));
        assert_eq!(
            json_pointer_str(br#"{"s": "a\"b\u00e9"}"#, "/s").as_deref(),
            Some("a\"b\u{e9}")
        );
    }

    #[test]
    fn invalid_json_anywhere_in_a_level_yields_none() {
        for body in [
            &br#"{"type": "x", "rest": }"#[..],
            br#"{"type": "x"} trailing"#,
            br#"{"type": "x""#,
            br#"[{"type": "x"}]"#,
            br#"{"type": "\ud800"}"#,
            b"",
            b"\xff",
            b"{\"other\": \"\xc3(\", \"type\": \"x\"}",
        ] {
            assert_eq!(
                json_pointer_str(body, "/type"),
                None,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(json_pointer_str(br#"{"n": 1e400}"#, "/n"), None);
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            "[a-c~/\"\\\\\u{e9}]{0,4}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::vec(("[a-c~/]{0,2}", inner), 0..5).prop_map(|members| {
                    serde_json::Value::Object(members.into_iter().collect())
                }),
            ]
        })
    }

    /// A pointer into `value` along the members `picks` choose, as deep as it goes.
    fn path_into(mut value: &serde_json::Value, picks: &[prop::sample::Index]) -> String {
        let mut pointer = String::new();
        for pick in picks {
            let Some(map) = value.as_object().filter(|m| !m.is_empty()) else {
                break;
            };
            let (key, inner) = map.iter().nth(pick.index(map.len())).unwrap();
            pointer.push('/');
            pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            value = inner;
        }
        pointer
    }

    proptest! {
        /// Agrees with the model on any JSON, along a path that exists in it and along
        /// an arbitrary one, and on the same JSON cut short, with a byte changed or with
        /// a byte after it.
        #[test]
        fn agrees_with_the_model(
            value in json(),
            picks in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
            arbitrary in prop::collection::vec("[a-c~/]{0,2}|~0|~1", 0..4),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let text = serde_json::to_vec(&value).unwrap();
            let cut_short = &text[..cut.index(text.len() + 1)];
            let mut flipped = text.clone();
            let i = flip.0.index(flipped.len());
            flipped[i] = flip.1;
            let mut extended = text.clone();
            extended.push(flip.1);
            let existing = path_into(&value, &picks);
            let arbitrary: String = arbitrary.iter().map(|s| format!("/{s}")).collect();
            for pointer in [&existing, &arbitrary] {
                for body in [&text[..], cut_short, &flipped, &extended] {
                    prop_assert_eq!(json_pointer_str(body, pointer), model(body, pointer));
                }
            }
        }
    }
}
