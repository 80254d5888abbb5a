//! The `hookbox` command: run the server, verify and sign webhooks from the shell, and
//! operate a running server through its admin API.
//!
//! Thin by design: it parses arguments, reads files and calls the library or the API.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use hookbox::{sign, BuildError, Inbound, SchemeConfig, SignInput, Verifier, SCHEMES};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

#[path = "hookbox/client.rs"]
mod client;

/// Receive webhooks and never lose one.
///
/// hookbox verifies webhook signatures for 22 providers and a configurable generic HMAC
/// scheme, journals every event before acknowledging it, and forwards it to your
/// application with retries, a dead-letter queue and replay. `serve` runs the server;
/// `verify` explains why a captured request passes or
/// fails; `sign` and `send` craft what a provider would send, for testing an endpoint.
/// `events`, `dlq` and `replay` operate a running server through its admin API
/// (`--admin URL`, `--token T`, or HOOKBOX_ADMIN_URL and HOOKBOX_ADMIN_TOKEN).
#[derive(Debug, Parser)]
#[command(
    name = "hookbox",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: verify, journal and acknowledge webhooks, then forward them.
    ///
    /// Stops on Ctrl-C or SIGTERM: no new connections, requests in flight finish (up to
    /// `server.shutdown_grace`), then deliveries in flight (as long again; the rest are
    /// delivered after the next start), queued appends are committed, exit status 0.
    Serve(ServeArgs),
    /// Apply the PostgreSQL journal's schema migrations and exit (`serve` applies them
    /// too, under a lock; run this as a separate deploy step if you prefer).
    ///
    /// Reads `server.journal` from the configuration (a `postgres://` URL, `env:NAME` or
    /// `file:PATH`). A redb journal needs no migration. Exit status 0 when the schema is
    /// current, 1 when it cannot be migrated (or is newer than this binary), 2 on a usage
    /// error.
    Migrate(MigrateArgs),
    /// Verify a captured webhook: prints `ok` or the error kind, then an explanation.
    ///
    /// Exit status: 0 when the signature verifies, 1 when it is rejected, 2 on a usage
    /// error.
    #[command(after_help = schemes_help())]
    Verify(VerifyArgs),
    /// Print the headers a provider would send for a body, one `Name: value` per line.
    ///
    /// For schemes that sign inside the body (mailgun, adyen), a blank line and the
    /// signed body follow the headers.
    #[command(after_help = schemes_help())]
    Sign(SignArgs),
    /// Sign a body as a provider would and POST it; exit 0 on a 2xx answer, else 1.
    Send(client::SendArgs),
    /// List, show, follow and export journaled events.
    Events(client::EventsArgs),
    /// List the dead-letter queue and redrive dead events.
    Dlq(client::DlqArgs),
    /// Deliver the events of a time window again and follow the progress.
    Replay(client::ReplayArgs),
}

fn schemes_help() -> String {
    format!("Schemes: {}", SCHEMES.join(", "))
}

/// What `verify` and `sign` share: the scheme and its configuration.
#[derive(Debug, Args)]
struct SchemeArgs {
    /// The provider scheme (see the list below).
    #[arg(long, value_name = "NAME")]
    scheme: String,
    /// A secret or key; repeat for rotation (verify accepts any, sign uses the first).
    #[arg(long = "secret", value_name = "S", required = true)]
    secrets: Vec<String>,
    /// The public URL the provider calls (twilio, square).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// A scheme option, e.g. `verify_token=...` (meta) or `header=X-Sig` (generic-hmac).
    #[arg(long = "option", short = 'o', value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// The time to check against, in Unix seconds (default: now).
    #[arg(long, value_name = "UNIX_SECONDS")]
    now: Option<f64>,
    /// The timestamp tolerance in seconds (default: the provider's window, else 300).
    #[arg(long, value_name = "SECONDS")]
    tolerance: Option<f64>,
    /// The body file, or `-` for standard input (the default).
    #[arg(value_name = "BODY_FILE", default_value = "-")]
    body: String,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    scheme: SchemeArgs,
    /// A request header as `Name: value`; repeat; a header given twice is sent twice.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The request method (GET for subscription handshakes such as Meta's).
    #[arg(long, default_value = "POST")]
    method: String,
}

#[derive(Debug, Args)]
struct SignArgs {
    #[command(flatten)]
    scheme: SchemeArgs,
    /// The delivery id to sign, where the scheme signs one (default: generated).
    #[arg(long, value_name = "ID")]
    id: Option<String>,
}

#[derive(Debug, Args)]
struct MigrateArgs {
    /// The TOML configuration file.
    #[arg(
        long,
        short,
        value_name = "PATH",
        default_value = "hookbox.toml",
        env = "HOOKBOX_CONFIG"
    )]
    config: std::path::PathBuf,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The TOML configuration file.
    #[arg(
        long,
        short,
        value_name = "PATH",
        default_value = "hookbox.toml",
        env = "HOOKBOX_CONFIG"
    )]
    config: std::path::PathBuf,
    /// Override `server.listen` (e.g. `127.0.0.1:0` for an ephemeral port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Print the effective configuration (the file with the `HOOKBOX_*__*` environment
    /// overrides applied, every secret redacted) and exit.
    #[arg(long)]
    print_config: bool,
}

/// A usage error: message for stderr, exit 2.
struct Usage(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Migrate(args) => migrate(args),
        Command::Verify(args) => verify(args),
        Command::Sign(args) => sign_cmd(args),
        Command::Send(args) => client::send(args),
        Command::Events(args) => client::events(args),
        Command::Dlq(args) => client::dlq(args),
        Command::Replay(args) => client::replay(args),
    };
    match result {
        Ok(code) => code,
        Err(Usage(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

impl SchemeArgs {
    fn config(&self) -> Result<SchemeConfig, Usage> {
        let mut cfg = SchemeConfig {
            secrets: self.secrets.iter().map(|s| s.as_str().into()).collect(),
            url: self.url.clone(),
            ..Default::default()
        };
        if let Some(t) = self.tolerance {
            cfg.tolerance = Some(
                Duration::try_from_secs_f64(t)
                    .map_err(|_| Usage(format!("--tolerance {t}: not a duration in seconds")))?,
            );
        }
        for o in &self.options {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| Usage(format!("--option {o:?}: expected KEY=VALUE")))?;
            cfg.options.insert(k.trim().to_owned(), v.to_owned());
        }
        Ok(cfg)
    }

    fn now(&self) -> Result<SystemTime, Usage> {
        match self.now {
            None => Ok(SystemTime::now()),
            Some(t) if t >= 0.0 => Duration::try_from_secs_f64(t)
                .ok()
                .and_then(|d| UNIX_EPOCH.checked_add(d))
                .ok_or_else(|| Usage(format!("--now {t}: out of range"))),
            Some(t) => Err(Usage(format!(
                "--now {t}: must be Unix seconds, not negative"
            ))),
        }
    }

    fn read_body(&self) -> Result<Vec<u8>, Usage> {
        let mut body = Vec::new();
        if self.body == "-" {
            std::io::stdin()
                .read_to_end(&mut body)
                .map_err(|e| Usage(format!("reading standard input: {e}")))?;
        } else {
            body = std::fs::read(&self.body).map_err(|e| Usage(format!("{}: {e}", self.body)))?;
        }
        Ok(body)
    }
}

/// Maps a build error: an unusable secret is a rejection (exit 1), the rest usage errors.
fn build_error(e: BuildError) -> Result<ExitCode, Usage> {
    match e {
        BuildError::InvalidSecret(v) => {
            println!("{}\n{}", v.kind(), v.detail());
            Ok(ExitCode::from(1))
        }
        other => Err(Usage(other.to_string())),
    }
}

/// Parses `Name: value` lines; a value that HTTP cannot carry is reported as the
/// `malformed_header` a server would answer.
fn parse_headers(lines: &[String]) -> Result<Result<HeaderMap, String>, Usage> {
    let mut map = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| Usage(format!("--header {line:?}: expected `Name: value`")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| Usage(format!("--header {line:?}: invalid header name")))?;
        let value = value
            .strip_prefix(' ')
            .unwrap_or(value)
            .trim_end_matches(['\r', '\n']);
        match HeaderValue::from_bytes(value.as_bytes()) {
            Ok(v) => map.append(name, v),
            Err(_) => {
                return Ok(Err(format!(
                    "header `{name}` contains bytes HTTP does not allow"
                )));
            }
        };
    }
    Ok(Ok(map))
}

fn verify(args: VerifyArgs) -> Result<ExitCode, Usage> {
    let cfg = args.scheme.config()?;
    let now = args.scheme.now()?;
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| Usage(format!("--method {}: not an HTTP method", args.method)))?;
    let headers = match parse_headers(&args.headers)? {
        Ok(h) => h,
        Err(detail) => {
            println!("malformed_header\n{detail}");
            return Ok(ExitCode::from(1));
        }
    };
    let verifier = match Verifier::new(&args.scheme.scheme, &cfg) {
        Ok(v) => v,
        Err(e) => return build_error(e),
    };
    let body = args.scheme.read_body()?;
    let query = args
        .scheme
        .url
        .as_deref()
        .and_then(|u| u.split_once('?'))
        .map(|(_, q)| q);
    let inbound = Inbound::new(&headers, &body)
        .with_method(&method)
        .with_query(query);

    if let Some(answer) = verifier.pre_verify_handshake(&inbound) {
        return Ok(match answer {
            Ok(r) => {
                println!(
                    "ok\nhandshake: hookbox answers {}",
                    String::from_utf8_lossy(&r.body)
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("{}\n{}", e.kind(), e.detail());
                ExitCode::from(1)
            }
        });
    }
    match verifier.verify_at(&inbound, now) {
        Ok(()) => {
            let meta = verifier.describe(&inbound);
            println!("ok");
            println!(
                "{} signature verified over {} body bytes",
                verifier.scheme_name(),
                body.len()
            );
            if let Some(id) = meta.id {
                println!("delivery id: {id}");
            }
            if let Some(t) = meta.event_type {
                println!("event type: {t}");
            }
            if let Some(r) = verifier.handshake(&inbound) {
                println!(
                    "handshake: hookbox answers {}",
                    String::from_utf8_lossy(&r.body)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{}\n{}", e.kind(), e.detail());
            Ok(ExitCode::from(1))
        }
    }
}

fn sign_cmd(args: SignArgs) -> Result<ExitCode, Usage> {
    let cfg = args.scheme.config()?;
    let now = args.scheme.now()?;
    let body = args.scheme.read_body()?;
    let id = args.id.unwrap_or_else(|| {
        let n = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("msg_{n:x}")
    });
    let signed = match sign(
        &args.scheme.scheme,
        &cfg,
        &SignInput {
            body: &body,
            id: &id,
            now,
        },
    ) {
        Ok(s) => s,
        Err(e) => return build_error(e),
    };
    let mut out = std::io::stdout().lock();
    let mut write = || -> std::io::Result<()> {
        for (k, v) in &signed.headers {
            writeln!(out, "{k}: {v}")?;
        }
        if let Some(b) = &signed.body {
            writeln!(out)?;
            out.write_all(b)?;
            writeln!(out)?;
        }
        out.flush()
    };
    write().map_err(|e| Usage(format!("writing output: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves a configured secret: `env:NAME`, `file:PATH` (trailing newline trimmed), or
/// the text itself.
fn resolve_secret(spec: &str) -> Result<String, String> {
    if let Some(name) = spec.strip_prefix("env:") {
        std::env::var(name).map_err(|_| format!("environment variable `{name}` is not set"))
    } else if let Some(path) = spec.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
            .map_err(|e| format!("cannot read `{path}`: {e}"))
    } else {
        Ok(spec.to_owned())
    }
}

/// The configuration in `text` with the environment's `HOOKBOX_*__*` overrides.
fn load_config(path: &std::path::Path, text: &str) -> Result<hookbox::Config, Usage> {
    let (config, applied) = hookbox::Config::from_toml_with_env(text, std::env::vars())
        .map_err(|e| Usage(format!("{}: {e}", path.display())))?;
    for o in applied {
        tracing::info!(key = %o.key, var = %o.var, "configuration key set from the environment");
    }
    Ok(config)
}

fn migrate(args: MigrateArgs) -> Result<ExitCode, Usage> {
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| Usage(format!("{}: {e}", args.config.display())))?;
    let config = load_config(&args.config, &text)?;
    let target = resolve_secret(&config.server.journal)
        .map_err(|e| Usage(format!("server.journal: {e}")))?;
    let target = target.trim();
    if !(target.starts_with("postgres://") || target.starts_with("postgresql://")) {
        println!("server.journal is a redb file ({target}): nothing to migrate");
        return Ok(ExitCode::SUCCESS);
    }
    let rt = tokio::runtime::Runtime::new().map_err(|e| Usage(e.to_string()))?;
    match rt.block_on(hookbox::PostgresJournal::migrate(target)) {
        Ok((found, now)) if found == now => {
            println!("schema is current (version {now})");
            Ok(ExitCode::SUCCESS)
        }
        Ok((found, now)) => {
            println!("migrated the schema from version {found} to {now}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn serve(args: ServeArgs) -> Result<ExitCode, Usage> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOOKBOX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| Usage(format!("{}: {e}", args.config.display())))?;
    if args.print_config {
        let shown = hookbox::Config::effective_toml(&text, std::env::vars())
            .map_err(|e| Usage(format!("{}: {e}", args.config.display())))?;
        print!("{shown}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = load_config(&args.config, &text)?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    // Resolve every secret now so a bad one fails at start, naming its key.
    for (i, s) in config.sources.iter().enumerate() {
        s.scheme_config(i, &resolve_secret)
            .map_err(|e| Usage(format!("{}: {e}", args.config.display())))?;
    }
    if let Some(admin) = &config.admin {
        admin
            .token(&resolve_secret)
            .map_err(|e| Usage(format!("{}: {e}", args.config.display())))?;
    }
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| Usage(format!("starting the runtime: {e}")))?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal();
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| Usage(format!("server.listen {}: {e}", config.server.listen)))?;
        let addr = listener.local_addr().map_err(|e| Usage(e.to_string()))?;
        let mut banner = format!("hookbox listening on http://{addr}\n");
        let admin = match &config.admin {
            Some(a) => {
                let l = tokio::net::TcpListener::bind(a.listen)
                    .await
                    .map_err(|e| Usage(format!("admin.listen {}: {e}", a.listen)))?;
                let addr = l.local_addr().map_err(|e| Usage(e.to_string()))?;
                banner.push_str(&format!("hookbox admin on http://{addr}\n"));
                banner.push_str(&format!("hookbox dashboard on http://{addr}/ui/\n"));
                Some(l)
            }
            None => None,
        };
        let listeners = hookbox::server::Listeners {
            webhooks: listener,
            admin,
        };
        // Announced once the journal is open and the listeners serve, not before.
        let ready = move || {
            print!("{banner}");
            let _ = std::io::stdout().flush();
        };
        hookbox::server::run_with(listeners, config, &resolve_secret, shutdown, ready)
            .await
            .map_err(|e| Usage(e.to_string()))?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: a signal that arrives while the server is still
/// starting is then a graceful shutdown too, not the default action (death).
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
