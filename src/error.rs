//! Error types, one per stage, each convertible into [`Error`].

use std::borrow::Cow;
use std::fmt;

/// The stable kind of a verification failure.
///
/// The snake_case names returned by [`ErrorKind::as_str`] are part of the public API:
/// they appear in `application/problem+json` rejections, in metrics labels and on the
/// first line of `hookbox verify`'s output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A header (or body field) the scheme needs is absent, or present and empty.
    MissingHeader,
    /// A header is present but cannot be parsed: sent twice, not ASCII, over 8 KiB, or
    /// no signature in it can be decoded (one undecodable among several is skipped).
    MalformedHeader,
    /// A signature that decodes but does not match any configured secret (a wrong
    /// length included).
    InvalidSignature,
    /// The signed timestamp is outside the tolerance window (either direction).
    TimestampOutOfTolerance,
    /// A configured secret or key cannot be used (bad encoding, wrong length).
    InvalidSecret,
    /// The body cannot be read the way the scheme needs (for schemes that sign fields
    /// inside the body).
    InvalidBody,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::MissingHeader,
        ErrorKind::MalformedHeader,
        ErrorKind::InvalidSignature,
        ErrorKind::TimestampOutOfTolerance,
        ErrorKind::InvalidSecret,
        ErrorKind::InvalidBody,
    ];

    /// The stable snake_case name of this kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::MissingHeader => "missing_header",
            ErrorKind::MalformedHeader => "malformed_header",
            ErrorKind::InvalidSignature => "invalid_signature",
            ErrorKind::TimestampOutOfTolerance => "timestamp_out_of_tolerance",
            ErrorKind::InvalidSecret => "invalid_secret",
            ErrorKind::InvalidBody => "invalid_body",
        }
    }

    /// A short human title, used as the `title` of problem+json rejections.
    pub const fn title(self) -> &'static str {
        match self {
            ErrorKind::MissingHeader => "A required signature header is missing",
            ErrorKind::MalformedHeader => "A signature header is malformed",
            ErrorKind::InvalidSignature => "The signature does not match",
            ErrorKind::TimestampOutOfTolerance => "The signed timestamp is outside the tolerance",
            ErrorKind::InvalidSecret => "The configured secret cannot be used",
            ErrorKind::InvalidBody => "The body cannot be read as the scheme requires",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request failed verification.
///
/// Carries a stable [`ErrorKind`] and a human explanation of what was expected and what
/// was found. The explanation never contains a secret, nor a signature computed with one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    kind: ErrorKind,
    detail: Cow<'static, str>,
}

impl VerifyError {
    /// A new error of `kind` with a human `detail`.
    pub fn new(kind: ErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        VerifyError {
            kind,
            detail: detail.into(),
        }
    }

    /// `missing_header` naming the header.
    pub fn missing(header: &str) -> Self {
        Self::new(
            ErrorKind::MissingHeader,
            format!("expected header `{header}`, found none"),
        )
    }

    /// `malformed_header` with a detail.
    pub fn malformed(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::MalformedHeader, detail)
    }

    /// `invalid_signature` with a detail.
    pub fn mismatch(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidSignature, detail)
    }

    /// `invalid_body` with a detail.
    pub fn body(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidBody, detail)
    }

    /// `invalid_secret` with a detail.
    pub fn secret(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidSecret, detail)
    }

    /// The stable kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human explanation (no secrets).
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for VerifyError {}

/// A verifier or signer could not be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The scheme name is not one hookbox knows.
    #[error("unknown scheme `{0}` (run `hookbox verify --help` for the list)")]
    UnknownScheme(String),
    /// A secret or key is unusable; the kind is [`ErrorKind::InvalidSecret`].
    #[error("{0}")]
    InvalidSecret(VerifyError),
    /// No secret was configured.
    #[error("no secret configured: the scheme needs at least one")]
    NoSecret,
    /// A scheme option is missing or invalid.
    #[error("option `{option}`: {problem}")]
    Option {
        /// The option's name, as written in configuration.
        option: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The scheme cannot sign (for example it needs the provider's private key).
    #[error("scheme `{0}` cannot sign: {1}")]
    CannotSign(&'static str, &'static str),
}

impl BuildError {
    /// An invalid secret with a human detail.
    pub(crate) fn secret(detail: impl Into<Cow<'static, str>>) -> Self {
        BuildError::InvalidSecret(VerifyError::secret(detail))
    }

    /// A missing required option.
    pub(crate) fn missing_option(option: &'static str) -> Self {
        BuildError::Option {
            option,
            problem: "required by this scheme, not given".into(),
        }
    }
}

/// Every error hookbox returns, by stage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Verification failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A verifier could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The journal refused or failed an operation.
    #[error(transparent)]
    Journal(#[from] crate::JournalError),
    /// The journal could not be opened.
    #[error(transparent)]
    Open(#[from] crate::OpenError),
}
