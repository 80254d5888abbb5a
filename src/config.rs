//! The server's configuration: typed, validated, and free of I/O.
//!
//! The binary reads the TOML file and resolves `env:`/`file:` secrets; this module only
//! parses text and checks it, so every problem is reported with the key it concerns.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"
//! journal = "data/hookbox.redb"
//!
//! [[source]]
//! name = "github"
//! path = "/hooks/github"
//! scheme = "github"
//! secrets = ["env:GITHUB_WEBHOOK_SECRET"]
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::{SchemeConfig, Secret, SCHEMES};

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    /// The key, as a path (`source[2].secrets`).
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// A duration written like `"250ms"`, `"5m"` or `"7d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "{s:?} is not a duration like \"250ms\", \"5m\" or \"7d\": {e}"
                ))
            })
    }
}

/// A size written as bytes (`1048576`) or with a unit (`"1MiB"`, `"512KiB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => parse_size(&s).map(ByteSize).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{s:?} is not a size like 1048576, \"512KiB\" or \"1MiB\""
                ))
            }),
        }
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: the webhook listener and the journal.
    pub server: ServerConfig,
    /// `[[source]]`: one per provider endpoint.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// `[[destination]]`: HTTP endpoints events are forwarded to, named by sources.
    #[serde(default, rename = "destination")]
    pub destinations: Vec<DestinationConfig>,
    /// `[admin]`: the admin API; off unless configured.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
}

/// `[server]`.
///
/// ## Defaults
/// - `listen`: `127.0.0.1:8080`; `journal`: `data/hookbox.redb`; `lease`: 30 s;
///   `writers`: 2; `pool_size`: 16 (PostgreSQL);
/// - `request_timeout`: 8 s; `max_in_flight`: 1024; `disk_floor`: 64 MiB;
/// - `queue_capacity`: 8192; `write_ahead_log`: off; `checkpoint`: 1 s;
///   `shutdown_grace`: 10 s;
/// - `retention`: 30 days (`"0s"` keeps every event forever).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where providers post.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The journal: a redb file path (one node), or a PostgreSQL URL
    /// (`postgres://user:pass@host/db?sslmode=require`, several nodes). Also `env:NAME`
    /// or `file:PATH`, since a URL carries a password.
    #[serde(default = "default_journal")]
    pub journal: String,
    /// This node's name in a PostgreSQL cluster; unique among live nodes (default: host
    /// name and process id).
    #[serde(default)]
    pub node: Option<String>,
    /// How long a node may be silent before the others take its deliveries over
    /// (PostgreSQL only; default 30 s).
    #[serde(default)]
    pub lease: Option<HumanDuration>,
    /// How many append transactions a node keeps in flight at once (PostgreSQL only;
    /// default 2, 1 to 64). More writers overlap more commits but make each batch
    /// smaller; on a database whose WAL shares one disk, 2 measured best.
    #[serde(default)]
    pub writers: Option<usize>,
    /// The size of a node's connection pool (PostgreSQL only; default 16, 4 to 1024;
    /// raised to `writers` + 4 when lower, for claims, reads and heartbeats). One more
    /// connection LISTENs for other nodes' commits.
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// The longest a request may take before a 503.
    #[serde(default)]
    pub request_timeout: Option<HumanDuration>,
    /// How many requests may be in flight at once.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Free space under which the journal's disk counts as full.
    #[serde(default)]
    pub disk_floor: Option<ByteSize>,
    /// How many appends may wait for the journal writer.
    #[serde(default)]
    pub queue_capacity: Option<usize>,
    /// The embedded journal commits acknowledged writes to a write-ahead log beside its
    /// file, with redb committing durably once per `checkpoint` (default off: every
    /// acknowledged batch is a durable redb commit; the guarantees are the same, see
    /// the README's figures for the cost on your disk).
    #[serde(default)]
    pub write_ahead_log: Option<bool>,
    /// With `write_ahead_log`, how often the journal checkpoints (a durable redb
    /// commit, after which the log below it is deleted; default 1 s). Shorter: less log
    /// to apply at start; longer: fewer page writes.
    #[serde(default)]
    pub checkpoint: Option<HumanDuration>,
    /// How long shutdown waits for requests in flight.
    #[serde(default)]
    pub shutdown_grace: Option<HumanDuration>,
    /// How long delivered (`done`) events are kept; `"0s"` keeps them forever. Pending,
    /// retrying and dead events are never removed.
    #[serde(default)]
    pub retention: Option<HumanDuration>,
    /// Moves dead events back to pending by themselves (off unless set).
    #[serde(default)]
    pub redrive: Option<RedriveConfig>,
}

/// `server.redrive = { after = "1h", max_redrives = 3 }`: a dead event is redriven once
/// it has been dead for `after`, at most `max_redrives` times (default 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveConfig {
    /// How long an event stays dead before it is redriven.
    pub after: HumanDuration,
    /// How many times one event is redriven at most.
    #[serde(default = "one")]
    pub max_redrives: u32,
}

fn one() -> u32 {
    1
}

impl ServerConfig {
    /// The retention period in force: `retention`, else 30 days; `None` when `"0s"`
    /// turned retention off.
    pub fn retention_period(&self) -> Option<Duration> {
        let keep = self
            .retention
            .map_or(Duration::from_secs(30 * 86400), |d| d.0);
        (!keep.is_zero()).then_some(keep)
    }
}

/// `[admin]`: the admin API (events, dead letters, replay, metrics) on a listener of its
/// own, behind a bearer token.
///
/// ## Defaults
/// - `listen`: `127.0.0.1:8081`; keep it off the public network.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the admin API listens (port 0: any free port).
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// The bearer token every admin request must carry (except the health checks):
    /// inline, `env:NAME` or `file:PATH`. Required.
    pub token: String,
    /// Marks the dashboard's session cookie `Secure`: set it when a TLS-terminating
    /// proxy serves the admin listener over HTTPS (default: false).
    #[serde(default)]
    pub secure_cookies: bool,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &"[redacted]")
            .field("secure_cookies", &self.secure_cookies)
            .finish()
    }
}

impl AdminConfig {
    /// The token, passed through `resolve` (the binary resolves `env:` and `file:`
    /// there); an empty result is an error.
    pub fn token(
        &self,
        resolve: &dyn Fn(&str) -> Result<String, String>,
    ) -> Result<Secret, ConfigError> {
        let token = resolve(&self.token).map_err(|p| ConfigError::new("admin.token", p))?;
        if token.trim().is_empty() {
            return Err(ConfigError::new(
                "admin.token",
                "resolves to an empty token",
            ));
        }
        Ok(Secret::from(token))
    }
}

fn default_admin_listen() -> SocketAddr {
    "127.0.0.1:8081".parse().expect("valid")
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().expect("valid")
}

fn default_journal() -> String {
    "data/hookbox.redb".into()
}

/// `[[source]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A unique name (`"stripe"`), used in metrics, events and the admin API.
    pub name: String,
    /// The URL path providers post to (`"/hooks/stripe"`).
    pub path: String,
    /// The verification scheme, one of [`SCHEMES`].
    pub scheme: String,
    /// Active secrets: inline, `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Timestamp tolerance (default: the provider's window).
    #[serde(default)]
    pub tolerance: Option<HumanDuration>,
    /// Largest accepted body (default 1 MiB).
    #[serde(default)]
    pub max_body: Option<ByteSize>,
    /// How long a provider delivery id counts as a duplicate (default 7 days; "0s" off).
    #[serde(default)]
    pub dedup_window: Option<HumanDuration>,
    /// Pending events beyond which the source answers 429.
    #[serde(default)]
    pub max_backlog: Option<u64>,
    /// The public URL the provider calls (twilio, square).
    #[serde(default)]
    pub url: Option<String>,
    /// Scheme options (`verify_token` for meta, `header`... for generic-hmac).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The source actor's mailbox bound (default 1024).
    #[serde(default)]
    pub mailbox: Option<usize>,
    /// Deliveries of this source at once (default 16).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Deliveries per second at most (default: unlimited).
    #[serde(default)]
    pub rate: Option<f64>,
    /// The longest one attempt may take before it counts as failed (default 30 s).
    #[serde(default)]
    pub attempt_timeout: Option<HumanDuration>,
    /// When failed deliveries are tried again.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// A JSON pointer (`/customer/id`) into the body: events with the same value are
    /// delivered one at a time, in order.
    #[serde(default)]
    pub order_by: Option<String>,
    /// The `[[destination]]`s this source's events are forwarded to: each a name, or a
    /// table with the name and a [filter](crate::filter) (`types`, `when`) choosing
    /// which events go there.
    #[serde(default)]
    pub destinations: Vec<DestinationRef>,
}

/// A source's reference to a destination: `"audit"`, or
/// `{ name = "billing", types = ["invoice.*"], when = { .. } }` (see
/// [`crate::filter`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DestinationRef {
    /// The destination's name.
    pub name: String,
    /// Which events go there (empty: all of them).
    pub filter: crate::filter::FilterSpec,
}

impl DestinationRef {
    /// The destination's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The filter, built and checked; `key` prefixes its errors.
    pub fn filter(&self, key: &str) -> Result<crate::Filter, ConfigError> {
        crate::Filter::from_spec(&self.filter)
            .map_err(|e| ConfigError::new(format!("{key}.{}", e.key), e.reason))
    }
}

impl<'de> Deserialize<'de> for DestinationRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            name: String,
            #[serde(default)]
            types: Vec<String>,
            #[serde(default)]
            when: Option<crate::filter::ConditionSpec>,
        }
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = DestinationRef;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a destination name, or a table with `name` and `types` or `when`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(DestinationRef {
                    name: v.to_owned(),
                    filter: Default::default(),
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let t = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(DestinationRef {
                    name: t.name,
                    filter: crate::filter::FilterSpec {
                        types: t.types,
                        when: t.when,
                    },
                })
            }
        }
        d.deserialize_any(Visit)
    }
}

/// `[[destination]]`: an HTTP endpoint events are forwarded to, re-signed with
/// Standard Webhooks.
///
/// ```toml
/// [[destination]]
/// name = "billing"
/// url = "https://billing.internal/webhooks"
/// signing_secret = "env:BILLING_WEBHOOK_SECRET"
/// timeout = "10s"
/// permanent_statuses = [400, 410]
/// headers = { "x-team" = "payments" }
/// ```
///
/// ## Defaults
/// - `timeout`: 30 s per attempt;
/// - `retry`: the source's retry policy;
/// - `permanent_statuses`: none (every failure is retried until attempts run out);
/// - `max_connections`: 32 requests at once;
/// - `headers`: none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// A unique name (`"billing"`), listed by sources and used in metrics.
    pub name: String,
    /// Where events are `POST`ed: an `http` or `https` URL.
    pub url: String,
    /// The Standard Webhooks secret events are signed with: inline `whsec_<base64>`,
    /// `env:NAME` or `file:PATH`.
    pub signing_secret: String,
    /// The longest one request may take, body included (default 30 s).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// When failed deliveries are tried again (default: the source's policy).
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Response statuses that send the event straight to the dead-letter queue
    /// (`[400, 410]`; default none). A 2xx is always a success.
    #[serde(default)]
    pub permanent_statuses: Vec<u16>,
    /// Requests to this destination at once, at most (default 32); also the number of
    /// idle connections kept.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Extra headers sent with every request (`Authorization`, a routing key, ...).
    /// They may replace `user-agent`, but not the headers hookbox signs or sets.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The largest `server.queue_capacity`: appends waiting for the journal writer.
const MAX_QUEUE: usize = 1 << 20;

/// The largest bound `max_connections` and `server.max_in_flight` may have: each is the
/// size of a tokio semaphore, which holds at most this many permits.
const MAX_PERMITS: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// Headers hookbox sets on forwarded requests, which `headers` may not replace.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

impl DestinationConfig {
    /// Checks this destination, the `index`th, on its own (names are checked for
    /// uniqueness by [`Config::validate`]).
    pub(crate) fn check(&self, index: usize) -> Result<(), ConfigError> {
        let key = |k: &str| format!("destination[{index}].{k}");
        if !valid_name(&self.name) {
            return Err(ConfigError::new(
                key("name"),
                "use letters, digits, '-', '_' or '.'",
            ));
        }
        match reqwest::Url::parse(&self.url) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                return Err(ConfigError::new(
                    key("url"),
                    format!("expected an http or https URL, found `{}:`", url.scheme()),
                ));
            }
            Ok(url) if url.host_str().is_none_or(str::is_empty) => {
                return Err(ConfigError::new(key("url"), "the URL has no host"));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(ConfigError::new(
                    key("url"),
                    format!("not a URL like \"https://app.example/webhooks\": {e}"),
                ));
            }
        }
        if self.signing_secret.is_empty() {
            return Err(ConfigError::new(
                key("signing_secret"),
                "a `whsec_` secret, `env:NAME` or `file:PATH` is required",
            ));
        }
        if !self.signing_secret.starts_with("env:") && !self.signing_secret.starts_with("file:") {
            crate::forward::check_signing_secret(&self.signing_secret)
                .map_err(|p| ConfigError::new(key("signing_secret"), p))?;
        }
        if let Some(s) = self
            .permanent_statuses
            .iter()
            .find(|s| !(100..=599).contains(*s))
        {
            return Err(ConfigError::new(
                key("permanent_statuses"),
                format!("{s} is not an HTTP status (100 to 599)"),
            ));
        }
        if let Some(s) = self
            .permanent_statuses
            .iter()
            .find(|s| (200..=299).contains(*s))
        {
            return Err(ConfigError::new(
                key("permanent_statuses"),
                format!("{s} means delivered; a 2xx cannot be a permanent failure"),
            ));
        }
        match self.max_connections {
            Some(0) => {
                return Err(ConfigError::new(
                    key("max_connections"),
                    "must be at least 1",
                ));
            }
            Some(n) if n > MAX_PERMITS => {
                return Err(ConfigError::new(
                    key("max_connections"),
                    format!("must be at most {MAX_PERMITS}"),
                ));
            }
            _ => {}
        }
        for (name, value) in &self.headers {
            let hkey = || key(&format!("headers.{name:?}"));
            let Ok(parsed) = http::HeaderName::from_bytes(name.as_bytes()) else {
                return Err(ConfigError::new(hkey(), "not a valid header name"));
            };
            if RESERVED_HEADERS.contains(&parsed.as_str())
                || parsed.as_str().starts_with("hookbox-")
            {
                return Err(ConfigError::new(hkey(), "hookbox sets this header itself"));
            }
            if http::HeaderValue::from_str(value).is_err() {
                return Err(ConfigError::new(
                    hkey(),
                    "not a valid header value (visible characters, spaces and tabs only)",
                ));
            }
        }
        Ok(())
    }
}

/// `retry = { ... }`: when a failed delivery is tried again, and when it is given up.
///
/// Either a `schedule` of delays (default `5s, 5m, 30m, 2h, 5h, 10h, 10h`: eight
/// attempts over about a day) or `backoff = "exponential"`: a random delay between zero
/// and `base * 2^(n-1)` (full jitter), at most `cap`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// The delays before attempts 2, 3, ...
    #[serde(default)]
    pub schedule: Option<Vec<HumanDuration>>,
    /// `"schedule"` (default) or `"exponential"`.
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// Exponential: the first delay's upper bound (default 1 s).
    #[serde(default)]
    pub base: Option<HumanDuration>,
    /// The longest delay, also for a handler's `Retry { after }` (default 10 h).
    #[serde(default)]
    pub cap: Option<HumanDuration>,
    /// Attempts in all before the event is dead (default: the schedule's length + 1, or
    /// 8 for exponential).
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

/// How retry delays are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// The fixed `schedule`.
    Schedule,
    /// Exponential with full jitter, up to `cap`.
    Exponential,
}

impl Config {
    /// Parses and validates TOML text. Secrets stay unresolved (`env:`/`file:` as written).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            // A few of toml's errors have no position (a dotted key nested past its
            // recursion limit): they concern the document as a whole.
            let key = e
                .span()
                .map_or_else(|| "document".to_owned(), |s| locate(text, s.start));
            ConfigError::new(key, e.message().to_owned())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what the types cannot: unique names and paths, known schemes, secrets.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.max_in_flight.is_some_and(|n| n > MAX_PERMITS) {
            return Err(ConfigError::new(
                "server.max_in_flight",
                format!("must be at most {MAX_PERMITS}"),
            ));
        }
        // The writer's queue is allocated whole when the journal opens.
        if self
            .server
            .queue_capacity
            .is_some_and(|n| n == 0 || n > MAX_QUEUE)
        {
            return Err(ConfigError::new(
                "server.queue_capacity",
                format!("must be between 1 and {MAX_QUEUE}"),
            ));
        }
        if self.server.journal.trim().is_empty() {
            return Err(ConfigError::new(
                "server.journal",
                "a redb file path or a postgres:// URL is required",
            ));
        }
        if self
            .server
            .lease
            .is_some_and(|d| d.0 < Duration::from_secs(1) || d.0 > Duration::from_secs(3600))
        {
            return Err(ConfigError::new(
                "server.lease",
                "must be between 1s and 1h",
            ));
        }
        if self.server.writers.is_some_and(|n| !(1..=64).contains(&n)) {
            return Err(ConfigError::new(
                "server.writers",
                "must be between 1 and 64",
            ));
        }
        if self
            .server
            .pool_size
            .is_some_and(|n| !(4..=1024).contains(&n))
        {
            return Err(ConfigError::new(
                "server.pool_size",
                "must be between 4 and 1024",
            ));
        }
        if self
            .server
            .node
            .as_deref()
            .is_some_and(|n| n.is_empty() || n.len() > 200)
        {
            return Err(ConfigError::new(
                "server.node",
                "must be 1 to 200 characters",
            ));
        }
        let mut names = std::collections::HashSet::new();
        let mut paths = std::collections::HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let key = |k: &str| format!("source[{i}].{k}");
            if !valid_name(&s.name) {
                return Err(ConfigError::new(
                    key("name"),
                    "use letters, digits, '-', '_' or '.'",
                ));
            }
            if !names.insert(&s.name) {
                return Err(ConfigError::new(
                    key("name"),
                    format!("`{}` is used by two sources", s.name),
                ));
            }
            if !s.path.starts_with('/') {
                return Err(ConfigError::new(key("path"), "must start with '/'"));
            }
            if !paths.insert(&s.path) {
                return Err(ConfigError::new(
                    key("path"),
                    format!("`{}` is used by two sources", s.path),
                ));
            }
            if !SCHEMES.contains(&s.scheme.as_str()) {
                return Err(ConfigError::new(
                    key("scheme"),
                    format!(
                        "unknown scheme `{}`; known: {}",
                        s.scheme,
                        SCHEMES.join(", ")
                    ),
                ));
            }
            if s.order_by.as_deref().is_some_and(|p| !p.starts_with('/')) {
                return Err(ConfigError::new(
                    key("order_by"),
                    "a JSON pointer starts with '/' (\"/customer/id\")",
                ));
            }
            if s.concurrency == Some(0) || s.mailbox == Some(0) {
                return Err(ConfigError::new(
                    key(if s.mailbox == Some(0) {
                        "mailbox"
                    } else {
                        "concurrency"
                    }),
                    "must be at least 1",
                ));
            }
            if s.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                return Err(ConfigError::new(key("rate"), "must be a positive number"));
            }
            if let Some(r) = &s.retry {
                crate::RetryPolicy::from_config(r, &key("retry"))?;
            }
            if s.secrets.is_empty() {
                return Err(ConfigError::new(
                    key("secrets"),
                    "at least one secret is required",
                ));
            }
        }
        let mut destinations = std::collections::HashSet::new();
        for (i, d) in self.destinations.iter().enumerate() {
            d.check(i)?;
            if !destinations.insert(d.name.as_str()) {
                return Err(ConfigError::new(
                    format!("destination[{i}].name"),
                    format!("`{}` is used by two destinations", d.name),
                ));
            }
        }
        for (i, s) in self.sources.iter().enumerate() {
            for (j, r) in s.destinations.iter().enumerate() {
                let key = || format!("source[{i}].destinations[{j}]");
                let name = r.name();
                if !destinations.contains(name) {
                    return Err(ConfigError::new(
                        key(),
                        format!("no [[destination]] is named `{name}`"),
                    ));
                }
                if s.destinations[..j].iter().any(|o| o.name() == name) {
                    return Err(ConfigError::new(key(), format!("`{name}` is listed twice")));
                }
                r.filter(&key())?;
            }
        }
        if let Some(admin) = &self.admin {
            let token = admin.token.trim();
            let reference = token
                .strip_prefix("env:")
                .or_else(|| token.strip_prefix("file:"));
            if token.is_empty() || reference.is_some_and(|r| r.trim().is_empty()) {
                return Err(ConfigError::new(
                    "admin.token",
                    "a token is required: inline, `env:NAME` or `file:PATH`",
                ));
            }
        }
        Ok(())
    }
}

/// A source or destination name: letters, digits, '-', '_' or '.', not empty.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl SourceConfig {
    /// The scheme configuration, with each secret passed through `resolve` (the binary
    /// resolves `env:` and `file:` there).
    pub fn scheme_config(
        &self,
        index: usize,
        resolve: &dyn Fn(&str) -> Result<String, String>,
    ) -> Result<SchemeConfig, ConfigError> {
        let secrets = self
            .secrets
            .iter()
            .enumerate()
            .map(|(j, s)| {
                resolve(s)
                    .map(Secret::from)
                    .map_err(|p| ConfigError::new(format!("source[{index}].secrets[{j}]"), p))
            })
            .collect::<Result<_, _>>()?;
        Ok(SchemeConfig {
            secrets,
            tolerance: self.tolerance.map(|d| d.0),
            url: self.url.clone(),
            options: self.options.clone(),
        })
    }
}

/// The prefix of environment overrides: `HOOKBOX_` and then the key's path, its parts
/// joined by `__` (two underscores), as in `HOOKBOX_SERVER__LISTEN`.
pub const ENV_PREFIX: &str = "HOOKBOX_";

/// One environment override applied to the configuration: where, and by which variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvOverride {
    /// The key it set, as a path (`server.listen`, `source[0].secrets`).
    pub key: String,
    /// The variable (`HOOKBOX_SERVER__LISTEN`).
    pub var: String,
}

impl Config {
    /// Parses TOML text, applies environment overrides from `vars`, then validates; the
    /// binary passes the process environment, tests pass what they like.
    ///
    /// A variable `HOOKBOX_<PATH>` overrides the key at `<PATH>`: its parts are joined
    /// by `__` and matched case-insensitively (`HOOKBOX_SERVER__LISTEN` is
    /// `server.listen`, `HOOKBOX_SERVER__REDRIVE__AFTER` is `server.redrive.after`). An
    /// element of `[[source]]` or `[[destination]]` is chosen by its index or by its
    /// name (`HOOKBOX_SOURCE__STRIPE__SECRETS`, with `-` and `.` in names written `_`).
    /// The value is read as TOML (`100`, `true`, `["a", "b"]`) and taken as a string
    /// when it is not TOML (`127.0.0.1:9000`); quote it to force a string (`"'123'"`).
    /// Secrets keep `env:` and `file:`. Variables with a single `_` after the prefix
    /// (`HOOKBOX_LOG`, `HOOKBOX_CONFIG`) are not overrides. Errors name the variable.
    pub fn from_toml_with_env(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Self, Vec<EnvOverride>), ConfigError> {
        let (table, applied) = merged_table(text, vars)?;
        if applied.is_empty() {
            return Config::from_toml(text).map(|c| (c, applied));
        }
        let merged = toml::to_string(&table)
            .map_err(|e| ConfigError::new("document", format!("after the overrides: {e}")))?;
        let config = Config::from_toml(&merged).map_err(|mut e| {
            // Line numbers of the merged text would mislead: keep the key's path.
            if let Some(at) = e.key.find(" (line ") {
                e.key.truncate(at);
            }
            let under = |o: &EnvOverride| {
                e.key == o.key
                    || e.key.starts_with(&format!("{}.", o.key))
                    || e.key.starts_with(&format!("{}[", o.key))
            };
            if let Some(o) = applied.iter().find(|o| under(o)) {
                e.problem = format!("{} (set by {})", e.problem, o.var);
            }
            e
        })?;
        Ok((config, applied))
    }

    /// The configuration `text` with the overrides of `vars` applied, as TOML, with every
    /// secret redacted (`hookbox serve --print-config`).
    pub fn effective_toml(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<String, ConfigError> {
        let (mut table, _) = merged_table(text, vars)?;
        redact(&mut table);
        toml::to_string(&table).map_err(|e| ConfigError::new("document", e.to_string()))
    }
}

/// Parses `text` and applies the overrides in `vars`.
fn merged_table(
    text: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(toml::Table, Vec<EnvOverride>), ConfigError> {
    let mut table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        // The same error, with its key, as the typed parse reports it.
        Err(_) => {
            return Err(Config::from_toml(text)
                .err()
                .unwrap_or_else(|| ConfigError::new("document", "not a TOML document")))
        }
    };
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| {
            k.strip_prefix(ENV_PREFIX)
                .is_some_and(|rest| rest.contains("__"))
        })
        .collect();
    vars.sort();
    let mut applied = Vec::new();
    for (var, raw) in vars {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(|p| p.to_ascii_lowercase())
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                &var,
                "an empty part in the variable's name",
            ));
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let key =
            set(&mut table, &path, value).map_err(|problem| ConfigError::new(&var, problem))?;
        applied.push(EnvOverride { key, var });
    }
    Ok((table, applied))
}

/// Sets `path` in `table` to `value`; returns the key as a path (`source[1].secrets`).
fn set(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<String, String> {
    let (first, rest) = path.split_first().expect("a non-empty path");
    let list = match first.as_str() {
        "source" | "destination" => true,
        "server" | "admin" => false,
        other => {
            return Err(format!(
                "`{other}` is not a table of the configuration (server, admin, source, destination)"
            ))
        }
    };
    if !list {
        let mut key = first.clone();
        let mut at = table
            .entry(first.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        for (i, part) in rest.iter().enumerate() {
            let t = at
                .as_table_mut()
                .ok_or_else(|| format!("`{key}` is not a table"))?;
            key = format!("{key}.{part}");
            if i + 1 == rest.len() {
                t.insert(part.clone(), value);
                return Ok(key);
            }
            at = t
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        }
        return Err(format!("names the table `{first}`, not a key in it"));
    }
    let Some((selector, keys)) = rest.split_first() else {
        return Err(format!("names `[[{first}]]`, not one of its keys"));
    };
    if keys.is_empty() {
        return Err(format!("names a `[[{first}]]`, not one of its keys"));
    }
    let items = table
        .get_mut(first.as_str())
        .and_then(toml::Value::as_array_mut)
        .ok_or_else(|| format!("there is no `[[{first}]]` to override"))?;
    let norm = |s: &str| s.to_ascii_lowercase().replace(['-', '.'], "_");
    let index = match selector.parse::<usize>() {
        Ok(i) if i < items.len() => i,
        Ok(i) => {
            return Err(format!(
                "there is no `{first}[{i}]` ({} configured)",
                items.len()
            ))
        }
        Err(_) => items
            .iter()
            .position(|item| {
                item.get("name")
                    .and_then(toml::Value::as_str)
                    .is_some_and(|n| norm(n) == *selector)
            })
            .ok_or_else(|| format!("no `[[{first}]]` is named `{selector}`"))?,
    };
    let item = items[index]
        .as_table_mut()
        .ok_or_else(|| format!("`{first}[{index}]` is not a table"))?;
    let mut key = format!("{first}[{index}]");
    let mut at = item;
    for (i, part) in keys.iter().enumerate() {
        key = format!("{key}.{part}");
        if i + 1 == keys.len() {
            at.insert(part.clone(), value);
            return Ok(key);
        }
        at = at
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("`{key}` is not a table"))?;
    }
    unreachable!("keys is not empty")
}

/// Replaces every secret with `[redacted]`: inline secrets, tokens, signing secrets,
/// and a database URL's password. `env:` and `file:` references are shown as written.
fn redact(table: &mut toml::Table) {
    fn hide(v: &mut toml::Value) {
        match v {
            toml::Value::String(s) if !(s.starts_with("env:") || s.starts_with("file:")) => {
                *s = "[redacted]".to_owned();
            }
            toml::Value::Array(items) => items.iter_mut().for_each(hide),
            _ => {}
        }
    }
    if let Some(admin) = table.get_mut("admin").and_then(toml::Value::as_table_mut) {
        admin.get_mut("token").map(hide);
    }
    if let Some(server) = table.get_mut("server").and_then(toml::Value::as_table_mut) {
        if let Some(toml::Value::String(url)) = server.get_mut("journal") {
            if crate::journal::is_url(url) {
                *url = crate::journal::redact_url(url);
            }
        }
    }
    for (list, key) in [("source", "secrets"), ("destination", "signing_secret")] {
        if let Some(items) = table.get_mut(list).and_then(toml::Value::as_array_mut) {
            for item in items.iter_mut().filter_map(toml::Value::as_table_mut) {
                item.get_mut(key).map(hide);
                if let Some(headers) = item.get_mut("headers").and_then(toml::Value::as_table_mut) {
                    headers.iter_mut().for_each(|(_, v)| hide(v));
                }
            }
        }
    }
}

/// The dotted key at byte `offset` of `text`, best effort: the nearest table header and
/// the key on that line.
fn locate(text: &str, offset: usize) -> String {
    // A byte offset inside a multi-byte character counts as that character's start.
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_no = before.matches('\n').count() + 1;
    let mut table = String::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    // Through the end of the offset's line: an error spanning a whole table (a missing
    // key) starts at its header, and that header names the table.
    let line_end = text[before.len()..]
        .find('\n')
        .map_or(text.len(), |i| before.len() + i);
    for line in text[..line_end].lines() {
        // toml skips a leading byte order mark; so does the table header after it.
        let t = line.trim_start_matches('\u{feff}').trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            let n = index
                .entry(name.to_owned())
                .and_modify(|n| *n += 1)
                .or_insert(0);
            table = format!("{name}[{n}]");
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = name.to_owned();
        }
    }
    let current = text[before.rfind('\n').map_or(0, |i| i + 1)..]
        .lines()
        .next()
        .unwrap_or("");
    let key = current.split('=').next().unwrap_or("").trim();
    match (table.is_empty(), key.is_empty() || key.starts_with('[')) {
        (true, true) => format!("line {line_no}"),
        (true, false) => format!("{key} (line {line_no})"),
        (false, true) => format!("{table} (line {line_no})"),
        (false, false) => format!("{table}.{key} (line {line_no})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
journal = "/tmp/x.redb"
request_timeout = "250ms"

[[source]]
name = "github"
path = "/hooks/github"
scheme = "github"
secrets = ["env:GH"]
dedup_window = "7d"
max_body = "512KiB"
"#;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_apply_after_the_file_and_before_validation() {
        let (c, applied) = Config::from_toml_with_env(
            GOOD,
            vars(&[
                ("HOOKBOX_SERVER__LISTEN", "127.0.0.1:9000"),
                ("HOOKBOX_SERVER__MAX_IN_FLIGHT", "64"),
                ("HOOKBOX_SERVER__REDRIVE__AFTER", "1h"),
                ("HOOKBOX_SOURCE__GITHUB__SECRETS", r#"["env:A", "env:B"]"#),
                ("HOOKBOX_SOURCE__0__MAX_BODY", "1MiB"),
                ("HOOKBOX_LOG", "debug"),
                ("HOOKBOX_ADMIN_TOKEN", "not an override"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.server.max_in_flight, Some(64));
        assert_eq!(
            c.server.redrive.map(|r| r.after),
            Some(HumanDuration(Duration::from_secs(3600)))
        );
        assert_eq!(c.sources[0].secrets, ["env:A", "env:B"]);
        assert_eq!(c.sources[0].max_body, Some(ByteSize(1 << 20)));
        assert_eq!(
            c.server.request_timeout,
            Some(HumanDuration(Duration::from_millis(250))),
            "the file's value stays"
        );
        let keys: Vec<_> = applied.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "server.max_in_flight",
                "server.redrive.after",
                "source[0].max_body",
                "source[0].secrets"
            ]
        );
        // No override: the file as it is, with its line numbers in errors.
        let (plain, none) = Config::from_toml_with_env(GOOD, vars(&[])).unwrap();
        assert!(none.is_empty());
        assert_eq!(plain.server.listen.to_string(), "127.0.0.1:0");
    }

    #[test]
    fn environment_override_errors_name_the_variable() {
        let err = |pairs: &[(&str, &str)]| {
            Config::from_toml_with_env(GOOD, vars(pairs))
                .unwrap_err()
                .to_string()
        };
        let e = err(&[("HOOKBOX_SERVER__MAX_IN_FLIGHT", "many")]);
        assert!(
            e.starts_with("server.max_in_flight:")
                && e.contains("(set by HOOKBOX_SERVER__MAX_IN_FLIGHT)"),
            "{e}"
        );
        let e = err(&[("HOOKBOX_SERVER__LISTN", "x")]);
        assert!(
            e.contains("listn") && e.contains("HOOKBOX_SERVER__LISTN"),
            "{e}"
        );
        let e = err(&[("HOOKBOX_SERVRE__LISTEN", "x")]);
        assert!(e.starts_with("HOOKBOX_SERVRE__LISTEN:"), "{e}");
        let e = err(&[("HOOKBOX_SOURCE__STRIPE__PATH", "/x")]);
        assert!(e.contains("no `[[source]]` is named `stripe`"), "{e}");
        let e = err(&[("HOOKBOX_SOURCE__3__PATH", "/x")]);
        assert!(e.contains("there is no `source[3]`"), "{e}");
        let e = err(&[("HOOKBOX_DESTINATION__0__URL", "http://x")]);
        assert!(e.contains("no `[[destination]]`"), "{e}");
        let e = err(&[("HOOKBOX_SERVER__", "x")]);
        assert!(e.contains("empty part"), "{e}");
        let e = err(&[("HOOKBOX_SOURCE__0__SCHEME", "gitlub")]);
        assert!(
            e.starts_with("source[0].scheme:") && e.contains("HOOKBOX_SOURCE__0__SCHEME"),
            "{e}"
        );
    }

    #[test]
    fn the_effective_configuration_shows_no_secret() {
        let text = format!(
            "{GOOD}\n[admin]\ntoken = \"admin-s3cret\"\n\n[[destination]]\nname = \"app\"\n\
             url = \"http://127.0.0.1:1/\"\nsigning_secret = \"whsec_c2VjcmV0\"\n\
             headers = {{ authorization = \"Bearer tok\" }}\n"
        );
        let shown = Config::effective_toml(
            &text,
            vars(&[
                ("HOOKBOX_SERVER__JOURNAL", "postgres://hb:pw123@db/hookbox"),
                (
                    "HOOKBOX_SOURCE__0__SECRETS",
                    r#"["inline-secret", "env:GH2"]"#,
                ),
            ]),
        )
        .unwrap();
        for secret in [
            "admin-s3cret",
            "whsec_c2VjcmV0",
            "Bearer tok",
            "pw123",
            "inline-secret",
        ] {
            assert!(!shown.contains(secret), "{secret} shown in:\n{shown}");
        }
        assert!(
            shown.contains("postgres://hb:[redacted]@db/hookbox"),
            "{shown}"
        );
        assert!(shown.contains("env:GH2"), "references are shown as written");
        assert!(shown.contains("listen = \"127.0.0.1:0\""), "{shown}");
    }

    #[test]
    fn parses_durations_and_sizes() {
        let c = Config::from_toml(GOOD).unwrap();
        assert_eq!(
            c.server.request_timeout,
            Some(HumanDuration(Duration::from_millis(250)))
        );
        assert_eq!(
            c.sources[0].dedup_window,
            Some(HumanDuration(Duration::from_secs(7 * 86400)))
        );
        assert_eq!(c.sources[0].max_body, Some(ByteSize(512 * 1024)));
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::from_toml(&GOOD.replace("\"250ms\"", "\"soon\"")).unwrap_err();
        assert!(e.key.starts_with("server.request_timeout"), "{e}");
        let e = Config::from_toml(&GOOD.replace("scheme = \"github\"", "scheme = \"gitlub\""))
            .unwrap_err();
        assert_eq!(e.key, "source[0].scheme");
        let e = Config::from_toml(&GOOD.replace("max_body", "max_bdy")).unwrap_err();
        assert!(e.key.starts_with("source[0]"), "{e}");
        assert!(e.problem.contains("max_bdy"), "{e}");
        let e =
            Config::from_toml(&GOOD.replace("secrets = [\"env:GH\"]", "secrets = []")).unwrap_err();
        assert_eq!(e.key, "source[0].secrets");
    }

    const WITH_DESTINATIONS: &str = r#"
[server]

[[source]]
name = "github"
path = "/hooks/github"
scheme = "github"
secrets = ["env:GH"]
destinations = ["app", "audit"]

[[destination]]
name = "app"
url = "https://app.example/webhooks"
signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
timeout = "10s"
permanent_statuses = [400, 410]
max_connections = 4
headers = { "x-team" = "payments" }
retry = { schedule = ["1s", "1m"] }

[[destination]]
name = "audit"
url = "http://127.0.0.1:9000/in"
signing_secret = "env:AUDIT_SECRET"
"#;

    fn destination_error(from: &str, to: &str) -> ConfigError {
        assert!(WITH_DESTINATIONS.contains(from), "{from}");
        Config::from_toml(&WITH_DESTINATIONS.replacen(from, to, 1)).unwrap_err()
    }

    #[test]
    fn parses_destinations() {
        let c = Config::from_toml(WITH_DESTINATIONS).unwrap();
        let names: Vec<&str> = c.sources[0].destinations.iter().map(|d| d.name()).collect();
        assert_eq!(names, ["app", "audit"]);
        let app = &c.destinations[0];
        assert_eq!(app.timeout, Some(HumanDuration(Duration::from_secs(10))));
        assert_eq!(app.permanent_statuses, [400, 410]);
        assert_eq!(app.max_connections, Some(4));
        assert_eq!(app.headers["x-team"], "payments");
        assert_eq!(
            app.retry.as_ref().unwrap().schedule.as_ref().unwrap().len(),
            2
        );
        let audit = &c.destinations[1];
        assert_eq!(audit.timeout, None);
        assert!(audit.permanent_statuses.is_empty());
        assert!(audit.headers.is_empty());
        // Without any destination, sources forward nowhere.
        assert!(Config::from_toml(GOOD).unwrap().destinations.is_empty());
    }

    #[test]
    fn destination_names_are_unique_and_plain() {
        let e = destination_error("name = \"audit\"", "name = \"app\"");
        assert_eq!(e.key, "destination[1].name");
        assert!(e.problem.contains("two destinations"), "{e}");
        let e = destination_error("name = \"app\"", "name = \"my app\"");
        assert_eq!(e.key, "destination[0].name");
        let e = destination_error("name = \"app\"", "name = \"\"");
        assert_eq!(e.key, "destination[0].name");
    }

    #[test]
    fn destination_urls_are_http_with_a_host() {
        for bad in ["ftp://app.example/x", "not a url", "/webhooks", "https://"] {
            let e = destination_error("\"http://127.0.0.1:9000/in\"", &format!("{bad:?}"));
            assert_eq!(e.key, "destination[1].url", "{bad}: {e}");
        }
        let e = destination_error("\"http://127.0.0.1:9000/in\"", "\"ftp://x/y\"");
        assert!(e.problem.contains("`ftp:`"), "{e}");
    }

    #[test]
    fn inline_signing_secrets_are_whsec() {
        let e = destination_error("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "hunter2hunter2");
        assert_eq!(e.key, "destination[0].signing_secret");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = destination_error("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!");
        assert_eq!(e.key, "destination[0].signing_secret");
        let e = destination_error("\"env:AUDIT_SECRET\"", "\"\"");
        assert_eq!(e.key, "destination[1].signing_secret");
        // env: and file: are resolved later, by the binary.
        Config::from_toml(&WITH_DESTINATIONS.replace("env:AUDIT_SECRET", "file:/run/s")).unwrap();
    }

    #[test]
    fn permanent_statuses_are_failure_statuses() {
        for bad in ["[400, 99]", "[600]", "[0]", "[410, 204]"] {
            let e = destination_error("[400, 410]", bad);
            assert_eq!(e.key, "destination[0].permanent_statuses", "{bad}: {e}");
        }
        Config::from_toml(&WITH_DESTINATIONS.replace("[400, 410]", "[100, 301, 599]")).unwrap();
    }

    #[test]
    fn destination_headers_are_valid_and_not_reserved() {
        let e = destination_error("\"x-team\" = \"payments\"", "\"x team\" = \"payments\"");
        assert_eq!(e.key, "destination[0].headers.\"x team\"");
        let e = destination_error("\"payments\"", "\"pay\\nments\"");
        assert_eq!(e.key, "destination[0].headers.\"x-team\"");
        assert!(e.problem.contains("value"), "{e}");
        for reserved in [
            "Content-Type",
            "webhook-signature",
            "hookbox-attempt",
            "host",
        ] {
            let e = destination_error("\"x-team\"", &format!("{reserved:?}"));
            assert_eq!(
                e.key,
                format!("destination[0].headers.{reserved:?}"),
                "{reserved}"
            );
        }
        Config::from_toml(&WITH_DESTINATIONS.replace("\"x-team\"", "\"Authorization\"")).unwrap();
        Config::from_toml(&WITH_DESTINATIONS.replace("\"x-team\"", "\"user-agent\"")).unwrap();
    }

    #[test]
    fn max_connections_is_at_least_one() {
        let e = destination_error("max_connections = 4", "max_connections = 0");
        assert_eq!(e.key, "destination[0].max_connections");
    }

    #[test]
    fn connection_and_in_flight_bounds_fit_a_semaphore() {
        // Over tokio's limit, building the destination's semaphore would panic.
        let too_many = format!("max_connections = {}", MAX_PERMITS + 1);
        let e = destination_error("max_connections = 4", &too_many);
        assert_eq!(e.key, "destination[0].max_connections");
        let most = format!("max_connections = {MAX_PERMITS}");
        let c =
            Config::from_toml(&WITH_DESTINATIONS.replace("max_connections = 4", &most)).unwrap();
        crate::Destination::new(0, &c.destinations[0], &c.destinations[0].signing_secret).unwrap();

        let with = |n: usize| GOOD.replace("[server]", &format!("[server]\nmax_in_flight = {n}"));
        let e = Config::from_toml(&with(MAX_PERMITS + 1)).unwrap_err();
        assert_eq!(e.key, "server.max_in_flight");
        Config::from_toml(&with(MAX_PERMITS)).unwrap();
    }

    #[test]
    fn sources_name_existing_destinations_once() {
        let e = destination_error("[\"app\", \"audit\"]", "[\"app\", \"audit\", \"nope\"]");
        assert_eq!(e.key, "source[0].destinations[2]");
        assert!(e.problem.contains("`nope`"), "{e}");
        let e = destination_error("[\"app\", \"audit\"]", "[\"app\", \"app\"]");
        assert_eq!(e.key, "source[0].destinations[1]");
        let e = destination_error("timeout = \"10s\"", "timeout = \"10s\"\nretries = 3");
        assert!(e.key.starts_with("destination[0]"), "{e}");
    }

    fn with_admin(admin: &str) -> String {
        format!("{GOOD}\n[admin]\n{admin}\n")
    }

    #[test]
    fn admin_defaults_and_token_forms() {
        assert!(Config::from_toml(GOOD).unwrap().admin.is_none());
        for token in ["s3cret", "env:HOOKBOX_ADMIN", "file:/run/secrets/admin"] {
            let c = Config::from_toml(&with_admin(&format!("token = \"{token}\""))).unwrap();
            let admin = c.admin.unwrap();
            assert_eq!(admin.listen, "127.0.0.1:8081".parse().unwrap());
            assert_eq!(admin.token, token);
            assert!(
                !format!("{admin:?}").contains(token),
                "Debug hides the token"
            );
        }
        let c = Config::from_toml(&with_admin("listen = \"127.0.0.1:0\"\ntoken = \"t\"")).unwrap();
        assert_eq!(c.admin.unwrap().listen.port(), 0);
    }

    #[test]
    fn admin_errors_name_the_key() {
        for bad in [
            "token = \"\"",
            "token = \"  \"",
            "token = \"env:\"",
            "token = \"file:\"",
        ] {
            let e = Config::from_toml(&with_admin(bad)).unwrap_err();
            assert_eq!(e.key, "admin.token", "{bad}: {e}");
        }
        let e = Config::from_toml(&with_admin("listen = \"127.0.0.1:9\"")).unwrap_err();
        assert!(e.key.starts_with("admin"), "{e}");
        assert!(e.problem.contains("token"), "{e}");
        let e =
            Config::from_toml(&with_admin("listen = \"localhost\"\ntoken = \"t\"")).unwrap_err();
        assert!(e.key.starts_with("admin.listen"), "{e}");
        let e = Config::from_toml(&with_admin("token = \"t\"\ntokn = \"u\"")).unwrap_err();
        assert!(e.key.starts_with("admin"), "{e}");
        assert!(e.problem.contains("tokn"), "{e}");

        let admin = Config::from_toml(&with_admin("token = \"env:EMPTY\""))
            .unwrap()
            .admin
            .unwrap();
        let e = admin.token(&|_| Ok(String::new())).unwrap_err();
        assert_eq!(e.key, "admin.token");
        let e = admin.token(&|_| Err("not set".into())).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.problem.as_str()),
            ("admin.token", "not set")
        );
        assert_eq!(admin.token(&|_| Ok("t0k".into())).unwrap().expose(), "t0k");
    }

    #[test]
    fn retention_defaults_to_30_days_and_0s_disables() {
        let c = Config::from_toml(GOOD).unwrap();
        assert_eq!(
            c.server.retention_period(),
            Some(Duration::from_secs(30 * 86400))
        );
        let c =
            Config::from_toml(&GOOD.replace("[server]", "[server]\nretention = \"0s\"")).unwrap();
        assert_eq!(c.server.retention_period(), None);
        let c =
            Config::from_toml(&GOOD.replace("[server]", "[server]\nretention = \"7d\"")).unwrap();
        assert_eq!(
            c.server.retention_period(),
            Some(Duration::from_secs(7 * 86400))
        );
        let e = Config::from_toml(&GOOD.replace("[server]", "[server]\nretention = \"forever\""))
            .unwrap_err();
        assert!(e.key.starts_with("server.retention"), "{e}");
        assert!(e.problem.contains("forever"), "{e}");
    }

    #[test]
    fn locate_takes_offsets_inside_multibyte_characters() {
        let text = "[server]\nlisten = \"日本\"\n[[source]]\nname = \"é\"é\n";
        for offset in 0..=text.len() + 2 {
            let key = locate(text, offset);
            assert!(!key.is_empty(), "{offset}");
        }
        // Inside `本` (3 bytes) and inside the trailing `é` (2 bytes).
        let inside = text.find('本').unwrap() + 1;
        assert_eq!(locate(text, inside), "server.listen (line 2)");
        let inside = text.rfind('é').unwrap() + 1;
        assert_eq!(locate(text, inside), "source[0].name (line 4)");
    }

    #[test]
    fn errors_without_a_position_name_the_document() {
        // toml reports a dotted key nested past its recursion limit without a span.
        let deep = vec!["a"; 90].join(".");
        let e = Config::from_toml(&format!("[server]\n{deep} = 1\n")).unwrap_err();
        assert_eq!(e.key, "document", "{e}");
    }

    #[test]
    fn a_byte_order_mark_does_not_hide_the_first_table() {
        let e = Config::from_toml("\u{feff}[server]\nlisten = 127.0.0.1\n").unwrap_err();
        assert_eq!(e.key, "server.listen (line 2)", "{e}");
        let e = Config::from_toml("\u{feff}[server]\nlistn = \"x\"\n").unwrap_err();
        assert!(e.key.starts_with("server"), "{e}");
    }

    #[test]
    fn redrive_policy_parses_with_a_default_limit() {
        let text = GOOD.replace(
            "request_timeout = \"250ms\"",
            "request_timeout = \"250ms\"\nredrive = { after = \"1h\" }",
        );
        let r = Config::from_toml(&text).unwrap().server.redrive.unwrap();
        assert_eq!(r.after, HumanDuration(Duration::from_secs(3600)));
        assert_eq!(r.max_redrives, 1);
        let e = Config::from_toml(&text.replace("after", "aftr")).unwrap_err();
        assert!(e.key.starts_with("server.redrive"), "{e}");
    }

    #[test]
    fn postgres_writers_and_pool_size_are_bounded() {
        let with = |k: &str, n: usize| GOOD.replace("[server]", &format!("[server]\n{k} = {n}"));
        for (key, ok, bad) in [
            ("writers", [1, 64], [0, 65]),
            ("pool_size", [4, 1024], [3, 1025]),
        ] {
            for n in ok {
                let cfg = Config::from_toml(&with(key, n)).unwrap();
                let got = if key == "writers" {
                    cfg.server.writers
                } else {
                    cfg.server.pool_size
                };
                assert_eq!(got, Some(n));
            }
            for n in bad {
                let e = Config::from_toml(&with(key, n)).unwrap_err();
                assert_eq!(e.key, format!("server.{key}"), "{n}");
            }
        }
    }

    #[test]
    fn queue_capacity_is_bounded() {
        let with = |n: usize| GOOD.replace("[server]", &format!("[server]\nqueue_capacity = {n}"));
        assert!(Config::from_toml(&with(8192)).is_ok());
        for n in [0, (1 << 20) + 1, usize::MAX >> 1] {
            let e = Config::from_toml(&with(n)).unwrap_err();
            assert_eq!(e.key, "server.queue_capacity", "{n}");
        }
    }
}
