//! generic-hmac: an HMAC scheme described by options, so a provider hookbox does not know
//! needs configuration, not code.
//!
//! The provider sends `prefix || encode(HMAC(key, content))` in the header `header`
//! (several of them, split by `separator`, if it sends several), where `content` is the
//! signed-content `template` with its placeholders filled from the request:
//!
//! | option             | default    | meaning                                                        |
//! |--------------------|------------|----------------------------------------------------------------|
//! | `header`           | (required) | the header holding the signature(s)                            |
//! | `prefix`           | `""`       | what precedes each encoded signature (`sha256=`, `v0=`, `v1,`) |
//! | `encoding`         | `hex`      | `hex` or `base64` (standard alphabet, padding optional)        |
//! | `algorithm`        | `sha256`   | `sha1`, `sha256` or `sha512`                                   |
//! | `template`         | `{body}`   | the signed content: `{body}`, `{timestamp}`, `{id}`, `{header:Name}`, `{{`/`}}` for braces |
//! | `timestamp_header` | none       | a header holding Unix seconds; when set it is required and checked against the tolerance |
//! | `id_header`        | none       | a header holding the delivery id (`{id}`, and `describe`)     |
//! | `type_header`      | none       | a header holding the event type (`describe`)                   |
//! | `separator`        | none       | the signature header holds several signatures (at most 16) split by this; entries without `prefix` are skipped (other versions), and so are those that cannot be decoded while another can |
//! | `secret_encoding`  | `raw`      | how a secret becomes the key: `raw` (its UTF-8 bytes), `hex` or `base64` |
//!
//! Header values are used exactly as received (trimmed). The template is compiled once at
//! construction; verifying fills it without parsing. It must sign `{body}`, and when
//! `timestamp_header` is set it must sign that timestamp (`{timestamp}` or
//! `{header:<that header>}`): a timestamp nobody signed protects against nothing. Unknown
//! options are refused, so a misspelt `timestamp_header` cannot silently switch the time
//! check off. The tolerance is the configured one, else 300 s, both directions,
//! inclusive, checked before the MAC. A `{header:Name}` absent (or empty) at verify time
//! is `missing_header`.
//!
//! Slack (`header = x-slack-signature`, `prefix = v0=`, `template = v0:{timestamp}:{body}`,
//! `timestamp_header = x-slack-request-timestamp`), GitHub, Zoom, Twitch-style and
//! Standard Webhooks signatures are expressible; schemes that put the timestamp inside
//! the signature header (Stripe's `t=...,v1=...`, Paddle's `ts=...;h1=...`) are not, and
//! have their own schemes. The tests reproduce the providers' published vectors.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::HeaderName;

use super::common::{
    check_tolerance_secs, header, meta_header, no_match, parse_unix_secs, truncate, unix_secs,
    Algorithm, Candidates, Encoding, Keys, B64_LENIENT, DEFAULT_TOLERANCE,
};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

/// Every option this scheme reads.
const OPTIONS: &[&str] = &[
    "header",
    "prefix",
    "encoding",
    "algorithm",
    "template",
    "timestamp_header",
    "id_header",
    "type_header",
    "separator",
    "secret_encoding",
];

/// More signatures than this in one header is `malformed_header`.
const MAX_SIGNATURES: usize = 16;

/// One piece of the compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    Body,
    Timestamp,
    Id,
    Header(HeaderName),
}

#[derive(Debug)]
pub(crate) struct Generic {
    header: HeaderName,
    prefix: String,
    encoding: Encoding,
    separator: Option<String>,
    template: Vec<Part>,
    timestamp_header: Option<HeaderName>,
    id_header: Option<HeaderName>,
    type_header: Option<HeaderName>,
    keys: Keys,
    tolerance: Duration,
}

fn option_error(option: &'static str, problem: impl Into<String>) -> BuildError {
    BuildError::Option {
        option,
        problem: problem.into(),
    }
}

fn header_name(option: &'static str, value: &str) -> Result<HeaderName, BuildError> {
    HeaderName::from_bytes(value.trim().as_bytes()).map_err(|_| {
        option_error(
            option,
            format!("expected an HTTP header name, found {value:?}"),
        )
    })
}

fn optional_header_name(
    cfg: &SchemeConfig,
    option: &'static str,
) -> Result<Option<HeaderName>, BuildError> {
    cfg.option(option)
        .map(|v| header_name(option, v))
        .transpose()
}

/// Compiles a template into literal and placeholder parts.
fn compile(template: &str) -> Result<Vec<Part>, BuildError> {
    let err = |problem: String| option_error("template", problem);
    let mut parts = Vec::new();
    let mut literal = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        literal.extend_from_slice(&rest.as_bytes()[..i]);
        let brace = rest.as_bytes()[i];
        rest = &rest[i + 1..];
        if brace == b'}' {
            let Some(after) = rest.strip_prefix('}') else {
                return Err(err(format!(
                    "a lone `}}` in {template:?}; write `}}}}` for a literal brace"
                )));
            };
            literal.push(b'}');
            rest = after;
            continue;
        }
        if let Some(after) = rest.strip_prefix('{') {
            literal.push(b'{');
            rest = after;
            continue;
        }
        let end = rest.find('}').ok_or_else(|| {
            err(format!(
                "a `{{` is never closed in {template:?}; write `{{{{` for a literal brace"
            ))
        })?;
        let name = &rest[..end];
        rest = &rest[end + 1..];
        let part = match name {
            "body" => Part::Body,
            "timestamp" => Part::Timestamp,
            "id" => Part::Id,
            _ => match name.strip_prefix("header:") {
                Some(h) => {
                    Part::Header(HeaderName::from_bytes(h.trim().as_bytes()).map_err(|_| {
                        err(format!("`{{{name}}}`: {h:?} is not an HTTP header name"))
                    })?)
                }
                None => {
                    return Err(err(format!(
                        "unknown placeholder `{{{name}}}`; expected `{{body}}`, `{{timestamp}}`, \
                         `{{id}}` or `{{header:Name}}`"
                    )))
                }
            },
        };
        if !literal.is_empty() {
            parts.push(Part::Literal(std::mem::take(&mut literal)));
        }
        parts.push(part);
    }
    literal.extend_from_slice(rest.as_bytes());
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok(parts)
}

impl Generic {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        if let Some(unknown) = cfg.options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
            let normal = unknown.trim().to_ascii_lowercase().replace('-', "_");
            let option = OPTIONS
                .iter()
                .copied()
                .find(|o| *o == normal)
                .unwrap_or("(unknown)");
            return Err(option_error(
                option,
                format!(
                    "`{unknown}` is not an option of generic-hmac; the options are: {}",
                    OPTIONS.join(", ")
                ),
            ));
        }

        let header = match cfg.option("header") {
            Some(v) => header_name("header", v)?,
            None => return Err(BuildError::missing_option("header")),
        };
        let encoding = match cfg.option("encoding").map(str::trim) {
            None | Some("hex") => Encoding::Hex,
            Some("base64") => Encoding::Base64,
            Some(other) => {
                return Err(option_error(
                    "encoding",
                    format!("expected `hex` or `base64`, found {other:?}"),
                ))
            }
        };
        let algorithm = match cfg.option("algorithm") {
            None => Algorithm::Sha256,
            Some(v) => Algorithm::parse(v.trim()).ok_or_else(|| {
                option_error(
                    "algorithm",
                    format!("expected `sha1`, `sha256` or `sha512`, found {v:?}"),
                )
            })?,
        };
        let separator = match cfg.option("separator") {
            Some("") => return Err(option_error("separator", "must not be empty when given")),
            Some(sep) if cfg.option("prefix").is_some_and(|p| p.contains(sep)) => {
                return Err(option_error(
                    "separator",
                    format!("{sep:?} occurs inside `prefix`, so no entry could carry it"),
                ))
            }
            other => other.map(str::to_owned),
        };
        let timestamp_header = optional_header_name(cfg, "timestamp_header")?;
        let id_header = optional_header_name(cfg, "id_header")?;
        let type_header = optional_header_name(cfg, "type_header")?;

        let template = compile(cfg.option("template").unwrap_or("{body}"))?;
        if !template.contains(&Part::Body) {
            return Err(option_error(
                "template",
                "must contain `{body}`, or the body would not be signed",
            ));
        }
        if template.contains(&Part::Timestamp) && timestamp_header.is_none() {
            return Err(option_error(
                "template",
                "uses `{timestamp}` but the option `timestamp_header` is not set",
            ));
        }
        if template.contains(&Part::Id) && id_header.is_none() {
            return Err(option_error(
                "template",
                "uses `{id}` but the option `id_header` is not set",
            ));
        }
        if let Some(ts) = &timestamp_header {
            let signed = template.iter().any(|p| match p {
                Part::Timestamp => true,
                Part::Header(h) => h == ts,
                _ => false,
            });
            if !signed {
                return Err(option_error(
                    "timestamp_header",
                    format!(
                        "the template does not sign it (add `{{timestamp}}`); an unsigned \
                         timestamp can be replaced by anyone, so checking `{ts}` would \
                         protect against nothing"
                    ),
                ));
            }
        }

        let secret_encoding = cfg.option("secret_encoding").map(str::trim);
        let mut n = 0;
        let to_key = |s: &str| -> Result<Vec<u8>, BuildError> {
            n += 1;
            match secret_encoding {
                None | Some("raw") => Ok(s.as_bytes().to_vec()),
                Some("hex") => hex::decode(s.trim()).map_err(|_| {
                    BuildError::secret(format!(
                        "secret {n} is not valid hex (secret_encoding = hex)"
                    ))
                }),
                Some("base64") => B64_LENIENT.decode(s.trim()).map_err(|_| {
                    BuildError::secret(format!(
                        "secret {n} is not valid base64 (secret_encoding = base64)"
                    ))
                }),
                Some(other) => Err(option_error(
                    "secret_encoding",
                    format!("expected `raw`, `hex` or `base64`, found {other:?}"),
                )),
            }
        };
        let keys = match secret_encoding {
            None | Some("raw") => Keys::raw(algorithm, &cfg.secrets)?,
            _ => Keys::new(algorithm, &cfg.secrets, to_key)?,
        };

        Ok(Generic {
            header,
            prefix: cfg.option("prefix").unwrap_or("").to_owned(),
            encoding,
            separator,
            template,
            timestamp_header,
            id_header,
            type_header,
            keys,
            tolerance: cfg.tolerance_or(DEFAULT_TOLERANCE),
        })
    }

    /// Decodes the signature(s) in the signature header's `value`: with a separator, one
    /// that cannot be decoded is skipped and `malformed_header` is only for a header none
    /// of whose signatures decodes.
    fn signatures(&self, value: &str) -> Result<Candidates<MAX_SIGNATURES>, VerifyError> {
        let name = self.header.as_str();
        let what = format!("header `{name}`");
        let expected = self.keys.tag_len();
        let mut sigs = Candidates::new();
        let Some(sep) = &self.separator else {
            let encoded = value.strip_prefix(self.prefix.as_str()).ok_or_else(|| {
                VerifyError::malformed(format!(
                    "header `{name}`: expected `{}` followed by the signature, found {:?}",
                    self.prefix,
                    truncate(value, 16)
                ))
            })?;
            sigs.offer(self.encoding, &what, encoded, expected)?;
            sigs.tally.require_decoded(|| VerifyError::missing(name))?;
            return Ok(sigs);
        };
        for entry in value.split(sep.as_str()).map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            let Some(encoded) = entry.strip_prefix(self.prefix.as_str()) else {
                continue;
            };
            sigs.offer(self.encoding, &what, encoded, expected)?;
        }
        if sigs.offered() == 0 {
            return Err(VerifyError::malformed(format!(
                "header `{name}`: expected at least one `{}` signature separated by {sep:?}, \
                 found {:?}",
                self.prefix,
                truncate(value, 24)
            )));
        }
        sigs.tally.require_decoded(|| VerifyError::missing(name))?;
        Ok(sigs)
    }
}

impl Scheme for Generic {
    fn name(&self) -> &str {
        "generic-hmac"
    }

    fn verify(&self, req: &Inbound<'_>, now: SystemTime) -> Result<(), VerifyError> {
        let value = header(req.headers, self.header.as_str())?;
        let ts = match &self.timestamp_header {
            Some(h) => {
                let text = header(req.headers, h.as_str())?;
                Some((text, parse_unix_secs(h.as_str(), text)?))
            }
            None => None,
        };
        let mut content: Vec<&[u8]> = Vec::with_capacity(self.template.len());
        for part in &self.template {
            content.push(match part {
                Part::Literal(bytes) => bytes,
                Part::Body => req.body,
                // `new` guarantees the header options these parts need are set.
                Part::Timestamp => ts.map_or(&[][..], |(text, _)| text.as_bytes()),
                Part::Id => match &self.id_header {
                    Some(h) => header(req.headers, h.as_str())?.as_bytes(),
                    None => &[],
                },
                Part::Header(h) => header(req.headers, h.as_str())?.as_bytes(),
            });
        }
        let sigs = self.signatures(value)?;
        if let Some((_, secs)) = ts {
            check_tolerance_secs(secs, now, self.tolerance)?;
        }
        if self.keys.matches_any(&content, sigs.iter()) {
            Ok(())
        } else {
            Err(self.keys.explain(sigs.tally.mismatch(no_match(
                &format!("header `{}`", self.header),
                self.keys.len(),
            ))))
        }
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        let read = |h: &Option<HeaderName>| {
            h.as_ref()
                .and_then(|h| meta_header(req.headers, h.as_str()))
        };
        EventMeta {
            id: read(&self.id_header),
            event_type: read(&self.type_header),
        }
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    let scheme = Generic::new(cfg)?;
    let ts = unix_secs(input.now).to_string();
    let mut content: Vec<&[u8]> = Vec::with_capacity(scheme.template.len());
    for part in &scheme.template {
        content.push(match part {
            Part::Literal(bytes) => bytes,
            Part::Body => input.body,
            Part::Timestamp => ts.as_bytes(),
            Part::Id => input.id.as_bytes(),
            Part::Header(h) if scheme.timestamp_header.as_ref() == Some(h) => ts.as_bytes(),
            Part::Header(h) if scheme.id_header.as_ref() == Some(h) => input.id.as_bytes(),
            Part::Header(_) => {
                return Err(BuildError::CannotSign(
                    "generic-hmac",
                    "the template signs a header other than `timestamp_header` and \
                     `id_header`, whose value the signer cannot know",
                ))
            }
        });
    }
    let tag = scheme.keys.first().tag(&content);
    let mut signed = Signed::default();
    if let Some(h) = &scheme.timestamp_header {
        signed = signed.header(h.as_str(), ts.clone());
    }
    if let Some(h) = &scheme.id_header {
        signed = signed.header(h.as_str(), input.id);
    }
    Ok(signed.header(
        scheme.header.as_str(),
        format!(
            "{}{}",
            scheme.prefix,
            scheme.encoding.encode(tag.as_bytes())
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{EventMeta, Inbound, SchemeConfig, Verifier};
    use crate::BuildError;

    fn cfg(secrets: &[&str], options: &[(&str, &str)]) -> SchemeConfig {
        let mut c = config(secrets);
        for (k, v) in options {
            c.options.insert((*k).into(), (*v).into());
        }
        c
    }

    fn build(secrets: &[&str], options: &[(&str, &str)]) -> Verifier {
        Verifier::new("generic-hmac", &cfg(secrets, options)).expect("verifier builds")
    }

    fn build_err(secrets: &[&str], options: &[(&str, &str)]) -> BuildError {
        Verifier::new("generic-hmac", &cfg(secrets, options)).unwrap_err()
    }

    // Slack's docs vector ("Verifying requests from Slack"), see slack.rs.
    const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const SLACK_T: u64 = 1_531_420_618;
    const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    const SLACK: &[(&str, &str)] = &[
        ("header", "X-Slack-Signature"),
        ("prefix", "v0="),
        ("template", "v0:{timestamp}:{body}"),
        ("timestamp_header", "X-Slack-Request-Timestamp"),
    ];

    fn slack_headers(sig: &str, ts: &str) -> Vec<(String, String)> {
        vec![
            ("x-slack-signature".into(), sig.into()),
            ("x-slack-request-timestamp".into(), ts.into()),
        ]
    }

    #[test]
    fn configured_as_slack_reproduces_the_slack_docs_vector() {
        let v = build(&[SLACK_SECRET], SLACK);
        let h = slack_headers(SLACK_SIG, "1531420618");
        assert_ok_at(&v, &pairs(&h), SLACK_BODY, SLACK_T);
        // default tolerance, inclusive, both directions, before the MAC
        assert_ok_at(&v, &pairs(&h), SLACK_BODY, SLACK_T + 300);
        assert_ok_at(&v, &pairs(&h), SLACK_BODY, SLACK_T - 300);
        assert_kind_at(
            &v,
            &pairs(&h),
            SLACK_BODY,
            SLACK_T + 301,
            "timestamp_out_of_tolerance",
        );
        assert_kind_at(
            &v,
            &pairs(&h),
            SLACK_BODY,
            SLACK_T - 301,
            "timestamp_out_of_tolerance",
        );
        assert_kind_at(
            &v,
            &pairs(&h),
            b"x",
            SLACK_T - 301,
            "timestamp_out_of_tolerance",
        );
        // tampering, wrong secret, the signed timestamp moved
        assert_kind_at(
            &v,
            &pairs(&h),
            &SLACK_BODY[1..],
            SLACK_T,
            "invalid_signature",
        );
        let wrong = build(&["wrong"], SLACK);
        assert_kind_at(&wrong, &pairs(&h), SLACK_BODY, SLACK_T, "invalid_signature");
        let moved = slack_headers(SLACK_SIG, "1531420619");
        assert_kind_at(&v, &pairs(&moved), SLACK_BODY, SLACK_T, "invalid_signature");
        // missing, duplicated, malformed
        assert_kind_at(&v, &pairs(&h[..1]), SLACK_BODY, SLACK_T, "missing_header");
        assert_kind_at(&v, &pairs(&h[1..]), SLACK_BODY, SLACK_T, "missing_header");
        let twice = [h.clone(), h[1..].to_vec()].concat();
        assert_kind_at(&v, &pairs(&twice), SLACK_BODY, SLACK_T, "malformed_header");
        let bad_ts = slack_headers(SLACK_SIG, "yesterday");
        assert_kind_at(&v, &pairs(&bad_ts), SLACK_BODY, SLACK_T, "malformed_header");
        let no_prefix = slack_headers(&SLACK_SIG[3..], "1531420618");
        assert_kind_at(
            &v,
            &pairs(&no_prefix),
            SLACK_BODY,
            SLACK_T,
            "malformed_header",
        );
        let bad_hex = slack_headers("v0=xyz", "1531420618");
        assert_kind_at(
            &v,
            &pairs(&bad_hex),
            SLACK_BODY,
            SLACK_T,
            "malformed_header",
        );
        // rotation
        let both = build(&["new", SLACK_SECRET], SLACK);
        assert_ok_at(&both, &pairs(&h), SLACK_BODY, SLACK_T);
        // the same headers as the slack scheme signs
        let (hs, _) = signed(
            "generic-hmac",
            &cfg(&[SLACK_SECRET], SLACK),
            SLACK_BODY,
            "",
            SLACK_T,
        );
        let (slack, _) = signed("slack", &config(&[SLACK_SECRET]), SLACK_BODY, "", SLACK_T);
        assert_eq!(hs, slack);
    }

    #[test]
    fn configured_as_github_reproduces_the_github_docs_vectors() {
        // GitHub's docs ("Validating webhook deliveries"), see github.rs.
        let secret = "It's a Secret to Everybody";
        let sha256 = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let v = build(
            &[secret],
            &[("header", "x-hub-signature-256"), ("prefix", "sha256=")],
        );
        assert_ok(&v, &[("x-hub-signature-256", sha256)], b"Hello, World!");
        assert_kind(
            &v,
            &[("x-hub-signature-256", sha256)],
            b"Hello, World?",
            "invalid_signature",
        );
        // the legacy SHA-1 header (github_sha1.rs) and SHA-512, computed with
        // `printf 'Hello, World!' | openssl dgst -sha1|-sha512 -hmac "It's a Secret to Everybody"`
        let v = build(
            &[secret],
            &[
                ("header", "x-hub-signature"),
                ("prefix", "sha1="),
                ("algorithm", "SHA1"),
            ],
        );
        let sha1 = "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59";
        assert_ok(&v, &[("x-hub-signature", sha1)], b"Hello, World!");
        let v = build(&[secret], &[("header", "x-sig"), ("algorithm", "sha512")]);
        let sha512 = "11ed355a617e98134e842012a7944ccf59c10256cb182357bd7e3a42013ff07c376f8c14cf5cc1923da20b51d64256b2fb8ebbf100aa67a61326f61fea8111bc";
        assert_ok(&v, &[("x-sig", sha512)], b"Hello, World!");
    }

    #[test]
    fn configured_as_standard_webhooks_reproduces_the_spec_vector() {
        // The Standard Webhooks reference libraries' test vector (standard-webhooks/
        // standard-webhooks; the `whsec_` prefix of the secret is not part of the key).
        let options: &[(&str, &str)] = &[
            ("header", "webhook-signature"),
            ("prefix", "v1,"),
            ("encoding", "base64"),
            ("separator", " "),
            ("template", "{id}.{timestamp}.{body}"),
            ("id_header", "webhook-id"),
            ("timestamp_header", "webhook-timestamp"),
            ("secret_encoding", "base64"),
        ];
        let secret = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let t = 1_614_265_330;
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let h = |sig: &str| {
            vec![
                (
                    "webhook-id".to_owned(),
                    "msg_p5jXN8AQM9LWM0D4loKWxJek".to_owned(),
                ),
                ("webhook-timestamp".to_owned(), "1614265330".to_owned()),
                ("webhook-signature".to_owned(), sig.to_owned()),
            ]
        };
        let v = build(&[secret], options);
        assert_ok_at(&v, &pairs(&h(sig)), body, t);
        // several signatures, other versions skipped, any one matching is enough
        let several = format!("v2,AAAA v1,dGhpcyBpcyBub3QgaXQ= {sig}");
        assert_ok_at(&v, &pairs(&h(&several)), body, t);
        assert_kind_at(
            &v,
            &pairs(&h("v1,dGhpcyBpcyBub3QgaXQ=")),
            body,
            t,
            "invalid_signature",
        );
        assert_kind_at(&v, &pairs(&h("v2,AAAA")), body, t, "malformed_header");
        assert_kind_at(&v, &pairs(&h("v1,!!!")), body, t, "malformed_header");
        let many = "v1,AAAA ".repeat(17);
        assert_kind_at(&v, &pairs(&h(&many)), body, t, "malformed_header");
        // the id is signed and required
        let mut other_id = h(sig);
        other_id[0].1 = "msg_other".into();
        assert_kind_at(&v, &pairs(&other_id), body, t, "invalid_signature");
        assert_kind_at(&v, &pairs(&h(sig)[1..]), body, t, "missing_header");
        // a secret that is not base64 is refused at construction, without echoing it
        let e = build_err(&["not base64 !!"], options);
        assert!(matches!(e, BuildError::InvalidSecret(_)), "{e}");
        assert!(!e.to_string().contains("not base64 !!"), "{e}");
        // describe reads the id header
        let hm = headers(&pairs(&h(sig)));
        assert_eq!(
            v.describe(&Inbound::new(&hm, body)),
            EventMeta {
                id: Some("msg_p5jXN8AQM9LWM0D4loKWxJek".into()),
                event_type: None,
            }
        );
        // signing reproduces the vector
        let (hs, _) = signed(
            "generic-hmac",
            &cfg(&[secret], options),
            body,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            t,
        );
        assert_eq!(
            hs,
            vec![
                ("webhook-timestamp".to_owned(), "1614265330".to_owned()),
                (
                    "webhook-id".to_owned(),
                    "msg_p5jXN8AQM9LWM0D4loKWxJek".to_owned()
                ),
                ("webhook-signature".to_owned(), sig.to_owned()),
            ]
        );
    }

    #[test]
    fn header_placeholders_reproduce_the_twitch_vector() {
        // The twitch.rs vector, with the id and the RFC 3339 timestamp signed as headers
        // (generic-hmac cannot check an RFC 3339 time; the twitch scheme does).
        let options: &[(&str, &str)] = &[
            ("header", "twitch-eventsub-message-signature"),
            ("prefix", "sha256="),
            (
                "template",
                "{header:Twitch-Eventsub-Message-Id}{header:twitch-eventsub-message-timestamp}{body}",
            ),
            ("type_header", "twitch-eventsub-subscription-type"),
        ];
        let body = br#"{"subscription":{"id":"f1c2a387-161a-49f9-a165-0f21d7a4e1c4","type":"channel.follow","version":"2"},"event":{"user_login":"cool_user"}}"#;
        let h = [
            (
                "twitch-eventsub-message-id",
                "e76c6bd4-55c9-4987-8304-da1588d8988b",
            ),
            (
                "twitch-eventsub-message-timestamp",
                "2019-11-16T10:11:12.634234626Z",
            ),
            (
                "twitch-eventsub-message-signature",
                "sha256=068d4301f617a797b90ab59021f6bdf2cc799a766bb2196bee9395baf2def090",
            ),
            ("twitch-eventsub-subscription-type", "channel.follow"),
        ];
        let v = build(&["twitch-secret-0123456789"], options);
        assert_ok(&v, &h, body);
        // a template header absent at verify time is missing_header
        assert_kind(&v, &[h[0], h[2]], body, "missing_header");
        assert_kind(&v, &[h[0], h[1], h[1], h[2]], body, "malformed_header");
        let hm = headers(&h);
        assert_eq!(
            v.describe(&Inbound::new(&hm, body)).event_type.as_deref(),
            Some("channel.follow")
        );
        // the signer cannot know these headers' values
        let e = crate::sign(
            "generic-hmac",
            &cfg(&["s"], options),
            &crate::SignInput {
                body,
                id: "x",
                now: at(0),
            },
        )
        .unwrap_err();
        assert!(matches!(e, BuildError::CannotSign(..)), "{e}");
    }

    #[test]
    fn hex_secret_and_base64_signature() {
        // `printf 'Hello, World!' | openssl dgst -sha256 -mac HMAC
        //  -macopt hexkey:000102030405060708090a0b0c0d0e0f -binary | base64`
        let options: &[(&str, &str)] = &[
            ("header", "x-signature"),
            ("encoding", "base64"),
            ("secret_encoding", "hex"),
        ];
        let v = build(&["000102030405060708090A0B0C0D0E0F"], options);
        let sig = "GCLzInMDcbx9RPuCkTNb0PhfP+0IDRcpx2FiWwsnQNs=";
        assert_ok(&v, &[("x-signature", sig)], b"Hello, World!");
        assert_ok(
            &v,
            &[("x-signature", sig.trim_end_matches('='))],
            b"Hello, World!",
        );
        assert_kind(
            &v,
            &[("x-signature", "@@@")],
            b"Hello, World!",
            "malformed_header",
        );
        assert!(matches!(
            build_err(&["0g"], options),
            BuildError::InvalidSecret(_)
        ));
    }

    #[test]
    fn round_trips() {
        let options: &[(&str, &str)] = &[
            ("header", "x-sig"),
            ("prefix", "t="),
            ("template", "{{{timestamp}}}.{id}.{header:x-ts}.{body}"),
            ("timestamp_header", "x-ts"),
            ("id_header", "x-id"),
            ("type_header", "x-type"),
            ("algorithm", "sha512"),
        ];
        let c = cfg(&["first", "second"], options);
        let (hs, body) = signed("generic-hmac", &c, b"\xff\x00binary", "d-9", 1_700_000_000);
        assert_eq!(hs[0], ("x-ts".to_owned(), "1700000000".to_owned()));
        assert_eq!(hs[1], ("x-id".to_owned(), "d-9".to_owned()));
        assert!(hs[2].1.starts_with("t="));
        assert_eq!(hs[2].1.len(), 2 + 128);
        assert_ok_at(
            &build(&["first"], options),
            &pairs(&hs),
            &body,
            1_700_000_000,
        );
        assert_kind_at(
            &build(&["second"], options),
            &pairs(&hs),
            &body,
            1_700_000_000,
            "invalid_signature",
        );
        assert_ok_at(
            &build(&["second", "first"], options),
            &pairs(&hs),
            &body,
            1_700_000_000,
        );
        assert_kind_at(
            &build(&["first"], options),
            &pairs(&hs),
            &body,
            1_700_000_301,
            "timestamp_out_of_tolerance",
        );
    }

    #[test]
    fn template_compiles_to_parts() {
        use super::{compile, Part};
        use http::HeaderName;
        assert_eq!(compile("{body}").unwrap(), vec![Part::Body]);
        assert_eq!(
            compile("v0:{timestamp}:{body}").unwrap(),
            vec![
                Part::Literal(b"v0:".to_vec()),
                Part::Timestamp,
                Part::Literal(b":".to_vec()),
                Part::Body,
            ]
        );
        assert_eq!(
            compile("{{x}}{id}{header:X-A}").unwrap(),
            vec![
                Part::Literal(b"{x}".to_vec()),
                Part::Id,
                Part::Header(HeaderName::from_static("x-a")),
            ]
        );
        assert_eq!(compile("").unwrap(), vec![]);
    }

    #[test]
    fn invalid_options_are_refused_clearly() {
        let option = |e: BuildError| match e {
            BuildError::Option { option, problem } => (option, problem),
            other => panic!("expected an option error, got {other}"),
        };
        let h = ("header", "x-sig");
        assert_eq!(option(build_err(&["s"], &[])).0, "header");
        assert_eq!(
            option(build_err(&["s"], &[("header", "bad header")])).0,
            "header"
        );
        assert_eq!(
            option(build_err(&["s"], &[h, ("encoding", "base32")])).0,
            "encoding"
        );
        assert_eq!(
            option(build_err(&["s"], &[h, ("algorithm", "md5")])).0,
            "algorithm"
        );
        assert_eq!(
            option(build_err(&["s"], &[h, ("separator", "")])).0,
            "separator"
        );
        let clash = [h, ("separator", ","), ("prefix", "v1,")];
        assert_eq!(option(build_err(&["s"], &clash)).0, "separator");
        assert_eq!(
            option(build_err(&["s"], &[h, ("secret_encoding", "rot13")])).0,
            "secret_encoding"
        );
        assert_eq!(
            option(build_err(&["s"], &[h, ("id_header", "a b")])).0,
            "id_header"
        );
        for t in [
            "{body",
            "{body}}",
            "}{body}",
            "{nonce}{body}",
            "{header:}{body}",
            "{header:a b}{body}",
        ] {
            let (o, problem) = option(build_err(&["s"], &[h, ("template", t)]));
            assert_eq!(o, "template", "{t}: {problem}");
        }
        let (o, p) = option(build_err(&["s"], &[h, ("template", "{id}")]));
        assert_eq!(o, "template");
        assert!(p.contains("{body}"), "{p}");
        let (_, p) = option(build_err(&["s"], &[h, ("template", "{timestamp}{body}")]));
        assert!(p.contains("timestamp_header"), "{p}");
        let (_, p) = option(build_err(&["s"], &[h, ("template", "{id}{body}")]));
        assert!(p.contains("id_header"), "{p}");
        // an unsigned timestamp header is refused
        assert_eq!(
            option(build_err(&["s"], &[h, ("timestamp_header", "x-ts")])).0,
            "timestamp_header"
        );
        // signed through {header:...} is fine
        build(
            &["s"],
            &[
                h,
                ("timestamp_header", "x-ts"),
                ("template", "{header:X-TS}.{body}"),
            ],
        );
        // a misspelt option is not ignored
        let (o, p) = option(build_err(&["s"], &[h, ("timestamp-header", "x-ts")]));
        assert_eq!(o, "timestamp_header");
        assert!(p.contains("`timestamp-header`"), "{p}");
        assert_eq!(
            option(build_err(&["s"], &[h, ("colour", "blue")])).0,
            "(unknown)"
        );
        // secrets
        assert_eq!(build_err(&[], &[h]), BuildError::NoSecret);
        assert!(matches!(
            build_err(&[""], &[h]),
            BuildError::InvalidSecret(_)
        ));
    }

    #[test]
    fn a_signature_that_decodes_to_the_wrong_length_is_a_mismatch() {
        let secret = "It's a Secret to Everybody";
        let v = build(&[secret], &[("header", "x-sig"), ("prefix", "sha256=")]);
        let long = format!("sha256={}", "ab".repeat(65));
        for sig in [
            "sha256=01dc10d0c83e72ed246219cdd91669667fe2ca59",
            &long,
            "sha256=",
        ] {
            assert_kind(&v, &[("x-sig", sig)], b"Hello, World!", "invalid_signature");
        }
        let b64 = build(&[secret], &[("header", "x-sig"), ("encoding", "base64")]);
        for sig in ["AAAA", &"A".repeat(200)] {
            assert_kind(
                &b64,
                &[("x-sig", sig)],
                b"Hello, World!",
                "invalid_signature",
            );
        }
    }

    #[test]
    fn an_undecodable_signature_among_several_is_skipped() {
        // As the Standard Webhooks libraries do (see standard_webhooks.rs): with a
        // separator, an entry that cannot be decoded is skipped and the others checked.
        let options: &[(&str, &str)] = &[
            ("header", "x-sig"),
            ("prefix", "sha256="),
            ("separator", ","),
        ];
        let v = build(&["It's a Secret to Everybody"], options);
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        for value in [format!("sha256=zz,{good}"), format!("{good}, sha256=")] {
            assert_ok(&v, &[("x-sig", &value)], b"Hello, World!");
        }
        let wrong = format!("sha256=zz,{}", good.replace("757107", "000000"));
        assert_kind(
            &v,
            &[("x-sig", &wrong)],
            b"Hello, World!",
            "invalid_signature",
        );
        assert_kind(
            &v,
            &[("x-sig", "sha256=zz,sha256=x")],
            b"Hello, World!",
            "malformed_header",
        );
    }

    #[test]
    fn a_raw_secret_with_whitespace_is_pointed_out_on_a_mismatch() {
        // As for stripe (stripe-node's whitespace note): raw secrets only, since hex and
        // base64 secrets are trimmed before decoding.
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = headers(&[("x-sig", sig)]);
        let raw = build(
            &["It's a Secret to Everybody\n"],
            &[("header", "x-sig"), ("prefix", "sha256=")],
        );
        let e = raw.verify(&Inbound::new(&h, b"Hello, World!")).unwrap_err();
        assert!(e.detail().contains("secret 1 contains whitespace"), "{e}");
        let hex = build(
            &[" 00ff "],
            &[
                ("header", "x-sig"),
                ("prefix", "sha256="),
                ("secret_encoding", "hex"),
            ],
        );
        let e = hex.verify(&Inbound::new(&h, b"Hello, World!")).unwrap_err();
        assert!(!e.detail().contains("whitespace"), "{e}");
    }
}
