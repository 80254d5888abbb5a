//! Mailgun: the signature travels inside the body, not in a header.
//!
//! Webhooks post JSON, `{"signature": {"timestamp", "token", "signature"}, "event-data":
//! {...}}`; routes (`forward()`, `store(notify=...)`) and legacy webhooks post the same
//! three as form fields, `application/x-www-form-urlencoded`, or `multipart/form-data`
//! when the message has attachments. The body's kind comes from `Content-Type` (JSON when
//! it names JSON, or, without one, when the body starts with `{`).
//!
//! `signature` is hex HMAC-SHA256 over `timestamp + token` (the timestamp's text exactly
//! as sent), keyed with the HTTP webhook signing key's UTF-8 bytes (the API key on older
//! accounts). For subaccount domains Mailgun adds `parent-signature`, the same HMAC under
//! the primary account's key: either one matching any configured key is enough.
//!
//! Mailgun documents no window: the timestamp must be within 300 s (or the configured
//! tolerance) of now, both directions, checked after the signature. Mailgun also advises
//! refusing a token seen before; the token is the delivery id when `event-data` has none.
//!
//! A body that cannot be read as its kind is `invalid_body`; absent signature fields are
//! `missing_header`, present but unusable ones (non-hex signature, non-numeric timestamp,
//! a field sent twice) `malformed_header`; of `signature` and `parent-signature`, one that
//! is not hex is skipped when the other is. `sign()` returns a JSON body: the input object
//! with a `signature` object added, or `{"signature", "event-data": input}` for anything
//! else; its token is the first 50 hex digits of SHA-256 over timestamp, id and body.
//!
//! Sources: documentation.mailgun.com, "Securing Webhooks" and "Receiving messages via
//! HTTP"; mailgun-php `Api\Webhook::verifyWebhookSignature` and its test vector.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::common::{
    check_tolerance_secs, form_decode, optional_header, parse_unix_secs, unix_secs, Algorithm,
    Candidates, Encoding, Keys, DEFAULT_TOLERANCE,
};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, ErrorKind, VerifyError};

#[derive(Debug)]
pub(crate) struct Mailgun {
    keys: Keys,
    tolerance: Duration,
}

impl Mailgun {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        Ok(Mailgun {
            keys: Keys::raw(Algorithm::Sha256, &cfg.secrets)?,
            tolerance: cfg.tolerance_or(DEFAULT_TOLERANCE),
        })
    }
}

/// Form fields (urlencoded or multipart), in order, names and values as raw bytes.
type FormFields<'b> = Vec<(Vec<u8>, Cow<'b, [u8]>)>;

/// A received body, read as the kind it declares.
enum Body<'b> {
    Json(Value),
    Form(FormFields<'b>),
}

/// The signature fields, as text.
struct Fields {
    timestamp: String,
    token: Vec<u8>,
    /// `signature`, then `parent-signature` when sent.
    signatures: Vec<String>,
}

fn missing(what: &str) -> VerifyError {
    VerifyError::new(
        ErrorKind::MissingHeader,
        format!("expected {what} in the body, found none"),
    )
}

/// Reads the body as JSON, urlencoded or multipart form.
fn read<'b>(req: &Inbound<'b>) -> Result<Body<'b>, VerifyError> {
    let ct = optional_header(req.headers, "content-type")?.unwrap_or("");
    let mut params = ct.split(';');
    let mime = params.next().unwrap_or("").trim().to_ascii_lowercase();
    if mime == "multipart/form-data" {
        let boundary = params
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
            .map(|(_, v)| v.trim().trim_matches('"'))
            .filter(|b| !b.is_empty())
            .ok_or_else(|| VerifyError::body("multipart/form-data without a `boundary`"))?;
        return multipart(req.body, boundary.as_bytes()).map(Body::Form);
    }
    let starts_like_json = req.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if mime.contains("json") || (mime.is_empty() && starts_like_json) {
        return serde_json::from_slice(req.body)
            .map(Body::Json)
            .map_err(|e| VerifyError::body(format!("expected a JSON body, found: {e}")));
    }
    Ok(Body::Form(
        form_decode(req.body)
            .map(|(k, v)| (k, Cow::Owned(v)))
            .collect(),
    ))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The fields of a `multipart/form-data` body (RFC 7578) that are not files, borrowed.
fn multipart<'b>(body: &'b [u8], boundary: &[u8]) -> Result<FormFields<'b>, VerifyError> {
    let bad = |what: &str| VerifyError::body(format!("multipart/form-data body: {what}"));
    let delim = [b"\r\n--", boundary].concat();
    // The first boundary line may open the body, without the CRLF before it.
    let mut pos = if body.starts_with(&delim[2..]) {
        delim.len() - 2
    } else {
        find(body, &delim).ok_or_else(|| bad("no boundary line"))? + delim.len()
    };
    let mut fields = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(fields);
        }
        let start = pos + find(rest, b"\r\n").ok_or_else(|| bad("unterminated boundary line"))? + 2;
        let end = start
            + find(&body[start..], &delim)
                .ok_or_else(|| bad("a part is not closed by the boundary"))?;
        let part = &body[start..end];
        let (head, content) = match part.strip_prefix(b"\r\n") {
            Some(content) => (&[][..], content),
            None => {
                let i = find(part, b"\r\n\r\n").ok_or_else(|| bad("a part has no blank line"))?;
                (&part[..i], &part[i + 4..])
            }
        };
        if let Some(name) = field_name(head) {
            fields.push((name, Cow::Borrowed(content)));
        }
        pos = end + delim.len();
    }
}

/// The `name` of a part's `Content-Disposition: form-data`, unless it is a file.
fn field_name(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.split("\r\n").find(|l| {
        l.get(..20)
            .is_some_and(|p| p.eq_ignore_ascii_case("content-disposition:"))
    })?;
    let mut name = None;
    for param in line[20..].split(';').skip(1) {
        let (k, v) = param.split_once('=')?;
        match k.trim().to_ascii_lowercase().as_str() {
            "filename" | "filename*" => return None,
            "name" => name = Some(v.trim().trim_matches('"').as_bytes().to_vec()),
            _ => {}
        }
    }
    name
}

/// The one value of form field `name`: a field sent twice is malformed.
fn form_field<'a>(
    fields: &'a [(Vec<u8>, Cow<'_, [u8]>)],
    name: &str,
) -> Result<Option<&'a [u8]>, VerifyError> {
    let mut found = fields.iter().filter(|(k, _)| k == name.as_bytes());
    let first = found.next();
    if found.next().is_some() {
        return Err(VerifyError::malformed(format!(
            "form field `{name}` was sent more than once"
        )));
    }
    Ok(first.map(|(_, v)| &v[..]))
}

fn form_text(name: &str, value: &[u8]) -> Result<String, VerifyError> {
    String::from_utf8(value.to_vec())
        .map_err(|_| VerifyError::malformed(format!("form field `{name}` is not UTF-8")))
}

fn fields(body: &Body<'_>) -> Result<Fields, VerifyError> {
    match body {
        Body::Json(v) => {
            let obj = v.as_object().ok_or_else(|| {
                VerifyError::body("expected a JSON object with `signature` and `event-data`")
            })?;
            let sig = match obj.get("signature") {
                None | Some(Value::Null) => return Err(missing("a `signature` object")),
                Some(Value::Object(o)) => o,
                Some(_) => return Err(VerifyError::malformed("`signature` is not an object")),
            };
            let text = |name: &str, numbers: bool| -> Result<Option<String>, VerifyError> {
                match sig.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(Value::Number(n)) if numbers => Ok(Some(n.to_string())),
                    Some(_) => Err(VerifyError::malformed(format!(
                        "`signature.{name}` is not a string"
                    ))),
                }
            };
            let need = |name: &str, numbers: bool| {
                text(name, numbers)?.ok_or_else(|| missing(&format!("`signature.{name}`")))
            };
            let mut signatures = vec![need("signature", false)?];
            signatures.extend(text("parent-signature", false)?);
            Ok(Fields {
                timestamp: need("timestamp", true)?,
                token: need("token", false)?.into_bytes(),
                signatures,
            })
        }
        Body::Form(list) => {
            let need = |name: &str| {
                form_field(list, name)?.ok_or_else(|| missing(&format!("form field `{name}`")))
            };
            let mut signatures = vec![form_text("signature", need("signature")?)?];
            if let Some(parent) = form_field(list, "parent-signature")? {
                signatures.push(form_text("parent-signature", parent)?);
            }
            Ok(Fields {
                timestamp: form_text("timestamp", need("timestamp")?)?,
                token: need("token")?.to_vec(),
                signatures,
            })
        }
    }
}

impl Scheme for Mailgun {
    fn name(&self) -> &str {
        "mailgun"
    }

    fn verify(&self, req: &Inbound<'_>, now: SystemTime) -> Result<(), VerifyError> {
        let f = fields(&read(req)?)?;
        let ts = parse_unix_secs("Mailgun `timestamp`", &f.timestamp)?;
        // `signature` and `parent-signature`: one that is not hex is skipped.
        let mut sigs = Candidates::<2>::new();
        for (text, name) in f.signatures.iter().zip(["signature", "parent-signature"]) {
            sigs.offer(
                Encoding::Hex,
                &format!("Mailgun `{name}`"),
                text,
                self.keys.tag_len(),
            )?;
        }
        sigs.tally.require_decoded(|| missing("`signature`"))?;
        let parts: [&[u8]; 2] = [f.timestamp.as_bytes(), &f.token];
        if !self.keys.matches_any(&parts, sigs.iter()) {
            return Err(self.keys.explain(sigs.tally.mismatch(format!(
                "the body's `signature`{} does not match HMAC-SHA256(timestamp + token) under \
                 any of the {} configured signing key(s)",
                if sigs.offered() > 1 {
                    " (nor `parent-signature`)"
                } else {
                    ""
                },
                self.keys.len()
            ))));
        }
        check_tolerance_secs(ts, now, self.tolerance)
    }

    /// JSON: `event-data.id` (else `signature.token`) and `event-data.event`; forms: the
    /// `token` field and the `event` field of legacy webhooks.
    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        match read(req) {
            Ok(Body::Json(v)) => EventMeta {
                id: text(v.pointer("/event-data/id"))
                    .or_else(|| text(v.pointer("/signature/token"))),
                event_type: text(v.pointer("/event-data/event")),
            },
            Ok(Body::Form(list)) => {
                let get = |name: &str| {
                    form_field(&list, name)
                        .ok()
                        .flatten()
                        .and_then(|v| String::from_utf8(v.to_vec()).ok())
                };
                EventMeta {
                    id: get("token"),
                    event_type: get("event"),
                }
            }
            Err(_) => EventMeta::default(),
        }
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    let m = Mailgun::new(cfg)?;
    let timestamp = unix_secs(input.now).to_string();
    let digest = Sha256::new()
        .chain_update(&timestamp)
        .chain_update([0])
        .chain_update(input.id)
        .chain_update([0])
        .chain_update(input.body)
        .finalize();
    let token = hex::encode(digest)[..50].to_owned();
    let tag = m
        .keys
        .first()
        .tag(&[timestamp.as_bytes(), token.as_bytes()]);
    let signature = json!({
        "timestamp": timestamp,
        "token": token,
        "signature": hex::encode(tag.as_bytes()),
    });
    let body = match serde_json::from_slice::<Value>(input.body) {
        Ok(Value::Object(mut obj)) => {
            obj.insert("signature".into(), signature);
            Value::Object(obj)
        }
        Ok(other) => json!({ "signature": signature, "event-data": other }),
        Err(_) => json!({
            "signature": signature,
            "event-data": String::from_utf8_lossy(input.body),
        }),
    };
    Ok(Signed {
        headers: vec![("content-type".into(), "application/json".into())],
        body: Some(body.to_string().into_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::{Inbound, SchemeConfig, Verifier};
    use std::time::Duration;

    // Known answer from mailgun-php tests/Api/WebhookTest.php (`testVerifyWebhookGood`).
    const KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
    const TS: u64 = 1403645220;
    const TOKEN: &str = "5egbgr1vjgqxtrnp65xfznchgdccwh5d6i09vijqi3whgowmn6";
    const SIG: &str = "9cfc5c41582e51246e73c88d34db3af0a3a2692a76fbab81492842f000256d33";

    fn json_body(ts: &str, token: &str, sig: &str) -> Vec<u8> {
        format!(
            r#"{{"signature":{{"timestamp":{ts},"token":"{token}","signature":"{sig}"}},"event-data":{{"id":"ev-1","event":"delivered"}}}}"#
        )
        .into_bytes()
    }

    fn form_body(ts: &str, token: &str, sig: &str) -> Vec<u8> {
        format!("recipient=a%40b.example&timestamp={ts}&token={token}&signature={sig}&event=opened")
            .into_bytes()
    }

    fn multipart_body(ts: &str, token: &str, sig: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nHi\r\n",
        );
        b.extend_from_slice(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"attachment-1\"; filename=\"token\"\r\n\
              Content-Type: application/octet-stream\r\n\r\n\xff\xfe--Xy\r\n",
        );
        for (name, value) in [("timestamp", ts), ("token", token), ("signature", sig)] {
            b.extend_from_slice(
                format!(
                    "--XyZ\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        b.extend_from_slice(b"--XyZ--\r\n");
        b
    }

    const MULTIPART: (&str, &str) = ("content-type", "multipart/form-data; boundary=\"XyZ\"");

    #[test]
    fn php_vector_in_every_body_kind() {
        let v = verifier("mailgun", &[KEY]);
        let ts = TS.to_string();
        assert_ok_at(&v, &[], &json_body(&format!("\"{ts}\""), TOKEN, SIG), TS);
        // a numeric timestamp is signed as its digits
        assert_ok_at(&v, &[], &json_body(&ts, TOKEN, SIG), TS);
        assert_ok_at(
            &v,
            &[("content-type", "application/json; charset=utf-8")],
            &json_body(&ts, TOKEN, SIG),
            TS,
        );
        assert_ok_at(&v, &[], &form_body(&ts, TOKEN, SIG), TS);
        assert_ok_at(
            &v,
            &[("content-type", "application/x-www-form-urlencoded")],
            &form_body(&ts, TOKEN, SIG),
            TS,
        );
        assert_ok_at(&v, &[MULTIPART], &multipart_body(&ts, TOKEN, SIG), TS);
    }

    #[test]
    fn tolerance_is_inclusive_both_ways() {
        let v = verifier("mailgun", &[KEY]);
        let body = form_body(&TS.to_string(), TOKEN, SIG);
        assert_ok_at(&v, &[], &body, TS + 300);
        assert_ok_at(&v, &[], &body, TS - 300);
        assert_kind_at(&v, &[], &body, TS + 301, "timestamp_out_of_tolerance");
        assert_kind_at(&v, &[], &body, TS - 301, "timestamp_out_of_tolerance");
        let wide = Verifier::new(
            "mailgun",
            &SchemeConfig {
                tolerance: Some(Duration::from_secs(3600)),
                ..config(&[KEY])
            },
        )
        .unwrap();
        assert_ok_at(&wide, &[], &body, TS + 3600);
        assert_kind_at(&wide, &[], &body, TS + 3601, "timestamp_out_of_tolerance");
    }

    #[test]
    fn rejections() {
        let v = verifier("mailgun", &[KEY]);
        let ts = TS.to_string();
        // bad token from mailgun-php `testVerifyWebhookBad`
        let other = "owyldpe6nxhmrn78epljl6bj0orrki1u3d2v5e6cnlmmuox8jr";
        assert_kind_at(
            &v,
            &[],
            &form_body(&ts, other, SIG),
            TS,
            "invalid_signature",
        );
        assert_kind_at(
            &v,
            &[],
            &json_body(&ts, other, SIG),
            TS,
            "invalid_signature",
        );
        assert_kind_at(
            &v,
            &[MULTIPART],
            &multipart_body(&ts, other, SIG),
            TS,
            "invalid_signature",
        );
        assert_kind_at(
            &verifier("mailgun", &["key-wrong"]),
            &[],
            &form_body(&ts, TOKEN, SIG),
            TS,
            "invalid_signature",
        );
        // the timestamp is signed
        let later = (TS + 1).to_string();
        assert_kind_at(
            &v,
            &[],
            &form_body(&later, TOKEN, SIG),
            TS,
            "invalid_signature",
        );
        // malformed fields
        assert_kind_at(
            &v,
            &[],
            &form_body(&ts, TOKEN, "zz"),
            TS,
            "malformed_header",
        );
        assert_kind_at(
            &v,
            &[],
            &form_body(&ts, TOKEN, &SIG[1..]),
            TS,
            "malformed_header",
        );
        assert_kind_at(
            &v,
            &[],
            &form_body("soon", TOKEN, SIG),
            TS,
            "malformed_header",
        );
        assert_kind_at(
            &v,
            &[],
            &json_body("true", TOKEN, SIG),
            TS,
            "malformed_header",
        );
        let twice = [form_body(&ts, TOKEN, SIG), b"&token=x".to_vec()].concat();
        assert_kind_at(&v, &[], &twice, TS, "malformed_header");
        let ct = ("content-type", "application/x-www-form-urlencoded");
        assert_kind_at(
            &v,
            &[ct, ct],
            &form_body(&ts, TOKEN, SIG),
            TS,
            "malformed_header",
        );
        // missing fields
        assert_kind_at(
            &v,
            &[],
            br#"{"event-data":{"id":"x"}}"#,
            TS,
            "missing_header",
        );
        let no_token = format!(r#"{{"signature":{{"timestamp":"{ts}","signature":"{SIG}"}}}}"#);
        assert_kind_at(&v, &[], no_token.as_bytes(), TS, "missing_header");
        assert_kind_at(&v, &[], b"timestamp=1&token=x", TS, "missing_header");
        assert_kind_at(&v, &[], b"", TS, "missing_header");
        // unreadable bodies
        assert_kind_at(&v, &[], b"{\"signature\":", TS, "invalid_body");
        assert_kind_at(
            &v,
            &[("content-type", "application/json")],
            b"[1]",
            TS,
            "invalid_body",
        );
        assert_kind_at(
            &v,
            &[("content-type", "multipart/form-data")],
            &multipart_body(&ts, TOKEN, SIG),
            TS,
            "invalid_body",
        );
        assert_kind_at(
            &v,
            &[("content-type", "multipart/form-data; boundary=Other")],
            &multipart_body(&ts, TOKEN, SIG),
            TS,
            "invalid_body",
        );
    }

    #[test]
    fn parent_signature_and_rotation() {
        let ts = TS.to_string();
        let body = format!(
            r#"{{"signature":{{"timestamp":"{ts}","token":"{TOKEN}","signature":"{}","parent-signature":"{SIG}"}}}}"#,
            "0".repeat(64)
        );
        // the primary account's key verifies a subaccount's event through parent-signature
        assert_ok_at(&verifier("mailgun", &[KEY]), &[], body.as_bytes(), TS);
        assert_kind_at(
            &verifier("mailgun", &["key-sub"]),
            &[],
            body.as_bytes(),
            TS,
            "invalid_signature",
        );
        assert_ok_at(
            &verifier("mailgun", &["key-new", KEY]),
            &[],
            &form_body(&ts, TOKEN, SIG),
            TS,
        );
    }

    #[test]
    fn sign_round_trip_and_describe() {
        let cfg = config(&["signing-key", "old-key"]);
        let v = verifier("mailgun", &["signing-key"]);
        let now = 1_700_000_000;
        // an object gains a `signature`
        let input = br#"{"event-data":{"id":"Ase7i2zsRYeDXztHGENqRA","event":"opened"}}"#;
        let (h, body) = signed("mailgun", &cfg, input, "d-1", now);
        assert_ok_at(&v, &pairs(&h), &body, now);
        assert_ok_at(&v, &[], &body, now);
        let map = headers(&pairs(&h));
        let meta = v.describe(&Inbound::new(&map, &body));
        assert_eq!(meta.id.as_deref(), Some("Ase7i2zsRYeDXztHGENqRA"));
        assert_eq!(meta.event_type.as_deref(), Some("opened"));
        // anything else is wrapped as event-data
        let (h, body) = signed("mailgun", &cfg, b"\xffnot json", "d-2", now);
        assert_ok_at(&v, &pairs(&h), &body, now);
        let token = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["signature"]
            ["token"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(token.len(), 50);
        let meta = v.describe(&Inbound::new(&headers(&[]), &body));
        assert_eq!(meta.id.as_deref(), Some(token.as_str()));
        // signed with the first secret only
        assert_kind_at(
            &verifier("mailgun", &["old-key"]),
            &[],
            &body,
            now,
            "invalid_signature",
        );
        assert_kind_at(&v, &[], &body, now + 301, "timestamp_out_of_tolerance");
    }

    #[test]
    fn describe_forms() {
        let v = verifier("mailgun", &[KEY]);
        let body = form_body(&TS.to_string(), TOKEN, SIG);
        let meta = v.describe(&Inbound::new(&headers(&[]), &body));
        assert_eq!(meta.id.as_deref(), Some(TOKEN));
        assert_eq!(meta.event_type.as_deref(), Some("opened"));
        let body = multipart_body(&TS.to_string(), TOKEN, SIG);
        let meta = v.describe(&Inbound::new(&headers(&[MULTIPART]), &body));
        assert_eq!(meta.id.as_deref(), Some(TOKEN));
    }

    #[test]
    fn a_signature_that_decodes_to_the_wrong_length_is_a_mismatch() {
        // mailgun-php `Webhook::verifyWebhookSignature` compares the hex text with
        // hash_equals: a signature of another length is false, not an error.
        let v = verifier("mailgun", &[KEY]);
        let ts = TS.to_string();
        let long = format!("{SIG}00");
        for sig in [&SIG[..62], &long, ""] {
            assert_kind_at(
                &v,
                &[],
                &form_body(&ts, TOKEN, sig),
                TS,
                "invalid_signature",
            );
        }
    }

    #[test]
    fn an_undecodable_signature_beside_a_parent_signature_is_skipped() {
        // `signature` and `parent-signature` are two signatures of one request: one that
        // is not hex is skipped and the other checked.
        let ts = TS.to_string();
        let body = |sig: &str, parent: &str| {
            format!(
                r#"{{"signature":{{"timestamp":"{ts}","token":"{TOKEN}","signature":"{sig}","parent-signature":"{parent}"}}}}"#
            )
        };
        let v = verifier("mailgun", &[KEY]);
        assert_ok_at(&v, &[], body("not hex", SIG).as_bytes(), TS);
        assert_ok_at(&v, &[], body(SIG, "not hex").as_bytes(), TS);
        let zeros = "0".repeat(64);
        assert_kind_at(
            &v,
            &[],
            body("not hex", &zeros).as_bytes(),
            TS,
            "invalid_signature",
        );
        assert_kind_at(
            &v,
            &[],
            body("not hex", "zz").as_bytes(),
            TS,
            "malformed_header",
        );
    }
}
