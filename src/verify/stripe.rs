//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...][,v0=...]`.
//!
//! `v1` is hex HMAC-SHA256 over `t + "." + body`, keyed with the endpoint secret's UTF-8
//! bytes (the whole `whsec_...` string, not decoded). Several `v1` entries may be sent
//! (during secret rolling, at most 16 here); other schemes (`v0`) are ignored. As in
//! stripe-go, a `v1` that is not hex is skipped and the others are checked (the header is
//! `malformed_header` only when none is hex), and one that is hex of another length than
//! 32 bytes, or empty, is a signature that does not match. A header with two `t=` is
//! `malformed_header`: stripe-go and stripe-node read the last, stripe-python and
//! stripe-ruby the first. As in Stripe's official libraries the signature is checked
//! first, then the 300 s tolerance (here in both directions). Source: docs.stripe.com,
//! "Check the webhook signatures", and stripe-node/stripe-python `Webhook.constructEvent`.

use std::time::{Duration, SystemTime};

use super::common::{
    check_tolerance_secs, header, json_meta, parse_unix_secs, truncate, unix_secs, Algorithm,
    Candidates, Encoding, Keys,
};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

const HEADER: &str = "stripe-signature";

/// More `v1` than this in one header is `malformed_header` (rolling a secret sends two).
const MAX_SIGNATURES: usize = 16;

#[derive(Debug)]
pub(crate) struct Stripe {
    keys: Keys,
    tolerance: Duration,
}

impl Stripe {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        Ok(Stripe {
            keys: Keys::raw(Algorithm::Sha256, &cfg.secrets)?,
            tolerance: cfg.tolerance_or(Duration::from_secs(300)),
        })
    }
}

impl Scheme for Stripe {
    fn name(&self) -> &str {
        "stripe"
    }

    fn verify(&self, req: &Inbound<'_>, now: SystemTime) -> Result<(), VerifyError> {
        let value = header(req.headers, HEADER)?;
        let mut ts = None;
        // As in stripe-go, a `v1` that is not hex is skipped and the others are checked.
        let mut sigs = Candidates::<MAX_SIGNATURES>::new();
        for item in value.split(',') {
            let Some((k, v)) = item.trim().split_once('=') else {
                continue;
            };
            match k {
                // The SDKs disagree on which of two `t` counts: refuse the ambiguity.
                "t" if ts.is_some() => {
                    return Err(VerifyError::malformed(format!(
                        "{HEADER}: `t=` given more than once"
                    )))
                }
                "t" => ts = Some(v),
                "v1" => sigs.offer(
                    Encoding::Hex,
                    "header `stripe-signature` v1",
                    v,
                    self.keys.tag_len(),
                )?,
                _ => {}
            }
        }
        let ts_text = ts.ok_or_else(|| {
            VerifyError::malformed(format!(
                "{HEADER}: expected `t=<unix seconds>,v1=<hex>`, found no `t=` in {:?}",
                truncate(value, 40)
            ))
        })?;
        let ts = parse_unix_secs("stripe-signature t", ts_text)?;
        sigs.tally.require_decoded(|| {
            VerifyError::malformed(format!(
                "{HEADER}: no `v1=` signature (the only scheme Stripe uses for live events)"
            ))
        })?;
        let parts: [&[u8]; 3] = [ts_text.as_bytes(), b".", req.body];
        if !self.keys.matches_any(&parts, sigs.iter()) {
            return Err(self.keys.explain(sigs.tally.mismatch(format!(
                "none of the {} `v1` signature(s) matches `t.body` under the {} configured secret(s)",
                sigs.tally.decoded_count(),
                self.keys.len()
            ))));
        }
        check_tolerance_secs(ts, now, self.tolerance)
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        json_meta(req.body, Some("/id"), Some("/type"))
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    let s = Stripe::new(cfg)?;
    let t = unix_secs(input.now).to_string();
    let tag = s.keys.first().tag(&[t.as_bytes(), b".", input.body]);
    Ok(Signed::default().header(HEADER, format!("t={t},v1={}", hex::encode(tag.as_bytes()))))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    // A vector computed independently:
    // printf '1700000000.{"id":"evt_1","type":"invoice.paid"}' | openssl dgst -sha256 -hmac whsec_test_secret
    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    const SIG: &str = "46dc069361a7691082640523fa33fe5d6c8c88d5f5e257cdf8cf11539d166595";

    fn hdr(v: &str) -> [(&'static str, &str); 1] {
        [("stripe-signature", v)]
    }

    #[test]
    fn vector() {
        let v = verifier("stripe", &[SECRET]);
        let value = format!("t=1700000000,v1={SIG},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39");
        assert_ok_at(&v, &hdr(&value), BODY, 1700000000);
        // several v1 (secret rolling): any match is enough
        let two = format!("t=1700000000,v1={},v1={SIG}", "0".repeat(64));
        assert_ok_at(&v, &hdr(&two), BODY, 1700000000);
    }

    #[test]
    fn rejections() {
        let v = verifier("stripe", &[SECRET]);
        let value = format!("t=1700000000,v1={SIG}");
        assert_kind_at(&v, &hdr(&value), b"{}", 1700000000, "invalid_signature");
        assert_kind_at(
            &verifier("stripe", &["whsec_other"]),
            &hdr(&value),
            BODY,
            1700000000,
            "invalid_signature",
        );
        assert_ok_at(&v, &hdr(&value), BODY, 1700000300);
        assert_kind_at(
            &v,
            &hdr(&value),
            BODY,
            1700000301,
            "timestamp_out_of_tolerance",
        );
        assert_kind_at(
            &v,
            &hdr(&value),
            BODY,
            1699999699,
            "timestamp_out_of_tolerance",
        );
        assert_kind_at(
            &v,
            &hdr(&format!("v1={SIG}")),
            BODY,
            1700000000,
            "malformed_header",
        );
        assert_kind_at(
            &v,
            &hdr("t=1700000000,v0=abcd"),
            BODY,
            1700000000,
            "malformed_header",
        );
        assert_kind_at(
            &v,
            &hdr("t=1700000000,v1=xyz"),
            BODY,
            1700000000,
            "malformed_header",
        );
        assert_kind_at(
            &v,
            &hdr(&format!("t=soon,v1={SIG}")),
            BODY,
            1700000000,
            "malformed_header",
        );
        assert_kind_at(&v, &[], BODY, 1700000000, "missing_header");
        assert_kind_at(
            &v,
            &[hdr(&value)[0], hdr(&value)[0]],
            BODY,
            1700000000,
            "malformed_header",
        );
        assert_ok_at(
            &verifier("stripe", &["whsec_new", SECRET]),
            &hdr(&value),
            BODY,
            1700000000,
        );
    }

    #[test]
    fn a_signature_that_decodes_to_the_wrong_length_is_a_mismatch() {
        let v = verifier("stripe", &[SECRET]);
        // stripe-go webhook/client_test.go `TestTokenNew`: `Signature = []byte("deadbeef")`
        // sends `v1=6465616462656566`, valid hex of 8 bytes, and expects
        // ErrNoValidSignature (a mismatch), not ErrInvalidHeader.
        assert_kind_at(
            &v,
            &hdr("t=1700000000,v1=6465616462656566"),
            BODY,
            1700000000,
            "invalid_signature",
        );
        // longer than any MAC, still hex
        let long = format!("t=1700000000,v1={}", "ab".repeat(100));
        assert_kind_at(&v, &hdr(&long), BODY, 1700000000, "invalid_signature");
        // `v1=` with nothing: stripe-go's hex.DecodeString("") is an empty signature and
        // stripe-node compares "", neither matches
        assert_kind_at(
            &v,
            &hdr("t=1700000000,v1="),
            BODY,
            1700000000,
            "invalid_signature",
        );
    }

    #[test]
    fn an_empty_header_is_missing() {
        // stripe-node test/Webhook.spec.ts "should raise a SignatureVerificationError when
        // the header is null or empty" ("No stripe-signature header value was provided"),
        // stripe-go webhook/client_test.go `ValidatePayload(p.Payload, "", ...)` is
        // ErrNotSigned: an empty header is no header.
        let v = verifier("stripe", &[SECRET]);
        assert_kind_at(&v, &hdr(""), BODY, 1700000000, "missing_header");
        assert_kind_at(&v, &hdr("  "), BODY, 1700000000, "missing_header");
    }

    #[test]
    fn duplicate_timestamps_are_malformed() {
        // The SDKs disagree on `t` given twice: stripe-go (`parseSignatureHeader`) and
        // stripe-node (`parseHeader`) take the last, stripe-python
        // (`_get_timestamp_and_signatures`, `[...][0]`) and stripe-ruby
        // (`list_items.select { |i| i[0] == "t" }[0]`) the first. The header is
        // ambiguous, so it is refused whichever `t` the MAC covers.
        let v = verifier("stripe", &[SECRET]);
        for value in [
            format!("t=1700000000,v1={SIG},t=1700000001"),
            format!("t=1700000001,t=1700000000,v1={SIG}"),
        ] {
            assert_kind_at(&v, &hdr(&value), BODY, 1700000000, "malformed_header");
        }
    }

    #[test]
    fn a_secret_with_whitespace_is_pointed_out_on_a_mismatch() {
        // stripe-node test/Webhook.spec.ts "should raise a SignatureVerificationError when
        // the signing secret contains whitespace": verification fails and says the secret
        // contains whitespace (often a stray newline from a file). The secret's position
        // is named, never its text.
        let value = format!("t=1700000000,v1={SIG}");
        let spaced = format!("{SECRET} ");
        let v = verifier("stripe", &["whsec_other", &spaced]);
        let hm = headers(&hdr(&value));
        let e = v
            .verify_at(&crate::Inbound::new(&hm, BODY), at(1700000000))
            .unwrap_err();
        assert_eq!(e.kind().as_str(), "invalid_signature");
        assert!(e.detail().contains("secret 2 contains whitespace"), "{e}");
        assert!(!e.detail().contains(SECRET), "{e}");
        // not said when no secret has any
        let e = verifier("stripe", &["whsec_other"])
            .verify_at(&crate::Inbound::new(&hm, BODY), at(1700000000))
            .unwrap_err();
        assert!(!e.detail().contains("whitespace"), "{e}");
    }

    #[test]
    fn sdk_header_cases() {
        let v = verifier("stripe", &[SECRET]);
        let t = 1700000000;
        let good = format!("t=1700000000,v1={SIG}");
        // stripe-go `TestTokenNew`: an unreadable v1 beside the valid one is ignored ...
        assert_ok_at(&v, &hdr(&format!("{good},v1=bad_signature")), BODY, t);
        // ... as in stripe-node "should return true when the header contains at least one
        // valid signature" (`,v1=potato`)
        assert_ok_at(&v, &hdr(&format!("{good},v1=potato")), BODY, t);
        // stripe-go: `v1,t=1` and `t=` are ErrInvalidHeader; stripe-node: "I'm not even a
        // real signature header" and `bad_header` cannot be parsed
        for bad in [
            "v1,t=1",
            "t=",
            "I'm not even a real signature header",
            "bad_header",
        ] {
            assert_kind_at(&v, &hdr(bad), BODY, t, "malformed_header");
        }
        // stripe-go's rolled key (`testSecret + "_rolled_key"`): the header carries the
        // signatures of both secrets and either secret alone verifies it
        let new_secret = format!("{SECRET}_rolled_key");
        let (hs, _) = signed("stripe", &config(&[&new_secret]), BODY, "", t);
        let new_sig = hs[0].1.split_once(",v1=").unwrap().1.to_owned();
        let rolled = format!("{good},v1={new_sig}");
        assert_ok_at(&v, &hdr(&rolled), BODY, t);
        assert_ok_at(&verifier("stripe", &[&new_secret]), &hdr(&rolled), BODY, t);
    }
}
