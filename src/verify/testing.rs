//! Helpers for the schemes' unit tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{sign, Inbound, SchemeConfig, SignInput, Verifier};

/// A verifier for `scheme` with `secrets`.
pub(crate) fn verifier(scheme: &str, secrets: &[&str]) -> Verifier {
    Verifier::new(scheme, &config(secrets)).expect("verifier builds")
}

/// A config with `secrets` and nothing else.
pub(crate) fn config(secrets: &[&str]) -> SchemeConfig {
    SchemeConfig {
        secrets: secrets.iter().map(|s| (*s).into()).collect(),
        ..Default::default()
    }
}

/// A header map from pairs (repeats appended).
pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    map
}

/// Unix seconds as a `SystemTime`.
pub(crate) fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Verifies at the current time; panics with the error if rejected.
pub(crate) fn assert_ok(v: &Verifier, h: &[(&str, &str)], body: &[u8]) {
    let h = headers(h);
    if let Err(e) = v.verify(&Inbound::new(&h, body)) {
        panic!("expected ok, got {e}");
    }
}

/// Verifies at `now` (Unix seconds); panics with the error if rejected.
pub(crate) fn assert_ok_at(v: &Verifier, h: &[(&str, &str)], body: &[u8], now: u64) {
    let h = headers(h);
    if let Err(e) = v.verify_at(&Inbound::new(&h, body), at(now)) {
        panic!("expected ok, got {e}");
    }
}

/// Asserts the error kind at the current time.
pub(crate) fn assert_kind(v: &Verifier, h: &[(&str, &str)], body: &[u8], kind: &str) {
    let h = headers(h);
    match v.verify(&Inbound::new(&h, body)) {
        Ok(()) => panic!("expected {kind}, got ok"),
        Err(e) => assert_eq!(e.kind().as_str(), kind, "{e}"),
    }
}

/// Asserts the error kind at `now` (Unix seconds).
pub(crate) fn assert_kind_at(v: &Verifier, h: &[(&str, &str)], body: &[u8], now: u64, kind: &str) {
    let h = headers(h);
    match v.verify_at(&Inbound::new(&h, body), at(now)) {
        Ok(()) => panic!("expected {kind}, got ok"),
        Err(e) => assert_eq!(e.kind().as_str(), kind, "{e}"),
    }
}

/// Signs with `scheme` and returns (headers, body) as owned pairs.
pub(crate) fn signed(
    scheme: &str,
    cfg: &SchemeConfig,
    body: &[u8],
    id: &str,
    now: u64,
) -> (Vec<(String, String)>, Vec<u8>) {
    let s = sign(
        scheme,
        cfg,
        &SignInput {
            body,
            id,
            now: at(now),
        },
    )
    .expect("signs");
    let body = s.body.unwrap_or_else(|| body.to_vec());
    (s.headers, body)
}

/// Borrows owned header pairs.
pub(crate) fn pairs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}
