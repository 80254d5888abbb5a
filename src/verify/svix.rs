//! Svix: Standard Webhooks with `svix-id`, `svix-timestamp` and `svix-signature`
//! headers; each header falls back to its `webhook-*` name, as Svix's libraries do.
//!
//! Same secrets, signed content and tolerance as `standard-webhooks`.
//! Source: docs.svix.com, "Verifying payloads manually", and the svix libraries.

use std::time::SystemTime;

use super::common::{json_meta, meta_header};
use super::standard_webhooks::{sign_with, Core, Names, WEBHOOK};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

const SVIX: Names = Names {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
};

#[derive(Debug)]
pub(crate) struct Svix(Core);

impl Svix {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        Core::new(cfg).map(Svix)
    }
}

impl Scheme for Svix {
    fn name(&self) -> &str {
        "svix"
    }

    fn verify(&self, req: &Inbound<'_>, now: SystemTime) -> Result<(), VerifyError> {
        self.0.verify(req, &[SVIX, WEBHOOK], now)
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        EventMeta {
            id: meta_header(req.headers, SVIX.id).or_else(|| meta_header(req.headers, WEBHOOK.id)),
            event_type: json_meta(req.body, None, Some("/type")).event_type,
        }
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    sign_with(cfg, input, SVIX)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn svix_headers_and_fallback() {
        let v = verifier("svix", &[SECRET]);
        let svix = [
            ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("svix-timestamp", "1614265330"),
            ("svix-signature", SIG),
        ];
        assert_ok_at(&v, &svix, BODY, 1614265330);
        let webhook = [
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", SIG),
        ];
        assert_ok_at(&v, &webhook, BODY, 1614265330);
        assert_kind_at(&v, &svix[..2], BODY, 1614265330, "missing_header");
        assert_kind_at(
            &v,
            &svix,
            BODY,
            1614265330 + 301,
            "timestamp_out_of_tolerance",
        );
    }
}
