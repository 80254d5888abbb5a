//! The fuzz harness: shared by the cargo-fuzz targets (each one is
//! `fuzz_target!(|data: &[u8]| common::NAME(data))`) and by `tests/it/fuzz_corpus.rs`,
//! which replays `fuzz/corpus/<target>/` through the same functions on stable Rust.
//! It depends on `hookbox` and `http` only.
//!
//! # Input format
//!
//! Every target reads one small text format, so that seeds are readable requests that the
//! fuzzer mutates:
//!
//! ```text
//! @now 1700000000                          directives `@name value`, all optional
//! stripe-signature: t=@@t@@,v1=@@v1@@      header lines `name: value`, repeats kept
//! #0: anything                             `#k`: the k-th header name the scheme reads
//!                                          a blank line ends the head
//! {"id":"evt_1","type":"invoice.paid"}     the rest is the body, raw bytes
//! ```
//!
//! `verify_entry` takes one byte before that: the index (modulo its length) into
//! [`hookbox::SCHEMES`] of the scheme to verify with.
//!
//! Directives: `now` (Unix seconds, may be negative, optional `.mmm` milliseconds; default
//! 1700000000), `method`, `query` (the raw query string), `id` (the delivery id to sign),
//! `url`, `opt key=value` (a scheme option; for `generic-hmac` the `opt`s replace the
//! default options), `secret` (replaces the fixture's secrets, repeat for rotation),
//! `tolerance` (seconds), `scheme` (`standard_webhooks_header` only: `svix`), `sign` (use
//! the body `hookbox::sign` returns, for schemes that sign inside the body) and `flip N`
//! (xor 1 into byte N of the final body, after signing).
//!
//! Macros `@@name@@` are expanded in the body (before signing) and in header values (after
//! signing): `now`, `id`, `repeat:N:TEXT` (TEXT N times, N at most 20000) and `mac:TEXT`
//! (hex HMAC-SHA256 of TEXT keyed with the first signing secret's bytes). Header values
//! also see `@@<header name>@@`, the value `hookbox::sign` gives that header for this body,
//! id and time, and each target's pieces of it (`t`, `v1`, `v1a`, `ts`, `h1`, `timestamp`,
//! `signature`). So a seed can be a validly signed request whose structure the fuzzer then
//! mutates. An input without directives or headers starts with its blank line.
//!
//! Seeds named `valid-*` must verify (`tests/it/fuzz_corpus.rs` checks it); `crash-*` are
//! inputs that made hookbox panic.
//!
//! Every input is verified with `verify_at`, and also run through `pre_verify_handshake`,
//! `describe` and `handshake`: none may panic, and no error may quote a configured secret
//! the request did not contain. A scheme whose verifier cannot be built from the fixture
//! (not implemented yet, or a configuration the input chose) is skipped.
//!
//! # `config_toml`
//!
//! `config_toml` does not use the request format: its whole input is the text of a
//! `hookbox serve` configuration file (invalid UTF-8 replaced by U+FFFD). See
//! [`config_toml`] for what it builds and checks; its `valid-*` seeds must be accepted and
//! built whole.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookbox::{
    sign, Config, ConfigError, Destination, ErrorKind, Inbound, RetryConfig, RetryPolicy,
    SchemeConfig, Secret, SignInput, Signed, Verifier, VerifyError,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// What verifying one input gave: `None` when no verifier could be built for it. For
/// `config_toml`, `Some(Ok(()))` when the configuration was accepted and everything in it
/// built, else the first rejection, as an `invalid_body` error (the file is the input).
pub type Outcome = Option<Result<(), VerifyError>>;

/// A harness that reports what it verified.
pub type Harness = fn(&[u8]) -> Outcome;

/// Every fuzz target, by name (the directory of its corpus), with its harness.
pub const TARGETS: &[(&str, Harness)] = &[
    ("verify_entry", run_verify_entry),
    ("stripe_header", run_stripe_header),
    ("standard_webhooks_header", run_standard_webhooks_header),
    ("paddle_header", run_paddle_header),
    ("twilio_params", run_twilio_params),
    ("generic_template", run_generic_template),
    ("mailgun_body", run_mailgun_body),
    ("adyen_body", run_adyen_body),
    ("config_toml", run_config_toml),
    ("wal_segment", run_wal_segment),
];

/// The journal's write-ahead log reader over one segment's bytes: read as the log's last
/// segment (a torn end is cut) and as a sealed one (any damage is an error). No input may
/// panic; what is kept must read back the same, whole; every record kept must decode or
/// be a clear error. `Some(Ok(()))` for a whole segment whose records all decode.
pub fn wal_segment(data: &[u8]) {
    run_wal_segment(data);
}

fn run_wal_segment(data: &[u8]) -> Outcome {
    use hookbox::wal::{scan, Record};
    let sealed = scan(data, false);
    let last = scan(data, true);
    let bad = |why: String| Some(Err(VerifyError::new(ErrorKind::InvalidBody, why)));
    let s = match last {
        Ok(s) => s,
        Err(e) => {
            assert!(
                sealed.is_err(),
                "a sealed segment read what the last one refused"
            );
            return bad(e.to_string());
        }
    };
    assert!(s.valid_len <= data.len());
    if let Ok(whole) = &sealed {
        assert_eq!(
            whole.records, s.records,
            "sealed and last read the same records"
        );
        assert!(s.torn.is_none());
    }
    // What is kept, read again, is whole and the same.
    let again = scan(&data[..s.valid_len], true).expect("the kept prefix reads");
    if s.valid_len > 0 {
        assert!(
            again.torn.is_none(),
            "the kept prefix is whole: {:?}",
            again.torn
        );
    }
    assert_eq!(again.records, s.records);
    let mut decoded = Ok(());
    for (seq, payload) in &s.records {
        match Record::decode(payload) {
            Ok(r) => assert_eq!(&r.encode(), payload, "record {seq} re-encodes the same"),
            Err(e) => decoded = decoded.and(Err(format!("record {seq}: {e}"))),
        }
    }
    match (decoded, &s.torn) {
        (Err(e), _) => bad(e),
        (Ok(()), Some(t)) => bad(format!("torn: {t}")),
        (Ok(()), None) => Some(Ok(())),
    }
}

/// The whole entry point: the scheme named by the first byte, any headers, any body.
pub fn verify_entry(data: &[u8]) {
    run_verify_entry(data);
}

/// `Stripe-Signature: t=...,v1=...`.
pub fn stripe_header(data: &[u8]) {
    run_stripe_header(data);
}

/// `webhook-signature` lists (`v1,` HMAC and `v1a,` Ed25519), ids and timestamps, for
/// `standard-webhooks` and (with `@scheme svix`) `svix`.
pub fn standard_webhooks_header(data: &[u8]) {
    run_standard_webhooks_header(data);
}

/// `Paddle-Signature: ts=...;h1=...`.
pub fn paddle_header(data: &[u8]) {
    run_paddle_header(data);
}

/// Twilio: the form body's parameters, the configured URL and the request's query.
pub fn twilio_params(data: &[u8]) {
    run_twilio_params(data);
}

/// `generic-hmac`: its options (template, prefix, separator, encodings) and headers.
pub fn generic_template(data: &[u8]) {
    run_generic_template(data);
}

/// Mailgun: JSON, urlencoded and multipart bodies carrying the signature fields.
pub fn mailgun_body(data: &[u8]) {
    run_mailgun_body(data);
}

/// Adyen: notification JSON with an HMAC inside each item.
pub fn adyen_body(data: &[u8]) {
    run_adyen_body(data);
}

/// A `hookbox serve` configuration file: parsed and validated by `Config::from_toml`, and
/// when accepted, built as the server builds it at start, without I/O (secrets resolve to
/// themselves): each source's scheme configuration and verifier, each retry table's
/// policy and its delays (attempts 0, 1, u32::MAX..., hints up to `Duration::MAX`), the
/// retention period, the admin token and each destination with its HTTP client. No input
/// may panic, every `ConfigError` must name a key, and a policy's delays must end after
/// its last attempt.
pub fn config_toml(data: &[u8]) {
    run_config_toml(data);
}

fn run_verify_entry(data: &[u8]) -> Outcome {
    let (&first, rest) = data.split_first()?;
    let scheme = hookbox::SCHEMES[usize::from(first) % hookbox::SCHEMES.len()];
    run(scheme, &parse(rest), data, no_extras)
}

fn run_stripe_header(data: &[u8]) -> Outcome {
    // Signed: `t=<ts>,v1=<hex>`.
    run("stripe", &parse(data), data, |c| {
        pieces(c.signed_header("stripe-signature"), ',', '=')
    })
}

fn run_standard_webhooks_header(data: &[u8]) -> Outcome {
    let req = parse(data);
    let scheme = match req.scheme.as_deref() {
        Some("svix") => "svix",
        _ => "standard-webhooks",
    };
    run(scheme, &req, data, |c| {
        let prefix = if c.scheme == "svix" {
            "svix"
        } else {
            "webhook"
        };
        let mut out = Vec::new();
        for (name, value) in &c.signed.headers {
            if let Some(short) = name.strip_prefix(prefix) {
                out.push((short.trim_start_matches('-').to_owned(), value.clone()));
            }
        }
        if let Some(sig) = c.signed_header(&format!("{prefix}-signature")) {
            out.extend(pieces(Some(sig), ' ', ','));
        }
        // `v1a`: the same message signed with the Ed25519 key whose public half the
        // fixture's verifier holds.
        let ed = config(&[WHSK]);
        if let Ok(s) = sign(c.scheme, &ed, &c.sign_input()) {
            let sig = s.headers.iter().find(|(n, _)| n.ends_with("-signature"));
            out.extend(pieces(sig.map(|(_, v)| v.as_str()), ' ', ','));
        }
        out
    })
}

fn run_paddle_header(data: &[u8]) -> Outcome {
    // Signed: `ts=<ts>;h1=<hex>`.
    run("paddle", &parse(data), data, |c| {
        pieces(c.signed_header("paddle-signature"), ';', '=')
    })
}

fn run_twilio_params(data: &[u8]) -> Outcome {
    run("twilio", &parse(data), data, no_extras)
}

fn run_generic_template(data: &[u8]) -> Outcome {
    run("generic-hmac", &parse(data), data, no_extras)
}

fn run_mailgun_body(data: &[u8]) -> Outcome {
    run("mailgun", &parse(data), data, no_extras)
}

fn run_adyen_body(data: &[u8]) -> Outcome {
    run("adyen", &parse(data), data, no_extras)
}

// ---------------------------------------------------------------------------------------
// `config_toml`.

fn run_config_toml(data: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(data);
    let cfg = match Config::from_toml(&text) {
        Ok(cfg) => cfg,
        Err(e) => return Some(Err(rejected(&e))),
    };
    let identity = |s: &str| Ok::<_, String>(s.to_owned());
    let mut first: Option<VerifyError> = None;
    let mut note = |e: VerifyError| {
        first.get_or_insert(e);
    };

    let _ = cfg.server.retention_period();
    if let Some(admin) = &cfg.admin {
        if let Err(e) = admin.token(&identity) {
            note(rejected(&e));
        }
    }
    for (i, src) in cfg.sources.iter().enumerate() {
        match src.scheme_config(i, &identity) {
            Ok(scheme) => {
                if let Err(e) = Verifier::new(&src.scheme, &scheme) {
                    note(VerifyError::new(
                        ErrorKind::InvalidBody,
                        format!("source[{i}]: {e}"),
                    ));
                }
            }
            Err(e) => note(rejected(&e)),
        }
        if let Some(r) = &src.retry {
            if let Err(e) = retry_policy(r, &format!("source[{i}].retry")) {
                note(e);
            }
        }
    }
    for (i, d) in cfg.destinations.iter().enumerate() {
        if let Some(r) = &d.retry {
            if let Err(e) = retry_policy(r, &format!("destination[{i}].retry")) {
                note(e);
            }
        }
        match Destination::new(i, d, &d.signing_secret) {
            Ok(dest) => {
                assert_eq!(dest.name(), d.name);
                let _ = dest.timeout();
                assert_eq!(dest.retry(), d.retry.as_ref());
            }
            Err(e) => note(rejected(&e)),
        }
    }
    Some(first.map_or(Ok(()), Err))
}

/// A configuration error as the outcome; it must name a key.
fn rejected(e: &ConfigError) -> VerifyError {
    assert!(
        !e.key.trim().is_empty(),
        "a configuration error names no key: {e:?}"
    );
    VerifyError::new(ErrorKind::InvalidBody, e.to_string())
}

/// Builds the policy of a `retry` table and asks it for delays around its bounds.
fn retry_policy(r: &RetryConfig, key: &str) -> Result<(), VerifyError> {
    let policy = RetryPolicy::from_config(r, key).map_err(|e| {
        assert!(e.key.starts_with(key), "{key}: the error names {e:?}");
        rejected(&e)
    })?;
    let attempts = policy.attempts();
    assert!(attempts >= 1, "{key}: {attempts} attempts");
    let hints = [
        None,
        Some(Duration::ZERO),
        Some(Duration::from_millis(1500)),
        Some(Duration::from_secs(u64::MAX)),
        Some(Duration::MAX),
    ];
    let ns = [
        0,
        1,
        2,
        attempts.saturating_sub(1),
        attempts,
        attempts.saturating_add(1),
        u32::MAX - 1,
        u32::MAX,
    ];
    for n in ns {
        for hint in hints {
            let delay = policy.delay(n, hint);
            assert_eq!(
                delay.is_none(),
                n >= attempts,
                "{key}: delay({n}, {hint:?}) = {delay:?} with {attempts} attempts"
            );
            if let (Some(d), Some(h)) = (delay, hint) {
                assert!(
                    d <= h,
                    "{key}: delay({n}, {hint:?}) = {d:?} exceeds the hint"
                );
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Fixtures: secrets that each scheme accepts, and the header names it reads.

const DEFAULT_NOW: i64 = 1_700_000_000;
/// The Standard Webhooks specification's example secret.
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Ed25519, RFC 8032 section 7.1 TEST 1: the public key and the seed, as Standard
/// Webhooks `whpk_`/`whsk_` and as Discord hex.
const WHPK: &str = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const WHSK: &str = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const ED25519_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const ED25519_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
/// A fixed P-256 key pair (test only): base64 DER SubjectPublicKeyInfo and PKCS#8.
const P256_PUBLIC: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEI2kzkuZGN6EZaMsmwEUjwnYyHaQyu5TKsJQpxwCRpnNnSe18QDej59zwc8hLS61o/mrg5yeG+Y+xKbqCOcvi1g==";
const P256_PRIVATE: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDI0qiMG6fiISH0q9WI/tLZmQSs4m728y+qyLichtyf2hRANCAAQjaTOS5kY3oRloyybARSPCdjIdpDK7lMqwlCnHAJGmc2dJ7XxAN6Pn3PBzyEtLrWj+auDnJ4b5j7EpuoI5y+LW";
/// adyen-java-api-library's test HMAC key.
const ADYEN_KEY: &str = "9064450A8892A093D9E97EFCC9639DE31B74F3A7803135555A3C96F5A57915D6";
/// The URL of the Twilio SDKs' test vectors.
const TWILIO_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const SQUARE_URL: &str = "https://example.com/hooks/square";

/// How one scheme is configured for fuzzing.
pub struct Fixture {
    /// Verifier configuration.
    pub verify: SchemeConfig,
    /// Signing configuration (a private key for the asymmetric schemes).
    pub sign: SchemeConfig,
    /// The header names the scheme reads, for `#k` header lines.
    pub names: &'static [&'static str],
}

fn config(secrets: &[&str]) -> SchemeConfig {
    SchemeConfig {
        secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
        ..SchemeConfig::default()
    }
}

/// The fixture of `scheme`; an unknown scheme gets one plain secret.
pub fn fixture(scheme: &str) -> Fixture {
    let (verify, sign, names): (&[&str], &[&str], &'static [&'static str]) = match scheme {
        "standard-webhooks" => (
            &[WHSEC, WHPK],
            &[WHSEC],
            &["webhook-id", "webhook-timestamp", "webhook-signature"],
        ),
        "svix" => (
            &[WHSEC, WHPK],
            &[WHSEC],
            &[
                "svix-id",
                "svix-timestamp",
                "svix-signature",
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
            ],
        ),
        "stripe" => (
            &["whsec_test_secret"],
            &["whsec_test_secret"],
            &["stripe-signature"],
        ),
        "github" => (
            &["gh-secret"],
            &["gh-secret"],
            &["x-hub-signature-256", "x-github-delivery", "x-github-event"],
        ),
        "github-sha1" => (
            &["gh-secret"],
            &["gh-secret"],
            &["x-hub-signature", "x-github-delivery", "x-github-event"],
        ),
        "slack" => (
            &["8f742231b10e8888abcd99yyyzzz85a5"],
            &["8f742231b10e8888abcd99yyyzzz85a5"],
            &["x-slack-signature", "x-slack-request-timestamp"],
        ),
        "shopify" => (
            &["shpss_secret"],
            &["shpss_secret"],
            &[
                "x-shopify-hmac-sha256",
                "x-shopify-webhook-id",
                "x-shopify-topic",
                "x-shopify-event-id",
            ],
        ),
        "twilio" => (
            &["12345"],
            &["12345"],
            &["x-twilio-signature", "i-twilio-idempotency-token"],
        ),
        "square" => (
            &["sq-signature-key"],
            &["sq-signature-key"],
            &["x-square-hmacsha256-signature"],
        ),
        "paddle" => (
            &["pdl_ntfset_01hfuzz_secret"],
            &["pdl_ntfset_01hfuzz_secret"],
            &["paddle-signature"],
        ),
        "zoom" => (
            &["zm-secret-token-7Qx"],
            &["zm-secret-token-7Qx"],
            &[
                "x-zm-signature",
                "x-zm-request-timestamp",
                "x-zm-trackingid",
            ],
        ),
        "linear" => (
            &["lin_wh_7f3a9c0e1b"],
            &["lin_wh_7f3a9c0e1b"],
            &["linear-signature", "linear-delivery", "linear-event"],
        ),
        "twitch" => (
            &["twitch-secret-0123456789"],
            &["twitch-secret-0123456789"],
            &[
                "twitch-eventsub-message-id",
                "twitch-eventsub-message-timestamp",
                "twitch-eventsub-message-signature",
                "twitch-eventsub-message-type",
                "twitch-eventsub-subscription-type",
            ],
        ),
        "lemonsqueezy" => (
            &["lemon-signing-secret"],
            &["lemon-signing-secret"],
            &["x-signature", "x-event-name"],
        ),
        "mailgun" => (
            &["key-mailgun-signing"],
            &["key-mailgun-signing"],
            &["content-type"],
        ),
        "discord" => (
            &[ED25519_PUBLIC],
            &[ED25519_SEED],
            &["x-signature-ed25519", "x-signature-timestamp"],
        ),
        "sendgrid" => (
            &[P256_PUBLIC],
            &[P256_PRIVATE],
            &[
                "x-twilio-email-event-webhook-signature",
                "x-twilio-email-event-webhook-timestamp",
            ],
        ),
        "meta" => (&["app-secret"], &["app-secret"], &["x-hub-signature-256"]),
        "intercom" => (&["client-secret"], &["client-secret"], &["x-hub-signature"]),
        "gitlab" => (
            &["glpat-fuzz-Q7vX2kd9"],
            &["glpat-fuzz-Q7vX2kd9"],
            &["x-gitlab-token", "x-gitlab-event", "x-gitlab-event-uuid"],
        ),
        "adyen" => (&[ADYEN_KEY], &[ADYEN_KEY], &["content-type"]),
        "generic-hmac" => (
            &["generic-secret"],
            &["generic-secret"],
            &["x-signature", "x-timestamp", "x-id", "x-type"],
        ),
        _ => (&["fuzz-secret"], &["fuzz-secret"], &[]),
    };
    let mut f = Fixture {
        verify: config(verify),
        sign: config(sign),
        names,
    };
    let url = match scheme {
        "twilio" => Some(TWILIO_URL),
        "square" => Some(SQUARE_URL),
        _ => None,
    };
    let options: &[(&str, &str)] = match scheme {
        "meta" => &[("verify_token", "meta-verify-token")],
        "generic-hmac" => &[
            ("header", "x-signature"),
            ("prefix", "sha256="),
            ("template", "{timestamp}.{id}.{body}"),
            ("timestamp_header", "x-timestamp"),
            ("id_header", "x-id"),
            ("type_header", "x-type"),
        ],
        _ => &[],
    };
    for cfg in [&mut f.verify, &mut f.sign] {
        cfg.url = url.map(str::to_owned);
        for (k, v) in options {
            cfg.options.insert((*k).to_owned(), (*v).to_owned());
        }
    }
    f
}

// ---------------------------------------------------------------------------------------
// The input format.

/// One parsed input.
#[derive(Debug, Clone)]
pub struct Request {
    now_secs: i64,
    now_millis: u32,
    method: Method,
    query: Option<String>,
    id: String,
    url: Option<String>,
    options: Vec<(String, String)>,
    secrets: Vec<String>,
    tolerance: Option<u64>,
    scheme: Option<String>,
    sign_body: bool,
    flip: Option<usize>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

fn split_line(rest: &[u8]) -> (&[u8], &[u8]) {
    match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[]),
    }
}

/// Parses the head (directives and header lines) and takes the rest as the body.
pub fn parse(data: &[u8]) -> Request {
    let mut req = Request {
        now_secs: DEFAULT_NOW,
        now_millis: 0,
        method: Method::POST,
        query: None,
        id: "msg_fuzz_1".to_owned(),
        url: None,
        options: Vec::new(),
        secrets: Vec::new(),
        tolerance: None,
        scheme: None,
        sign_body: false,
        flip: None,
        headers: Vec::new(),
        body: Vec::new(),
    };
    let mut rest = data;
    while !rest.is_empty() {
        let (line, after) = split_line(rest);
        rest = after;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if let Some(directive) = line.strip_prefix(b"@") {
            directive_into(&mut req, &String::from_utf8_lossy(directive));
        } else {
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => (line, &[][..]),
            };
            let value = match value.iter().position(|&b| b != b' ' && b != b'\t') {
                Some(i) => &value[i..],
                None => &[],
            };
            req.headers
                .push((name.trim_ascii().to_vec(), value.to_vec()));
        }
    }
    req.body = rest.to_vec();
    req
}

fn directive_into(req: &mut Request, directive: &str) {
    let (word, value) = directive.split_once(' ').unwrap_or((directive, ""));
    match word {
        "now" => {
            let (secs, frac) = value.trim().split_once('.').unwrap_or((value.trim(), ""));
            if let Ok(secs) = secs.parse() {
                req.now_secs = secs;
                let digits: String = frac.chars().take(3).collect();
                req.now_millis = format!("{digits:0<3}").parse().unwrap_or(0);
            }
        }
        "method" => {
            if let Ok(m) = Method::from_bytes(value.trim().as_bytes()) {
                req.method = m;
            }
        }
        "query" => req.query = Some(value.to_owned()),
        "id" => req.id = value.to_owned(),
        "url" => req.url = Some(value.to_owned()),
        "opt" => {
            let (k, v) = value.split_once('=').unwrap_or((value, ""));
            req.options.push((k.to_owned(), v.to_owned()));
        }
        "secret" => req.secrets.push(value.to_owned()),
        "tolerance" => req.tolerance = value.trim().parse().ok(),
        "scheme" => req.scheme = Some(value.trim().to_owned()),
        "sign" => req.sign_body = true,
        "flip" => req.flip = value.trim().parse().ok(),
        _ => {}
    }
}

impl Request {
    /// The request time; a time the platform cannot represent falls back to the default.
    fn now(&self) -> SystemTime {
        let millis = Duration::from_millis(u64::from(self.now_millis));
        let t = if self.now_secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::from_secs(self.now_secs.unsigned_abs()))
        } else {
            UNIX_EPOCH.checked_sub(Duration::from_secs(self.now_secs.unsigned_abs()))
        };
        t.and_then(|t| t.checked_add(millis))
            .unwrap_or(UNIX_EPOCH + Duration::from_secs(DEFAULT_NOW as u64))
    }
}

/// Expands `@@name@@` macros; unknown names are left as written. The output is capped at
/// 1 MiB.
fn expand(text: &[u8], lookup: &dyn Fn(&[u8]) -> Option<Vec<u8>>) -> Vec<u8> {
    const CAP: usize = 1 << 20;
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find(rest, b"@@") {
        out.extend_from_slice(&rest[..start]);
        let after = &rest[start + 2..];
        let replaced = find(after, b"@@").and_then(|end| {
            let value = lookup(&after[..end])?;
            Some((value, &after[end + 2..]))
        });
        match replaced {
            Some((value, next)) if out.len() + value.len() <= CAP => {
                out.extend_from_slice(&value);
                rest = next;
            }
            _ => {
                out.extend_from_slice(b"@@");
                rest = after;
            }
        }
    }
    out.extend_from_slice(rest);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `k<kv>v` pieces of a signed header value split by `sep`, as macros.
fn pieces(value: Option<&str>, sep: char, kv: char) -> Vec<(String, String)> {
    value
        .into_iter()
        .flat_map(|v| v.split(sep))
        .filter_map(|p| p.split_once(kv))
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .collect()
}

/// What the per-target macros see.
pub struct Ctx<'a> {
    scheme: &'a str,
    signed: Signed,
    body: &'a [u8],
    id: &'a str,
    now: SystemTime,
}

impl Ctx<'_> {
    fn signed_header(&self, name: &str) -> Option<&str> {
        self.signed
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn sign_input(&self) -> SignInput<'_> {
        SignInput {
            body: self.body,
            id: self.id,
            now: self.now,
        }
    }
}

fn no_extras(_: &Ctx<'_>) -> Vec<(String, String)> {
    Vec::new()
}

/// Hex HMAC-SHA256 of `text` keyed with `key`'s bytes, computed by `generic-hmac`'s signer
/// (the harness has no crypto of its own).
fn mac_hex(key: &str, text: &[u8]) -> Option<String> {
    let mut cfg = config(&[key]);
    cfg.options.insert("header".into(), "x-mac".into());
    let input = SignInput {
        body: text,
        id: "",
        now: UNIX_EPOCH,
    };
    let signed = sign("generic-hmac", &cfg, &input).ok()?;
    signed.headers.into_iter().next().map(|(_, v)| v)
}

/// The macros every target has: `now`, `id`, `repeat:N:TEXT`, `mac:TEXT`.
fn builtin(name: &[u8], req: &Request, mac_key: Option<&str>) -> Option<Vec<u8>> {
    match name {
        b"now" => Some(req.now_secs.to_string().into_bytes()),
        b"id" => Some(req.id.clone().into_bytes()),
        _ => {
            if let Some(rest) = name.strip_prefix(b"repeat:") {
                let i = rest.iter().position(|&b| b == b':')?;
                let n: usize = std::str::from_utf8(&rest[..i]).ok()?.parse().ok()?;
                return (n <= 20_000).then(|| rest[i + 1..].repeat(n));
            }
            let text = name.strip_prefix(b"mac:")?;
            mac_hex(mac_key?, text).map(String::into_bytes)
        }
    }
}

/// `#k` is the k-th of `names` (modulo their number); any other name is itself.
fn header_name(name: &[u8], names: &[&str]) -> Option<HeaderName> {
    let indexed = name
        .strip_prefix(b"#")
        .and_then(|k| std::str::from_utf8(k).ok()?.parse::<usize>().ok())
        .filter(|_| !names.is_empty());
    match indexed {
        Some(k) => HeaderName::from_bytes(names[k % names.len()].as_bytes()).ok(),
        None => HeaderName::from_bytes(name).ok(),
    }
}

/// Bytes a header value cannot hold (controls other than tab, DEL) are dropped.
fn header_value(bytes: &[u8]) -> Option<HeaderValue> {
    let clean: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
        .collect();
    HeaderValue::from_bytes(&clean).ok()
}

/// Builds the verifier, signs, expands macros, verifies, and checks the oracle.
fn run(
    scheme: &str,
    req: &Request,
    data: &[u8],
    extras: impl Fn(&Ctx<'_>) -> Vec<(String, String)>,
) -> Outcome {
    let mut fx = fixture(scheme);
    if !req.secrets.is_empty() {
        let secrets: Vec<Secret> = req
            .secrets
            .iter()
            .map(|s| Secret::new(s.as_str()))
            .collect();
        fx.verify.secrets.clone_from(&secrets);
        fx.sign.secrets = secrets;
    }
    if scheme == "generic-hmac" && !req.options.is_empty() {
        fx.verify.options.clear();
        fx.sign.options.clear();
    }
    for cfg in [&mut fx.verify, &mut fx.sign] {
        if req.url.is_some() {
            cfg.url.clone_from(&req.url);
        }
        for (k, v) in &req.options {
            cfg.options.insert(k.clone(), v.clone());
        }
        cfg.tolerance = req.tolerance.map(Duration::from_secs);
    }
    let verifier = Verifier::new(scheme, &fx.verify).ok()?;
    let now = req.now();
    let mac_key = fx.sign.secrets.first().map(|s| s.expose().to_owned());
    let base = |name: &[u8]| builtin(name, req, mac_key.as_deref());

    let mut body = expand(&req.body, &base);
    let wants_signature =
        req.sign_body || req.headers.iter().any(|(_, v)| find(v, b"@@").is_some());
    let mut macros = Vec::new();
    if wants_signature {
        let input = SignInput {
            body: &body,
            id: &req.id,
            now,
        };
        if let Ok(signed) = sign(scheme, &fx.sign, &input) {
            let signed_body = signed.body.clone();
            let ctx = Ctx {
                scheme,
                signed,
                body: &body,
                id: &req.id,
                now,
            };
            macros = extras(&ctx);
            macros.extend(ctx.signed.headers.iter().cloned());
            if let (true, Some(b)) = (req.sign_body, signed_body) {
                body = b;
            }
        }
    }
    if let Some(n) = req.flip {
        if !body.is_empty() {
            let i = n % body.len();
            body[i] ^= 1;
        }
    }

    let lookup = |name: &[u8]| {
        base(name).or_else(|| {
            macros
                .iter()
                .find(|(k, _)| k.as_bytes() == name)
                .map(|(_, v)| v.clone().into_bytes())
        })
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &req.headers {
        let (Some(name), Some(value)) = (
            header_name(name, fx.names),
            header_value(&expand(value, &lookup)),
        ) else {
            continue;
        };
        headers.append(name, value);
    }

    let inbound = Inbound::new(&headers, &body)
        .with_method(&req.method)
        .with_query(req.query.as_deref());
    let secrets: Vec<&str> = fx
        .verify
        .secrets
        .iter()
        .chain(&fx.sign.secrets)
        .map(Secret::expose)
        .collect();
    // An error may quote what the request holds (a header sent with the token itself,
    // as GitLab's is), never a secret the request did not contain.
    let sent = |s: &[u8]| {
        find(data, s).is_some()
            || find(&body, s).is_some()
            || headers.iter().any(|(_, v)| find(v.as_bytes(), s).is_some())
    };
    let no_leak = |e: &VerifyError| {
        let text = e.to_string();
        for s in &secrets {
            if s.len() >= 8 && text.contains(s) && !sent(s.as_bytes()) {
                panic!("a {scheme} error quotes a configured secret: {text}");
            }
        }
    };
    if let Some(Err(e)) = verifier.pre_verify_handshake(&inbound) {
        no_leak(&e);
    }
    let result = verifier.verify_at(&inbound, now);
    if let Err(e) = &result {
        no_leak(e);
    }
    let _ = verifier.describe(&inbound);
    let _ = verifier.handshake(&inbound);
    Some(result)
}
