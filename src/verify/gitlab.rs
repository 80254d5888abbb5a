//! GitLab: `X-Gitlab-Token: <secret token>`, compared in constant time.
//!
//! GitLab sends the configured token itself rather than a MAC, so TLS is what protects
//! it. No timestamp. Source: docs.gitlab.com, "Webhooks: secret token".

use std::time::SystemTime;

use super::common::{ct_eq, header, meta_header};
use super::{EventMeta, Inbound, Scheme, SchemeConfig, SignInput, Signed};
use crate::error::{BuildError, VerifyError};

#[derive(Debug)]
pub(crate) struct GitLab {
    tokens: Vec<super::Secret>,
}

impl GitLab {
    pub(crate) fn new(cfg: &SchemeConfig) -> Result<Self, BuildError> {
        if cfg.secrets.is_empty() {
            return Err(BuildError::NoSecret);
        }
        if cfg.secrets.iter().any(|s| s.expose().is_empty()) {
            return Err(BuildError::secret("the token is empty"));
        }
        Ok(GitLab {
            tokens: cfg.secrets.clone(),
        })
    }
}

impl Scheme for GitLab {
    fn name(&self) -> &str {
        "gitlab"
    }

    fn verify(&self, req: &Inbound<'_>, _now: SystemTime) -> Result<(), VerifyError> {
        let got = header(req.headers, "x-gitlab-token")?;
        let mut ok = false;
        for t in &self.tokens {
            ok |= ct_eq(t.expose().as_bytes(), got.as_bytes());
        }
        if ok {
            Ok(())
        } else {
            Err(VerifyError::mismatch(format!(
                "header `x-gitlab-token` does not equal any of the {} configured token(s)",
                self.tokens.len()
            )))
        }
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        EventMeta {
            id: meta_header(req.headers, "idempotency-key")
                .or_else(|| meta_header(req.headers, "x-gitlab-event-uuid")),
            event_type: meta_header(req.headers, "x-gitlab-event"),
        }
    }
}

pub(crate) fn sign(cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
    let g = GitLab::new(cfg)?;
    Ok(Signed::default()
        .header("x-gitlab-token", g.tokens[0].expose())
        .header("x-gitlab-event-uuid", input.id)
        .header("x-gitlab-event", "Push Hook"))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn token() {
        let v = verifier("gitlab", &["old", "new"]);
        assert_ok(&v, &[("x-gitlab-token", "new")], b"{}");
        assert_ok(&v, &[("x-gitlab-token", "old")], b"\xff");
        assert_kind(
            &v,
            &[("x-gitlab-token", "neww")],
            b"{}",
            "invalid_signature",
        );
        assert_kind(&v, &[], b"{}", "missing_header");
        assert_kind(
            &v,
            &[("x-gitlab-token", "new"), ("x-gitlab-token", "new")],
            b"{}",
            "malformed_header",
        );
    }
}
