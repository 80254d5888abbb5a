//! Properties of every signable scheme: sign then verify round-trips, and any single
//! byte changed in the body, the signature or the timestamp is rejected.

use std::time::{Duration, UNIX_EPOCH};

use hookbox::{sign, Inbound, SignInput, Verifier};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use crate::support::schemes::{all, Fixture};

const NOW: u64 = 1_750_000_000;

fn signed(f: &Fixture, body: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
    let at = UNIX_EPOCH + Duration::from_secs(NOW);
    let s = sign(
        f.name,
        &f.sign,
        &SignInput {
            body,
            id: "msg_2Vb1yq",
            now: at,
        },
    )
    .unwrap_or_else(|e| panic!("{} signs: {e}", f.name));
    (s.headers, s.body.unwrap_or_else(|| body.to_vec()))
}

fn check(
    f: &Fixture,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), hookbox::VerifyError> {
    let v = Verifier::new(f.name, &f.verify).unwrap_or_else(|e| panic!("{} builds: {e}", f.name));
    let mut map = HeaderMap::new();
    for (k, val) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(val).unwrap(),
        );
    }
    v.verify_at(
        &Inbound::new(&map, body),
        UNIX_EPOCH + Duration::from_secs(NOW),
    )
}

#[test]
fn every_signable_scheme_round_trips() {
    for f in all() {
        let (h, b) = signed(&f, &(f.body)());
        check(&f, &h, &b).unwrap_or_else(|e| panic!("{}: {e}", f.name));
    }
}

/// True when `a` and `b` are the same hex digit in another case (same decoded value).
fn case_twin(a: u8, b: u8) -> bool {
    a != b && a.eq_ignore_ascii_case(&b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_body_byte_changed_is_rejected(idx in any::<prop::sample::Index>(), pos in any::<prop::sample::Index>(), flip in 1u8..=255, text in "\\PC{0,300}") {
        let fixtures: Vec<_> = all().into_iter().filter(|f| f.covers_body).collect();
        let f = &fixtures[idx.index(fixtures.len())];
        // A JSON object (Linear signs a field inside it) holding arbitrary text.
        let body = serde_json::json!({"type": "fuzz.event", "text": text}).to_string();
        let (h, mut b) = signed(f, body.as_bytes());
        prop_assert!(check(f, &h, &b).is_ok());
        let i = pos.index(b.len());
        b[i] ^= flip;
        prop_assert!(check(f, &h, &b).is_err(), "{} accepted a changed body byte", f.name);
    }

    #[test]
    fn any_covered_header_byte_changed_is_rejected(idx in any::<prop::sample::Index>(), which in any::<prop::sample::Index>(), pos in any::<prop::sample::Index>(), to in 0x21u8..0x7f) {
        let fixtures = all();
        let f = &fixtures[idx.index(fixtures.len())];
        let (mut h, b) = signed(f, &(f.body)());
        let covered: Vec<usize> = (0..h.len()).filter(|i| f.covered_headers.contains(&h[*i].0.as_str())).collect();
        prop_assume!(!covered.is_empty());
        let hi = covered[which.index(covered.len())];
        let mut value = h[hi].1.clone().into_bytes();
        let i = pos.index(value.len());
        prop_assume!(value[i] != to && !case_twin(value[i], to));
        value[i] = to;
        h[hi].1 = String::from_utf8(value).unwrap();
        prop_assert!(check(f, &h, &b).is_err(), "{} accepted a changed `{}`: {}", f.name, h[hi].0, h[hi].1);
    }
}
