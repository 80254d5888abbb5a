//! GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
//!
//! The secret's UTF-8 bytes are the key. GitHub sends no signed timestamp, so there is no
//! tolerance; dedup on `X-GitHub-Delivery` is what stops replays.
//! Source: docs.github.com, "Validating webhook deliveries".

use std::time::SystemTime;

use super::common::{meta_header, Algorithm, BodyHmac, Encoding};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

#[derive(Debug)]
pub(crate) struct GitHub(BodyHmac);

impl GitHub {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        let mac = BodyHmac::new(
            "x-hub-signature-256",
            "sha256=",
            Encoding::Hex,
            Algorithm::Sha256,
            &cfg.secrets,
        )?;
        Ok(GitHub(mac))
    }
}

impl Scheme for GitHub {
    fn name(&self) -> &str {
        "github"
    }

    fn verify(&self, req: &Inbound<'_>, _now: SystemTime) -> Result<(), VerifyError> {
        self.0.verify(req)
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        github_meta(req)
    }
}

/// GitHub's delivery id and event name headers (shared with `github-sha1`).
pub(super) fn github_meta(req: &Inbound<'_>) -> EventMeta {
    EventMeta {
        id: meta_header(req.headers, "x-github-delivery"),
        event_type: meta_header(req.headers, "x-github-event"),
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    Ok(GitHub::new(cfg)?
        .0
        .sign(input.body)
        .header("x-github-delivery", input.id)
        .header("x-github-event", "ping"))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    // Known answer from GitHub's docs ("Testing the webhook payload validation").
    const SECRET: &str = "It's a Secret to Everybody";
    const SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn docs_vector() {
        let v = verifier("github", &[SECRET]);
        assert_ok(&v, &[("x-hub-signature-256", SIG)], b"Hello, World!");
    }

    #[test]
    fn rejections() {
        let v = verifier("github", &[SECRET]);
        let h = [("x-hub-signature-256", SIG)];
        assert_kind(&v, &h, b"Hello, World?", "invalid_signature");
        assert_kind(
            &verifier("github", &["wrong"]),
            &h,
            b"Hello, World!",
            "invalid_signature",
        );
        assert_kind(&v, &[], b"Hello, World!", "missing_header");
        assert_kind(
            &v,
            &[("x-hub-signature-256", &SIG[7..])],
            b"Hello, World!",
            "malformed_header",
        );
        assert_kind(
            &v,
            &[("x-hub-signature-256", "sha256=zz")],
            b"Hello, World!",
            "malformed_header",
        );
        assert_kind(&v, &[h[0], h[0]], b"Hello, World!", "malformed_header");
        // rotation: the old secret still verifies while a new one is added
        assert_ok(&verifier("github", &["new", SECRET]), &h, b"Hello, World!");
    }

    #[test]
    fn a_signature_that_decodes_to_the_wrong_length_is_a_mismatch() {
        let v = verifier("github", &[SECRET]);
        // @octokit/webhooks-methods `verify` (src/node/verify.ts) returns false, not an
        // error, when the signature's length differs from the expected one.
        for sig in [
            // the SHA-1 of the docs vector (github_sha1.rs) under the SHA-256 header
            "sha256=01dc10d0c83e72ed246219cdd91669667fe2ca59",
            "sha256=",
        ] {
            assert_kind(
                &v,
                &[("x-hub-signature-256", sig)],
                b"Hello, World!",
                "invalid_signature",
            );
        }
        let long = format!("{SIG}{}", "00".repeat(40));
        assert_kind(
            &v,
            &[("x-hub-signature-256", &long)],
            b"Hello, World!",
            "invalid_signature",
        );
    }

    #[test]
    fn octokit_vectors() {
        // @octokit/webhooks-methods test/verify.test.ts: the payload as GitHub sends it
        // (JSON without whitespace, `\u` escapes upper-cased by `toNormalizedJsonString`).
        let v = verifier("github", &["mysecret"]);
        let sig = "sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3";
        assert_ok(&v, &[("x-hub-signature-256", sig)], br#"{"foo":"bar"}"#);
        assert_kind(
            &verifier("github", &["foo"]),
            &[("x-hub-signature-256", sig)],
            br#"{"foo":"bar"}"#,
            "invalid_signature",
        );
        // "returns false for incorrect signature" with `foo`: no `sha256=` prefix, which
        // hookbox reports as malformed_header rather than a mismatch
        assert_kind(
            &v,
            &[("x-hub-signature-256", "foo")],
            br#"{"foo":"bar"}"#,
            "malformed_header",
        );
        // "returns true if eventPayload contains special characters (#71)"
        let v = verifier("github", &["development"]);
        let special = r#"{"foo":"Foo\n\u001B[34mbar: ♥♥♥♥♥♥♥♥\nthis-is-lost\u001B[0m\u001B[2K"}"#;
        let sig = "sha256=afecc3caa27548bb90d51a50384cb2868b9a3327b4ad6a01c9bd4ed0f8b0b12c";
        assert_ok(&v, &[("x-hub-signature-256", sig)], special.as_bytes());
        let escaped = r#"{"foo":"\\u001b"}"#;
        let sig = "sha256=6f8326efbacfbd04e870cea25b5652e635be8c9807f2fd5348ef60753c9e96ed";
        assert_ok(&v, &[("x-hub-signature-256", sig)], escaped.as_bytes());
        // verifyWithFallback: any of several secrets
        let v = verifier("github", &["foo", "mysecret"]);
        let sig = "sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3";
        assert_ok(&v, &[("x-hub-signature-256", sig)], br#"{"foo":"bar"}"#);
    }
}
