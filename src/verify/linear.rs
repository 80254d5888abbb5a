//! Linear: `Linear-Signature: <hex HMAC-SHA256(secret, body)>`, with the send time as
//! `webhookTimestamp` (Unix milliseconds) inside the signed JSON body.
//!
//! The webhook signing secret's UTF-8 bytes are the key. As in the official SDK
//! (`@linear/sdk`, `LinearWebhookClient.verify` / `parseVerifiedPayload`), the MAC is
//! checked first, then the body's `webhookTimestamp` must be within 60 s of now (the
//! SDK's window; both directions, inclusive). The timestamp is read from the body, not
//! from the `Linear-Timestamp` header, because only the body is signed. Where the SDK
//! skips the time check when the field is absent, this scheme requires it (Linear
//! always sends it): a verified body without it is `missing_header`, one that is not a
//! JSON object or whose field is not a number is `invalid_body`.
//! `Linear-Delivery` (a UUID per delivery) is the id, `Linear-Event` (`Issue`, ...) the
//! type. Sources: linear.app/developers/webhooks ("Securing webhooks"); linear/linear
//! `packages/sdk/src/webhooks/client.ts`.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::common::{
    check_tolerance, json_meta, meta_header, unix_millis, Algorithm, BodyHmac, Encoding,
};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};
use crate::ErrorKind;

const SIGNATURE: &str = "linear-signature";
const DELIVERY: &str = "linear-delivery";
const EVENT: &str = "linear-event";
const TS_FIELD: &str = "webhookTimestamp";

/// The official SDK's window: "more than one minute delta between provided ts and
/// current time" is rejected.
const TOLERANCE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct Linear {
    mac: BodyHmac,
    tolerance: Duration,
}

impl Linear {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        Ok(Linear {
            mac: BodyHmac::new(
                SIGNATURE,
                "",
                Encoding::Hex,
                Algorithm::Sha256,
                &cfg.secrets,
            )?,
            tolerance: cfg.tolerance_or(TOLERANCE),
        })
    }
}

/// Only the one field is deserialized; the rest of the body is skipped.
#[derive(serde::Deserialize)]
struct Stamp {
    #[serde(rename = "webhookTimestamp")]
    ts: Option<Value>,
}

/// The body's `webhookTimestamp`, in milliseconds since the Unix epoch.
fn webhook_timestamp(body: &[u8]) -> Result<i128, VerifyError> {
    let stamp: Stamp = serde_json::from_slice(body).map_err(|e| {
        VerifyError::body(format!(
            "expected a JSON object carrying `{TS_FIELD}`, found a body that does not parse: {e}"
        ))
    })?;
    match stamp.ts {
        None | Some(Value::Null) => Err(VerifyError::new(
            ErrorKind::MissingHeader,
            format!("expected body field `{TS_FIELD}` (Unix milliseconds), found none"),
        )),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 1e15)
                    .map(|f| f.trunc() as i128)
            })
            .ok_or_else(|| {
                VerifyError::body(format!(
                    "body field `{TS_FIELD}`: expected Unix milliseconds, found {n}"
                ))
            }),
        Some(other) => Err(VerifyError::body(format!(
            "body field `{TS_FIELD}`: expected Unix milliseconds as a number, found {}",
            super::common::truncate(&other.to_string(), 40)
        ))),
    }
}

impl Scheme for Linear {
    fn name(&self) -> &str {
        "linear"
    }

    fn verify(&self, req: &Inbound<'_>, now: SystemTime) -> Result<(), VerifyError> {
        self.mac.verify(req)?;
        check_tolerance(webhook_timestamp(req.body)?, now, self.tolerance)
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        let event = meta_header(req.headers, EVENT);
        let body = if event.is_some() {
            EventMeta::default()
        } else {
            json_meta(req.body, None, Some("/type"))
        };
        EventMeta {
            id: meta_header(req.headers, DELIVERY),
            event_type: event.or(body.event_type),
        }
    }
}

/// Linear signs its send time inside the body, so signing states `now` there: appended
/// to the object when absent (the rest of the bytes kept), replaced when present.
fn stamp_body(body: &[u8], millis: i128) -> Result<Vec<u8>, BuildError> {
    const NOT_OBJECT: BuildError = BuildError::CannotSign(
        "linear",
        "the body must be a JSON object: Linear signs `webhookTimestamp` inside it",
    );
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) else {
        return Err(NOT_OBJECT);
    };
    if map.contains_key(TS_FIELD) {
        map.insert(TS_FIELD.to_owned(), Value::from(millis as i64));
        return serde_json::to_vec(&map).map_err(|_| NOT_OBJECT);
    }
    let end = body.iter().rposition(|&b| b == b'}').ok_or(NOT_OBJECT)?;
    let comma = if map.is_empty() { "" } else { "," };
    let mut out = Vec::with_capacity(body.len() + 40);
    out.extend_from_slice(&body[..end]);
    out.extend_from_slice(format!("{comma}\"{TS_FIELD}\":{millis}").as_bytes());
    out.extend_from_slice(&body[end..]);
    Ok(out)
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    let scheme = Linear::new(cfg)?;
    let body = stamp_body(input.body, unix_millis(input.now))?;
    let mut signed = scheme.mac.sign(&body).header(DELIVERY, input.id);
    if let Some(ty) = json_meta(&body, None, Some("/type")).event_type {
        signed = signed.header(EVENT, ty);
    }
    signed.body = Some(body);
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::*;
    use super::super::{EventMeta, Inbound};

    // Linear publishes no known answer. Computed independently with
    // `printf '%s' '<BODY>' | openssl dgst -sha256 -hmac 'lin_wh_7f3a9c0e1b'`; the body has
    // the shape of Linear's docs' `Issue` `create` payload.
    const SECRET: &str = "lin_wh_7f3a9c0e1b";
    const BODY: &[u8] = br#"{"action":"create","type":"Issue","createdAt":"2023-11-14T22:13:20.000Z","data":{"id":"2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9","title":"Fix login"},"url":"https://linear.app/acme/issue/ENG-1","webhookTimestamp":1700000000000,"webhookId":"000042e3-d123-4980-b49f-8e140eef9329"}"#;
    const SIG: &str = "1b19158a5de28e00c609100a037750037ce4a19874607caf13f54f2d51b8c93d";
    /// `webhookTimestamp` in seconds.
    const T: u64 = 1_700_000_000;

    fn h(sig: &str) -> [(&str, &str); 3] {
        [
            ("linear-signature", sig),
            ("linear-delivery", "7c0d1e2f-0000-4000-8000-00000000abcd"),
            ("linear-event", "Issue"),
        ]
    }

    /// Signs `body` as Linear would, without restamping it.
    fn sig_of(body: &[u8]) -> String {
        let keys = super::super::common::Keys::raw(
            super::super::common::Algorithm::Sha256,
            &[SECRET.into()],
        )
        .unwrap();
        hex::encode(keys.first().tag(&[body]).as_bytes())
    }

    #[test]
    fn known_answer() {
        assert_ok_at(&verifier("linear", &[SECRET]), &h(SIG), BODY, T);
        assert_eq!(sig_of(BODY), SIG);
    }

    #[test]
    fn tolerance_is_60_s_inclusive_both_ways() {
        let v = verifier("linear", &[SECRET]);
        assert_ok_at(&v, &h(SIG), BODY, T + 60);
        assert_ok_at(&v, &h(SIG), BODY, T - 60);
        assert_kind_at(&v, &h(SIG), BODY, T + 61, "timestamp_out_of_tolerance");
        assert_kind_at(&v, &h(SIG), BODY, T - 61, "timestamp_out_of_tolerance");
        // millisecond precision at the edge
        let hm = headers(&h(SIG));
        let edge = std::time::UNIX_EPOCH + Duration::from_millis(T * 1000 + 60_001);
        let e = v.verify_at(&Inbound::new(&hm, BODY), edge).unwrap_err();
        assert_eq!(e.kind().as_str(), "timestamp_out_of_tolerance", "{e}");
        // as in the SDK, the MAC is checked first: a forged stale body is a bad signature
        assert_kind_at(
            &v,
            &h(SIG),
            b"{\"webhookTimestamp\":1}",
            T,
            "invalid_signature",
        );
    }

    #[test]
    fn rejections() {
        let v = verifier("linear", &[SECRET]);
        let tampered = String::from_utf8(BODY.to_vec())
            .unwrap()
            .replace("Fix login", "Fix logout");
        assert_kind_at(&v, &h(SIG), tampered.as_bytes(), T, "invalid_signature");
        assert_kind_at(
            &verifier("linear", &["wrong"]),
            &h(SIG),
            BODY,
            T,
            "invalid_signature",
        );
        assert_kind_at(&v, &h(SIG)[1..], BODY, T, "missing_header");
        assert_kind_at(&v, &[h(SIG)[0], h(SIG)[0]], BODY, T, "malformed_header");
        assert_kind_at(&v, &h("sha256=1b19"), BODY, T, "malformed_header");
        assert_kind_at(&v, &h(&SIG[1..]), BODY, T, "malformed_header");
    }

    #[test]
    fn body_timestamp_rules() {
        let v = verifier("linear", &[SECRET]);
        let check = |body: &str, kind: &str| {
            assert_kind_at(&v, &h(&sig_of(body.as_bytes())), body.as_bytes(), T, kind)
        };
        check(r#"{"type":"Issue"}"#, "missing_header");
        check(
            r#"{"type":"Issue","webhookTimestamp":null}"#,
            "missing_header",
        );
        check(r#"{"webhookTimestamp":"1700000000000"}"#, "invalid_body");
        check(r#"{"webhookTimestamp":1e300}"#, "invalid_body");
        check("not json", "invalid_body");
        check("\u{7f}\u{0}", "invalid_body");
        check(
            r#"{"webhookTimestamp":1700000000000,"webhookTimestamp":1}"#,
            "invalid_body",
        );
        let ok = r#"{"webhookTimestamp":1700000000000.9}"#;
        assert_ok_at(&v, &h(&sig_of(ok.as_bytes())), ok.as_bytes(), T);
    }

    #[test]
    fn rotation_and_round_trip() {
        assert_ok_at(&verifier("linear", &["new", SECRET]), &h(SIG), BODY, T);
        let cfg = config(&[SECRET, "old"]);

        // a body without a timestamp gets one appended, the rest of the bytes kept
        let (hs, body) = signed(
            "linear",
            &cfg,
            br#"{"type":"Comment","action":"create"} "#,
            "d-1",
            T,
        );
        assert_eq!(
            body,
            br#"{"type":"Comment","action":"create","webhookTimestamp":1700000000000} "#
        );
        assert!(hs.contains(&("linear-delivery".into(), "d-1".into())));
        assert!(hs.contains(&("linear-event".into(), "Comment".into())));
        assert_ok_at(&verifier("linear", &[SECRET]), &pairs(&hs), &body, T);
        assert_kind_at(
            &verifier("linear", &["old"]),
            &pairs(&hs),
            &body,
            T,
            "invalid_signature",
        );

        let (_, body) = signed("linear", &cfg, b"{}", "d-2", T);
        assert_eq!(body, br#"{"webhookTimestamp":1700000000000}"#);

        // a body with one is restamped with the signing time
        let (hs, body) = signed("linear", &cfg, BODY, "d-3", T + 3600);
        assert_ok_at(&verifier("linear", &[SECRET]), &pairs(&hs), &body, T + 3600);
        assert_kind_at(
            &verifier("linear", &[SECRET]),
            &pairs(&hs),
            &body,
            T,
            "timestamp_out_of_tolerance",
        );

        let e = crate::sign(
            "linear",
            &cfg,
            &crate::SignInput {
                body: b"[1]",
                id: "x",
                now: at(T),
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
    }

    #[test]
    fn describe() {
        let v = verifier("linear", &[SECRET]);
        let hm = headers(&h(SIG));
        assert_eq!(
            v.describe(&Inbound::new(&hm, BODY)),
            EventMeta {
                id: Some("7c0d1e2f-0000-4000-8000-00000000abcd".into()),
                event_type: Some("Issue".into()),
            }
        );
        let hm = headers(&[]);
        assert_eq!(
            v.describe(&Inbound::new(&hm, br#"{"type":"Project"}"#)),
            EventMeta {
                id: None,
                event_type: Some("Project".into()),
            }
        );
    }
}
