//! Zoom: `x-zm-signature: v0=<hex HMAC-SHA256(secret token, "v0:" + ts + ":" + body)>`
//! where `ts` is `x-zm-request-timestamp` (Unix seconds) exactly as sent: Slack's `v0`
//! shape ([`super::slack::V0`]) under other header names.
//!
//! The webhook secret token's UTF-8 bytes are the key. Zoom documents no window and its
//! official library (Rivet) checks none, so the default 300 s applies, both directions,
//! checked before the MAC. Zoom signs its `endpoint.url_validation` request too; once it
//! verifies, the reply is `{"plainToken": p, "encryptedToken": hex(HMAC-SHA256(secret
//! token, p))}` as JSON, keyed with the secret that signed the request (during rotation
//! that may not be the first; otherwise it is the first).
//! Sources: developers.zoom.us "Using webhooks" (verify webhook events, validate your
//! webhook endpoint); zoom/rivet-javascript `CommonHttpRequest` (`isEventVerified`,
//! `hashUrlValidationEvent`); zoom/webhook-sample `index.js`.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::common::{json_meta, meta_header};
use super::slack::V0;
use super::{EventMeta, HandshakeReply, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

/// Zoom's per-request tracking id: the only id Zoom sends (bodies carry none).
const TRACKING_ID: &str = "x-zm-trackingid";

#[derive(Debug)]
pub(crate) struct Zoom(V0);

impl Zoom {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        V0::new("x-zm-signature", "x-zm-request-timestamp", cfg).map(Zoom)
    }
}

impl Scheme for Zoom {
    fn name(&self) -> &str {
        "zoom"
    }

    fn verify(&self, req: &Inbound<'_>, now: SystemTime) -> Result<(), VerifyError> {
        self.0.verify(req, now)
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        EventMeta {
            id: meta_header(req.headers, TRACKING_ID),
            ..json_meta(req.body, None, Some("/event"))
        }
    }

    fn handshake(&self, req: &Inbound<'_>) -> Option<HandshakeReply> {
        // Called for every verified request: a cheap scan first, a parse only for the
        // rare handshake.
        if super::common::json_pointer_str(req.body, "/event")? != "endpoint.url_validation" {
            return None;
        }
        let v: Value = serde_json::from_slice(req.body).ok()?;
        if v.get("event")?.as_str()? != "endpoint.url_validation" {
            return None;
        }
        let plain = v.pointer("/payload/plainToken")?.as_str()?;
        let tag = self.0.signing_key(req).tag(&[plain.as_bytes()]);
        Some(HandshakeReply::json(&json!({
            "plainToken": plain,
            "encryptedToken": hex::encode(tag.as_bytes()),
        })))
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    Ok(Zoom::new(cfg)?
        .0
        .sign(input.body, input.now)
        .header(TRACKING_ID, input.id))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{EventMeta, Inbound};

    // Zoom publishes no known answer. Computed independently with
    // `printf '%s' 'v0:1700000000:<BODY>' | openssl dgst -sha256 -hmac 'zm-secret-token-7Qx'`.
    const SECRET: &str = "zm-secret-token-7Qx";
    const TS: &str = "1700000000";
    const T: u64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"event":"meeting.started","payload":{"account_id":"D8cJuqWVQ623CI4Q8yQK0Q","object":{"id":"85712345678","topic":"Standup"}},"event_ts":1700000000123}"#;
    const SIG: &str = "v0=4d15f6f65a2249205d0ad963f4764f2460b799ce814df50c169153a99d6ccc4c";

    fn h<'a>(sig: &'a str, ts: &'a str) -> [(&'a str, &'a str); 2] {
        [("x-zm-signature", sig), ("x-zm-request-timestamp", ts)]
    }

    #[test]
    fn known_answer() {
        assert_ok_at(&verifier("zoom", &[SECRET]), &h(SIG, TS), BODY, T);
    }

    #[test]
    fn tolerance_is_300_s_inclusive_both_ways() {
        let v = verifier("zoom", &[SECRET]);
        assert_ok_at(&v, &h(SIG, TS), BODY, T + 300);
        assert_ok_at(&v, &h(SIG, TS), BODY, T - 300);
        assert_kind_at(&v, &h(SIG, TS), BODY, T + 301, "timestamp_out_of_tolerance");
        assert_kind_at(&v, &h(SIG, TS), BODY, T - 301, "timestamp_out_of_tolerance");
    }

    #[test]
    fn rejections() {
        let v = verifier("zoom", &[SECRET]);
        let ok = h(SIG, TS);
        let mut tampered = BODY.to_vec();
        tampered[10] ^= 1;
        assert_kind_at(&v, &ok, &tampered, T, "invalid_signature");
        assert_kind_at(
            &verifier("zoom", &["wrong"]),
            &ok,
            BODY,
            T,
            "invalid_signature",
        );
        assert_kind_at(&v, &h(SIG, "1700000001"), BODY, T, "invalid_signature");
        assert_kind_at(&v, &ok[..1], BODY, T, "missing_header");
        assert_kind_at(&v, &ok[1..], BODY, T, "missing_header");
        assert_kind_at(&v, &[ok[0], ok[1], ok[0]], BODY, T, "malformed_header");
        assert_kind_at(&v, &h(&SIG[3..], TS), BODY, T, "malformed_header");
        assert_kind_at(&v, &h("v0=not-hex", TS), BODY, T, "malformed_header");
        assert_kind_at(
            &v,
            &h(SIG, "2023-11-14T22:13:20Z"),
            BODY,
            T,
            "malformed_header",
        );
    }

    #[test]
    fn rotation_and_round_trip() {
        assert_ok_at(&verifier("zoom", &["next", SECRET]), &h(SIG, TS), BODY, T);
        let (hs, body) = signed("zoom", &config(&[SECRET, "next"]), BODY, "trk-1", T);
        assert!(
            hs.contains(&("x-zm-signature".into(), SIG.into())),
            "{hs:?}"
        );
        assert!(hs.contains(&("x-zm-trackingid".into(), "trk-1".into())));
        assert_ok_at(&verifier("zoom", &[SECRET]), &pairs(&hs), &body, T);
    }

    #[test]
    fn url_validation_handshake() {
        // encryptedToken = HMAC-SHA256(secret token, plainToken), computed independently:
        // `printf '%s' qgg8vlPmX7TkqGZD3TdSaZ | openssl dgst -sha256 -hmac 'zm-secret-token-7Qx'`.
        let body =
            br#"{"payload":{"plainToken":"qgg8vlPmX7TkqGZD3TdSaZ"},"event_ts":1700000000123,"event":"endpoint.url_validation"}"#;
        let expected: serde_json::Value = serde_json::json!({
            "plainToken": "qgg8vlPmX7TkqGZD3TdSaZ",
            "encryptedToken": "d39338c9e537d948a29a56506bf7a1b6235ea3791c9a72fb2d8340056730f4e5",
        });
        let (hs, body) = signed("zoom", &config(&[SECRET]), body, "", T);
        let hm = headers(&pairs(&hs));
        let req = Inbound::new(&hm, &body);
        let v = verifier("zoom", &[SECRET]);
        v.verify_at(&req, at(T)).unwrap();
        let reply = v.handshake(&req).expect("a handshake");
        assert_eq!(reply.content_type, "application/json");
        let got: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(got, expected);

        // Rotation: Zoom still signs with the old token, listed second; the reply must be
        // keyed with the token that signed, or Zoom's check fails.
        let v = verifier("zoom", &["zm-new-token", SECRET]);
        v.verify_at(&req, at(T)).unwrap();
        let got: serde_json::Value =
            serde_json::from_slice(&v.handshake(&req).unwrap().body).unwrap();
        assert_eq!(got, expected);

        // an ordinary event is not a handshake
        let hm = headers(&h(SIG, TS));
        assert!(v.handshake(&Inbound::new(&hm, BODY)).is_none());
    }

    #[test]
    fn describe() {
        let v = verifier("zoom", &[SECRET]);
        let hm = headers(&[("x-zm-trackingid", "v=2.0;clid=us05;rid=WEB_1")]);
        assert_eq!(
            v.describe(&Inbound::new(&hm, BODY)),
            EventMeta {
                id: Some("v=2.0;clid=us05;rid=WEB_1".into()),
                event_type: Some("meeting.started".into()),
            }
        );
    }
}
