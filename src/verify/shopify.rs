//! Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(app client secret, body)>`.
//!
//! The secret's UTF-8 bytes are the key. Shopify signs no timestamp; dedup on
//! `X-Shopify-Webhook-Id` stops replays. Source: shopify.dev, "Verify webhooks".

use std::time::SystemTime;

use super::common::{meta_header, Algorithm, BodyHmac, Encoding};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

#[derive(Debug)]
pub(crate) struct Shopify(BodyHmac);

impl Shopify {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        let mac = BodyHmac::new(
            "x-shopify-hmac-sha256",
            "",
            Encoding::Base64,
            Algorithm::Sha256,
            &cfg.secrets,
        )?;
        Ok(Shopify(mac))
    }
}

impl Scheme for Shopify {
    fn name(&self) -> &str {
        "shopify"
    }

    fn verify(&self, req: &Inbound<'_>, _now: SystemTime) -> Result<(), VerifyError> {
        self.0.verify(req)
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        EventMeta {
            id: meta_header(req.headers, "x-shopify-webhook-id")
                .or_else(|| meta_header(req.headers, "x-shopify-event-id")),
            event_type: meta_header(req.headers, "x-shopify-topic"),
        }
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    Ok(Shopify::new(cfg)?
        .0
        .sign(input.body)
        .header("x-shopify-webhook-id", input.id)
        .header("x-shopify-topic", "orders/create"))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    // base64(HMAC-SHA256("hush", body)), computed with
    // `printf '{"id":1}' | openssl dgst -sha256 -hmac hush -binary | base64`.
    const SIG: &str = "VnKUjZsLuN5iZWjn5EntcBVCF9kMN43LglzCE1/GSeY=";

    #[test]
    fn vector_and_rejections() {
        let v = verifier("shopify", &["hush"]);
        let h = [("x-shopify-hmac-sha256", SIG)];
        assert_ok(&v, &h, br#"{"id":1}"#);
        assert_kind(&v, &h, br#"{"id":2}"#, "invalid_signature");
        assert_kind(
            &verifier("shopify", &["other"]),
            &h,
            br#"{"id":1}"#,
            "invalid_signature",
        );
        assert_kind(
            &v,
            &[("x-shopify-hmac-sha256", "!!!")],
            br#"{"id":1}"#,
            "malformed_header",
        );
        assert_kind(&v, &[], br#"{"id":1}"#, "missing_header");
        assert_ok(&verifier("shopify", &["other", "hush"]), &h, br#"{"id":1}"#);
    }
}
