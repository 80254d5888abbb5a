//! Square: `x-square-hmacsha256-signature:
//! <base64 HMAC-SHA256(signature key, notification URL + body)>`.
//!
//! The subscription's signature key (UTF-8 bytes) is the key and the notification URL
//! must be configured (`url`) exactly as registered with Square. No timestamp is signed.
//! Source: developer.squareup.com, "Validate notifications", and the Square SDKs'
//! `WebhooksHelper.isValidWebhookEventSignature`.

use std::time::SystemTime;

use super::common::{b64, header, json_meta, no_match, Algorithm, Encoding, Keys, Tally, SIG_BUF};
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
        let mut tally = Tally::default();
        let mut buf = [0u8; SIG_BUF];
        let what = format!("header `{HEADER}`");
        let sig = tally.decode(
            Encoding::Base64,
            &what,
            value,
            self.keys.tag_len(),
            &mut buf,
        );
        tally.require_decoded(|| VerifyError::missing(HEADER))?;
        let sig = sig.map_or(&[][..], |s| s.bytes);
        if self
            .keys
            .matches_any(&[self.url.as_bytes(), req.body], std::iter::once(sig))
        {
            Ok(())
        } else {
            Err(self.keys.explain(tally.mismatch(no_match(
                &format!("{what} (over the notification URL + body)"),
                self.keys.len(),
            ))))
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

    #[test]
    fn sdk_rejections() {
        // square-python-sdk tests/utilities/test_webhooks_helper.py: another signature
        // (base64 of 20 bytes, where HMAC-SHA256 is 32), another key, another URL, a
        // body with another date, the same body pretty-printed: all false.
        let h = [(super::HEADER, SIG)];
        assert_kind(
            &square(URL),
            &[(super::HEADER, "1z2n3DEJJiUPKcPzQo1ftvbxGdw=")],
            BODY.as_bytes(),
            "invalid_signature",
        );
        let other_key = Verifier::builder("square")
            .secret("MCmhFRxGX82xMwg5FsaoQA")
            .url(URL)
            .build()
            .unwrap();
        assert_kind(&other_key, &h, BODY.as_bytes(), "invalid_signature");
        assert_kind(
            &square("https://webhook.site/79a4f3a-dcfa-49ee-bac5-9d0edad886b9"),
            &h,
            BODY.as_bytes(),
            "invalid_signature",
        );
        let other_date = BODY.replace("2022-07-13", "2022-06-13");
        assert_kind(&square(URL), &h, other_date.as_bytes(), "invalid_signature");
        let pretty =
            serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(BODY).unwrap())
                .unwrap();
        assert_kind(&square(URL), &h, pretty.as_bytes(), "invalid_signature");
        // longer than any MAC, still base64
        assert_kind(
            &square(URL),
            &[(super::HEADER, &"A".repeat(200))],
            BODY.as_bytes(),
            "invalid_signature",
        );
        // the SDK refuses an empty signature key; so does building here
        assert!(Verifier::builder("square")
            .secret("")
            .url(URL)
            .build()
            .is_err());
    }
}
