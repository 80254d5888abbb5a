//! Standard Webhooks (standardwebhooks.com), also used by Svix, Resend, Clerk, Supabase,
//! Lemon Squeezy's new API, OpenAI and many others.
//!
//! Headers `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a
//! space-delimited list of `version,signature` entries. The signed content is
//! `id + "." + timestamp + "." + body`, exactly as sent.
//!
//! - `v1`: base64 HMAC-SHA256; the secret is `whsec_` + base64 of the key (a secret
//!   without the prefix is read as base64 too, as the official libraries do).
//! - `v1a`: base64 Ed25519 signature; the verifying key is `whpk_` + base64 of the
//!   32-byte public key. Signing takes `whsk_` + base64 of the 32-byte seed (or the
//!   64-byte seed + public key), which also verifies.
//!
//! Option `secret_type` says how the secrets are read, for keys given without their
//! prefix (the Go library's `NewWebhookAsymmetric` takes bare base64 keys):
//!
//! | `secret_type`     | every secret is                                                  |
//! |-------------------|------------------------------------------------------------------|
//! | `auto` (default)  | by prefix: `whpk_` public key, `whsk_` private key, else HMAC    |
//! | `ed25519_public`  | an Ed25519 public key, base64 of 32 bytes, `whpk_` optional      |
//! | `ed25519_private` | an Ed25519 private key, base64 of the seed, `whsk_` optional     |
//!
//! The key's shape is never guessed: without the option a bare secret is an HMAC key, as
//! the specification says. Other options are refused, so a misspelt one is not ignored.
//!
//! Entries of other versions are ignored; as in the reference libraries an entry that
//! cannot be decoded is skipped and the others are checked (`malformed_header` only when
//! no `v1` or `v1a` entry decodes). Tolerance 300 s (the specification's
//! recommendation), checked before the signature as the reference libraries do.
//! Source: the Standard Webhooks specification and its reference libraries.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use super::common::{
    b64, check_tolerance_secs, ct_eq, json_meta, meta_header, parse_unix_secs, truncate, unix_secs,
    Algorithm, Encoding, KeyedMac, Tag, Tally, B64_LENIENT, SIG_BUF,
};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

/// Header names of one flavour (`webhook-*` or `svix-*`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Names {
    pub(super) id: &'static str,
    pub(super) timestamp: &'static str,
    pub(super) signature: &'static str,
}

pub(super) const WEBHOOK: Names = Names {
    id: "webhook-id",
    timestamp: "webhook-timestamp",
    signature: "webhook-signature",
};

/// The verification core shared by `standard-webhooks` and `svix`.
#[derive(Debug)]
pub(super) struct Core {
    /// HMAC keys from `whsec_` secrets.
    hmac: Vec<KeyedMac>,
    /// Ed25519 public keys from `whpk_` secrets.
    ed25519: Vec<VerifyingKey>,
    tolerance: Duration,
}

impl Core {
    pub(super) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        let ty = SecretType::of(cfg)?;
        if cfg.secrets.is_empty() {
            return Err(BuildError::NoSecret);
        }
        let mut hmac = Vec::new();
        let mut ed25519 = Vec::new();
        for (i, s) in cfg.secrets.iter().enumerate() {
            match read_key(s.expose(), ty, i + 1)? {
                Key::Hmac(k) => hmac.push(k),
                Key::Public(k) => ed25519.push(k),
                // A signing key also verifies: its public half.
                Key::Private(k) => ed25519.push(k.verifying_key()),
            }
        }
        Ok(Core {
            hmac,
            ed25519,
            tolerance: cfg.tolerance_or(Duration::from_secs(300)),
        })
    }

    pub(super) fn verify(
        &self,
        req: &Inbound<'_>,
        names: &[Names],
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        let pick = |f: fn(&Names) -> &'static str| -> Result<(&str, &str), VerifyError> {
            for n in names {
                if let Some(v) = super::common::optional_header(req.headers, f(n))? {
                    return Ok((f(n), v));
                }
            }
            Err(VerifyError::missing(f(&names[0])))
        };
        let (_, id) = pick(|n| n.id)?;
        let (ts_name, ts_text) = pick(|n| n.timestamp)?;
        let (sig_name, sigs) = pick(|n| n.signature)?;
        let ts = parse_unix_secs(ts_name, ts_text)?;
        check_tolerance_secs(ts, now, self.tolerance)?;

        let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_text.as_bytes(), b".", req.body];
        // One tag per HMAC secret, on the stack for the usual few secrets.
        let mut stack = [Tag::EMPTY; 4];
        let heap: Vec<Tag>;
        let tags: &[Tag] = if self.hmac.len() <= stack.len() {
            for (slot, k) in stack.iter_mut().zip(&self.hmac) {
                *slot = k.tag(&parts);
            }
            &stack[..self.hmac.len()]
        } else {
            heap = self.hmac.iter().map(|k| k.tag(&parts)).collect();
            &heap
        };
        let mut message = None;
        // As the reference libraries do, an entry that cannot be decoded is skipped and
        // the others are checked.
        let mut tally = Tally::default();
        let mut ok = false;
        for entry in sigs.split(' ').filter(|e| !e.is_empty()) {
            let Some((version, sig)) = entry.split_once(',') else {
                tally.skip(VerifyError::malformed(format!(
                    "{sig_name}: entry {:?} is not `v1,<base64>` or `v1a,<base64>`",
                    truncate(entry, 24)
                )));
                continue;
            };
            let mut buf = [0u8; SIG_BUF];
            match version {
                "v1" => {
                    let what = format!("{sig_name}: `v1` signature");
                    if let Some(sig) = tally.decode(Encoding::Base64, &what, sig, 32, &mut buf) {
                        for t in tags {
                            ok |= ct_eq(t.as_bytes(), sig.bytes);
                        }
                    }
                }
                "v1a" => {
                    let what = format!("{sig_name}: `v1a` signature");
                    let sig = tally.decode(Encoding::Base64, &what, sig, 64, &mut buf);
                    // base64 of another length decodes: a signature that cannot match
                    if let Some(sig) = sig.filter(|s| s.bytes.len() == 64) {
                        let sig = ed25519_dalek::Signature::from_slice(sig.bytes)
                            .expect("64 bytes is a signature");
                        let msg = message.get_or_insert_with(|| parts.concat());
                        for k in &self.ed25519 {
                            ok |= k.verify_strict(msg, &sig).is_ok();
                        }
                    }
                }
                _ => {}
            }
        }
        if ok {
            return Ok(());
        }
        tally.require_decoded(|| {
            VerifyError::malformed(format!(
                "{sig_name}: no `v1` or `v1a` entry (expected space-separated `v1,<base64>`)"
            ))
        })?;
        Err(tally.mismatch(format!(
            "none of the {} signature(s) matches `id.timestamp.body` under the {} HMAC secret(s) and {} Ed25519 key(s) configured",
            tally.decoded_count(),
            self.hmac.len(),
            self.ed25519.len()
        )))
    }
}

/// How HMAC secrets are read: standard base64, padding optional, and bits past the last
/// byte ignored, as the Python reference library reads them (`b64decode(secret + "==")`,
/// tested with such secrets); a secret is configuration, not input, so there is nothing
/// to gain from refusing a key it accepts.
const B64_SECRET: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The options this scheme (and `svix`) reads.
const OPTIONS: &[&str] = &["secret_type"];

/// How the configured secrets are read: the `secret_type` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretType {
    /// `auto` (the default): by prefix, `whpk_` an Ed25519 public key, `whsk_` an
    /// Ed25519 private key, anything else (`whsec_` or bare base64) an HMAC key.
    Auto,
    /// `ed25519_public`: every secret is an Ed25519 public key, base64 of 32 bytes,
    /// `whpk_` optional (as the Go library's `NewWebhookAsymmetric` takes it).
    Ed25519Public,
    /// `ed25519_private`: every secret is an Ed25519 private key, base64 of the 32-byte
    /// seed (or 64-byte seed + public key), `whsk_` optional.
    Ed25519Private,
}

impl SecretType {
    fn of(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        if let Some(unknown) = cfg.options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
            let normal = unknown.trim().to_ascii_lowercase().replace('-', "_");
            return Err(BuildError::Option {
                option: OPTIONS
                    .iter()
                    .copied()
                    .find(|o| *o == normal)
                    .unwrap_or("(unknown)"),
                problem: format!(
                    "`{unknown}` is not an option of this scheme; the options are: {}",
                    OPTIONS.join(", ")
                ),
            });
        }
        match cfg.option("secret_type").map(str::trim) {
            None | Some("auto") => Ok(SecretType::Auto),
            Some("ed25519_public") => Ok(SecretType::Ed25519Public),
            Some("ed25519_private") => Ok(SecretType::Ed25519Private),
            Some(other) => Err(BuildError::Option {
                option: "secret_type",
                problem: format!(
                    "expected `auto`, `ed25519_public` or `ed25519_private`, found {other:?}"
                ),
            }),
        }
    }
}

/// One configured secret, read.
enum Key {
    Hmac(KeyedMac),
    Public(VerifyingKey),
    Private(SigningKey),
}

/// Reads secret number `n` (for errors, which never show the secret) as `ty` says.
fn read_key(secret: &str, ty: SecretType, n: usize) -> Result<Key, BuildError> {
    let refuse = |prefix: &str, what: &str| {
        BuildError::secret(format!(
            "secret {n} starts with `{prefix}`, but `secret_type` is `{what}`"
        ))
    };
    match ty {
        SecretType::Auto => {
            if let Some(pk) = secret.strip_prefix("whpk_") {
                public_key(pk, n).map(Key::Public)
            } else if let Some(sk) = secret.strip_prefix("whsk_") {
                signing_key(sk, n).map(Key::Private)
            } else {
                Ok(Key::Hmac(KeyedMac::new(
                    Algorithm::Sha256,
                    &hmac_key(secret)?,
                )?))
            }
        }
        SecretType::Ed25519Public => match secret {
            s if s.starts_with("whsec_") => Err(refuse("whsec_", "ed25519_public")),
            s if s.starts_with("whsk_") => Err(refuse("whsk_", "ed25519_public")),
            s => public_key(s.strip_prefix("whpk_").unwrap_or(s), n).map(Key::Public),
        },
        SecretType::Ed25519Private => match secret {
            s if s.starts_with("whsec_") => Err(refuse("whsec_", "ed25519_private")),
            s if s.starts_with("whpk_") => Err(refuse("whpk_", "ed25519_private")),
            s => signing_key(s.strip_prefix("whsk_").unwrap_or(s), n).map(Key::Private),
        },
    }
}

/// `whsec_<base64>` (or bare base64) to HMAC key bytes.
fn hmac_key(secret: &str) -> Result<Vec<u8>, BuildError> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    B64_SECRET
        .decode(b64)
        .map_err(|_| BuildError::secret("expected `whsec_` followed by base64"))
}

/// Base64 of a 32-byte Ed25519 public key (its prefix already removed).
fn public_key(b64: &str, n: usize) -> Result<VerifyingKey, BuildError> {
    let bytes = B64_LENIENT
        .decode(b64)
        .map_err(|_| BuildError::secret(format!("Ed25519 public key {n}: not valid base64")))?;
    let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        BuildError::secret(format!(
            "Ed25519 public key {n}: expected 32 bytes, found {}",
            bytes.len()
        ))
    })?;
    VerifyingKey::from_bytes(&arr)
        .map_err(|_| BuildError::secret(format!("Ed25519 public key {n}: not a curve point")))
}

/// Base64 of a 32-byte seed or 64-byte keypair (its prefix already removed).
fn signing_key(b64: &str, n: usize) -> Result<SigningKey, BuildError> {
    let bytes = B64_LENIENT
        .decode(b64)
        .map_err(|_| BuildError::secret(format!("Ed25519 private key {n}: not valid base64")))?;
    let seed: [u8; 32] = bytes
        .get(..32)
        .filter(|_| bytes.len() == 32 || bytes.len() == 64)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| {
            BuildError::secret(format!(
                "Ed25519 private key {n}: expected 32 or 64 bytes, found {}",
                bytes.len()
            ))
        })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Signs as a Standard Webhooks sender with header names `names`.
pub(super) fn sign_with(
    cfg: &SchemeConfig,
    input: &SignInput<'_>,
    names: Names,
) -> Result<Signed, BuildError> {
    let ty = SecretType::of(cfg)?;
    let secret = cfg.secrets.first().ok_or(BuildError::NoSecret)?.expose();
    let ts = unix_secs(input.now).to_string();
    let parts: [&[u8]; 5] = [input.id.as_bytes(), b".", ts.as_bytes(), b".", input.body];
    let signature = match read_key(secret, ty, 1)? {
        Key::Private(k) => format!("v1a,{}", b64(&k.sign(&parts.concat()).to_bytes())),
        Key::Public(_) => {
            return Err(BuildError::CannotSign(
                "standard-webhooks",
                "an Ed25519 public key cannot sign; give the private key (`whsk_`)",
            ))
        }
        Key::Hmac(k) => format!("v1,{}", b64(k.tag(&parts).as_bytes())),
    };
    Ok(Signed::default()
        .header(names.id, input.id)
        .header(names.timestamp, ts)
        .header(names.signature, signature))
}

#[derive(Debug)]
pub(crate) struct StandardWebhooks(Core);

impl StandardWebhooks {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        Core::new(cfg).map(StandardWebhooks)
    }
}

impl Scheme for StandardWebhooks {
    fn name(&self) -> &str {
        "standard-webhooks"
    }

    fn verify(&self, req: &Inbound<'_>, now: SystemTime) -> Result<(), VerifyError> {
        self.0.verify(req, &[WEBHOOK], now)
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        EventMeta {
            id: meta_header(req.headers, WEBHOOK.id),
            event_type: json_meta(req.body, None, Some("/type")).event_type,
        }
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    sign_with(cfg, input, WEBHOOK)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::{BuildError, Verifier};

    // Known answer from the Standard Webhooks specification's example and the svix
    // libraries' tests.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: u64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn h<'a>(sig: &'a str, ts: &'a str) -> Vec<(&'static str, &'a str)> {
        vec![
            ("webhook-id", ID),
            ("webhook-timestamp", ts),
            ("webhook-signature", sig),
        ]
    }

    #[test]
    fn spec_vector() {
        let v = verifier("standard-webhooks", &[SECRET]);
        assert_ok_at(&v, &h(SIG, "1614265330"), BODY, TS);
        // several signatures, unknown versions ignored
        let many = format!("v2,xyz v1,AAAA {SIG}");
        assert_ok_at(&v, &h(&many, "1614265330"), BODY, TS);
        // the prefix-less secret is read as base64 too
        assert_ok_at(
            &verifier("standard-webhooks", &[&SECRET[6..]]),
            &h(SIG, "1614265330"),
            BODY,
            TS,
        );
    }

    #[test]
    fn tolerance_is_inclusive_both_ways() {
        let v = verifier("standard-webhooks", &[SECRET]);
        assert_ok_at(&v, &h(SIG, "1614265330"), BODY, TS + 300);
        assert_ok_at(&v, &h(SIG, "1614265330"), BODY, TS - 300);
        assert_kind_at(
            &v,
            &h(SIG, "1614265330"),
            BODY,
            TS + 301,
            "timestamp_out_of_tolerance",
        );
        assert_kind_at(
            &v,
            &h(SIG, "1614265330"),
            BODY,
            TS - 301,
            "timestamp_out_of_tolerance",
        );
    }

    #[test]
    fn rejections() {
        let v = verifier("standard-webhooks", &[SECRET]);
        assert_kind_at(&v, &h(SIG, "1614265330"), b"{}", TS, "invalid_signature");
        let other = verifier("standard-webhooks", &["whsec_dGVzdA=="]);
        assert_kind_at(&other, &h(SIG, "1614265330"), BODY, TS, "invalid_signature");
        assert_kind_at(&v, &h(SIG, "16142653x0"), BODY, TS, "malformed_header");
        assert_kind_at(&v, &h("v1,@@@", "1614265330"), BODY, TS, "malformed_header");
        assert_kind_at(&v, &h("v2,abc", "1614265330"), BODY, TS, "malformed_header");
        assert_kind_at(
            &v,
            &[("webhook-id", ID), ("webhook-timestamp", "1614265330")],
            BODY,
            TS,
            "missing_header",
        );
        let mut dup = h(SIG, "1614265330");
        dup.push(("webhook-signature", SIG));
        assert_kind_at(&v, &dup, BODY, TS, "malformed_header");
        // rotation
        let both = verifier("standard-webhooks", &["whsec_dGVzdA==", SECRET]);
        assert_ok_at(&both, &h(SIG, "1614265330"), BODY, TS);
        let bad = crate::Verifier::new("standard-webhooks", &config(&["whsec_!!"]));
        assert_eq!(
            bad.unwrap_err().to_string(),
            "invalid_secret: expected `whsec_` followed by base64"
        );
    }

    #[test]
    fn ed25519_round_trip() {
        use base64::Engine as _;
        let seed = [7u8; 32];
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        let whsk = format!(
            "whsk_{}",
            base64::engine::general_purpose::STANDARD.encode(seed)
        );
        let whpk = format!(
            "whpk_{}",
            base64::engine::general_purpose::STANDARD.encode(sk.verifying_key().to_bytes())
        );
        let (hs, b) = signed("standard-webhooks", &config(&[&whsk]), BODY, ID, TS);
        assert!(hs[2].1.starts_with("v1a,"));
        let v = verifier("standard-webhooks", &[SECRET, &whpk]);
        assert_ok_at(&v, &pairs(&hs), &b, TS);
        assert_kind_at(&v, &pairs(&hs), b"{}", TS, "invalid_signature");
        assert!(crate::sign(
            "standard-webhooks",
            &config(&[&whpk]),
            &crate::SignInput {
                body: b"",
                id: "x",
                now: at(0)
            }
        )
        .is_err());
    }

    #[test]
    fn a_signature_that_decodes_to_the_wrong_length_is_a_mismatch() {
        // with an HMAC secret and the Ed25519 public key of the all-zero seed
        let v = verifier(
            "standard-webhooks",
            &[SECRET, "whpk_O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik="],
        );
        // standard-webhooks libraries/go webhook_asymmetric_test.go: "invalid signature
        // is invalid" sends `v1a,` with base64 of 32 bytes, "partial signature is invalid"
        // sends `v1a,`, and webhook_test.go sends `v1,`; all are ErrNoMatchingSignature.
        for sig in [
            "v1a,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v1a,",
            "v1,",
        ] {
            assert_kind_at(&v, &h(sig, "1614265330"), BODY, TS, "invalid_signature");
        }
        // longer than any signature, still base64
        let long = format!("v1,{}", "A".repeat(200));
        assert_kind_at(&v, &h(&long, "1614265330"), BODY, TS, "invalid_signature");
    }

    #[test]
    fn an_undecodable_entry_among_several_is_skipped() {
        // The Standard Webhooks reference libraries split on spaces and check every `v1`
        // entry: one that is not base64 does not make the header unreadable.
        let v = verifier("standard-webhooks", &[SECRET]);
        let ts = "1614265330";
        for sigs in [
            format!("v1,@@@ {SIG}"),
            format!("{SIG} v1,@@@"),
            format!("v1 {SIG}"),
        ] {
            assert_ok_at(&v, &h(&sigs, ts), BODY, TS);
        }
        // libraries/python tests `test_invalid_signature_raises_error`: a decodable v1
        // that does not match; beside an undecodable one it is still a mismatch
        let wrong = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
        assert_kind_at(&v, &h(wrong, ts), BODY, TS, "invalid_signature");
        let both = format!("v1,@@@ {wrong}");
        assert_kind_at(&v, &h(&both, ts), BODY, TS, "invalid_signature");
        assert_kind_at(&v, &h("v1,@@@ v1a,###", ts), BODY, TS, "malformed_header");
    }

    // standard-webhooks libraries/go webhook_asymmetric_test.go `TestAsymmetricWebhookSign`:
    // this bare base64 seed (no `whsk_`) signs ID.TS.BODY as `V1A`. Its public key, bare
    // base64, computed independently with pyca/cryptography
    // (Ed25519PrivateKey.from_private_bytes(seed).public_key()), as is `V1A`.
    const GO_SEED: &str = "VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=";
    const GO_PUBLIC: &str = "ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=";
    const GO_V1A: &str = "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==";

    fn with_type(scheme: &str, secrets: &[&str], ty: &str) -> Result<Verifier, BuildError> {
        let mut b = Verifier::builder(scheme).option("secret_type", ty);
        for s in secrets {
            b = b.secret(*s);
        }
        b.build()
    }

    #[test]
    fn bare_ed25519_public_key_with_secret_type() {
        // The Go library's NewWebhookAsymmetric takes the public key with or without
        // `whpk_`; here the option says so, the key's shape is not guessed.
        let ts = "1614265330";
        for key in [GO_PUBLIC.to_owned(), format!("whpk_{GO_PUBLIC}")] {
            for scheme in ["standard-webhooks", "svix"] {
                let v = with_type(scheme, &[&key], "ed25519_public").unwrap();
                assert_ok_at(&v, &h(GO_V1A, ts), BODY, TS);
                assert_kind_at(&v, &h(GO_V1A, ts), b"{}", TS, "invalid_signature");
            }
        }
        // without the option a bare secret is an HMAC key, as the specification says
        assert_kind_at(
            &verifier("standard-webhooks", &[GO_PUBLIC]),
            &h(GO_V1A, ts),
            BODY,
            TS,
            "invalid_signature",
        );
        // the Go test's multi-signature case: other versions and a v1 beside the v1a
        let many = format!(
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {GO_V1A}"
        );
        let v = with_type("standard-webhooks", &[GO_PUBLIC], "ed25519_public").unwrap();
        assert_ok_at(&v, &h(&many, ts), BODY, TS);
        // a public key cannot sign
        let cfg = v_config(&[GO_PUBLIC], "ed25519_public");
        assert!(matches!(
            crate::sign("standard-webhooks", &cfg, &input()),
            Err(BuildError::CannotSign(..))
        ));
    }

    #[test]
    fn bare_ed25519_seed_with_secret_type() {
        // `TestAsymmetricWebhookSign` (above): the bare seed signs the Go vector exactly,
        // and verifies as its public half (as NewWebhookAsymmetric(nil, &seed) does).
        let cfg = v_config(&[GO_SEED], "ed25519_private");
        let (hs, body) = signed("standard-webhooks", &cfg, BODY, ID, TS);
        assert_eq!(hs[2], ("webhook-signature".to_owned(), GO_V1A.to_owned()));
        let v = with_type("standard-webhooks", &[GO_SEED], "ed25519_private").unwrap();
        assert_ok_at(&v, &pairs(&hs), &body, TS);
        let prefixed = format!("whsk_{GO_SEED}");
        let v = with_type("standard-webhooks", &[&prefixed], "ed25519_private").unwrap();
        assert_ok_at(&v, &h(GO_V1A, "1614265330"), BODY, TS);
    }

    #[test]
    fn secret_type_errors() {
        let option = |r: Result<Verifier, BuildError>| match r.unwrap_err() {
            BuildError::Option { option, problem } => (option, problem),
            other => panic!("expected an option error, got {other}"),
        };
        let (o, p) = option(with_type("standard-webhooks", &[SECRET], "public"));
        assert_eq!(o, "secret_type");
        assert!(p.contains("ed25519_public"), "{p}");
        // misspelt options are refused, not ignored
        let misspelt = Verifier::builder("svix")
            .secret(GO_PUBLIC)
            .option("secret-type", "ed25519_public")
            .build();
        let (o, p) = option(misspelt);
        assert_eq!(o, "secret_type");
        assert!(p.contains("`secret-type`"), "{p}");
        // keys that are not what the option says, without echoing them
        for (key, ty) in [
            (SECRET, "ed25519_public"),
            ("whsk_AAAA", "ed25519_public"),
            ("ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248", "ed25519_public"),
            ("not base64!", "ed25519_public"),
            (SECRET, "ed25519_private"),
            (
                "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=",
                "ed25519_private",
            ),
            ("AAAA", "ed25519_private"),
        ] {
            let e = with_type("standard-webhooks", &[key], ty).unwrap_err();
            assert!(matches!(e, BuildError::InvalidSecret(_)), "{key} {ty}: {e}");
            assert!(!e.to_string().contains(key), "{e}");
        }
        // the default, spelt out, is the prefix rule
        let v = with_type("standard-webhooks", &[SECRET], "auto").unwrap();
        assert_ok_at(&v, &h(SIG, "1614265330"), BODY, TS);
    }

    fn v_config(secrets: &[&str], ty: &str) -> crate::SchemeConfig {
        let mut cfg = config(secrets);
        cfg.options.insert("secret_type".into(), ty.into());
        cfg
    }

    fn input() -> crate::SignInput<'static> {
        crate::SignInput {
            body: BODY,
            id: ID,
            now: at(TS),
        }
    }

    #[test]
    fn empty_headers_are_missing() {
        // The reference libraries treat an empty header as absent: libraries/go
        // `checkHeaders` (`msgId == "" || ...` is ErrRequiredHeaders), libraries/python
        // `if not (msg_id and msg_timestamp and msg_signature)`, libraries/javascript
        // `if (!msgSignature || !msgId || !msgTimestamp)`. A request signed over an empty
        // id is refused, not verified.
        let v = verifier("standard-webhooks", &[SECRET]);
        let (hs, body) = signed("standard-webhooks", &config(&[SECRET]), BODY, "", TS);
        assert_eq!(hs[0], ("webhook-id".to_owned(), String::new()));
        assert_kind_at(&v, &pairs(&hs), &body, TS, "missing_header");
        assert_kind_at(&v, &h(SIG, ""), BODY, TS, "missing_header");
        assert_kind_at(&v, &h("", "1614265330"), BODY, TS, "missing_header");
    }

    #[test]
    fn unpadded_secrets_read_as_the_python_library_reads_them() {
        // standard-webhooks libraries/python tests `test_signature_verification_with_unpadded_secret`:
        // secrets that need one or two `=` of padding, whose last character carries
        // bits past the key (Python's b64decode drops them). Signatures computed
        // independently with Python's base64 and hmac modules.
        for (secret, sig) in [
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
                "v1,LVOXivKoo4FWasi/IaHvzhE/u+7/cu2AME+zS/nXqzk=",
            ),
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr",
                "v1,yK2tMbA6BHPrMEJ1lLv7UlJJbgFoqGenJkiajZ29evg=",
            ),
        ] {
            for s in [secret.to_owned(), format!("whsec_{secret}")] {
                let v = verifier("standard-webhooks", &[&s]);
                assert_ok_at(&v, &h(sig, "1614265330"), BODY, TS);
                let (hs, _) = signed("standard-webhooks", &config(&[&s]), BODY, ID, TS);
                assert_eq!(hs[2].1, sig);
            }
        }
    }

    #[test]
    fn reference_library_multi_signature_case() {
        // libraries/go webhook_test.go and libraries/python tests `test_multi_sig_payload_is_valid`:
        // two non-matching v1, a v2, and the valid signature.
        let v = verifier("standard-webhooks", &[SECRET]);
        let other = "Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
        let sigs = format!("v1,{other} v2,{other} {SIG} v1,{other}");
        assert_ok_at(&v, &h(&sigs, "1614265330"), BODY, TS);
        let without = format!("v1,{other} v2,{other} v1,{other}");
        assert_kind_at(
            &v,
            &h(&without, "1614265330"),
            BODY,
            TS,
            "invalid_signature",
        );
    }
}
