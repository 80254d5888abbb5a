//! Lemon Squeezy: `X-Signature: <hex HMAC-SHA256(signing secret, body)>`.
//!
//! The signing secret's UTF-8 bytes are the key; no timestamp is signed; the event name
//! is in `X-Event-Name`. Source: docs.lemonsqueezy.com, "Signing requests".

use std::time::SystemTime;

use super::common::{json_meta, meta_header, Algorithm, BodyHmac, Encoding};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

#[derive(Debug)]
pub(crate) struct LemonSqueezy(BodyHmac);

impl LemonSqueezy {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        let mac = BodyHmac::new(
            "x-signature",
            "",
            Encoding::Hex,
            Algorithm::Sha256,
            &cfg.secrets,
        )?;
        Ok(LemonSqueezy(mac))
    }
}

impl Scheme for LemonSqueezy {
    fn name(&self) -> &str {
        "lemonsqueezy"
    }

    fn verify(&self, req: &Inbound<'_>, _now: SystemTime) -> Result<(), VerifyError> {
        self.0.verify(req)
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        let body = json_meta(req.body, Some("/meta/webhook_id"), Some("/meta/event_name"));
        EventMeta {
            id: body.id,
            event_type: meta_header(req.headers, "x-event-name").or(body.event_type),
        }
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    Ok(LemonSqueezy::new(cfg)?.0.sign(input.body))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    // hex(HMAC-SHA256("lemon", "{}")) by `printf '{}' | openssl dgst -sha256 -hmac lemon`.
    const SIG: &str = "ab489a82a49b8c68c67bef370b6616bb094bcb25c2efc7d717aab64eecd441fb";

    #[test]
    fn vector_and_rejections() {
        let v = verifier("lemonsqueezy", &["lemon"]);
        assert_ok(&v, &[("x-signature", SIG)], b"{}");
        assert_ok(&v, &[("x-signature", &SIG.to_uppercase())], b"{}");
        assert_kind(&v, &[("x-signature", SIG)], b"{ }", "invalid_signature");
        assert_kind(&v, &[("x-signature", "abc")], b"{}", "malformed_header");
        assert_kind(
            &v,
            &[("x-signature", SIG), ("x-signature", SIG)],
            b"{}",
            "malformed_header",
        );
    }
}
