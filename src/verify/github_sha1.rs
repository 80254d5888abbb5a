//! GitHub, legacy: `X-Hub-Signature: sha1=<hex HMAC-SHA1(secret, body)>`.
//!
//! GitHub still sends this header beside `X-Hub-Signature-256` for compatibility; prefer
//! the `github` scheme. Source: docs.github.com, "Validating webhook deliveries".

use std::time::SystemTime;

use super::common::{Algorithm, BodyHmac, Encoding};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

#[derive(Debug)]
pub(crate) struct GitHubSha1(BodyHmac);

impl GitHubSha1 {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        let mac = BodyHmac::new(
            "x-hub-signature",
            "sha1=",
            Encoding::Hex,
            Algorithm::Sha1,
            &cfg.secrets,
        )?;
        Ok(GitHubSha1(mac))
    }
}

impl Scheme for GitHubSha1 {
    fn name(&self) -> &str {
        "github-sha1"
    }

    fn verify(&self, req: &Inbound<'_>, _now: SystemTime) -> Result<(), VerifyError> {
        self.0.verify(req)
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        super::github::github_meta(req)
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    Ok(GitHubSha1::new(cfg)?
        .0
        .sign(input.body)
        .header("x-github-delivery", input.id))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    // HMAC-SHA1("It's a Secret to Everybody", "Hello, World!"), computed independently with
    // `printf 'Hello, World!' | openssl dgst -sha1 -hmac "It's a Secret to Everybody"`.
    const SIG: &str = "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59";

    #[test]
    fn vector_and_rejections() {
        let v = verifier("github-sha1", &["It's a Secret to Everybody"]);
        assert_ok(&v, &[("x-hub-signature", SIG)], b"Hello, World!");
        assert_kind(
            &v,
            &[("x-hub-signature", SIG)],
            b"Hello, World",
            "invalid_signature",
        );
        assert_kind(
            &v,
            &[("x-hub-signature-256", SIG)],
            b"Hello, World!",
            "missing_header",
        );
        assert_kind(
            &v,
            &[("x-hub-signature", "sha256=01dc")],
            b"Hello, World!",
            "malformed_header",
        );
    }
}
