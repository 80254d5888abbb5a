//! Meta (Facebook, Instagram, WhatsApp Cloud API):
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, body)>`.
//!
//! The app secret's UTF-8 bytes are the key; no timestamp is signed. Subscribing an
//! endpoint sends an unsigned `GET ?hub.mode=subscribe&hub.challenge=C&hub.verify_token=T`:
//! when `T` equals the `verify_token` option, hookbox answers `C` itself.
//! Source: developers.facebook.com, "Webhooks: Getting started".

use std::time::SystemTime;

use http::Method;

use super::common::{ct_eq, json_meta, Algorithm, BodyHmac, Encoding};
use super::{EventMeta, HandshakeReply, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

#[derive(Debug)]
pub(crate) struct Meta {
    mac: BodyHmac,
    /// The token Meta echoes in its subscription handshake; not secret-grade but redacted.
    verify_token: Option<super::Secret>,
}

impl Meta {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        let mac = BodyHmac::new(
            "x-hub-signature-256",
            "sha256=",
            Encoding::Hex,
            Algorithm::Sha256,
            &cfg.secrets,
        )?;
        Ok(Meta {
            mac,
            verify_token: cfg.option("verify_token").map(Into::into),
        })
    }
}

impl Scheme for Meta {
    fn name(&self) -> &str {
        "meta"
    }

    fn verify(&self, req: &Inbound<'_>, _now: SystemTime) -> Result<(), VerifyError> {
        self.mac.verify(req)
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        json_meta(req.body, None, Some("/object"))
    }

    fn pre_verify_handshake(
        &self,
        req: &Inbound<'_>,
    ) -> Option<Result<HandshakeReply, VerifyError>> {
        if req.method != Method::GET {
            return None;
        }
        let mut mode = None;
        let mut challenge = None;
        let mut token = None;
        for (k, v) in form_urlencoded::parse(req.query.unwrap_or("").as_bytes()) {
            match &*k {
                "hub.mode" => mode = Some(v),
                "hub.challenge" => challenge = Some(v),
                "hub.verify_token" => token = Some(v),
                _ => {}
            }
        }
        if mode.as_deref() != Some("subscribe") {
            return Some(Err(VerifyError::missing(
                "hub.mode=subscribe (query parameter)",
            )));
        }
        let (Some(challenge), Some(token)) = (challenge, token) else {
            return Some(Err(VerifyError::missing(
                "hub.challenge and hub.verify_token",
            )));
        };
        let Some(expected) = &self.verify_token else {
            return Some(Err(VerifyError::mismatch(
                "a subscription handshake arrived but no `verify_token` is configured",
            )));
        };
        if ct_eq(expected.expose().as_bytes(), token.as_bytes()) {
            Some(Ok(HandshakeReply::text(challenge.into_owned())))
        } else {
            Some(Err(VerifyError::mismatch(
                "hub.verify_token does not match the configured token",
            )))
        }
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    Ok(Meta::new(cfg)?.mac.sign(input.body))
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::super::testing::*;
    use crate::{Inbound, Verifier};

    #[test]
    fn round_trip_and_rejections() {
        let cfg = config(&["app-secret"]);
        let body = br#"{"object":"page","entry":[]}"#;
        let (h, b) = signed("meta", &cfg, body, "x", 0);
        let v = verifier("meta", &["app-secret"]);
        assert_ok(&v, &pairs(&h), &b);
        assert_kind(&v, &pairs(&h), b"{}", "invalid_signature");
        assert_kind(
            &v,
            &[("x-hub-signature-256", "sha1=00")],
            b"{}",
            "malformed_header",
        );
    }

    #[test]
    fn subscription_handshake() {
        let v = Verifier::builder("meta")
            .secret("s")
            .option("verify_token", "tok")
            .build()
            .unwrap();
        let h = headers(&[]);
        let ok = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=tok";
        let req = Inbound::new(&h, b"")
            .with_method(&Method::GET)
            .with_query(Some(ok));
        assert_eq!(
            v.pre_verify_handshake(&req).unwrap().unwrap().body,
            b"1158201444"
        );
        let bad = "hub.mode=subscribe&hub.challenge=1&hub.verify_token=nope";
        let req = Inbound::new(&h, b"")
            .with_method(&Method::GET)
            .with_query(Some(bad));
        assert_eq!(
            v.pre_verify_handshake(&req)
                .unwrap()
                .unwrap_err()
                .kind()
                .as_str(),
            "invalid_signature"
        );
        assert!(v.pre_verify_handshake(&Inbound::new(&h, b"")).is_none());
    }
}
