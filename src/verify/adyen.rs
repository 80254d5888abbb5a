//! Adyen (standard notification webhooks): an HMAC inside each notification item.
//!
//! The JSON body holds `notificationItems[].NotificationRequestItem`; each item's
//! `additionalData.hmacSignature` is base64 HMAC-SHA256 over
//! `pspReference:originalReference:merchantAccountCode:merchantReference:amount.value:
//! amount.currency:eventCode:success`, each value as sent (an absent one is empty, a
//! number is its digits, nothing is escaped). Every item must carry a signature that
//! matches: one bad item rejects the request.
//!
//! The secret is the HMAC key as shown in the Customer Area, hex (64 digits); the key is
//! the decoded bytes, and a key that is not hex is `invalid_secret`. Several keys may be
//! configured while rotating. No timestamp is signed, so there is no tolerance.
//!
//! A body that is not a JSON notification is `invalid_body`; an item without
//! `hmacSignature` is `missing_header`, one that is not base64 `malformed_header`.
//! `sign()` fills `hmacSignature` into every item of a notification body (it refuses any
//! other body). Adyen's newer platform webhooks (a `HmacSignature` header over the whole
//! body) are a different scheme and not handled here.
//!
//! Sources: docs.adyen.com, "Verify HMAC signatures"; adyen-java-api-library
//! `util.HMACValidator` and adyen-node-api-library `utils/hmacValidator`, and their tests.

use std::borrow::Cow;
use std::iter::once;
use std::time::SystemTime;

use serde_json::Value;

use super::common::{b64, Algorithm, Encoding, Keys, Tally, SIG_BUF};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, ErrorKind, VerifyError};

#[derive(Debug)]
pub(crate) struct Adyen {
    keys: Keys,
}

impl Adyen {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        let keys = Keys::new(Algorithm::Sha256, &cfg.secrets, |s| {
            hex::decode(s.trim()).map_err(|_| {
                BuildError::secret(format!(
                    "expected the HMAC key in hex, as the Customer Area shows it; found {} \
                     characters that are not an even run of hex digits",
                    s.trim().len()
                ))
            })
        })?;
        Ok(Adyen { keys })
    }
}

/// A signed field as text: absent or `null` is empty, numbers and booleans as written.
fn text<'v>(item: &'v Value, pointer: &str) -> Result<Cow<'v, str>, VerifyError> {
    match item.pointer(pointer) {
        None | Some(Value::Null) => Ok(Cow::Borrowed("")),
        Some(Value::String(s)) => Ok(Cow::Borrowed(s)),
        Some(Value::Number(n)) => Ok(Cow::Owned(n.to_string())),
        Some(Value::Bool(b)) => Ok(Cow::Borrowed(if *b { "true" } else { "false" })),
        Some(_) => Err(VerifyError::body(format!(
            "NotificationRequestItem `{}` is neither a string nor a number",
            &pointer[1..]
        ))),
    }
}

/// The string Adyen signs for one `NotificationRequestItem`.
fn signed_data(item: &Value) -> Result<String, VerifyError> {
    let fields = [
        "/pspReference",
        "/originalReference",
        "/merchantAccountCode",
        "/merchantReference",
        "/amount/value",
        "/amount/currency",
        "/eventCode",
        "/success",
    ];
    let parts = fields
        .iter()
        .map(|p| text(item, p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parts.join(":"))
}

/// The `NotificationRequestItem` objects of a notification body.
fn items(body: &mut Value) -> Result<Vec<&mut Value>, VerifyError> {
    let bad = |what: &str| {
        VerifyError::body(format!(
            "expected an Adyen notification, {{\"notificationItems\": [{{\"NotificationRequestItem\": \
             {{...}}}}]}}; {what}"
        ))
    };
    let list = match body.get_mut("notificationItems") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => return Err(bad("`notificationItems` is empty")),
        _ => return Err(bad("found no `notificationItems` array")),
    };
    list.iter_mut()
        .enumerate()
        .map(
            |(i, wrapper)| match wrapper.get_mut("NotificationRequestItem") {
                Some(item @ Value::Object(_)) => Ok(item),
                _ => Err(bad(&format!(
                    "item {i} has no `NotificationRequestItem` object"
                ))),
            },
        )
        .collect()
}

fn parse(body: &[u8]) -> Result<Value, VerifyError> {
    serde_json::from_slice(body)
        .map_err(|e| VerifyError::body(format!("expected a JSON notification, found: {e}")))
}

impl Scheme for Adyen {
    fn name(&self) -> &str {
        "adyen"
    }

    fn verify(&self, req: &Inbound<'_>, _now: SystemTime) -> Result<(), VerifyError> {
        let mut body = parse(req.body)?;
        for (i, item) in items(&mut body)?.into_iter().enumerate() {
            let what = format!("notificationItems[{i}] additionalData.hmacSignature");
            let sig = match item.pointer("/additionalData/hmacSignature") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.as_str()).filter(|s| !s.is_empty()),
                Some(_) => return Err(VerifyError::malformed(format!("{what} is not a string"))),
            }
            .ok_or_else(|| {
                VerifyError::new(
                    ErrorKind::MissingHeader,
                    format!("expected {what} in the body, found none"),
                )
            })?;
            let mut tally = Tally::default();
            let mut buf = [0u8; SIG_BUF];
            let sig = tally.decode(Encoding::Base64, &what, sig, self.keys.tag_len(), &mut buf);
            tally.require_decoded(|| VerifyError::malformed(format!("{what} is empty")))?;
            let sig = sig.map_or(&[][..], |s| s.bytes);
            let data = signed_data(item)?;
            if !self.keys.matches_any(&[data.as_bytes()], once(sig)) {
                return Err(tally.mismatch(format!(
                    "{what} does not match the HMAC of the item's signed fields under any of \
                     the {} configured key(s)",
                    self.keys.len()
                )));
            }
        }
        Ok(())
    }

    /// The first item's `pspReference:eventCode` (Adyen's own duplicate key) and `eventCode`.
    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        let Ok(body) = serde_json::from_slice::<Value>(req.body) else {
            return EventMeta::default();
        };
        let item = body.pointer("/notificationItems/0/NotificationRequestItem");
        let get = |p: &str| {
            item.and_then(|i| i.pointer(p))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let event_type = get("/eventCode");
        let id = get("/pspReference").map(|psp| match &event_type {
            Some(code) => format!("{psp}:{code}"),
            None => psp,
        });
        EventMeta { id, event_type }
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    let a = Adyen::new(cfg)?;
    let not_a_notification = BuildError::CannotSign(
        "adyen",
        "the body must be an Adyen notification: a JSON object whose `notificationItems` \
         each hold a `NotificationRequestItem` object with string or number fields",
    );
    let mut body = parse(input.body).map_err(|_| not_a_notification.clone())?;
    for item in items(&mut body).map_err(|_| not_a_notification.clone())? {
        let data = signed_data(item).map_err(|_| not_a_notification.clone())?;
        let sig = b64(a.keys.first().tag(&[data.as_bytes()]).as_bytes());
        let obj = item.as_object_mut().expect("items are objects");
        let extra = obj
            .entry("additionalData")
            .or_insert_with(|| Value::Object(Default::default()));
        match extra {
            Value::Object(extra) => {
                extra.insert("hmacSignature".into(), Value::String(sig));
            }
            _ => return Err(not_a_notification),
        }
    }
    Ok(Signed {
        headers: vec![("content-type".into(), "application/json".into())],
        body: Some(body.to_string().into_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::signed_data;
    use crate::Inbound;

    // Known answers from adyen-java-api-library src/test/java/com/adyen/util/HMACValidatorTest.java.
    const KEY: &str = "9064450A8892A093D9E97EFCC9639DE31B74F3A7803135555A3C96F5A57915D6";
    // `testValidateHMAC`
    const ITEM: &str = r#"{
        "additionalData": {"hmacSignature": "NuEkADFmlCC6VgX+wcoPAegIWxVPNBPCuKlM4Hzo5qc="},
        "amount": {"currency": "EUR", "value": "0"},
        "eventCode": "REPORT_AVAILABLE",
        "eventDate": "2019-11-20T14:35:36+01:00",
        "merchantAccountCode": "Magento2Rik",
        "merchantReference": "testMerchantRef1",
        "pspReference": "test_REPORT_AVAILABLE",
        "reason": "will contain the url to the report",
        "success": "true"
    }"#;
    // `testValidateHMACWithoutEscaping` (mocks/hmac-validation-webhook.json): a numeric
    // amount and `\:/\/` in merchantReference, signed unescaped.
    const KEY2: &str = "74F490DD33F7327BAECC88B2947C011FC02D014A473AAA33A8EC93E4DC069174";
    const ITEM2: &str = r#"{
        "additionalData": {
            "acquirerCode": "TestPmmAcquirer",
            "hmacSignature": "CZErGCNQaSsxbaQfZaJlakqo7KPP+mIa8a+wx3yNs9A=",
            "paymentMethod": "visa"
        },
        "amount": {"currency": "EUR", "value": 1000},
        "eventCode": "AUTHORISATION",
        "eventDate": "2023-01-10T13:42:29+01:00",
        "merchantAccountCode": "AntoniStroinski",
        "merchantReference": "\\:/\\/slashes are fun",
        "operations": ["CANCEL", "CAPTURE", "REFUND"],
        "paymentMethod": "visa",
        "pspReference": "ZVWN7D3WSMK2WN82",
        "reason": "052095:1111:03/2030",
        "success": "true"
    }"#;

    fn notification(items: &[&str]) -> Vec<u8> {
        let items: Vec<String> = items
            .iter()
            .map(|i| format!(r#"{{"NotificationRequestItem": {i}}}"#))
            .collect();
        format!(
            r#"{{"live": "false", "notificationItems": [{}]}}"#,
            items.join(",")
        )
        .into_bytes()
    }

    #[test]
    fn java_library_vectors() {
        assert_ok(&verifier("adyen", &[KEY]), &[], &notification(&[ITEM]));
        assert_ok(&verifier("adyen", &[KEY2]), &[], &notification(&[ITEM2]));
        // lowercase hex keys are the same key
        assert_ok(
            &verifier("adyen", &[&KEY.to_ascii_lowercase()]),
            &[],
            &notification(&[ITEM]),
        );
    }

    #[test]
    fn signed_data_matches_the_java_library() {
        // `testValidateHMACMissingOptionalField`: absent fields are empty
        let item = serde_json::json!({
            "eventCode": "REPORT_AVAILABLE",
            "merchantAccountCode": "Magento2Rik",
            "merchantReference": "testMerchantRef1",
            "pspReference": "test_REPORT_AVAILABLE",
            "success": "true"
        });
        assert_eq!(
            signed_data(&item).unwrap(),
            "test_REPORT_AVAILABLE::Magento2Rik:testMerchantRef1:::REPORT_AVAILABLE:true"
        );
    }

    #[test]
    fn every_item_must_verify() {
        let v = verifier("adyen", &[KEY, KEY2]);
        assert_ok(&v, &[], &notification(&[ITEM, ITEM2]));
        let tampered = ITEM2.replace("1000", "1001");
        assert_kind(
            &v,
            &[],
            &notification(&[ITEM, &tampered]),
            "invalid_signature",
        );
        let unsigned = ITEM.replace(
            r#""hmacSignature": "NuEkADFmlCC6VgX+wcoPAegIWxVPNBPCuKlM4Hzo5qc=""#,
            r#""hmacSignature": """#,
        );
        assert_kind(
            &v,
            &[],
            &notification(&[ITEM2, &unsigned]),
            "missing_header",
        );
    }

    #[test]
    fn rejections() {
        let v = verifier("adyen", &[KEY]);
        let tampered = ITEM.replace("testMerchantRef1", "testMerchantRef2");
        assert_kind(&v, &[], &notification(&[&tampered]), "invalid_signature");
        let failed = ITEM.replace(r#""success": "true""#, r#""success": "false""#);
        assert_kind(&v, &[], &notification(&[&failed]), "invalid_signature");
        assert_kind(
            &verifier("adyen", &[KEY2]),
            &[],
            &notification(&[ITEM]),
            "invalid_signature",
        );
        let no_sig = ITEM.replace(
            r#""hmacSignature": "NuEkADFmlCC6VgX+wcoPAegIWxVPNBPCuKlM4Hzo5qc=""#,
            r#""other": "x""#,
        );
        assert_kind(&v, &[], &notification(&[&no_sig]), "missing_header");
        let bad_b64 = ITEM.replace("NuEkADFmlCC6VgX+", "NuEk*DFmlCC6VgX+");
        assert_kind(&v, &[], &notification(&[&bad_b64]), "malformed_header");
        let not_text = ITEM
            .replace(r#""hmacSignature": "NuEk"#, r#""hmacSignature": ["NuEk"#)
            .replace(r#"5qc=""#, r#"5qc="]"#);
        assert_kind(&v, &[], &notification(&[&not_text]), "malformed_header");
        assert_kind(&v, &[], b"not json", "invalid_body");
        assert_kind(&v, &[], br#"{"notificationItems": []}"#, "invalid_body");
        assert_kind(&v, &[], br#"{"live": "false"}"#, "invalid_body");
        assert_kind(
            &v,
            &[],
            br#"{"notificationItems": [{"Other": {}}]}"#,
            "invalid_body",
        );
        let object_field = ITEM.replace(r#""eventCode": "REPORT_AVAILABLE""#, r#""eventCode": {}"#);
        assert_kind(&v, &[], &notification(&[&object_field]), "invalid_body");
    }

    #[test]
    fn keys() {
        assert!(crate::Verifier::new("adyen", &config(&["not hex"])).is_err());
        let e = crate::Verifier::new("adyen", &config(&["ABC"])).unwrap_err();
        assert!(matches!(e, crate::BuildError::InvalidSecret(_)), "{e}");
        assert!(!e.to_string().contains("ABC"), "{e}");
        assert!(matches!(
            crate::Verifier::new("adyen", &config(&[])),
            Err(crate::BuildError::NoSecret)
        ));
    }

    #[test]
    fn rotation() {
        assert_ok(
            &verifier("adyen", &[KEY2, KEY]),
            &[],
            &notification(&[ITEM]),
        );
    }

    #[test]
    fn sign_round_trip_and_describe() {
        let unsigned = ITEM2.replace(
            r#""hmacSignature": "CZErGCNQaSsxbaQfZaJlakqo7KPP+mIa8a+wx3yNs9A=","#,
            "",
        );
        let no_extra = ITEM.replace(
            r#""additionalData": {"hmacSignature": "NuEkADFmlCC6VgX+wcoPAegIWxVPNBPCuKlM4Hzo5qc="},"#,
            "",
        );
        let input = notification(&[&unsigned, &no_extra]);
        let (h, body) = signed("adyen", &config(&[KEY2, KEY]), &input, "x", 0);
        let v = verifier("adyen", &[KEY2]);
        assert_ok(&v, &pairs(&h), &body);
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(
            text.contains("CZErGCNQaSsxbaQfZaJlakqo7KPP+mIa8a+wx3yNs9A="),
            "{text}"
        );
        assert_kind(&verifier("adyen", &[KEY]), &[], &body, "invalid_signature");

        let meta = v.describe(&Inbound::new(&headers(&[]), &body));
        assert_eq!(meta.id.as_deref(), Some("ZVWN7D3WSMK2WN82:AUTHORISATION"));
        assert_eq!(meta.event_type.as_deref(), Some("AUTHORISATION"));

        let refused = crate::sign(
            "adyen",
            &config(&[KEY]),
            &crate::SignInput {
                body: b"{}",
                id: "x",
                now: std::time::SystemTime::now(),
            },
        );
        assert!(matches!(
            refused,
            Err(crate::BuildError::CannotSign("adyen", _))
        ));
    }

    #[test]
    fn a_signature_that_decodes_to_the_wrong_length_is_a_mismatch() {
        // adyen-java-api-library `HMACValidator.validateHMAC` compares the base64 text of
        // the expected and received signatures: one of another length is simply false.
        let v = verifier("adyen", &[KEY]);
        let sig = "NuEkADFmlCC6VgX+wcoPAegIWxVPNBPCuKlM4Hzo5qc=";
        let long = "A".repeat(200);
        for other in ["AAAA", &long[..]] {
            let item = ITEM.replace(sig, other);
            assert_kind(&v, &[], &notification(&[&item]), "invalid_signature");
        }
    }
}
