//! Twitch EventSub (webhook transport):
//! `Twitch-Eventsub-Message-Signature: sha256=<hex HMAC-SHA256(secret, id + timestamp + body)>`
//! where `id` is `Twitch-Eventsub-Message-Id` and `timestamp` is
//! `Twitch-Eventsub-Message-Timestamp` (RFC 3339 with up to nanosecond fractions), both
//! exactly as sent.
//!
//! The subscription secret's UTF-8 bytes are the key. The timestamp must be within
//! 10 minutes, Twitch's documented replay window ("make sure the value in the timestamp
//! field isn't older than 10 minutes"), applied in both directions at millisecond
//! precision and checked before the MAC. A verified request whose
//! `Twitch-Eventsub-Message-Type` is `webhook_callback_verification` is answered with the
//! body's `challenge`, raw, as `text/plain`.
//! Source: dev.twitch.tv "Handling Webhook Events" (verifying the event message, responding
//! to a challenge request) and "EventSub" (guarding against replay attacks, duplicates).

use std::time::{Duration, SystemTime};

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::common::{
    check_tolerance, header, meta_header, no_match, truncate, Algorithm, Encoding, Keys, Tally,
    SIG_BUF,
};
use super::{EventMeta, HandshakeReply, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

const ID: &str = "twitch-eventsub-message-id";
const TIMESTAMP: &str = "twitch-eventsub-message-timestamp";
const SIGNATURE: &str = "twitch-eventsub-message-signature";
const MESSAGE_TYPE: &str = "twitch-eventsub-message-type";
const SUBSCRIPTION_TYPE: &str = "twitch-eventsub-subscription-type";

/// Twitch's documented replay window.
const TOLERANCE: Duration = Duration::from_secs(10 * 60);

#[derive(Debug)]
pub(crate) struct Twitch {
    keys: Keys,
    tolerance: Duration,
}

impl Twitch {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        Ok(Twitch {
            keys: Keys::raw(Algorithm::Sha256, &cfg.secrets)?,
            tolerance: cfg.tolerance_or(TOLERANCE),
        })
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 timestamp (`malformed_header` otherwise).
fn rfc3339_millis(text: &str) -> Result<i128, VerifyError> {
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        VerifyError::malformed(format!(
            "header `{TIMESTAMP}`: expected an RFC 3339 timestamp such as \
             2019-11-16T10:11:12.634234626Z, found {:?}",
            truncate(text, 40)
        ))
    })?;
    Ok(t.unix_timestamp_nanos().div_euclid(1_000_000))
}

impl Scheme for Twitch {
    fn name(&self) -> &str {
        "twitch"
    }

    fn verify(&self, req: &Inbound<'_>, now: SystemTime) -> Result<(), VerifyError> {
        let id = header(req.headers, ID)?;
        let ts = header(req.headers, TIMESTAMP)?;
        let sig = header(req.headers, SIGNATURE)?;
        let millis = rfc3339_millis(ts)?;
        check_tolerance(millis, now, self.tolerance)?;
        let hex = sig.strip_prefix("sha256=").ok_or_else(|| {
            VerifyError::malformed(format!(
                "header `{SIGNATURE}`: expected `sha256=` followed by hex, found {:?}",
                truncate(sig, 16)
            ))
        })?;
        let what = format!("header `{SIGNATURE}`");
        let mut tally = Tally::default();
        let mut buf = [0u8; SIG_BUF];
        let sig = tally.decode(Encoding::Hex, &what, hex, self.keys.tag_len(), &mut buf);
        tally.require_decoded(|| VerifyError::missing(SIGNATURE))?;
        let sig = sig.map_or(&[][..], |s| s.bytes);
        if self.keys.matches_any(
            &[id.as_bytes(), ts.as_bytes(), req.body],
            std::iter::once(sig),
        ) {
            Ok(())
        } else {
            Err(self
                .keys
                .explain(tally.mismatch(no_match(&what, self.keys.len()))))
        }
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        EventMeta {
            id: meta_header(req.headers, ID),
            event_type: meta_header(req.headers, SUBSCRIPTION_TYPE),
        }
    }

    fn handshake(&self, req: &Inbound<'_>) -> Option<HandshakeReply> {
        if meta_header(req.headers, MESSAGE_TYPE)? != "webhook_callback_verification" {
            return None;
        }
        let v: Value = serde_json::from_slice(req.body).ok()?;
        Some(HandshakeReply::text(v.get("challenge")?.as_str()?))
    }
}

/// The three signed headers and, when the body names it, the subscription type. The
/// message type (`notification`, `webhook_callback_verification`, `revocation`) is left
/// to the caller: it is not signed and the body alone does not determine it.
pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    let scheme = Twitch::new(cfg)?;
    // `From<SystemTime>` panics past year 9999; go through the checked constructor.
    let secs = super::common::unix_millis(input.now).div_euclid(1000);
    let nanos = secs
        .checked_mul(1_000_000_000)
        .ok_or(BuildError::CannotSign("twitch", "the time is out of range"))?;
    let ts = OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(|_| BuildError::CannotSign("twitch", "the time is out of range for RFC 3339"))?
        .format(&Rfc3339)
        .map_err(|_| BuildError::CannotSign("twitch", "the time cannot be written as RFC 3339"))?;
    let tag = scheme
        .keys
        .first()
        .tag(&[input.id.as_bytes(), ts.as_bytes(), input.body]);
    let body = serde_json::from_slice::<Value>(input.body).ok();
    let mut signed = Signed::default()
        .header(ID, input.id)
        .header(TIMESTAMP, ts)
        .header(SIGNATURE, format!("sha256={}", hex::encode(tag.as_bytes())));
    if let Some(ty) = body
        .as_ref()
        .and_then(|v| v.pointer("/subscription/type"))
        .and_then(Value::as_str)
    {
        signed = signed.header(SUBSCRIPTION_TYPE, ty);
    }
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::*;
    use super::super::{EventMeta, HandshakeReply, Inbound, Verifier};

    // Twitch publishes no known answer. Computed independently with
    // `printf '%s' '<ID><TS><BODY>' | openssl dgst -sha256 -hmac 'twitch-secret-0123456789'`.
    // The timestamp format (nanoseconds, `Z`) is the one Twitch's docs show.
    const SECRET: &str = "twitch-secret-0123456789";
    const ID: &str = "e76c6bd4-55c9-4987-8304-da1588d8988b";
    const TS: &str = "2019-11-16T10:11:12.634234626Z";
    /// `TS` in whole seconds (`date -u -d 2019-11-16T10:11:12Z +%s`); `TS` is 634 ms later.
    const T: u64 = 1_573_899_072;
    const BODY: &[u8] = br#"{"subscription":{"id":"f1c2a387-161a-49f9-a165-0f21d7a4e1c4","type":"channel.follow","version":"2"},"event":{"user_login":"cool_user"}}"#;
    const SIG: &str = "sha256=068d4301f617a797b90ab59021f6bdf2cc799a766bb2196bee9395baf2def090";

    fn h<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> [(&'a str, &'a str); 4] {
        [
            ("twitch-eventsub-message-id", id),
            ("twitch-eventsub-message-timestamp", ts),
            ("twitch-eventsub-message-signature", sig),
            ("twitch-eventsub-message-type", "notification"),
        ]
    }

    fn at_ms(v: &Verifier, body: &[u8], millis: u64) -> Result<(), crate::VerifyError> {
        let hm = headers(&h(ID, TS, SIG));
        let now = std::time::UNIX_EPOCH + Duration::from_millis(millis);
        v.verify_at(&Inbound::new(&hm, body), now)
    }

    #[test]
    fn known_answer() {
        assert_ok_at(&verifier("twitch", &[SECRET]), &h(ID, TS, SIG), BODY, T);
    }

    #[test]
    fn tolerance_is_ten_minutes_inclusive_both_ways_in_millis() {
        let v = verifier("twitch", &[SECRET]);
        let ts = T * 1000 + 634;
        at_ms(&v, BODY, ts + 600_000).unwrap();
        at_ms(&v, BODY, ts - 600_000).unwrap();
        let e = at_ms(&v, BODY, ts + 600_001).unwrap_err();
        assert_eq!(e.kind().as_str(), "timestamp_out_of_tolerance", "{e}");
        let e = at_ms(&v, BODY, ts - 600_001).unwrap_err();
        assert_eq!(e.kind().as_str(), "timestamp_out_of_tolerance", "{e}");
        // checked before the MAC
        let e = at_ms(&v, b"tampered", ts + 600_001).unwrap_err();
        assert_eq!(e.kind().as_str(), "timestamp_out_of_tolerance", "{e}");
        assert_kind_at(
            &v,
            &h(ID, TS, SIG),
            BODY,
            T + 3600,
            "timestamp_out_of_tolerance",
        );
    }

    #[test]
    fn rejections() {
        let v = verifier("twitch", &[SECRET]);
        let ok = h(ID, TS, SIG);
        assert_kind_at(&v, &ok, b"{}", T, "invalid_signature");
        assert_kind_at(
            &verifier("twitch", &["wrong"]),
            &ok,
            BODY,
            T,
            "invalid_signature",
        );
        // the id and the timestamp are signed
        assert_kind_at(&v, &h("other-id", TS, SIG), BODY, T, "invalid_signature");
        let ts2 = "2019-11-16T10:11:12.634234627Z";
        assert_kind_at(&v, &h(ID, ts2, SIG), BODY, T, "invalid_signature");
        for i in 0..3 {
            let mut missing = ok.to_vec();
            missing.remove(i);
            assert_kind_at(&v, &missing, BODY, T, "missing_header");
            let mut twice = ok.to_vec();
            twice.push(ok[i]);
            assert_kind_at(&v, &twice, BODY, T, "malformed_header");
        }
        assert_kind_at(&v, &h(ID, "1573899072", SIG), BODY, T, "malformed_header");
        assert_kind_at(
            &v,
            &h(ID, "16/11/2019 10:11:12", SIG),
            BODY,
            T,
            "malformed_header",
        );
        assert_kind_at(&v, &h(ID, TS, &SIG[7..]), BODY, T, "malformed_header");
        assert_kind_at(&v, &h(ID, TS, "sha1=abcd"), BODY, T, "malformed_header");
        assert_kind_at(&v, &h(ID, TS, "sha256=xyz"), BODY, T, "malformed_header");
    }

    #[test]
    fn other_offsets_and_precisions_parse() {
        assert_eq!(super::rfc3339_millis(TS).unwrap(), 1_573_899_072_634);
        assert_eq!(
            super::rfc3339_millis("2019-11-16T11:11:12.6+01:00").unwrap(),
            1_573_899_072_600
        );
        assert_eq!(
            super::rfc3339_millis("2019-11-16T10:11:12Z").unwrap(),
            1_573_899_072_000
        );
    }

    #[test]
    fn rotation_and_round_trip() {
        assert_ok_at(
            &verifier("twitch", &["new", SECRET]),
            &h(ID, TS, SIG),
            BODY,
            T,
        );
        let cfg = config(&[SECRET, "old"]);
        let (hs, body) = signed("twitch", &cfg, BODY, ID, T + 42);
        let get = |k: &str| hs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("twitch-eventsub-message-id"), Some(ID));
        assert_eq!(
            get("twitch-eventsub-message-timestamp"),
            Some("2019-11-16T10:11:54Z")
        );
        assert_eq!(get("twitch-eventsub-message-type"), None);
        assert_eq!(
            get("twitch-eventsub-subscription-type"),
            Some("channel.follow")
        );
        assert_ok_at(&verifier("twitch", &[SECRET]), &pairs(&hs), &body, T + 42);
        assert_kind_at(
            &verifier("twitch", &["old"]),
            &pairs(&hs),
            &body,
            T + 42,
            "invalid_signature",
        );
    }

    #[test]
    fn challenge_handshake() {
        // The shape of Twitch's `webhook_callback_verification` request body.
        let body = br#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"id":"f1c2a387-161a-49f9-a165-0f21d7a4e1c4","status":"webhook_callback_verification_pending","type":"channel.follow","version":"2"}}"#;
        let (mut hs, body) = signed("twitch", &config(&[SECRET]), body, "a3f1", T);
        hs.push((
            "twitch-eventsub-message-type".into(),
            "webhook_callback_verification".into(),
        ));
        let hm = headers(&pairs(&hs));
        let req = Inbound::new(&hm, &body);
        let v = verifier("twitch", &[SECRET]);
        v.verify_at(&req, at(T)).unwrap();
        assert_eq!(
            v.handshake(&req),
            Some(HandshakeReply {
                content_type: "text/plain; charset=utf-8",
                body: b"pogchamp-kappa-360noscope-vohiyo".to_vec(),
            })
        );
        // a notification carrying a `challenge` field is still not a handshake
        let hm = headers(&h(ID, TS, SIG));
        assert_eq!(v.handshake(&Inbound::new(&hm, &body)), None);
        // nor is a request whose message type is sent twice
        hs.push(("twitch-eventsub-message-type".into(), "notification".into()));
        let hm = headers(&pairs(&hs));
        assert_eq!(v.handshake(&Inbound::new(&hm, &body)), None);
    }

    #[test]
    fn describe() {
        let v = verifier("twitch", &[SECRET]);
        let mut hs = h(ID, TS, SIG).to_vec();
        hs.push(("twitch-eventsub-subscription-type", "channel.follow"));
        let hm = headers(&hs);
        assert_eq!(
            v.describe(&Inbound::new(&hm, BODY)),
            EventMeta {
                id: Some(ID.into()),
                event_type: Some("channel.follow".into()),
            }
        );
    }

    #[test]
    fn a_signature_that_decodes_to_the_wrong_length_is_a_mismatch() {
        // Twitch's docs ("Verifying the event message") compare the whole `sha256=...`
        // text with the computed one: a shorter or longer hex signature is not a match.
        let v = verifier("twitch", &[SECRET]);
        let long = format!("{SIG}{}", "00".repeat(40));
        for sig in [&SIG[..SIG.len() - 2], &long, "sha256="] {
            assert_kind_at(&v, &h(ID, TS, sig), BODY, T, "invalid_signature");
        }
    }
}
