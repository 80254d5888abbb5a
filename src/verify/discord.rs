//! Discord (interactions endpoint and webhook events): Ed25519.
//!
//! `X-Signature-Ed25519` is the hex Ed25519 signature (64 bytes) and
//! `X-Signature-Timestamp` the Unix time in seconds; the signed message is the
//! timestamp's text followed by the raw body. Verification is strict (`verify_strict`:
//! no small-order keys, no non-canonical signatures).
//!
//! The verifier's secret is the application's public key from the Developer Portal, hex
//! of 32 bytes; anything else is `invalid_secret`. Several may be configured (rotation).
//! For `sign()` the secret is the private key instead: hex of the 32-byte seed (or of the
//! 64-byte seed + public key, as NaCl/tweetnacl write it).
//!
//! Discord documents no window: the timestamp must be within 300 s (or the configured
//! tolerance) of now, both directions, checked after the signature.
//!
//! An interactions `PING` (`{"type": 1}` without an `event` object), once verified, is
//! answered `{"type": 1}` (PONG) and not journaled. Webhook events are `{"type": 1,
//! "event": {...}}` (type 1 is an event there) and are journaled; their own PING (type 0)
//! wants an empty `204`, which the handshake reply cannot express, so it is journaled too.
//!
//! Sources: discord.com/developers/docs, "Interactions > Receiving and Responding"
//! (Security and Authorization) and "Webhook Events"; discord-interactions-js `verifyKey`.

use std::time::{Duration, SystemTime};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde_json::{json, Value};

use super::common::{
    check_tolerance_secs, decode_hex, header, parse_unix_secs, unix_secs, DEFAULT_TOLERANCE,
};
use super::{EventMeta, HandshakeReply, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

const SIGNATURE: &str = "x-signature-ed25519";
const TIMESTAMP: &str = "x-signature-timestamp";

#[derive(Debug)]
pub(crate) struct Discord {
    keys: Vec<VerifyingKey>,
    tolerance: Duration,
}

impl Discord {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        if cfg.secrets.is_empty() {
            return Err(BuildError::NoSecret);
        }
        let keys = cfg
            .secrets
            .iter()
            .map(|s| {
                let s = s.expose().trim();
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(s, &mut bytes).map_err(|_| {
                    BuildError::secret(format!(
                        "expected the application's public key as 64 hex digits, found {} \
                         characters that are not",
                        s.len()
                    ))
                })?;
                VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| BuildError::secret("the public key is not a valid Ed25519 point"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Discord {
            keys,
            tolerance: cfg.tolerance_or(DEFAULT_TOLERANCE),
        })
    }
}

/// An interactions PING: `type` 1 and no webhook-event `event` object.
fn is_ping(body: &Value) -> bool {
    body.get("type").and_then(Value::as_u64) == Some(1) && body.get("event").is_none()
}

impl Scheme for Discord {
    fn name(&self) -> &str {
        "discord"
    }

    fn verify(&self, req: &Inbound<'_>, now: SystemTime) -> Result<(), VerifyError> {
        let sig_text = header(req.headers, SIGNATURE)?;
        let ts_text = header(req.headers, TIMESTAMP)?;
        let ts = parse_unix_secs(TIMESTAMP, ts_text)?;
        let mut buf = [0u8; 64];
        let sig = decode_hex(&format!("header `{SIGNATURE}`"), sig_text, &mut buf)?;
        // Hex of another length decodes: it is a signature that cannot match.
        let sig: &[u8; 64] = sig.bytes.try_into().map_err(|_| {
            VerifyError::mismatch(format!(
                "header `{SIGNATURE}` decodes to {} byte(s); an Ed25519 signature has 64",
                sig.len
            ))
        })?;
        let sig = Signature::from_bytes(sig);
        let message = [ts_text.as_bytes(), req.body].concat();
        let ok = self
            .keys
            .iter()
            .fold(false, |ok, k| ok | k.verify_strict(&message, &sig).is_ok());
        if !ok {
            return Err(VerifyError::mismatch(format!(
                "header `{SIGNATURE}` is not an Ed25519 signature of timestamp + body under any \
                 of the {} configured public key(s)",
                self.keys.len()
            )));
        }
        check_tolerance_secs(ts, now, self.tolerance)
    }

    /// The body's `id` (interactions) and type: the webhook event's `event.type`, else the
    /// numeric `type` as text.
    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        let Ok(body) = serde_json::from_slice::<Value>(req.body) else {
            return EventMeta::default();
        };
        let text = |v: Option<&Value>| match v? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        EventMeta {
            id: text(body.get("id")),
            event_type: text(body.pointer("/event/type")).or_else(|| text(body.get("type"))),
        }
    }

    fn handshake(&self, req: &Inbound<'_>) -> Option<HandshakeReply> {
        // Called for every verified request: a cheap scan first, a parse only for PINGs.
        if super::common::json_pointer_str(req.body, "/type")? != "1" {
            return None;
        }
        let body = serde_json::from_slice::<Value>(req.body).ok()?;
        is_ping(&body).then(|| HandshakeReply::json(&json!({ "type": 1 })))
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    let secret = cfg
        .secrets
        .first()
        .ok_or(BuildError::NoSecret)?
        .expose()
        .trim();
    let bytes = hex::decode(secret)
        .ok()
        .filter(|b| b.len() == 32 || b.len() == 64);
    let seed: [u8; 32] = bytes
        .as_deref()
        .and_then(|b| b[..32].try_into().ok())
        .ok_or_else(|| {
            BuildError::secret(
                "expected the Ed25519 private key: hex of the 32-byte seed (or of seed + public key)",
            )
        })?;
    let key = SigningKey::from_bytes(&seed);
    let ts = unix_secs(input.now).to_string();
    let sig = key.sign(&[ts.as_bytes(), input.body].concat());
    Ok(Signed::default()
        .header(SIGNATURE, hex::encode(sig.to_bytes()))
        .header(TIMESTAMP, ts))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::{HandshakeReply, Inbound};

    // The key pair of RFC 8032 section 7.1, TEST 1; the signature of
    // "1700000000" + BODY under it was computed independently with pyca/cryptography
    // (Ed25519PrivateKey.from_private_bytes(seed).sign(message)).
    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const TS: u64 = 1_700_000_000;
    const BODY: &[u8] =
        br#"{"application_id":"11","id":"1234567890","token":"tok","type":1,"version":1}"#;
    const SIG: &str = "0363a50e98705ec555a874a143b0a4ab769a000f29384afe1a4014a804fd9dae881f9b67a4f594060f54734671836fd7f236820ae613813330c26c522478760d";
    // Another public key (RFC 8032 TEST 2).
    const OTHER: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

    fn h<'a>(sig: &'a str, ts: &'a str) -> [(&'static str, &'a str); 2] {
        [("x-signature-ed25519", sig), ("x-signature-timestamp", ts)]
    }

    #[test]
    fn independent_vector() {
        let v = verifier("discord", &[PUBLIC]);
        assert_ok_at(&v, &h(SIG, "1700000000"), BODY, TS);
        assert_ok_at(&v, &h(&SIG.to_ascii_uppercase(), "1700000000"), BODY, TS);
        // sign() with the seed reproduces it (Ed25519 is deterministic)
        let (hs, _) = signed("discord", &config(&[SEED]), BODY, "x", TS);
        assert_eq!(
            pairs(&hs),
            [
                ("x-signature-ed25519", SIG),
                ("x-signature-timestamp", "1700000000")
            ]
        );
    }

    #[test]
    fn rejections() {
        let v = verifier("discord", &[PUBLIC]);
        let hs = h(SIG, "1700000000");
        assert_kind_at(&v, &hs, br#"{"type":2}"#, TS, "invalid_signature");
        assert_kind_at(
            &verifier("discord", &[OTHER]),
            &hs,
            BODY,
            TS,
            "invalid_signature",
        );
        assert_kind_at(&v, &h(SIG, "1700000001"), BODY, TS, "invalid_signature");
        let mut flipped = SIG.to_owned();
        flipped.replace_range(..2, "04");
        assert_kind_at(
            &v,
            &h(&flipped, "1700000000"),
            BODY,
            TS,
            "invalid_signature",
        );
        // hex of 63 or 65 bytes decodes: it is not an Ed25519 signature of the body, as
        // discord-interactions-js `verifyKey` answers false for it
        for sig in [&SIG[..126], &SIG[2..], &format!("{SIG}00")] {
            assert_kind_at(&v, &h(sig, "1700000000"), BODY, TS, "invalid_signature");
        }
        // an empty header is no header
        assert_kind_at(&v, &h("", "1700000000"), BODY, TS, "missing_header");
        assert_kind_at(&v, &h(SIG, ""), BODY, TS, "missing_header");
        assert_kind_at(
            &v,
            &h(&"zz".repeat(64), "1700000000"),
            BODY,
            TS,
            "malformed_header",
        );
        assert_kind_at(&v, &h(SIG, "17e8"), BODY, TS, "malformed_header");
        assert_kind_at(&v, &hs[..1], BODY, TS, "missing_header");
        assert_kind_at(&v, &hs[1..], BODY, TS, "missing_header");
        assert_kind_at(&v, &[hs[0], hs[0], hs[1]], BODY, TS, "malformed_header");
        assert_kind_at(&v, &[hs[0], hs[1], hs[1]], BODY, TS, "malformed_header");
    }

    #[test]
    fn tolerance_is_inclusive_both_ways() {
        let v = verifier("discord", &[PUBLIC]);
        let hs = h(SIG, "1700000000");
        assert_ok_at(&v, &hs, BODY, TS + 300);
        assert_ok_at(&v, &hs, BODY, TS - 300);
        assert_kind_at(&v, &hs, BODY, TS + 301, "timestamp_out_of_tolerance");
        assert_kind_at(&v, &hs, BODY, TS - 301, "timestamp_out_of_tolerance");
    }

    #[test]
    fn keys() {
        for bad in ["", "d75a98", "not hex", SEED.get(..62).unwrap()] {
            let e = crate::Verifier::new("discord", &config(&[bad])).unwrap_err();
            assert!(
                matches!(e, crate::BuildError::InvalidSecret(_)),
                "{bad}: {e}"
            );
        }
        // 32 bytes that are not a curve point
        let not_a_point = format!("02{}", "00".repeat(31));
        assert!(crate::Verifier::new("discord", &config(&[&not_a_point])).is_err());
        assert!(matches!(
            crate::Verifier::new("discord", &config(&[])),
            Err(crate::BuildError::NoSecret)
        ));
    }

    #[test]
    fn rotation_and_round_trip() {
        let v = verifier("discord", &[OTHER, PUBLIC]);
        assert_ok_at(&v, &h(SIG, "1700000000"), BODY, TS);
        // a 64-byte NaCl secret key (seed + public) signs the same
        let nacl = format!("{SEED}{PUBLIC}");
        let body = br#"{"version":1,"application_id":"11","type":1,"event":{"type":"APPLICATION_AUTHORIZED","data":{}}}"#;
        let (hs, body) = signed("discord", &config(&[&nacl]), body, "x", TS + 5);
        assert_ok_at(&v, &pairs(&hs), &body, TS + 5);
        assert_kind_at(
            &v,
            &pairs(&hs),
            &body,
            TS + 306,
            "timestamp_out_of_tolerance",
        );
        assert!(crate::sign(
            "discord",
            &config(&["abcd"]),
            &crate::SignInput {
                body: b"",
                id: "",
                now: at(TS)
            }
        )
        .is_err());
    }

    #[test]
    fn ping_and_describe() {
        let v = verifier("discord", &[PUBLIC]);
        let none = headers(&[]);
        let ping = v.handshake(&Inbound::new(&none, BODY));
        assert_eq!(
            ping,
            Some(HandshakeReply {
                content_type: "application/json",
                body: br#"{"type":1}"#.to_vec()
            })
        );
        let meta = v.describe(&Inbound::new(&none, BODY));
        assert_eq!(meta.id.as_deref(), Some("1234567890"));
        assert_eq!(meta.event_type.as_deref(), Some("1"));
        // a command is an event, not a handshake
        let command = br#"{"id":"42","type":2,"data":{"name":"hi"}}"#;
        assert_eq!(v.handshake(&Inbound::new(&none, command)), None);
        // a webhook event has type 1 too, but carries an `event`
        let event = br#"{"version":1,"application_id":"11","type":1,"event":{"type":"ENTITLEMENT_CREATE","timestamp":"2024-10-18T14:42:53.064834","data":{}}}"#;
        assert_eq!(v.handshake(&Inbound::new(&none, event)), None);
        let meta = v.describe(&Inbound::new(&none, event));
        assert_eq!(meta.id, None);
        assert_eq!(meta.event_type.as_deref(), Some("ENTITLEMENT_CREATE"));
        assert_eq!(v.handshake(&Inbound::new(&none, b"not json")), None);
    }
}
