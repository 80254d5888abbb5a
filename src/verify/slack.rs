//! Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:" + ts + ":" + body)>`
//! where `ts` is `X-Slack-Request-Timestamp` (Unix seconds) exactly as sent.
//!
//! The signing secret's UTF-8 bytes are the key. The timestamp must be within 5 minutes
//! (Slack's documented window, also the official SDKs'), both directions, checked before
//! the MAC as `slack_sdk.signature.SignatureVerifier` and Bolt's `verify-request.ts` do.
//! A verified `{"type":"url_verification","challenge":...}` is answered with the
//! challenge as `text/plain`, the first reply form Slack's `url_verification` page shows.
//! Sources: api.slack.com "Verifying requests from Slack" and "url_verification event";
//! slackapi/python-slack-sdk `slack_sdk/signature/__init__.py`; slackapi/bolt-js
//! `src/receivers/verify-request.ts`.
//!
//! The `v0` shape is shared with Zoom ([`V0`]).

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::common::{
    check_tolerance_secs, header, no_match, parse_unix_secs, truncate, unix_secs, Algorithm,
    Encoding, KeyedMac, Keys, Tally, DEFAULT_TOLERANCE, SIG_BUF,
};
use super::{EventMeta, HandshakeReply, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

/// `v0=<hex HMAC-SHA256(secret, "v0:" + timestamp + ":" + body)>` in one header and the
/// Unix-seconds timestamp in another: Slack's scheme, which Zoom copied.
#[derive(Debug)]
pub(super) struct V0 {
    sig_header: &'static str,
    ts_header: &'static str,
    keys: Keys,
    tolerance: Duration,
}

impl V0 {
    /// Keys every secret's raw bytes with HMAC-SHA256.
    pub(super) fn new(
        sig_header: &'static str,
        ts_header: &'static str,
        cfg: &SchemeConfig,
    ) -> Result<Self, BuildError> {
        Ok(V0 {
            sig_header,
            ts_header,
            keys: Keys::raw(Algorithm::Sha256, &cfg.secrets)?,
            tolerance: cfg.tolerance_or(DEFAULT_TOLERANCE),
        })
    }

    /// Reads both headers and decodes the signature (no time check, no MAC).
    fn read<'r>(
        &self,
        req: &Inbound<'r>,
        tally: &mut Tally,
        buf: &'r mut [u8; SIG_BUF],
    ) -> Result<(&'r str, i64, &'r [u8]), VerifyError> {
        let sig = header(req.headers, self.sig_header)?;
        let ts = header(req.headers, self.ts_header)?;
        let secs = parse_unix_secs(self.ts_header, ts)?;
        let hex = sig.strip_prefix("v0=").ok_or_else(|| {
            VerifyError::malformed(format!(
                "header `{}`: expected `v0=` followed by hex, found {:?}",
                self.sig_header,
                truncate(sig, 16)
            ))
        })?;
        let what = format!("header `{}`", self.sig_header);
        let sig = tally.decode(Encoding::Hex, &what, hex, self.keys.tag_len(), buf);
        tally.require_decoded(|| VerifyError::missing(self.sig_header))?;
        Ok((ts, secs, sig.map_or(&[][..], |s| s.bytes)))
    }

    /// Verifies: headers, then the timestamp, then the MAC.
    pub(super) fn verify(&self, req: &Inbound<'_>, now: SystemTime) -> Result<(), VerifyError> {
        let mut tally = Tally::default();
        let mut buf = [0u8; SIG_BUF];
        let (ts, secs, sig) = self.read(req, &mut tally, &mut buf)?;
        check_tolerance_secs(secs, now, self.tolerance)?;
        if self.keys.matches_any(
            &[b"v0:", ts.as_bytes(), b":", req.body],
            std::iter::once(sig),
        ) {
            Ok(())
        } else {
            Err(self.keys.explain(tally.mismatch(no_match(
                &format!("header `{}`", self.sig_header),
                self.keys.len(),
            ))))
        }
    }

    /// The key that signed `req` (rotation: not necessarily the first), else the first.
    pub(super) fn signing_key(&self, req: &Inbound<'_>) -> &KeyedMac {
        let mut buf = [0u8; SIG_BUF];
        self.read(req, &mut Tally::default(), &mut buf)
            .ok()
            .and_then(|(ts, _, sig)| {
                self.keys.find(
                    &[b"v0:", ts.as_bytes(), b":", req.body],
                    std::iter::once(sig),
                )
            })
            .unwrap_or_else(|| self.keys.first())
    }

    /// The two headers the provider sends, signed with the first secret.
    pub(super) fn sign(&self, body: &[u8], now: SystemTime) -> Signed {
        let ts = unix_secs(now).to_string();
        let tag = self.keys.first().tag(&[b"v0:", ts.as_bytes(), b":", body]);
        Signed::default().header(self.ts_header, ts).header(
            self.sig_header,
            format!("v0={}", hex::encode(tag.as_bytes())),
        )
    }
}

#[derive(Debug)]
pub(crate) struct Slack(V0);

impl Slack {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        V0::new("x-slack-signature", "x-slack-request-timestamp", cfg).map(Slack)
    }
}

impl Scheme for Slack {
    fn name(&self) -> &str {
        "slack"
    }

    fn verify(&self, req: &Inbound<'_>, now: SystemTime) -> Result<(), VerifyError> {
        self.0.verify(req, now)
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        slack_meta(req.body)
    }

    fn handshake(&self, req: &Inbound<'_>) -> Option<HandshakeReply> {
        // Called for every verified request: a cheap scan first, a parse only for the
        // rare handshake.
        if super::common::json_pointer_str(req.body, "/type")? != "url_verification" {
            return None;
        }
        let v: Value = serde_json::from_slice(req.body).ok()?;
        if v.get("type")?.as_str()? != "url_verification" {
            return None;
        }
        Some(HandshakeReply::text(v.get("challenge")?.as_str()?))
    }
}

/// Events API bodies are JSON (`event_id`, `event.type`, else the outer `type`);
/// interactivity bodies are a form whose `payload` field is JSON with a `type`.
fn slack_meta(body: &[u8]) -> EventMeta {
    let pick = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_owned);
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return EventMeta {
            id: pick(&v, "/event_id"),
            event_type: pick(&v, "/event/type").or_else(|| pick(&v, "/type")),
        };
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .and_then(|(_, p)| serde_json::from_str::<Value>(&p).ok())
        .map(|v| EventMeta {
            id: None,
            event_type: pick(&v, "/type"),
        })
        .unwrap_or_default()
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    Ok(Slack::new(cfg)?.0.sign(input.body, input.now))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{EventMeta, HandshakeReply, Inbound};

    // Known answer from Slack's docs ("Verifying requests from Slack", the slash-command
    // walkthrough); the same vector is checked by the official SDKs' tests. Recomputed
    // independently with `openssl dgst -sha256 -hmac`.
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: &str = "1531420618";
    const T: u64 = 1_531_420_618;
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn h<'a>(sig: &'a str, ts: &'a str) -> [(&'a str, &'a str); 2] {
        [
            ("x-slack-signature", sig),
            ("x-slack-request-timestamp", ts),
        ]
    }

    #[test]
    fn docs_vector() {
        let v = verifier("slack", &[SECRET]);
        assert_ok_at(&v, &h(SIG, TS), BODY, T);
        // header names are case-insensitive, hex digits too
        let upper = SIG.to_uppercase().replacen("V0=", "v0=", 1);
        assert_ok_at(&v, &h(&upper, TS), BODY, T);
    }

    #[test]
    fn tolerance_is_five_minutes_inclusive_both_ways() {
        let v = verifier("slack", &[SECRET]);
        assert_ok_at(&v, &h(SIG, TS), BODY, T + 300);
        assert_ok_at(&v, &h(SIG, TS), BODY, T - 300);
        assert_kind_at(&v, &h(SIG, TS), BODY, T + 301, "timestamp_out_of_tolerance");
        assert_kind_at(&v, &h(SIG, TS), BODY, T - 301, "timestamp_out_of_tolerance");
        // the timestamp is checked before the MAC
        assert_kind_at(
            &v,
            &h(SIG, TS),
            b"tampered",
            T + 301,
            "timestamp_out_of_tolerance",
        );
        // a configured tolerance replaces the default
        let mut cfg = config(&[SECRET]);
        cfg.tolerance = Some(std::time::Duration::from_secs(10));
        let v = crate::Verifier::new("slack", &cfg).unwrap();
        assert_ok_at(&v, &h(SIG, TS), BODY, T + 10);
        assert_kind_at(&v, &h(SIG, TS), BODY, T + 11, "timestamp_out_of_tolerance");
    }

    #[test]
    fn rejections() {
        let v = verifier("slack", &[SECRET]);
        let ok = h(SIG, TS);
        assert_kind_at(&v, &ok, &BODY[1..], T, "invalid_signature");
        assert_kind_at(
            &verifier("slack", &["wrong"]),
            &ok,
            BODY,
            T,
            "invalid_signature",
        );
        // the timestamp is signed: changing it breaks the MAC
        assert_kind_at(&v, &h(SIG, "1531420619"), BODY, T, "invalid_signature");
        assert_kind_at(&v, &ok[..1], BODY, T, "missing_header");
        assert_kind_at(&v, &ok[1..], BODY, T, "missing_header");
        assert_kind_at(&v, &[ok[0], ok[0], ok[1]], BODY, T, "malformed_header");
        assert_kind_at(&v, &[ok[0], ok[1], ok[1]], BODY, T, "malformed_header");
        assert_kind_at(&v, &h(&SIG[3..], TS), BODY, T, "malformed_header");
        assert_kind_at(
            &v,
            &h(&SIG.replace("v0=", "v1="), TS),
            BODY,
            T,
            "malformed_header",
        );
        assert_kind_at(&v, &h("v0=zz", TS), BODY, T, "malformed_header");
        assert_kind_at(&v, &h(SIG, "1531420618.5"), BODY, T, "malformed_header");
        assert_kind_at(&v, &h(SIG, "soon"), BODY, T, "malformed_header");
        // a short but valid hex signature decodes, then does not match
        assert_kind_at(&v, &h("v0=a211", TS), BODY, T, "invalid_signature");
    }

    #[test]
    fn errors_and_debug_never_show_the_secret() {
        let v = verifier("slack", &[SECRET]);
        let hm = headers(&h(SIG, TS));
        let e = v
            .verify_at(&Inbound::new(&hm, b"x"), at(T))
            .unwrap_err()
            .to_string();
        assert!(!e.contains(SECRET), "{e}");
        assert!(!format!("{v:?}").contains(SECRET));
    }

    #[test]
    fn rotation() {
        assert_ok_at(&verifier("slack", &["new", SECRET]), &h(SIG, TS), BODY, T);
        assert_ok_at(&verifier("slack", &[SECRET, "old"]), &h(SIG, TS), BODY, T);
    }

    #[test]
    fn empty_or_no_secret_is_refused() {
        assert!(crate::Verifier::new("slack", &config(&[])).is_err());
        let e = crate::Verifier::new("slack", &config(&[""])).unwrap_err();
        assert!(matches!(e, crate::BuildError::InvalidSecret(_)), "{e}");
    }

    #[test]
    fn sign_round_trip_uses_the_first_secret() {
        let cfg = config(&[SECRET, "other"]);
        let (hs, body) = signed("slack", &cfg, BODY, "ignored", T);
        assert_eq!(
            hs,
            vec![
                ("x-slack-request-timestamp".to_owned(), TS.to_owned()),
                ("x-slack-signature".to_owned(), SIG.to_owned()),
            ]
        );
        assert_ok_at(&verifier("slack", &[SECRET]), &pairs(&hs), &body, T);
        assert_kind_at(
            &verifier("slack", &["other"]),
            &pairs(&hs),
            &body,
            T,
            "invalid_signature",
        );
    }

    #[test]
    fn url_verification_handshake() {
        // The payload shown on Slack's `url_verification` event page.
        let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        let cfg = config(&[SECRET]);
        let (hs, body) = signed("slack", &cfg, body, "", T);
        let v = verifier("slack", &[SECRET]);
        let hm = headers(&pairs(&hs));
        let req = Inbound::new(&hm, &body);
        v.verify_at(&req, at(T)).unwrap();
        assert_eq!(
            v.handshake(&req),
            Some(HandshakeReply {
                content_type: "text/plain; charset=utf-8",
                body: b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".to_vec(),
            })
        );
        // an ordinary event is not a handshake
        let hm = headers(&h(SIG, TS));
        assert_eq!(v.handshake(&Inbound::new(&hm, BODY)), None);
    }

    #[test]
    fn describe() {
        let v = verifier("slack", &[SECRET]);
        let hm = headers(&[]);
        let d = |body: &[u8]| v.describe(&Inbound::new(&hm, body));
        assert_eq!(
            d(br#"{"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention"}}"#),
            EventMeta {
                id: Some("Ev08MFMKH6".into()),
                event_type: Some("app_mention".into()),
            }
        );
        assert_eq!(
            d(br#"{"type":"url_verification","challenge":"x"}"#),
            EventMeta {
                id: None,
                event_type: Some("url_verification".into()),
            }
        );
        assert_eq!(
            d(b"payload=%7B%22type%22%3A%22block_actions%22%7D"),
            EventMeta {
                id: None,
                event_type: Some("block_actions".into()),
            }
        );
        assert_eq!(d(BODY), EventMeta::default());
        assert_eq!(d(b"\xff\xfe"), EventMeta::default());
    }

    #[test]
    fn a_signature_that_decodes_to_the_wrong_length_is_a_mismatch() {
        let v = verifier("slack", &[SECRET]);
        // slack_sdk `SignatureVerifier.is_valid` compares the whole `v0=...` text with
        // hmac.compare_digest, so a shorter or longer hex signature is simply not valid.
        let short = &SIG[..SIG.len() - 2];
        let long = format!("{SIG}{}", "00".repeat(40));
        for sig in [short, &long, "v0="] {
            assert_kind_at(&v, &h(sig, TS), BODY, T, "invalid_signature");
        }
    }
}
