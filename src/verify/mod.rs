//! Signature verification: who sent this webhook?
//!
//! Each provider scheme lives in its own file and implements [`Scheme`]; [`Verifier`]
//! dispatches to one of them by name (the names of [`SCHEMES`], also used by the CLI and
//! the configuration file) or wraps a user's own [`Scheme`].
//!
//! Every scheme follows the same rules, kept in one place (`common.rs`):
//!
//! - it verifies the exact raw bytes received, before any parsing, with no UTF-8
//!   requirement on the body;
//! - several secrets may be active at once (rotation), and several signatures per header;
//! - a signed timestamp must be within the tolerance (default 300 s, or the provider's
//!   documented window), inclusive, in both directions;
//! - comparisons are constant-time, MACs are keyed once at construction, and secrets are
//!   redacted from `Debug`, `Display` and errors;
//! - a required header that is absent or empty is `missing_header`, as the providers'
//!   SDKs treat an empty one;
//! - a header sent twice, a header value that is not ASCII or is over 8 KiB, and a
//!   signature that cannot be decoded are `malformed_header`; one that decodes but does
//!   not match, whatever its length (an empty `v1=` included), is `invalid_signature`.
//!
//! ```
//! use hookbox::{Inbound, Verifier};
//! use http::HeaderMap;
//!
//! let verifier = Verifier::builder("github").secret("It's a Secret to Everybody").build()?;
//! let mut headers = HeaderMap::new();
//! headers.insert(
//!     "x-hub-signature-256",
//!     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".parse()?,
//! );
//! verifier.verify(&Inbound::new(&headers, b"Hello, World!"))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method};

use crate::error::{BuildError, VerifyError};

pub(crate) mod common;
#[cfg(test)]
mod testing;

mod adyen;
mod discord;
mod generic;
mod github;
mod github_sha1;
mod gitlab;
mod intercom;
mod lemonsqueezy;
mod linear;
mod mailgun;
mod meta;
mod paddle;
mod sendgrid;
mod shopify;
mod slack;
mod square;
mod standard_webhooks;
mod stripe;
mod svix;
mod twilio;
mod twitch;
mod zoom;

pub use common::{Algorithm, Secret};

/// What a scheme sees of a received request: raw bytes and headers, nothing parsed.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The request method (handshakes such as Meta's arrive as `GET`).
    pub method: &'a Method,
    /// The raw query string of the request URI, if any (Twilio signs the full URL).
    pub query: Option<&'a str>,
    /// The request headers, exactly as received (repeated headers kept).
    pub headers: &'a HeaderMap,
    /// The raw body, exactly as received.
    pub body: &'a [u8],
}

impl<'a> Inbound<'a> {
    /// A `POST` with no query string.
    pub fn new(headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        Inbound {
            method: &Method::POST,
            query: None,
            headers,
            body,
        }
    }

    /// Sets the method.
    pub fn with_method(mut self, method: &'a Method) -> Self {
        self.method = method;
        self
    }

    /// Sets the raw query string (without `?`).
    pub fn with_query(mut self, query: Option<&'a str>) -> Self {
        self.query = query;
        self
    }
}

/// What the provider says about an event, where it says it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventMeta {
    /// The provider's delivery or event id, used for deduplication.
    pub id: Option<String>,
    /// The provider's event type (`invoice.paid`, `push`, ...).
    pub event_type: Option<String>,
}

/// The answer to a provider handshake (an endpoint-ownership check, not an event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeReply {
    /// The response `Content-Type`.
    pub content_type: &'static str,
    /// The response body.
    pub body: Vec<u8>,
}

impl HandshakeReply {
    pub(crate) fn text(body: impl Into<Vec<u8>>) -> Self {
        HandshakeReply {
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    pub(crate) fn json(value: &serde_json::Value) -> Self {
        HandshakeReply {
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }
}

/// One provider's way of signing webhooks.
///
/// Implement it to verify a provider hookbox does not know (or use the configurable
/// `generic-hmac` scheme, which needs no code). Implementations must compare in constant
/// time and never put a secret in an error.
pub trait Scheme: fmt::Debug + Send + Sync + 'static {
    /// The scheme's name, as used in configuration (`"stripe"`).
    fn name(&self) -> &str;

    /// Verifies `req` as received at `now`.
    fn verify(&self, req: &Inbound<'_>, now: SystemTime) -> Result<(), VerifyError>;

    /// The provider's delivery id and event type, where the provider states them.
    /// Called only after a successful [`verify`](Scheme::verify).
    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        let _ = req;
        EventMeta::default()
    }

    /// A handshake that is answered *instead of* verifying (an unsigned request that
    /// proves ownership with a configured token, such as Meta's `GET hub.challenge`).
    fn pre_verify_handshake(
        &self,
        req: &Inbound<'_>,
    ) -> Option<Result<HandshakeReply, VerifyError>> {
        let _ = req;
        None
    }

    /// A verified request that is a handshake, not an event (Slack `url_verification`,
    /// Twitch `webhook_callback_verification`, Zoom `endpoint.url_validation`, Discord
    /// `PING`): the reply to send; the request is not journaled.
    fn handshake(&self, req: &Inbound<'_>) -> Option<HandshakeReply> {
        let _ = req;
        None
    }
}

/// How a scheme is configured: secrets, tolerance, URL and scheme-specific options.
///
/// ## Defaults
/// - `tolerance`: the provider's documented window, else 300 s.
/// - `url`: none (required by `twilio` and `square`).
#[derive(Debug, Clone, Default)]
pub struct SchemeConfig {
    /// Active secrets or keys, all accepted (rotation). The first one signs.
    pub secrets: Vec<Secret>,
    /// Maximum distance between the signed timestamp and now, in both directions.
    pub tolerance: Option<Duration>,
    /// The public URL the provider calls (Twilio, Square).
    pub url: Option<String>,
    /// Scheme-specific options (`verify_token` for meta; `header`, `prefix`, `encoding`,
    /// `algorithm`, `template`, ... for generic-hmac; `secret_type` for standard-webhooks
    /// and svix).
    pub options: BTreeMap<String, String>,
}

impl SchemeConfig {
    /// The tolerance, or `default` when none was configured.
    pub(crate) fn tolerance_or(&self, default: Duration) -> Duration {
        self.tolerance.unwrap_or(default)
    }

    /// An option's value.
    pub(crate) fn option(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }
}

/// What to sign with [`sign`].
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// The body to send.
    pub body: &'a [u8],
    /// The delivery id to state, where the scheme signs one.
    pub id: &'a str,
    /// The signing time.
    pub now: SystemTime,
}

/// Headers (and, for schemes that sign inside the body, a new body) as the provider
/// would send them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signed {
    /// `(name, value)` pairs in sending order.
    pub headers: Vec<(String, String)>,
    /// The body to send instead of the input, when the signature lives inside it.
    pub body: Option<Vec<u8>>,
}

impl Signed {
    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

macro_rules! schemes {
    ($( $variant:ident => $module:ident :: $ty:ident = $name:literal, )*) => {
        /// The names of the built-in schemes, as used in configuration and on the CLI.
        pub const SCHEMES: &[&str] = &[$($name),*];

        #[derive(Debug)]
        enum Inner {
            $( $variant($module::$ty), )*
            Custom(Arc<dyn Scheme>),
        }

        impl Inner {
            fn build(name: &str, cfg: &SchemeConfig) -> Result<Self, BuildError> {
                match name {
                    $( $name => Ok(Inner::$variant($module::$ty::new(cfg)?)), )*
                    other => Err(BuildError::UnknownScheme(other.to_owned())),
                }
            }

            fn scheme(&self) -> &dyn Scheme {
                match self {
                    $( Inner::$variant(s) => s, )*
                    Inner::Custom(s) => &**s,
                }
            }

            #[inline]
            fn verify(&self, req: &Inbound<'_>, now: SystemTime) -> Result<(), VerifyError> {
                match self {
                    $( Inner::$variant(s) => s.verify(req, now), )*
                    Inner::Custom(s) => s.verify(req, now),
                }
            }
        }

        /// Signs `input` as the provider `scheme` would, with the first secret of `cfg`
        /// (for Ed25519 and ECDSA schemes, a private key).
        pub fn sign(scheme: &str, cfg: &SchemeConfig, input: &SignInput<'_>) -> Result<Signed, BuildError> {
            match scheme {
                $( $name => $module::sign(cfg, input), )*
                other => Err(BuildError::UnknownScheme(other.to_owned())),
            }
        }
    };
}

schemes! {
    StandardWebhooks => standard_webhooks::StandardWebhooks = "standard-webhooks",
    Svix => svix::Svix = "svix",
    Stripe => stripe::Stripe = "stripe",
    GitHub => github::GitHub = "github",
    GitHubSha1 => github_sha1::GitHubSha1 = "github-sha1",
    Slack => slack::Slack = "slack",
    Shopify => shopify::Shopify = "shopify",
    Twilio => twilio::Twilio = "twilio",
    Square => square::Square = "square",
    Paddle => paddle::Paddle = "paddle",
    Zoom => zoom::Zoom = "zoom",
    Linear => linear::Linear = "linear",
    Twitch => twitch::Twitch = "twitch",
    LemonSqueezy => lemonsqueezy::LemonSqueezy = "lemonsqueezy",
    Mailgun => mailgun::Mailgun = "mailgun",
    Discord => discord::Discord = "discord",
    SendGrid => sendgrid::SendGrid = "sendgrid",
    Meta => meta::Meta = "meta",
    Intercom => intercom::Intercom = "intercom",
    GitLab => gitlab::GitLab = "gitlab",
    Adyen => adyen::Adyen = "adyen",
    Generic => generic::Generic = "generic-hmac",
}

/// Verifies webhooks of one scheme. Cheap to share (`Arc` it); immutable after build.
///
/// Built by name with [`Verifier::new`] or [`Verifier::builder`], or around a user's
/// [`Scheme`] with [`Verifier::custom`].
#[derive(Clone)]
pub struct Verifier {
    /// The scheme; shared so clones are cheap.
    inner: Arc<Inner>,
    /// Where "now" comes from; the system clock unless injected (tests, replays).
    clock: Option<Clock>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("scheme", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Builds the built-in scheme `name` (one of [`SCHEMES`]) from `cfg`.
    pub fn new(name: &str, cfg: &SchemeConfig) -> Result<Self, BuildError> {
        Ok(Verifier {
            inner: Arc::new(Inner::build(name, cfg)?),
            clock: None,
        })
    }

    /// A builder for the built-in scheme `name`.
    pub fn builder(name: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            name: name.into(),
            cfg: SchemeConfig::default(),
        }
    }

    /// Wraps a user-implemented scheme.
    pub fn custom(scheme: impl Scheme) -> Self {
        Verifier {
            inner: Arc::new(Inner::Custom(Arc::new(scheme))),
            clock: None,
        }
    }

    /// Replaces the clock used by [`verify`](Self::verify).
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The scheme's name.
    pub fn scheme_name(&self) -> &str {
        self.inner.scheme().name()
    }

    /// Verifies `req` now (by the configured clock).
    pub fn verify(&self, req: &Inbound<'_>) -> Result<(), VerifyError> {
        let now = match &self.clock {
            Some(c) => c(),
            None => SystemTime::now(),
        };
        self.inner.verify(req, now)
    }

    /// Verifies `req` as if received at `at` (for events checked after queueing).
    pub fn verify_at(&self, req: &Inbound<'_>, at: SystemTime) -> Result<(), VerifyError> {
        self.inner.verify(req, at)
    }

    /// Verifies a request received at `received_at` (checked against that time) and
    /// turns it into the [`Verified<Event>`](crate::Verified) the journal accepts. For
    /// requests that arrive other than through [`VerifyLayer`](crate::VerifyLayer),
    /// such as from a queue.
    pub fn verified_event(
        &self,
        source: impl Into<Arc<str>>,
        headers: HeaderMap,
        body: bytes::Bytes,
        received_at: SystemTime,
    ) -> Result<crate::Verified<crate::Event>, VerifyError> {
        let inbound = Inbound::new(&headers, &body);
        self.verify_at(&inbound, received_at)?;
        let meta = self.describe(&inbound);
        Ok(crate::Verified::new(crate::Event {
            source: source.into(),
            scheme: self.scheme_name().into(),
            delivery_id: meta.id,
            event_type: meta.event_type,
            received_at,
            headers,
            body,
        }))
    }

    /// See [`Scheme::describe`].
    pub fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        self.inner.scheme().describe(req)
    }

    /// See [`Scheme::pre_verify_handshake`].
    pub fn pre_verify_handshake(
        &self,
        req: &Inbound<'_>,
    ) -> Option<Result<HandshakeReply, VerifyError>> {
        self.inner.scheme().pre_verify_handshake(req)
    }

    /// See [`Scheme::handshake`].
    pub fn handshake(&self, req: &Inbound<'_>) -> Option<HandshakeReply> {
        self.inner.scheme().handshake(req)
    }
}

/// Builds a [`Verifier`] for a built-in scheme.
#[derive(Debug, Clone)]
pub struct VerifierBuilder {
    name: String,
    cfg: SchemeConfig,
}

impl VerifierBuilder {
    /// Adds an active secret (call again for rotation).
    pub fn secret(mut self, secret: impl Into<Secret>) -> Self {
        self.cfg.secrets.push(secret.into());
        self
    }

    /// Sets the timestamp tolerance.
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.cfg.tolerance = Some(tolerance);
        self
    }

    /// Sets the public URL the provider calls.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.cfg.url = Some(url.into());
        self
    }

    /// Sets a scheme-specific option: `verify_token` for `meta`; `header`, `prefix`, ...
    /// for `generic-hmac`; `secret_type` for `standard-webhooks` and `svix`, which reads
    /// secrets given without their `whpk_` / `whsk_` prefix as Ed25519 keys:
    ///
    /// ```
    /// // the bare base64 public key of the sender, as the Go library takes it
    /// let verifier = hookbox::Verifier::builder("standard-webhooks")
    ///     .secret("ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g=")
    ///     .option("secret_type", "ed25519_public")
    ///     .build()?;
    /// # Ok::<(), hookbox::BuildError>(())
    /// ```
    ///
    /// `generic-hmac`, `standard-webhooks` and `svix` refuse options they do not know.
    pub fn option(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.cfg.options.insert(name.into(), value.into());
        self
    }

    /// Builds the verifier.
    pub fn build(self) -> Result<Verifier, BuildError> {
        Verifier::new(&self.name, &self.cfg)
    }

    /// The configuration gathered so far (for [`sign`]).
    pub fn config(&self) -> &SchemeConfig {
        &self.cfg
    }
}
