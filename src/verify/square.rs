//! Square: `x-square-hmacsha256-signature:
//! <base64 HMAC-SHA256(signature key, notification URL + body)>`.
//!
//! The subscription's signature key (UTF-8 bytes) is the key and the notification URL
//! must be configured (`url`) exactly as registered with Square. No timestamp is signed.
//! Source: developer.squareup.com, "Validate notifications", and the Square SDKs'
//! `WebhooksHelper.isValidWebhookEventSignature`.

use std::time::SystemTime;

use super::common::{b64, header, json_meta, no_match, Algorithm, Encoding, Keys};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

const HEADER: &str = "x-square-hmacsha256-signature";

#[derive(Debug)]
pub(crate) struct Square {
    keys: Keys,
    url: String,
}

impl Square {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        let url = cfg.url.clone().ok_or(BuildError::missing_option("url"))?;
        Ok(Square {
            keys: Keys::raw(Algorithm::Sha256, &cfg.secrets)?,
            url,
        })
    }
}

impl Scheme for Square {
    fn name(&self) -> &str {
        "square"
    }

    fn verify(&self, req: &Inbound<'_>, _now: SystemTime) -> Result<(), VerifyError> {
        let value = header(req.headers, HEADER)?;
        let mut buf = [0u8; 96];
        let sig = Encoding::Base64.decode(HEADER, value, &mut buf)?;
        if self
            .keys
            .matches_any(&[self.url.as_bytes(), req.body], std::iter::once(sig))
        {
            Ok(())
        } else {
            Err(no_match(
                &format!("header `{HEADER}` (over the notification URL + body)"),
                self.keys.len(),
            ))
        }
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        json_meta(req.body, Some("/event_id"), Some("/type"))
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    let s = Square::new(cfg)?;
    let tag = s.keys.first().tag(&[s.url.as_bytes(), input.body]);
    Ok(Signed::default().header(HEADER, b64(tag.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::Verifier;

    // Known answer from Square's SDK tests (square-nodejs-sdk, WebhooksHelper test):
    // signature key "Ibxx_5AKakO-3qeNVR61Dw", URL "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9".
    const KEY: &str = "Ibxx_5AKakO-3qeNVR61Dw";
    const URL: &str = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9";
    const BODY: &str = r#"{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z","data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}"#;
    const SIG: &str = "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=";

    fn square(url: &str) -> Verifier {
        Verifier::builder("square")
            .secret(KEY)
            .url(url)
            .build()
            .unwrap()
    }

    #[test]
    fn sdk_vector() {
        assert_ok(&square(URL), &[(super::HEADER, SIG)], BODY.as_bytes());
    }

    #[test]
    fn rejections() {
        let h = [(super::HEADER, SIG)];
        assert_kind(
            &square("https://example.com/other"),
            &h,
            BODY.as_bytes(),
            "invalid_signature",
        );
        assert_kind(&square(URL), &h, b"{}", "invalid_signature");
        assert_kind(
            &square(URL),
            &[(super::HEADER, "%%")],
            BODY.as_bytes(),
            "malformed_header",
        );
        assert!(Verifier::builder("square").secret(KEY).build().is_err());
    }
}
