//! The standalone server: a router built from a [`Config`], and [`run`] with graceful
//! shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use tokio::net::TcpListener;

use crate::layer::problem::problem;
use crate::{
    Config, ConfigError, Destination, Hookbox, Journal, OpenError, PostgresJournal, RedbJournal,
    RedrivePolicy, RetryPolicy, Runtime, ShedLayer, Source, SourceOptions, Verifier,
};

/// Starting or running the server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The journal could not be opened.
    #[error(transparent)]
    Journal(#[from] OpenError),
    /// The listener failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Builds the [`Hookbox`] of `config` over `journal`; `resolve` turns each configured
/// secret (`env:NAME`, `file:PATH` or inline) into its value.
pub fn hookbox(
    config: &Config,
    journal: Arc<dyn Journal>,
    resolve: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Hookbox, ConfigError> {
    let s = &config.server;
    let mut shed = ShedLayer::new(journal.clone());
    if let Some(t) = s.request_timeout {
        shed = shed.timeout(t.0);
    }
    if let Some(n) = s.max_in_flight {
        shed = shed.max_in_flight(n);
    }
    if let Some(floor) = s.disk_floor {
        shed = shed.disk_floor(floor.0);
    }
    let mut hb = Hookbox::new(journal).shed(shed);
    for (i, src) in config.sources.iter().enumerate() {
        let scheme = src.scheme_config(i, resolve)?;
        let verifier = Verifier::new(&src.scheme, &scheme)
            .map_err(|e| ConfigError::new(format!("source[{i}]"), e.to_string()))?;
        let mut source = Source::new(src.name.as_str(), verifier).max_backlog(src.max_backlog);
        if let Some(b) = src.max_body {
            source = source.max_body(b.0 as usize);
        }
        if let Some(p) = &src.order_by {
            source = source.order_by(p.as_str());
        }
        if let Some(w) = src.dedup_window {
            source = source.dedup_window((!w.0.is_zero()).then_some(w.0));
        }
        let known = |name: &str| config.destinations.iter().any(|d| d.name == name);
        let mut destinations = Vec::new();
        for (j, r) in src.destinations.iter().enumerate() {
            if known(r.name()) {
                let filter = r.filter(&format!("source[{i}].destinations[{j}]"))?;
                destinations.push((r.name().to_owned(), filter));
            }
        }
        hb = hb.source(source.destinations(destinations));
    }
    Ok(hb)
}

/// The delivery runtime of `config`: each source with destinations forwards its events
/// to them. `None` when no source has a destination (events are then only journaled).
///
/// Each destination of a source is a delivery of its own, retried on the destination's
/// own `retry`, else the source's `retry`, else the default schedule. (Events journaled
/// with one delivery for all destinations, before destinations had their own, retry on
/// the source's `retry`, else its first destination's.) A source's attempt timeout
/// defaults to the longest destination timeout plus 5 s (waiting for a connection
/// counts too).
pub fn runtime(
    config: &Config,
    journal: Arc<dyn Journal>,
    resolve: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Option<Runtime>, ConfigError> {
    let mut built: HashMap<&str, Arc<Destination>> = HashMap::new();
    for (i, d) in config.destinations.iter().enumerate() {
        let secret = resolve(&d.signing_secret)
            .map_err(|p| ConfigError::new(format!("destination[{i}].signing_secret"), p))?;
        built.insert(d.name.as_str(), Arc::new(Destination::new(i, d, &secret)?));
    }
    let mut builder = Runtime::builder(journal);
    let mut any = false;
    for (i, src) in config.sources.iter().enumerate() {
        if src.destinations.is_empty() {
            continue;
        }
        let mut routed = Vec::new();
        for (j, r) in src.destinations.iter().enumerate() {
            if let Some(dest) = built.get(r.name()) {
                let filter = r.filter(&format!("source[{i}].destinations[{j}]"))?;
                routed.push((dest.clone(), filter));
            }
        }
        let dests: Vec<Arc<Destination>> = routed.iter().map(|(d, _)| d.clone()).collect();
        let key = format!("source[{i}].retry");
        let retry = match src
            .retry
            .as_ref()
            .or_else(|| dests.iter().find_map(|d| d.retry()))
        {
            Some(r) => RetryPolicy::from_config(r, &key)?,
            None => RetryPolicy::default(),
        };
        let own = match &src.retry {
            Some(r) => RetryPolicy::from_config(r, &key)?,
            None => RetryPolicy::default(),
        };
        let longest = dests.iter().map(|d| d.timeout()).max().unwrap_or_default();
        let mut opts = SourceOptions::default()
            .retry(retry)
            .rate(src.rate)
            .attempt_timeout(
                src.attempt_timeout
                    .map_or(longest.saturating_add(Duration::from_secs(5)), |t| t.0),
            );
        if let Some(n) = src.mailbox {
            opts = opts.mailbox(n);
        }
        if let Some(n) = src.concurrency {
            opts = opts.concurrency(n);
        }
        for d in &dests {
            let at = config.destinations.iter().position(|c| c.name == d.name());
            let policy = match d.retry() {
                Some(r) => RetryPolicy::from_config(
                    r,
                    &format!("destination[{}].retry", at.unwrap_or_default()),
                )?,
                None => own.clone(),
            };
            opts = opts.destination_retry(d.name(), policy);
        }
        builder = builder.source(&src.name, opts).forward(&src.name, routed);
        any = true;
    }
    if let Some(r) = config.server.redrive {
        builder = builder.redrive_policy(RedrivePolicy {
            after: r.after.0,
            max_redrives: r.max_redrives,
        });
    }
    Ok(any.then(|| builder.start()))
}

/// The webhook router: each source's endpoint at its path; anything else is a 404
/// problem.
pub fn router(config: &Config, hookbox: &Hookbox) -> Router {
    let mut app = Router::new();
    for src in &config.sources {
        app = app.route_service(&src.path, hookbox.endpoint(&src.name));
    }
    app.fallback(|req: Request<Body>| async move {
        problem(
            StatusCode::NOT_FOUND,
            "unknown_endpoint",
            "No webhook source is configured at this path",
            &format!(
                "{} {} matches no [[source]] path",
                req.method(),
                req.uri().path()
            ),
        )
    })
}

/// The sockets [`run`] serves. A `TcpListener` converts into one: the webhook listener,
/// with the admin API (when `[admin]` is configured) bound at `admin.listen`.
#[derive(Debug)]
pub struct Listeners {
    /// Where providers post.
    pub webhooks: TcpListener,
    /// The admin API's listener, used when `[admin]` is configured (`None`: bind
    /// `admin.listen`). Bind it yourself to learn a port-0 address before serving.
    pub admin: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(webhooks: TcpListener) -> Self {
        Listeners {
            webhooks,
            admin: None,
        }
    }
}

/// Opens the journal `server.journal` names: a PostgreSQL database for a `postgres://`
/// URL (after `resolve`, so `env:` and `file:` work), else a redb file.
pub async fn open_journal(
    config: &Config,
    resolve: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Arc<dyn Journal>, ServeError> {
    let s = &config.server;
    let target = resolve(&s.journal).map_err(|p| ConfigError::new("server.journal", p))?;
    let target = target.trim();
    if crate::journal::is_url(target) {
        let mut builder = PostgresJournal::builder(target);
        if let Some(n) = s.queue_capacity {
            builder = builder.queue_capacity(n);
        }
        if let Some(node) = &s.node {
            builder = builder.node(node.clone());
        }
        if let Some(lease) = s.lease {
            builder = builder.lease(lease.0);
        }
        if let Some(n) = s.writers {
            builder = builder.writers(n);
        }
        if let Some(n) = s.pool_size {
            builder = builder.pool_size(n);
        }
        return Ok(Arc::new(builder.open().await?));
    }
    let mut builder = RedbJournal::builder().log(s.write_ahead_log.unwrap_or(false));
    if let Some(t) = s.checkpoint {
        builder = builder.checkpoint_every(t.0);
    }
    if let Some(n) = s.queue_capacity {
        builder = builder.queue_capacity(n);
    }
    Ok(Arc::new(builder.open(target)?))
}

/// Aborts a background task when dropped, so that no way out of [`run`] leaves one
/// holding the journal.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the server on `listener` until `shutdown` resolves: then stops accepting, lets
/// requests in flight finish (up to `server.shutdown_grace`), and flushes the journal.
///
/// With `[admin]` configured the admin API serves too (see [`Listeners`]), and done
/// events are purged after `server.retention` in the background.
pub async fn run(
    listener: impl Into<Listeners>,
    config: Config,
    resolve: &dyn Fn(&str) -> Result<String, String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    run_with(listener, config, resolve, shutdown, || {}).await
}

/// [`run`], calling `on_ready` once the journal is open and both listeners serve: the
/// moment to announce readiness (`hookbox serve` prints its addresses then, so that a
/// journal that cannot be opened is never preceded by "listening").
pub async fn run_with(
    listener: impl Into<Listeners>,
    config: Config,
    resolve: &dyn Fn(&str) -> Result<String, String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(),
) -> Result<(), ServeError> {
    let Listeners {
        webhooks: listener,
        admin: admin_listener,
    } = listener.into();
    // Installed before the journal opens so its first commits are measured.
    crate::admin::metrics_handle();
    let s = &config.server;
    let journal = open_journal(&config, resolve).await?;
    let hb = hookbox(&config, journal.clone(), resolve)?;
    let runtime = runtime(&config, journal.clone(), resolve)?;
    let app = router(&config, &hb);
    let grace = s.shutdown_grace.map_or(Duration::from_secs(10), |d| d.0);

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let admin = crate::admin::start(
        admin_listener,
        &config,
        journal.clone(),
        resolve,
        stop_rx.clone(),
    )
    .await?;
    let retention = s.retention_period().map(|keep| {
        AbortOnDrop(tokio::spawn(crate::journal::retention::run(
            journal.clone(),
            keep,
        )))
    });
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        let _ = stop_tx.send(true);
    });
    on_ready();
    tokio::select! {
        r = serve => r?,
        _ = async {
            let _ = stop_rx.wait_for(|v| *v).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(grace_ms = grace.as_millis() as u64, "requests still in flight after the grace period were dropped (never acknowledged)"),
    }
    drop(retention);
    if let Some(admin) = admin {
        admin.finish(grace).await;
    }
    drop(hb);
    if let Some(rt) = runtime {
        let left = rt.shutdown_async(grace).await;
        if left > 0 {
            tracing::warn!(
                left,
                "deliveries still running at the deadline stay pending for the next start"
            );
        }
    }
    // Appends already queued are committed and answered before the writer stops.
    if let Err(e) = journal.close().await {
        tracing::warn!(error = %e, "closing the journal failed");
    }
    tracing::info!("journal flushed; bye");
    Ok(())
}
