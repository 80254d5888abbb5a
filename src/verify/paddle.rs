//! Paddle Billing: `Paddle-Signature: ts=<unix seconds>;h1=<hex HMAC-SHA256(secret, ts + ":" + body)>`,
//! with several `h1` while a destination's secret is being rotated.
//!
//! The endpoint secret key's UTF-8 bytes (`pdl_ntfset_...`) are the key. Parsing follows
//! the official SDKs: `;`-separated `key=value` pairs, unknown keys ignored (as the Node
//! SDK does, so a future `h2` does not break verification), every `h1` collected (as the
//! Python SDK does); exactly one `ts` and at least one `h1` are required. An `h1` that is
//! not hex is skipped and the others checked (the Python SDK's tests send `h1=dummy`
//! beside the valid one); the header is `malformed_header` only when none is hex. The
//! timestamp is checked before the MAC against a 5 s window, the SDKs'
//! default (`MAX_VALID_TIME_DIFFERENCE = 5`, inclusive); where the SDKs only reject old
//! timestamps, this scheme applies the window in both directions.
//! The id and type are the body's `event_id` and `event_type`.
//! Sources: developer.paddle.com "Verify webhook signatures"; PaddleHQ/paddle-node-sdk
//! `src/notifications/helpers/webhooks-validator.ts` and its tests; PaddleHQ/paddle-python-sdk
//! `paddle_billing/Notifications/PaddleSignature.py` and `Verifier.py`.

use std::time::{Duration, SystemTime};

use super::common::{
    check_tolerance_secs, header, json_meta, parse_unix_secs, truncate, unix_secs, Algorithm,
    Candidates, Encoding, Keys,
};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

const HEADER: &str = "paddle-signature";
const H1_WHAT: &str = "header `paddle-signature` h1";
const TS_WHAT: &str = "header `paddle-signature` ts";

/// The official SDKs' default window.
const TOLERANCE: Duration = Duration::from_secs(5);

/// More `h1` than this in one header is `malformed_header` (rotation needs two).
const MAX_SIGNATURES: usize = 8;

#[derive(Debug)]
pub(crate) struct Paddle {
    keys: Keys,
    tolerance: Duration,
}

impl Paddle {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        Ok(Paddle {
            keys: Keys::raw(Algorithm::Sha256, &cfg.secrets)?,
            tolerance: cfg.tolerance_or(TOLERANCE),
        })
    }
}

impl Scheme for Paddle {
    fn name(&self) -> &str {
        "paddle"
    }

    fn verify(&self, req: &Inbound<'_>, now: SystemTime) -> Result<(), VerifyError> {
        let value = header(req.headers, HEADER)?;
        let malformed = |what: String| VerifyError::malformed(format!("header `{HEADER}`: {what}"));
        let mut ts = None;
        let mut sigs = Candidates::<MAX_SIGNATURES>::new();
        for part in value.split(';') {
            let Some((key, val)) = part.split_once('=') else {
                continue;
            };
            match key.trim() {
                "ts" if ts.is_some() => return Err(malformed("`ts` given more than once".into())),
                "ts" => ts = Some(val.trim()),
                // One that is not hex is skipped, as the Python SDK's string comparison
                // simply fails it; the others are checked.
                "h1" => sigs.offer(Encoding::Hex, H1_WHAT, val.trim(), self.keys.tag_len())?,
                _ => {}
            }
        }
        let (Some(ts), true) = (ts, sigs.offered() > 0) else {
            return Err(malformed(format!(
                "expected `ts=<unix seconds>;h1=<hex>`, found {:?}",
                truncate(value, 24)
            )));
        };
        sigs.tally.require_decoded(|| malformed("no `h1`".into()))?;
        let secs = parse_unix_secs(TS_WHAT, ts)?;
        check_tolerance_secs(secs, now, self.tolerance)?;
        if self
            .keys
            .matches_any(&[ts.as_bytes(), b":", req.body], sigs.iter())
        {
            Ok(())
        } else {
            Err(self.keys.explain(sigs.tally.mismatch(format!(
                "none of the {} `h1` signature(s) of header `{HEADER}` matches `ts:body` under \
                 the {} configured secret(s)",
                sigs.tally.decoded_count(),
                self.keys.len()
            ))))
        }
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        json_meta(req.body, Some("/event_id"), Some("/event_type"))
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    let scheme = Paddle::new(cfg)?;
    let ts = unix_secs(input.now).to_string();
    let tag = scheme.keys.first().tag(&[ts.as_bytes(), b":", input.body]);
    Ok(Signed::default().header(
        HEADER,
        format!("ts={ts};h1={}", hex::encode(tag.as_bytes())),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{EventMeta, Inbound};

    // Known answers from the official Node SDK's tests
    // (PaddleHQ/paddle-node-sdk `src/__tests__/notifications/webhooks-validator.node.test.ts`),
    // recomputed independently with `openssl dgst -sha256 -hmac VALID_SECRET`.
    const SECRET: &str = "VALID_SECRET";
    const T: u64 = 1_698_796_800; // 2023-11-01T00:00:00Z, the SDK test's clock
    const BODY: &[u8] = br#"{"data": ["1", "2"]}"#;
    const SIG: &str =
        "ts=1698796800;h1=a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9";
    /// The SDK's "multiple hashes" case, with an unknown `h2`.
    const BODY2: &[u8] = br#"{"data": "value"}"#;
    const SIG2: &str = "ts=1698796800;h1=28981e941fae76e53db32f3d2a83cb69db41476595e84e1970a1b5d98f62b261;h1=28981e941fae76e53db32f3d2a83cb69db41476595e84e1970a1b5d98f62b261;h2=RANDOM_HASH";
    /// `h1` of `BODY` at `T` under `OTHER_SECRET` (openssl, as above).
    const OTHER_H1: &str = "07223c4d821dcc4e33dc34fbee75d1b9c2b69abae0ba4f8e0f014e2e50ae554d";

    fn h(sig: &str) -> [(&str, &str); 1] {
        [("paddle-signature", sig)]
    }

    #[test]
    fn sdk_vectors() {
        let v = verifier("paddle", &[SECRET]);
        assert_ok_at(&v, &h(SIG), BODY, T);
        assert_ok_at(&v, &h(SIG2), BODY2, T);
        // the SDK's negative cases
        assert_kind_at(
            &verifier("paddle", &["INVALID_VALID_SECRET"]),
            &h(SIG),
            BODY,
            T,
            "invalid_signature",
        );
        assert_kind_at(
            &v,
            &h(SIG),
            br#"{ "data": [ "1", "2" ]}"#,
            T,
            "invalid_signature",
        );
        assert_kind_at(&v, &h("invalid_header"), BODY, T, "malformed_header");
        assert_kind_at(&v, &h("h1=invalid_header"), BODY, T, "malformed_header");
        assert_kind_at(
            &v,
            &h("ts=1234;h2=invalid_header"),
            BODY,
            T,
            "malformed_header",
        );
        assert_kind_at(
            &v,
            &h("ts=1234;h1=invalid_signature"),
            BODY,
            T,
            "malformed_header",
        );
    }

    #[test]
    fn tolerance_is_five_seconds_inclusive_both_ways() {
        // The SDK test: valid at 00:00:05, rejected at 00:00:06 and days later.
        let v = verifier("paddle", &[SECRET]);
        assert_ok_at(&v, &h(SIG), BODY, T + 5);
        assert_kind_at(&v, &h(SIG), BODY, T + 6, "timestamp_out_of_tolerance");
        assert_kind_at(
            &v,
            &h(SIG),
            BODY,
            T + 4 * 86_400,
            "timestamp_out_of_tolerance",
        );
        // and, here, the future too
        assert_ok_at(&v, &h(SIG), BODY, T - 5);
        assert_kind_at(&v, &h(SIG), BODY, T - 6, "timestamp_out_of_tolerance");
        // checked before the MAC
        assert_kind_at(
            &v,
            &h(SIG),
            b"tampered",
            T + 6,
            "timestamp_out_of_tolerance",
        );
        let mut cfg = config(&[SECRET]);
        cfg.tolerance = Some(std::time::Duration::from_secs(300));
        assert_ok_at(
            &crate::Verifier::new("paddle", &cfg).unwrap(),
            &h(SIG),
            BODY,
            T + 300,
        );
    }

    #[test]
    fn rejections() {
        let v = verifier("paddle", &[SECRET]);
        assert_kind_at(&v, &h(SIG), b"", T, "invalid_signature");
        // the timestamp is signed
        let moved = SIG.replace("1698796800", "1698796801");
        assert_kind_at(&v, &h(&moved), BODY, T, "invalid_signature");
        assert_kind_at(&v, &[], BODY, T, "missing_header");
        assert_kind_at(&v, &[h(SIG)[0], h(SIG)[0]], BODY, T, "malformed_header");
        assert_kind_at(
            &v,
            &h(&format!("ts=1698796800;{SIG}")),
            BODY,
            T,
            "malformed_header",
        );
        assert_kind_at(
            &v,
            &h(&SIG.replace("ts=1698796800", "ts=now")),
            BODY,
            T,
            "malformed_header",
        );
        assert_kind_at(
            &v,
            &h(&SIG.replace("ts=1698796800", "ts=-1")),
            BODY,
            T,
            "malformed_header",
        );
        assert_kind_at(&v, &h(&format!("{SIG}0")), BODY, T, "malformed_header");
        let many = format!("ts=1698796800{}", ";h1=00".repeat(9));
        assert_kind_at(&v, &h(&many), BODY, T, "malformed_header");
        // spaces around pairs are tolerated, order does not matter
        let loose =
            "h1=a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9 ; ts=1698796800";
        assert_ok_at(&v, &h(loose), BODY, T);
    }

    #[test]
    fn rotation() {
        // two active secrets on our side
        assert_ok_at(
            &verifier("paddle", &["OTHER_SECRET", SECRET]),
            &h(SIG),
            BODY,
            T,
        );
        // two h1 on Paddle's side, either order
        let v = verifier("paddle", &[SECRET]);
        let both = format!("{SIG};h1={OTHER_H1}");
        assert_ok_at(&v, &h(&both), BODY, T);
        let both = format!("ts=1698796800;h1={OTHER_H1};{}", &SIG[14..]);
        assert_ok_at(&v, &h(&both), BODY, T);
        assert_ok_at(&verifier("paddle", &["OTHER_SECRET"]), &h(&both), BODY, T);
        assert_kind_at(
            &verifier("paddle", &["THIRD"]),
            &h(&both),
            BODY,
            T,
            "invalid_signature",
        );
    }

    #[test]
    fn sign_round_trip() {
        let (hs, body) = signed("paddle", &config(&[SECRET, "OTHER_SECRET"]), BODY, "x", T);
        assert_eq!(hs, vec![("paddle-signature".to_owned(), SIG.to_owned())]);
        assert_ok_at(&verifier("paddle", &[SECRET]), &pairs(&hs), &body, T);
    }

    #[test]
    fn describe() {
        let v = verifier("paddle", &[SECRET]);
        let hm = headers(&[]);
        let body = br#"{"event_id":"evt_01h8bzakzx3hm2fmen703n5q45","event_type":"transaction.completed","occurred_at":"2023-08-21T11:57:47.390028Z","notification_id":"ntf_01h8bzam1z32agrxjwhjgqk8w6","data":{}}"#;
        assert_eq!(
            v.describe(&Inbound::new(&hm, body)),
            EventMeta {
                id: Some("evt_01h8bzakzx3hm2fmen703n5q45".into()),
                event_type: Some("transaction.completed".into()),
            }
        );
    }

    #[test]
    fn an_undecodable_h1_among_several_is_skipped() {
        // PaddleHQ/paddle-python-sdk tests/Unit/Notification/test_Verifier.py
        // `test_validate_paddle_signature_header_integrity`: a header with `h1=dummy`
        // before the valid `h1`, three secrets of which only the third signed, verifies.
        let header = "ts=1696195954;h1=dummy;h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02";
        let v = verifier(
            "paddle",
            &[
                "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_TjIG2BXbm83HPXqNfziwe506sBEdqL/4",
                "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_vB/yIOnTOCWIvpBadM5jzBZPHc7OmdSo",
                "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_WvRO0eL4Bj9rgYYIBZY6wZhG4EHy9jzh",
            ],
        );
        assert_ok_at(&v, &h(header), b"hello-world", 1_696_195_954);
        // after it too
        let after = "ts=1696195954;h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02;h1=dummy";
        assert_ok_at(&v, &h(after), b"hello-world", 1_696_195_954);
        // one that decodes but matches nothing makes it a mismatch, not malformed
        let t = 1_696_195_954;
        assert_kind_at(&v, &h(header), b"hello-world!", t, "invalid_signature");
        let wrong = format!("ts=1696195954;h1=dummy;h1={OTHER_H1}");
        assert_kind_at(&v, &h(&wrong), b"hello-world", t, "invalid_signature");
        // none decodes: malformed
        let none = "ts=1696195954;h1=dummy;h1=zz";
        assert_kind_at(&v, &h(none), b"hello-world", t, "malformed_header");
    }

    #[test]
    fn python_sdk_vectors() {
        // PaddleHQ/paddle-python-sdk tests/Unit/Notification/test_Verifier.py
        // `test_validate_payload_body_integrity`: the `_fixtures/standard_payload.json` and
        // `special_chars_payload.json` bodies (trailing newline stripped, as the test
        // does), signed with this notification-setting secret.
        let v = verifier(
            "paddle",
            &["pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_GrOWLNef+vmtjJYq4mSnHNzvc8uWoJ1I"],
        );
        let standard = r#"{"data":{"id":"ctm_01hs0tqf76sxmp7ba5e4mw1sc8","name":"John Doe","email":"blackhole+verification2@paddle.com","locale":"en","status":"active","created_at":"2024-03-15T10:32:37.862Z","updated_at":"2024-03-15T10:32:37.862Z","custom_data":null,"import_meta":null,"marketing_consent":false},"event_id":"evt_01hs0tqfme2xwb2hvwv87p8y3w","event_type":"customer.created","occurred_at":"2024-03-15T10:32:38.286848Z","notification_id":"ntf_01hs0tqfrhgkyp39x4wyvy7h6n"}"#;
        let sig =
            "ts=1710498758;h1=558bf93944dbeb4790c7a8af6cb2ea435c8ca9c8396aafc1a4e37424ac132744";
        assert_ok_at(&v, &h(sig), standard.as_bytes(), 1_710_498_758);
        let special = r#"{"data":{"id":"ctm_01hs0t94g83hs5jdw282ztqa4z","name":"\u00dc\u00c4\u00c5\u00e5\u00d6\u00dc\u00c4\u00c5\u00e5\u00d6","email":"blackhole+verification1@paddle.com","locale":"en","status":"active","created_at":"2024-03-15T10:24:48.136Z","updated_at":"2024-03-15T10:24:48.136Z","custom_data":null,"import_meta":null,"marketing_consent":false},"event_id":"evt_01hs0t94tjvtv62azjmkbeysz7","event_type":"customer.created","occurred_at":"2024-03-15T10:24:48.466759Z","notification_id":"ntf_01hs0t94ws0ay8keh5t4rq70ht"}"#;
        let sig =
            "ts=1710498288;h1=38219b3ba1578184e625c29d201a27cd25bd69e2ec9c3ab87dcb90d87ff73a41";
        assert_ok_at(&v, &h(sig), special.as_bytes(), 1_710_498_288);
    }
}
