//! Intercom: `X-Hub-Signature: sha1=<hex HMAC-SHA1(app client secret, body)>`.
//!
//! The client secret's UTF-8 bytes are the key; no timestamp is signed.
//! Source: developers.intercom.com, "Setting up webhooks: signed notifications".

use std::time::SystemTime;

use super::common::{json_meta, Algorithm, BodyHmac, Encoding};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

#[derive(Debug)]
pub(crate) struct Intercom(BodyHmac);

impl Intercom {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        let mac = BodyHmac::new(
            "x-hub-signature",
            "sha1=",
            Encoding::Hex,
            Algorithm::Sha1,
            &cfg.secrets,
        )?;
        Ok(Intercom(mac))
    }
}

impl Scheme for Intercom {
    fn name(&self) -> &str {
        "intercom"
    }

    fn verify(&self, req: &Inbound<'_>, _now: SystemTime) -> Result<(), VerifyError> {
        self.0.verify(req)
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        json_meta(req.body, Some("/id"), Some("/topic"))
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    Ok(Intercom::new(cfg)?.0.sign(input.body))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn round_trip_and_rejections() {
        let cfg = config(&["intercom-secret"]);
        let body =
            br#"{"type":"notification_event","id":"notif_1","topic":"conversation.user.created"}"#;
        let (h, b) = signed("intercom", &cfg, body, "x", 0);
        let v = verifier("intercom", &["intercom-secret"]);
        assert_ok(&v, &pairs(&h), &b);
        assert!(h[0].1.starts_with("sha1=") && h[0].1.len() == 45);
        assert_kind(&v, &pairs(&h), b"{}", "invalid_signature");
        let meta = v.describe(&crate::Inbound::new(&headers(&pairs(&h)), &b));
        assert_eq!(
            meta.event_type.as_deref(),
            Some("conversation.user.created")
        );
        assert_eq!(meta.id.as_deref(), Some("notif_1"));
    }
}
