//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...][,v0=...]`.
//!
//! `v1` is hex HMAC-SHA256 over `t + "." + body`, keyed with the endpoint secret's UTF-8
//! bytes (the whole `whsec_...` string, not decoded). Several `v1` entries may be sent
//! (during secret rolling); other schemes (`v0`) are ignored. As in Stripe's official
//! libraries the signature is checked first, then the 300 s tolerance (here in both
//! directions). Source: docs.stripe.com, "Check the webhook signatures", and
//! stripe-node/stripe-python `Webhook.constructEvent`.

use std::time::{Duration, SystemTime};

use super::common::{
    check_tolerance_secs, decode_hex, header, json_meta, parse_unix_secs, truncate, unix_secs,
    Algorithm, Keys,
};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

const HEADER: &str = "stripe-signature";

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
        let mut sigs: [[u8; 32]; 8] = [[0; 32]; 8];
        let (mut n, mut undecodable) = (0usize, false);
        for item in value.split(',') {
            let Some((k, v)) = item.trim().split_once('=') else {
                continue;
            };
            match k {
                "t" if ts.is_none() => ts = Some(v),
                "v1" if n < sigs.len() => {
                    let mut buf = [0u8; 64];
                    match decode_hex("v1", v, &mut buf) {
                        Ok(s) if s.len() == 32 => {
                            sigs[n].copy_from_slice(s);
                            n += 1;
                        }
                        _ => undecodable = true,
                    }
                }
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
        if n == 0 {
            return Err(VerifyError::malformed(if undecodable {
                format!("{HEADER}: `v1=` is not 64 hex digits")
            } else {
                format!(
                    "{HEADER}: no `v1=` signature (the only scheme Stripe uses for live events)"
                )
            }));
        }
        let parts: [&[u8]; 3] = [ts_text.as_bytes(), b".", req.body];
        if !self
            .keys
            .matches_any(&parts, sigs[..n].iter().map(|s| &s[..]))
        {
            return Err(VerifyError::mismatch(format!(
                "none of the {n} `v1` signature(s) matches `t.body` under the {} configured secret(s)",
                self.keys.len()
            )));
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
}
