//! SendGrid (Twilio SendGrid) signed Event Webhook: ECDSA P-256 with SHA-256.
//!
//! `X-Twilio-Email-Event-Webhook-Signature` is the base64 DER signature and
//! `X-Twilio-Email-Event-Webhook-Timestamp` the Unix time in seconds; the signed message
//! is the timestamp's text followed by the raw body (a JSON array of events, with its
//! trailing CRLF).
//!
//! The verifier's secret is the verification key shown under Mail Settings > Signed Event
//! Webhook: base64 DER of a P-256 SubjectPublicKeyInfo (a `-----BEGIN PUBLIC KEY-----`
//! PEM is accepted too); anything else is `invalid_secret`. Several keys may be
//! configured while rotating. A private key (below) is also accepted and verifies as its
//! public half.
//!
//! For `sign()` the secret is the private key: base64 DER PKCS#8 (`openssl pkcs8 -topk8
//! -nocrypt -outform DER | base64`), or a PEM `PRIVATE KEY` (PKCS#8) or `EC PRIVATE KEY`
//! (SEC1). Signatures are deterministic (RFC 6979).
//!
//! SendGrid documents no window: the timestamp must be within 300 s (or the configured
//! tolerance) of now, both directions, checked after the signature.
//! Sources: twilio.com/docs/sendgrid, "Getting Started with the Event Webhook Security
//! Features"; sendgrid-nodejs `packages/eventwebhook` (`EventWebhook.verifySignature`)
//! and its test vectors.

use std::time::{Duration, SystemTime};

use p256::ecdsa::signature::{DigestVerifier as _, Signer as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::common::{
    b64, check_tolerance_secs, decode_b64, header, parse_unix_secs, unix_secs, B64_LENIENT,
    DEFAULT_TOLERANCE, SIG_BUF,
};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

const SIGNATURE: &str = "x-twilio-email-event-webhook-signature";
const TIMESTAMP: &str = "x-twilio-email-event-webhook-timestamp";

#[derive(Debug)]
pub(crate) struct SendGrid {
    keys: Vec<VerifyingKey>,
    tolerance: Duration,
}

/// Base64 with any whitespace (line breaks of a pasted key) removed.
fn b64_der(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let compact: String = text.split_whitespace().collect();
    B64_LENIENT.decode(compact).ok().filter(|d| !d.is_empty())
}

/// A P-256 private key: PEM PKCS#8 or SEC1, or base64 DER PKCS#8 (or SEC1).
fn signing_key(secret: &str) -> Option<SigningKey> {
    let s = secret.trim();
    if s.starts_with("-----BEGIN") {
        return SigningKey::from_pkcs8_pem(s)
            .ok()
            .or_else(|| p256::SecretKey::from_sec1_pem(s).ok().map(Into::into));
    }
    let der = b64_der(s)?;
    SigningKey::from_pkcs8_der(&der)
        .ok()
        .or_else(|| p256::SecretKey::from_sec1_der(&der).ok().map(Into::into))
}

/// A P-256 public key: base64 DER SubjectPublicKeyInfo or its PEM (or a private key).
fn verifying_key(secret: &str) -> Option<VerifyingKey> {
    let s = secret.trim();
    let public = if s.starts_with("-----BEGIN") {
        VerifyingKey::from_public_key_pem(s).ok()
    } else {
        b64_der(s).and_then(|der| VerifyingKey::from_public_key_der(&der).ok())
    };
    public.or_else(|| signing_key(s).map(|k| *k.verifying_key()))
}

impl SendGrid {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        if cfg.secrets.is_empty() {
            return Err(BuildError::NoSecret);
        }
        let keys = cfg
            .secrets
            .iter()
            .map(|s| {
                verifying_key(s.expose()).ok_or_else(|| {
                    BuildError::secret(
                        "expected the Signed Event Webhook verification key: base64 DER (or \
                         PEM) of a P-256 public key, as SendGrid's settings show it",
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(SendGrid {
            keys,
            tolerance: cfg.tolerance_or(DEFAULT_TOLERANCE),
        })
    }
}

impl Scheme for SendGrid {
    fn name(&self) -> &str {
        "sendgrid"
    }

    fn verify(&self, req: &Inbound<'_>, now: SystemTime) -> Result<(), VerifyError> {
        let sig_text = header(req.headers, SIGNATURE)?;
        let ts_text = header(req.headers, TIMESTAMP)?;
        let ts = parse_unix_secs(TIMESTAMP, ts_text)?;
        let mut buf = [0u8; SIG_BUF];
        let der = decode_b64(&format!("header `{SIGNATURE}`"), sig_text, &mut buf)?;
        // The DER structure is part of the encoding: bytes that are not a DER signature
        // cannot be decoded into one.
        let sig = Signature::from_der(der.bytes).map_err(|_| {
            VerifyError::malformed(format!(
                "header `{SIGNATURE}`: expected base64 of a DER ECDSA signature, found {} bytes \
                 that are not one",
                der.len
            ))
        })?;
        let digest = Sha256::new()
            .chain_update(ts_text.as_bytes())
            .chain_update(req.body);
        let ok = self.keys.iter().fold(false, |ok, k| {
            ok | k.verify_digest(digest.clone(), &sig).is_ok()
        });
        if !ok {
            return Err(VerifyError::mismatch(format!(
                "header `{SIGNATURE}` is not an ECDSA P-256 signature of timestamp + body under \
                 any of the {} configured verification key(s)",
                self.keys.len()
            )));
        }
        check_tolerance_secs(ts, now, self.tolerance)
    }

    /// The id is the event's `sg_event_id` when the batch holds a single event (a batch
    /// has no id of its own, and deduplicating a batch on one of its events could drop the
    /// others); the type is `event` when every event of the batch has the same.
    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        let Ok(Value::Array(events)) = serde_json::from_slice::<Value>(req.body) else {
            return EventMeta::default();
        };
        let field = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
        let id = match events.as_slice() {
            [one] => field(one, "sg_event_id"),
            _ => None,
        };
        let first = events.first().and_then(|e| field(e, "event"));
        let event_type = first.filter(|t| {
            events
                .iter()
                .all(|e| e.get("event").and_then(Value::as_str) == Some(t.as_str()))
        });
        EventMeta { id, event_type }
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    let secret = cfg.secrets.first().ok_or(BuildError::NoSecret)?.expose();
    let key = match signing_key(secret) {
        Some(k) => k,
        None if verifying_key(secret).is_some() => {
            return Err(BuildError::CannotSign(
                "sendgrid",
                "a verification (public) key cannot sign; give the P-256 private key \
                 (base64 DER PKCS#8, or PEM)",
            ))
        }
        None => {
            return Err(BuildError::secret(
                "expected a P-256 private key: base64 DER PKCS#8, or PEM PKCS#8 or SEC1",
            ))
        }
    };
    let ts = unix_secs(input.now).to_string();
    let sig: Signature = key.sign(&[ts.as_bytes(), input.body].concat());
    Ok(Signed::default()
        .header(SIGNATURE, b64(sig.to_der().as_bytes()))
        .header(TIMESTAMP, ts))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::Inbound;

    // Known answers from sendgrid-nodejs packages/eventwebhook/src/eventwebhook.spec.js.
    const PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
    const SIG: &str = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
    const TS: u64 = 1600112502;
    // JSON.stringify of the spec's event, plus the CRLF SendGrid sends.
    const BODY: &[u8] = b"[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";

    const PUBLIC_KEY_MULTI: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQ4LIFtWztlsF7skFqOncjD1lun4H5w8XOhyOArHW9RcIx/FfEzx6cikC/yPfUvwaX/JScE7Fc9CJD2afQ9Ok3Q==";
    const SIG_MULTI: &str = "MEYCIQC/I4o6vCgqRYrTljjoVWB/GRWNtxeePlLMHr3x9ETeRQIhAIpV+03nREPTTHWSW0wIOA0EoMPdcNgXa70yCaqDJlu5";
    const TS_MULTI: u64 = 1619651159;
    const BODY_MULTI: &[u8] = b"[{\"email\":\"invalid@gmail.com\",\"event\":\"processed\",\"send_at\":0,\"sg_event_id\":\"cHJvY2Vzc2VkLTE5OTQyMTEyLXFOd0JMZ1BRUWpXNkRKdktRd1NBYnctMA\",\"sg_message_id\":\"qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0\",\"smtp-id\":\"<qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net>\",\"timestamp\":1619651146},\r\n{\"email\":\"invalid@gmail.com\",\"event\":\"bounce\",\"ip\":\"167.89.101.76\",\"reason\":\"552 5.2.2 The email account that you tried to reach is over quota and inactive. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm c17si1130468pgv.34 - gsmtp\",\"sg_event_id\":\"Ym91bmNlLTAtMTk5NDIxMTItcU53QkxnUFFRalc2REp2S1F3U0Fidy0w\",\"sg_message_id\":\"qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0\",\"smtp-id\":\"<qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net>\",\"status\":\"5.2.2\",\"timestamp\":1619651147,\"tls\":1,\"type\":\"blocked\"}]\r\n";

    // A key pair made for these tests with pyca/cryptography (P-256).
    const PRIVATE_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgspbGAb3cRa9FAufuIZkDjTb/BY9W8qPGTJJUPq/6CIahRANCAARDUYqlNBDN280ZOoXaduitF1RgQ1XUZRYo24wUh/XyKevs6OkFEJvrd0uLN/1X5R5tDuRe2Vi8cd2OZDCfxgUv";
    const PRIVATE_SEC1_PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEILKWxgG93EWvRQLn7iGZA402/wWPVvKjxkySVD6v+giGoAoGCCqGSM49
AwEHoUQDQgAEQ1GKpTQQzdvNGTqF2nborRdUYENV1GUWKNuMFIf18inr7OjpBRCb
63dLizf9V+UebQ7kXtlYvHHdjmQwn8YFLw==
-----END EC PRIVATE KEY-----
";
    const OWN_PUBLIC: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQ1GKpTQQzdvNGTqF2nborRdUYENV1GUWKNuMFIf18inr7OjpBRCb63dLizf9V+UebQ7kXtlYvHHdjmQwn8YFLw==";
    const OWN_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQ1GKpTQQzdvNGTqF2nborRdUYENV
1GUWKNuMFIf18inr7OjpBRCb63dLizf9V+UebQ7kXtlYvHHdjmQwn8YFLw==
-----END PUBLIC KEY-----
";

    fn h<'a>(sig: &'a str, ts: &'a str) -> [(&'static str, &'a str); 2] {
        [
            ("x-twilio-email-event-webhook-signature", sig),
            ("x-twilio-email-event-webhook-timestamp", ts),
        ]
    }

    #[test]
    fn sdk_vectors() {
        let ts = TS.to_string();
        assert_ok_at(&verifier("sendgrid", &[PUBLIC_KEY]), &h(SIG, &ts), BODY, TS);
        let ts = TS_MULTI.to_string();
        assert_ok_at(
            &verifier("sendgrid", &[PUBLIC_KEY_MULTI]),
            &h(SIG_MULTI, &ts),
            BODY_MULTI,
            TS_MULTI,
        );
    }

    #[test]
    fn rejections() {
        let v = verifier("sendgrid", &[PUBLIC_KEY]);
        let ts = TS.to_string();
        // the spec's "invalid key", "bad payload" and "bad signature" cases
        let other = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";
        assert_kind_at(
            &verifier("sendgrid", &[other]),
            &h(SIG, &ts),
            BODY,
            TS,
            "invalid_signature",
        );
        assert_kind_at(&v, &h(SIG, &ts), b"payload", TS, "invalid_signature");
        assert_kind_at(
            &v,
            &h(SIG, &ts),
            &BODY[..BODY.len() - 2],
            TS,
            "invalid_signature",
        );
        let bad = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=";
        assert_kind_at(&v, &h(bad, &ts), BODY, TS, "invalid_signature");
        // the timestamp is signed
        let next = (TS + 1).to_string();
        assert_kind_at(&v, &h(SIG, &next), BODY, TS, "invalid_signature");
        // malformed, missing, repeated
        assert_kind_at(&v, &h(SIG, "timestamp"), BODY, TS, "malformed_header");
        assert_kind_at(&v, &h("not base64!", &ts), BODY, TS, "malformed_header");
        assert_kind_at(&v, &h("AAAA", &ts), BODY, TS, "malformed_header");
        assert_kind_at(&v, &h(SIG, &ts)[..1], BODY, TS, "missing_header");
        assert_kind_at(&v, &h(SIG, &ts)[1..], BODY, TS, "missing_header");
        let [s, t] = h(SIG, &ts);
        assert_kind_at(&v, &[s, t, t], BODY, TS, "malformed_header");
        assert_kind_at(&v, &[s, s, t], BODY, TS, "malformed_header");
    }

    #[test]
    fn tolerance_is_inclusive_both_ways() {
        let v = verifier("sendgrid", &[PUBLIC_KEY]);
        let hs = h(SIG, "1600112502");
        assert_ok_at(&v, &hs, BODY, TS + 300);
        assert_ok_at(&v, &hs, BODY, TS - 300);
        assert_kind_at(&v, &hs, BODY, TS + 301, "timestamp_out_of_tolerance");
        assert_kind_at(&v, &hs, BODY, TS - 301, "timestamp_out_of_tolerance");
    }

    #[test]
    fn keys() {
        for bad in ["not a key", "AAAA", PUBLIC_KEY.get(..40).unwrap(), ""] {
            let e = crate::Verifier::new("sendgrid", &config(&[bad])).unwrap_err();
            assert!(
                matches!(e, crate::BuildError::InvalidSecret(_)),
                "{bad}: {e}"
            );
        }
        assert!(matches!(
            crate::Verifier::new("sendgrid", &config(&[])),
            Err(crate::BuildError::NoSecret)
        ));
        // PEM and private keys verify too
        let now = 1_700_000_000;
        let (hs, body) = signed("sendgrid", &config(&[PRIVATE_PKCS8]), BODY, "x", now);
        for key in [OWN_PUBLIC, OWN_PUBLIC_PEM, PRIVATE_PKCS8, PRIVATE_SEC1_PEM] {
            assert_ok_at(&verifier("sendgrid", &[key]), &pairs(&hs), &body, now);
        }
    }

    #[test]
    fn rotation() {
        let ts = TS.to_string();
        let v = verifier("sendgrid", &[PUBLIC_KEY_MULTI, PUBLIC_KEY]);
        assert_ok_at(&v, &h(SIG, &ts), BODY, TS);
        let ts = TS_MULTI.to_string();
        assert_ok_at(&v, &h(SIG_MULTI, &ts), BODY_MULTI, TS_MULTI);
    }

    #[test]
    fn sign_round_trip() {
        let now = 1_700_000_000;
        let v = verifier("sendgrid", &[OWN_PUBLIC]);
        for private in [PRIVATE_PKCS8, PRIVATE_SEC1_PEM] {
            let (hs, body) = signed("sendgrid", &config(&[private, PUBLIC_KEY]), BODY, "x", now);
            assert_ok_at(&v, &pairs(&hs), &body, now);
            assert_kind_at(&v, &pairs(&hs), b"[]\r\n", now, "invalid_signature");
            assert_kind_at(
                &v,
                &pairs(&hs),
                &body,
                now + 301,
                "timestamp_out_of_tolerance",
            );
            assert_kind_at(
                &verifier("sendgrid", &[PUBLIC_KEY]),
                &pairs(&hs),
                &body,
                now,
                "invalid_signature",
            );
        }
        let refused = crate::sign(
            "sendgrid",
            &config(&[OWN_PUBLIC]),
            &crate::SignInput {
                body: BODY,
                id: "x",
                now: at(now),
            },
        );
        assert!(matches!(
            refused,
            Err(crate::BuildError::CannotSign("sendgrid", _))
        ));
    }

    #[test]
    fn describe() {
        let v = verifier("sendgrid", &[PUBLIC_KEY]);
        let none = headers(&[]);
        let meta = v.describe(&Inbound::new(&none, BODY));
        assert_eq!(
            meta.id.as_deref(),
            Some("ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA")
        );
        assert_eq!(meta.event_type.as_deref(), Some("dropped"));
        let meta = v.describe(&Inbound::new(&none, BODY_MULTI));
        assert_eq!(meta, crate::EventMeta::default());
        let same = br#"[{"event":"open","sg_event_id":"a"},{"event":"open","sg_event_id":"b"}]"#;
        let meta = v.describe(&Inbound::new(&none, same));
        assert_eq!((meta.id, meta.event_type.as_deref()), (None, Some("open")));
    }
}
