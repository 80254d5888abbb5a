//! Twilio: `X-Twilio-Signature: <base64 HMAC-SHA1(auth token, URL + parameters)>`.
//!
//! The signed string is the full URL Twilio requested (scheme, any credentials, host,
//! path and query, byte for byte as configured with Twilio: no case or escaping
//! normalisation) followed by the form parameters of a POST, each name immediately
//! followed by its value, names sorted and, for a name sent several times, its distinct
//! values sorted (twilio-python and twilio-node). The key is the account's auth token
//! (its UTF-8 bytes); configure the primary and secondary tokens together while rotating.
//!
//! - The URL is the `url` option (required). When the request has a query string it
//!   replaces the configured one (Twilio adds parameters to the query of `GET` callbacks
//!   and action URLs); a `#fragment` (connection overrides) is kept as configured, as the
//!   SDKs sign whatever URL they are given.
//! - As every official SDK does, the URL is tried both without any explicit port and with
//!   one (the default `:443` for https, `:80` otherwise, when it has none), because
//!   Twilio's signing is inconsistent on that point.
//! - JSON bodies: when the URL carries a `bodySHA256` query parameter the signature covers
//!   the URL alone, and the hex SHA-256 of the raw body must equal that parameter. A body
//!   that does not is `invalid_signature`, as in the SDKs' `validate`: the signed URL
//!   covers the body's hash, so the signature does not cover this body.
//! - Form values are percent-decoded to raw bytes (no UTF-8 requirement) and sorted
//!   bytewise, which for UTF-8 is the code point order the SDKs sort by.
//!
//! No timestamp is signed, so there is no tolerance; dedup on the delivery id stops
//! replays. `sign()` signs a form body against the configured URL.
//! Sources: twilio.com/docs/usage/webhooks/webhooks-security ("Validating signatures from
//! Twilio") and the `RequestValidator` of twilio-python, twilio-node, twilio-php and
//! twilio-csharp, whose test vectors are used below.

use std::fmt;
use std::iter::once;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::common::{
    b64, ct_eq, form_decode, header, meta_header, Algorithm, Encoding, Keys, Tally, SIG_BUF,
};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

const HEADER: &str = "x-twilio-signature";
/// Sent by Twilio with its webhooks; a retry of the same request carries the same token.
const IDEMPOTENCY: &str = "i-twilio-idempotency-token";

pub(crate) struct Twilio {
    keys: Keys,
    /// The configured URL up to (not including) its `?query` or `#fragment`.
    base: String,
    /// The configured query, without `?`, used when the request has none.
    query: Option<String>,
    /// The configured `#fragment`, with `#`, or empty.
    fragment: String,
}

// The URL may hold basic-auth credentials: it is left out of Debug.
impl fmt::Debug for Twilio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Twilio")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Twilio {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        let url = cfg
            .url
            .as_deref()
            .ok_or(BuildError::missing_option("url"))?;
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            return Err(BuildError::Option {
                option: "url",
                problem: "expected the absolute http:// or https:// URL configured with Twilio"
                    .into(),
            });
        }
        let (rest, fragment) = url.split_at(url.find('#').unwrap_or(url.len()));
        let (base, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q.to_owned())),
            None => (rest, None),
        };
        Ok(Twilio {
            keys: Keys::raw(Algorithm::Sha1, &cfg.secrets)?,
            base: base.to_owned(),
            query,
            fragment: fragment.to_owned(),
        })
    }

    /// The URL Twilio requested: the configured one, with the request's query if any.
    fn url_for(&self, query: Option<&str>) -> String {
        match query.or(self.query.as_deref()) {
            Some(q) => format!("{}?{q}{}", self.base, self.fragment),
            None => format!("{}{}", self.base, self.fragment),
        }
    }
}

/// The URL without an explicit port and with one (its scheme's default when it has
/// none), the two forms the official SDKs try.
fn port_variants(url: &str) -> [String; 2] {
    let Some(scheme_end) = url.find("://") else {
        return [url.to_owned(), url.to_owned()];
    };
    let auth_start = scheme_end + 3;
    let auth_end = url[auth_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| auth_start + i);
    let authority = &url[auth_start..auth_end];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    let colon = if host_port.starts_with('[') {
        host_port.find("]:").map(|i| i + 1)
    } else {
        host_port.rfind(':')
    };
    match colon {
        Some(i) => {
            let host_end = auth_start + host_start + i;
            [
                format!("{}{}", &url[..host_end], &url[auth_end..]),
                url.to_owned(),
            ]
        }
        None => {
            let port = if url[..scheme_end].eq_ignore_ascii_case("https") {
                ":443"
            } else {
                ":80"
            };
            [
                url.to_owned(),
                format!("{}{port}{}", &url[..auth_end], &url[auth_end..]),
            ]
        }
    }
}

/// The `bodySHA256` parameter of the URL's query, if any (the first one).
fn body_sha256(url: &str) -> Option<Vec<u8>> {
    let query = url.split('#').next()?.split_once('?')?.1;
    form_decode(query.as_bytes())
        .find(|(k, _)| k == b"bodySHA256")
        .map(|(_, v)| v)
}

/// The form parameters as signed: `name value` for each distinct pair, sorted.
fn signed_params(body: &[u8]) -> Vec<u8> {
    let mut pairs: Vec<_> = form_decode(body).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut out = Vec::with_capacity(body.len());
    for (k, v) in pairs {
        out.extend_from_slice(&k);
        out.extend_from_slice(&v);
    }
    out
}

impl Scheme for Twilio {
    fn name(&self) -> &str {
        "twilio"
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
        let url = self.url_for(req.query);
        let expected_hash = body_sha256(&url);
        let params = match expected_hash {
            Some(_) => Vec::new(),
            None => signed_params(req.body),
        };
        let [without, with] = port_variants(&url);
        let ok = self
            .keys
            .matches_any(&[without.as_bytes(), &params], once(sig))
            | self
                .keys
                .matches_any(&[with.as_bytes(), &params], once(sig));
        if !ok {
            return Err(self.keys.explain(tally.mismatch(format!(
                "header `{HEADER}` does not match the HMAC-SHA1 of the configured URL (with and \
                 without its port) {} under any of the {} configured auth token(s)",
                if expected_hash.is_some() {
                    "alone, as it carries `bodySHA256`"
                } else {
                    "followed by the sorted form parameters"
                },
                self.keys.len()
            ))));
        }
        let Some(expected) = expected_hash else {
            return Ok(());
        };
        let actual = Sha256::digest(req.body);
        let mut want = [0u8; 32];
        let decoded = hex::decode_to_slice(&expected, &mut want).is_ok();
        if decoded && ct_eq(&actual, &want) {
            Ok(())
        } else {
            Err(VerifyError::mismatch(format!(
                "the signature covers the URL, whose `bodySHA256` {:?} names another body: \
                 the received body's SHA-256 is {}",
                String::from_utf8_lossy(&expected[..expected.len().min(80)]),
                hex::encode(actual),
            )))
        }
    }

    /// The id is Twilio's `I-Twilio-Idempotency-Token` header; without it, the
    /// `MessageSid`/`SmsSid`/`CallSid` parameter followed by `:` and the status parameter
    /// when there is one (a message's successive status callbacks share its SID). The type
    /// is the `EventType` parameter, else the `MessageStatus`/`SmsStatus`/`CallStatus`.
    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        let params: Vec<_> = form_decode(req.body).collect();
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name.as_bytes())
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let status = get("MessageStatus")
            .or_else(|| get("SmsStatus"))
            .or_else(|| get("CallStatus"));
        let sid = get("MessageSid")
            .or_else(|| get("SmsSid"))
            .or_else(|| get("CallSid"));
        let id = meta_header(req.headers, IDEMPOTENCY).or_else(|| {
            sid.map(|sid| match &status {
                Some(st) => format!("{sid}:{st}"),
                None => sid,
            })
        });
        EventMeta {
            id,
            event_type: get("EventType").or(status),
        }
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    let t = Twilio::new(cfg)?;
    let url = t.url_for(None);
    let params = match body_sha256(&url) {
        Some(_) => Vec::new(),
        None => signed_params(input.body),
    };
    let tag = t.keys.first().tag(&[url.as_bytes(), &params]);
    Ok(Signed::default()
        .header(HEADER, b64(tag.as_bytes()))
        .header(IDEMPOTENCY, input.id))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::port_variants;
    use crate::{Inbound, Verifier};

    // Known answers from Twilio's SDK tests (twilio-python tests/unit/test_request_validator.py,
    // twilio-php tests/Twilio/Unit/Security/RequestValidatorTest.php, twilio-csharp
    // RequestValidatorTest.cs): auth token "12345" and these parameters.
    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const BODY: &[u8] = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234\
                          &From=%2B14158675309&To=%2B18005551212";
    const SIG: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    // `{"property": "value", "boolean": true}` with its hash in the URL.
    const JSON: &[u8] = br#"{"property": "value", "boolean": true}"#;
    const HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";

    fn twilio(url: &str, tokens: &[&str]) -> Verifier {
        let mut b = Verifier::builder("twilio").url(url);
        for t in tokens {
            b = b.secret(*t);
        }
        b.build().expect("builds")
    }

    /// The signature Twilio sends for `url` (one carrying `bodySHA256`: the URL alone).
    fn sign_url(url: &str) -> String {
        let cfg = crate::SchemeConfig {
            url: Some(url.into()),
            ..config(&[TOKEN])
        };
        signed("twilio", &cfg, b"", "x", 0).0[0].1.clone()
    }

    fn check(v: &Verifier, query: Option<&str>, sig: &str, body: &[u8]) -> Result<(), String> {
        let h = headers(&[("x-twilio-signature", sig)]);
        v.verify(&Inbound::new(&h, body).with_query(query))
            .map_err(|e| e.kind().as_str().to_owned())
    }

    #[test]
    fn sdk_vectors() {
        let v = twilio(URL, &[TOKEN]);
        assert_ok(&v, &[("x-twilio-signature", SIG)], BODY);
        // parameter order in the body does not matter
        let shuffled = b"To=%2B18005551212&Digits=1234&From=%2B14158675309\
                         &CallSid=CA1234567890ABCDE&Caller=%2B14158675309";
        assert_ok(&v, &[("x-twilio-signature", SIG)], shuffled);
        // signed with the default port added: https :443, http :80
        assert_ok(
            &v,
            &[("x-twilio-signature", "kvajT1Ptam85bY51eRf/AJRuM3w=")],
            BODY,
        );
        let http = twilio("http://mycompany.com/myapp.php?foo=1&bar=2", &[TOKEN]);
        assert_ok(
            &http,
            &[("x-twilio-signature", "0ZXoZLH/DfblKGATFgpif+LLRf4=")],
            BODY,
        );
        // configured with a port: signed with it, or without it
        let p1234 = twilio("https://mycompany.com:1234/myapp.php?foo=1&bar=2", &[TOKEN]);
        assert_ok(&p1234, &[("x-twilio-signature", SIG)], BODY);
        assert_ok(
            &p1234,
            &[("x-twilio-signature", "CYn1h0gLBdNxDGkKJg6hYohgeD8=")],
            BODY,
        );
        let h1234 = twilio("http://mycompany.com:1234/myapp.php?foo=1&bar=2", &[TOKEN]);
        assert_ok(
            &h1234,
            &[("x-twilio-signature", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=")],
            BODY,
        );
        // the URL is signed as configured: case and credentials kept (twilio-csharp)
        let mixed = twilio("https://MyCompany.com/myapp.php?foo=1&bar=2", &[TOKEN]);
        assert_ok(
            &mixed,
            &[("x-twilio-signature", "g9IN/x4Cft2g517EjYvEvM/W7LU=")],
            BODY,
        );
        assert_kind(
            &mixed,
            &[("x-twilio-signature", SIG)],
            BODY,
            "invalid_signature",
        );
        let creds = twilio(
            "HTTP://username:password@MyCompany.com/myapp.php?foo=1&bar=2",
            &[TOKEN],
        );
        assert_ok(
            &creds,
            &[("x-twilio-signature", "hy/l8pca+LFms4cvRdv8uiP6NGc=")],
            BODY,
        );
        let creds_port = twilio(
            "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
            &[TOKEN],
        );
        assert_ok(
            &creds_port,
            &[("x-twilio-signature", "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI=")],
            BODY,
        );
    }

    #[test]
    fn repeated_parameters_are_sorted_and_deduplicated() {
        // twilio-python `test_compute_signature_duplicate_multi_dict`, twilio-php
        // `testValidateWithArrayAndDuplicates`.
        let v = twilio(URL, &[TOKEN]);
        let body = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234";
        assert_ok(
            &v,
            &[("x-twilio-signature", "IK+Dwps556ElfBT0I3Rgjkr1wJU=")],
            body,
        );
    }

    #[test]
    fn json_body_with_body_sha256() {
        // twilio-python `test_validation_of_body_succeeds`, twilio-csharp `TestValidateWithOnlyHash`.
        let with_hash = format!("{URL}&bodySHA256={HASH}");
        let v = twilio(&with_hash, &[TOKEN]);
        let sig = "a9nBmqA0ju/hNViExpshrM61xv4=";
        assert_ok(&v, &[("x-twilio-signature", sig)], JSON);
        let only = twilio(
            &format!("https://mycompany.com/myapp.php?bodySHA256={HASH}"),
            &[TOKEN],
        );
        assert_ok(
            &only,
            &[("x-twilio-signature", "y77kIzt2vzLz71DgmJGsen2scGs=")],
            JSON,
        );
        // A valid signature whose URL names another body is not a valid request: the
        // signed URL covers the body's hash, so the signature does not cover this body.
        // twilio-python `RequestValidator.validate` returns `valid_body_hash and ...`
        // (False), and twilio-node `validateRequestWithBody` false, as for any mismatch.
        assert_kind(
            &v,
            &[("x-twilio-signature", sig)],
            b"{}",
            "invalid_signature",
        );
        // the hash comes in the request's query
        let bare = twilio("https://mycompany.com/myapp.php", &[TOKEN]);
        let q = format!("foo=1&bar=2&bodySHA256={HASH}");
        assert_eq!(check(&bare, Some(&q), sig, JSON), Ok(()));
        assert_eq!(
            check(&bare, Some(&q), sig, b"{ }").unwrap_err(),
            "invalid_signature"
        );
        // a hash that is not hex names no body at all
        let not_hex = format!("{URL}&bodySHA256=xyz");
        let sig_not_hex = sign_url(&not_hex);
        assert_eq!(
            check(&twilio(&not_hex, &[TOKEN]), None, &sig_not_hex, JSON).unwrap_err(),
            "invalid_signature"
        );
        // the hash parameter is covered by the signature
        let other = format!("foo=1&bar=2&bodySHA256={}", "0".repeat(64));
        assert_eq!(
            check(&bare, Some(&other), sig, JSON).unwrap_err(),
            "invalid_signature"
        );
    }

    #[test]
    fn request_query_replaces_the_configured_one() {
        let v = twilio("https://mycompany.com/myapp.php?stale=1", &[TOKEN]);
        assert_eq!(check(&v, Some("foo=1&bar=2"), SIG, BODY), Ok(()));
        assert_eq!(
            check(&v, Some("foo=1&bar=3"), SIG, BODY).unwrap_err(),
            "invalid_signature"
        );
        // and the configured query is used when the request has none
        let v = twilio(URL, &[TOKEN]);
        assert_eq!(check(&v, None, SIG, BODY), Ok(()));
    }

    #[test]
    fn rejections() {
        let v = twilio(URL, &[TOKEN]);
        let h = [("x-twilio-signature", SIG)];
        assert_kind(&v, &h, b"CallSid=CA1234567890ABCDE", "invalid_signature");
        let tampered = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=9999\
                         &From=%2B14158675309&To=%2B18005551212";
        assert_kind(&v, &h, tampered, "invalid_signature");
        assert_kind(&twilio(URL, &["54321"]), &h, BODY, "invalid_signature");
        assert_kind(
            &twilio("https://mycompany.com/other.php?foo=1&bar=2", &[TOKEN]),
            &h,
            BODY,
            "invalid_signature",
        );
        assert_kind(&v, &[], BODY, "missing_header");
        assert_kind(
            &v,
            &[("x-twilio-signature", "not base64!")],
            BODY,
            "malformed_header",
        );
        assert_kind(&v, &[h[0], h[0]], BODY, "malformed_header");
        assert_kind(
            &v,
            &[("x-twilio-signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")],
            BODY,
            "invalid_signature",
        );
    }

    #[test]
    fn rotation() {
        assert_ok(
            &twilio(URL, &["new-token", TOKEN]),
            &[("x-twilio-signature", SIG)],
            BODY,
        );
    }

    #[test]
    fn configuration() {
        let no_url = Verifier::builder("twilio").secret(TOKEN).build();
        assert!(matches!(
            no_url,
            Err(crate::BuildError::Option { option: "url", .. })
        ));
        let relative = Verifier::builder("twilio")
            .secret(TOKEN)
            .url("/myapp.php")
            .build();
        assert!(relative.is_err());
        let no_secret = Verifier::builder("twilio").url(URL).build();
        assert!(matches!(no_secret, Err(crate::BuildError::NoSecret)));
        // the URL (which may hold credentials) and the token stay out of Debug
        let v = twilio("https://user:pa55@mycompany.com/x", &[TOKEN]);
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("pa55") && !dbg.contains(TOKEN), "{dbg}");
    }

    #[test]
    fn ports() {
        assert_eq!(
            port_variants("https://a.example/x?y=1"),
            ["https://a.example/x?y=1", "https://a.example:443/x?y=1"]
        );
        assert_eq!(
            port_variants("http://u:p@a.example:8080?q"),
            ["http://u:p@a.example?q", "http://u:p@a.example:8080?q"]
        );
        assert_eq!(
            port_variants("http://[::1]/x"),
            ["http://[::1]/x", "http://[::1]:80/x"]
        );
        assert_eq!(
            port_variants("https://[::1]:8443"),
            ["https://[::1]", "https://[::1]:8443"]
        );
    }

    #[test]
    fn non_utf8_form_values() {
        // values are signed as raw bytes, not replaced by U+FFFD
        let cfg = crate::SchemeConfig {
            url: Some(URL.into()),
            ..config(&[TOKEN])
        };
        let body = b"Body=caf%E9&From=%2B1";
        let (h, body) = signed("twilio", &cfg, body, "idem-1", 0);
        let v = twilio(URL, &[TOKEN]);
        assert_ok(&v, &pairs(&h), &body);
        assert_kind(
            &v,
            &pairs(&h),
            b"Body=caf%EF%BF%BD&From=%2B1",
            "invalid_signature",
        );
    }

    #[test]
    fn sign_round_trip_and_describe() {
        let cfg = crate::SchemeConfig {
            url: Some(URL.into()),
            ..config(&[TOKEN])
        };
        let (h, body) = signed("twilio", &cfg, BODY, "idem-42", 1_700_000_000);
        let h = pairs(&h);
        assert!(h.contains(&("x-twilio-signature", SIG)), "{h:?}");
        let v = twilio(URL, &[TOKEN]);
        assert_ok(&v, &h, &body);
        let map = headers(&h);
        let meta = v.describe(&Inbound::new(&map, &body));
        assert_eq!(meta.id.as_deref(), Some("idem-42"));

        let status = b"MessageSid=SM1&MessageStatus=delivered&AccountSid=AC1";
        let meta = v.describe(&Inbound::new(&headers(&[]), status));
        assert_eq!(meta.id.as_deref(), Some("SM1:delivered"));
        assert_eq!(meta.event_type.as_deref(), Some("delivered"));
        let call = b"CallSid=CA1&EventType=call-progress";
        let meta = v.describe(&Inbound::new(&headers(&[]), call));
        assert_eq!(meta.id.as_deref(), Some("CA1"));
        assert_eq!(meta.event_type.as_deref(), Some("call-progress"));
    }

    #[test]
    fn a_signature_that_decodes_to_the_wrong_length_is_a_mismatch() {
        let v = twilio(URL, &[TOKEN]);
        // twilio-python `RequestValidator.validate` compares base64 texts: a signature of
        // another length is not valid (base64 of 3 bytes, and of 150).
        let long = "A".repeat(200);
        for sig in ["AAAA", &long[..]] {
            assert_kind(
                &v,
                &[("x-twilio-signature", sig)],
                BODY,
                "invalid_signature",
            );
        }
    }
}
