//! The admin API's client commands (`events`, `dlq`, `replay`) and `send`.
//!
//! Each parses its arguments, makes plain HTTP calls with `reqwest`, and prints a table
//! (or the API's JSON with `--json`). A failed operation prints one line to stderr and
//! exits 1; a usage error exits 2.

use std::future::Future;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use hookbox::filter::FilterSpec;
use hookbox::{sign, Filter, SchemeConfig, SignInput};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{build_error, parse_headers, Usage};

/// How to reach the admin API; shared by `events`, `dlq` and `replay`.
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// The admin API's base URL (the server's `[admin] listen`).
    #[arg(
        long = "admin",
        value_name = "URL",
        env = "HOOKBOX_ADMIN_URL",
        default_value = "http://127.0.0.1:8081",
        global = true,
        help_heading = "Admin API"
    )]
    url: String,
    /// The admin token (the server's `[admin] token`).
    #[arg(
        long,
        value_name = "T",
        env = "HOOKBOX_ADMIN_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = "Admin API"
    )]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true, help_heading = "Admin API")]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// List events, newest first.
    #[command(after_help = "Examples:\n  \
        hookbox events list --source stripe --type 'invoice.*' --since 1h\n  \
        hookbox events list --state dead --limit 20 --json\n  \
        hookbox events list --where 'when = { pointer = \"/data/object/amount\", gt = 100 }'")]
    List(ListArgs),
    /// Show one event: headers, body, delivery state and every attempt.
    Show {
        /// The event id (`evt_` and 16 hex digits).
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Print events as they arrive (polls every second) until Ctrl-C.
    #[command(after_help = "Examples:\n  \
        hookbox events tail --source stripe\n  \
        hookbox events tail --where 'types = [\"invoice.*\"], when = { pointer = \"/data/object/amount\", gt = 100 }'")]
    Tail {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Only events this filter takes, by type and body (see `hookbox replay --help`).
        #[arg(long = "where", value_name = "FILTER", value_parser = parse_where)]
        filter: Option<String>,
        /// How many recent events to print first.
        #[arg(long, short = 'n', value_name = "N", default_value_t = 10)]
        lines: usize,
    },
    /// Write every event of a window, with its attempts, as NDJSON (oldest first).
    #[command(after_help = "Examples:\n  \
        hookbox events export --since 2024-05-01T00:00:00Z --until 2024-06-01T00:00:00Z -o may.ndjson\n  \
        hookbox events export --since 24h --source github > today.ndjson")]
    Export {
        /// Received at or after: RFC 3339, or a duration ago (`15m`, `7d`).
        #[arg(long, value_name = "TIME", value_parser = parse_when)]
        since: String,
        /// Received before: RFC 3339, or a duration ago (default: now).
        #[arg(long, value_name = "TIME", value_parser = parse_when)]
        until: Option<String>,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Only events this filter takes, by type and body (see `hookbox replay --help`).
        #[arg(long = "where", value_name = "FILTER", value_parser = parse_where)]
        filter: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only this source.
    #[arg(long)]
    source: Option<String>,
    /// Only this event type, or a prefix ending in `*` (`invoice.*`).
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<String>,
    /// Only events in this state.
    #[arg(long, value_parser = ["pending", "retrying", "done", "dead"])]
    state: Option<String>,
    /// Received at or after: RFC 3339, or a duration ago (`15m`, `7d`).
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    since: Option<String>,
    /// Received before: RFC 3339, or a duration ago.
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    until: Option<String>,
    /// At most this many events (pages are followed past 1000).
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: usize,
    /// Only events this filter takes, by type and body (see `hookbox replay --help`).
    #[arg(long = "where", value_name = "FILTER", value_parser = parse_where)]
    filter: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DlqArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead deliveries (event and destination), oldest first, with why they died.
    List {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
    },
    /// Move dead events back to pending so they are delivered again.
    ///
    /// The options narrow which; with none, every dead event is redriven.
    #[command(after_help = "Examples:\n  \
        hookbox dlq redrive --id evt_018f2a4b5c6d0000 --id evt_018f2a4b5c6d0001\n  \
        hookbox dlq redrive --source stripe --type 'invoice.*' --since 2h\n  \
        hookbox dlq redrive --destination billing")]
    Redrive {
        /// Exactly this event; repeat for several.
        #[arg(long = "id", value_name = "ID")]
        ids: Vec<String>,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Only this type, or a prefix ending in `*`.
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
        /// Only the deliveries to this destination (its other destinations keep
        /// their state).
        #[arg(long, value_name = "NAME")]
        destination: Option<String>,
        /// Died at or after: RFC 3339, or a duration ago.
        #[arg(long, value_name = "TIME", value_parser = parse_when)]
        since: Option<String>,
        /// Died before: RFC 3339, or a duration ago.
        #[arg(long, value_name = "TIME", value_parser = parse_when)]
        until: Option<String>,
    },
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    hookbox replay --since 2h --dry-run\n  \
    hookbox replay --since 2024-05-01T10:00:00Z --until 2024-05-01T11:00:00Z --source stripe\n  \
    hookbox replay --since 1d --where 'types = [\"invoice.*\"], when = { pointer = \"/data/object/amount\", gt = 100 }' --dry-run\n\n\
A --where filter is the configuration's filter language: the keys of a destination \
reference (`types`, `when`) as the body of a TOML inline table, or a JSON object when it \
starts with `{`.")]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Received at or after: RFC 3339, or a duration ago (`15m`, `7d`).
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    since: String,
    /// Received before: RFC 3339, or a duration ago (default: now).
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    until: Option<String>,
    /// Only this source.
    #[arg(long)]
    source: Option<String>,
    /// Only this type, or a prefix ending in `*`.
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<String>,
    /// Deliver only to this destination.
    #[arg(long, value_name = "NAME")]
    destination: Option<String>,
    /// Only events this filter takes, by type and body: `types = [..], when = {..}`
    /// (TOML, the configuration's keys) or a JSON object.
    #[arg(long = "where", value_name = "FILTER", value_parser = parse_where)]
    filter: Option<String>,
    /// Count the matching events; queue nothing.
    #[arg(long)]
    dry_run: bool,
    /// Return once the replay is queued instead of following its progress.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    hookbox send --scheme github --secret s3cret --url http://127.0.0.1:8080/hooks/github\n  \
    hookbox send --scheme stripe --secret whsec_... --url http://127.0.0.1:8080/hooks/stripe event.json")]
pub(crate) struct SendArgs {
    /// The provider scheme to sign with (see `hookbox sign --help`).
    #[arg(long, value_name = "NAME")]
    scheme: String,
    /// The signing secret; repeat for rotation (the first one signs).
    #[arg(long = "secret", value_name = "S", required = true)]
    secrets: Vec<String>,
    /// The webhook URL to POST to (twilio and square also sign it).
    #[arg(long, value_name = "URL")]
    url: String,
    /// A scheme option, e.g. `header=X-Sig` (generic-hmac).
    #[arg(long = "option", short = 'o', value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// An extra request header as `Name: value`; repeat.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The delivery id to sign, where the scheme signs one (default: generated).
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// The body file, or `-` for standard input (default: a small JSON test event).
    #[arg(value_name = "BODY_FILE")]
    body: Option<String>,
}

/// Why a command failed.
enum Fail {
    /// Bad arguments: exit 2.
    Usage(String),
    /// The operation failed (HTTP error, unreachable server, I/O): exit 1.
    Op(String),
}

type Result<T> = std::result::Result<T, Fail>;

/// Runs `work` on a small runtime and maps its failure to an exit status.
fn block_on(work: impl Future<Output = Result<ExitCode>>) -> std::result::Result<ExitCode, Usage> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Usage(format!("starting the runtime: {e}")))?;
    match runtime.block_on(work) {
        Ok(code) => Ok(code),
        Err(Fail::Usage(msg)) => Err(Usage(msg)),
        Err(Fail::Op(msg)) => {
            eprintln!("error: {msg}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Parses `--since`/`--until`: RFC 3339, `now`, or a duration ago (`15m`); answers RFC
/// 3339 for the API.
fn parse_when(s: &str) -> std::result::Result<String, String> {
    if s.eq_ignore_ascii_case("now") {
        return Ok(rfc3339(SystemTime::now()));
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(rfc3339(t.into()));
    }
    let ago = humantime::parse_duration(s).map_err(|_| {
        format!(
            "`{s}` is neither an RFC 3339 time (2024-05-01T12:00:00Z) nor a duration ago (15m, 7d)"
        )
    })?;
    SystemTime::now()
        .checked_sub(ago)
        .map(rfc3339)
        .ok_or_else(|| format!("`{s}` ago is before the epoch"))
}

/// Parses `--where`: a filter as the body of a TOML inline table with the keys of a
/// destination reference (`types = ["invoice.*"], when = { pointer = "/a", gt = 1 }`),
/// or a JSON object when it starts with `{`. Checks it as the server will, and answers
/// it as JSON for the API.
fn parse_where(s: &str) -> std::result::Result<String, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrapped {
        filter: FilterSpec,
    }
    let spec: FilterSpec = if s.trim_start().starts_with('{') {
        serde_json::from_str(s).map_err(|e| format!("not a JSON filter: {e}"))?
    } else {
        toml::from_str::<Wrapped>(&format!("filter = {{ {s} }}"))
            .map(|w| w.filter)
            .map_err(|e| {
                format!(
                    "not a filter (`types = [\"invoice.*\"], when = {{ pointer = \"/data/amount\", gt = 100 }}`, or JSON): {}",
                    e.message().trim_end()
                )
            })?
    };
    Filter::from_spec(&spec).map_err(|e| e.to_string())?;
    Ok(serde_json::to_string(&spec).expect("a filter serializes to JSON"))
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .expect("a SystemTime formats as RFC 3339")
}

/// The admin API, as the CLI calls it.
struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    fn new(args: &AdminArgs) -> Result<Self> {
        let base = args.url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Fail::Usage(format!(
                "--admin {}: expected an http:// or https:// URL",
                args.url
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Fail::Op(format!("building the HTTP client: {e}")))?;
        Ok(Api {
            http,
            base,
            token: args.token.clone(),
        })
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        let req = self.http.get(format!("{}{path}", self.base)).query(query);
        self.call(req).await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let req = self.http.post(format!("{}{path}", self.base)).json(body);
        self.call(req).await
    }

    async fn call(&self, mut req: reqwest::RequestBuilder) -> Result<Value> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.map_err(|e| {
            Fail::Op(format!(
                "cannot reach the admin API at {}: {}",
                self.base,
                root_cause(&e)
            ))
        })?;
        let status = res.status();
        let url = res.url().clone();
        let text = res
            .text()
            .await
            .map_err(|e| Fail::Op(format!("reading the answer of {url}: {}", root_cause(&e))))?;
        if !status.is_success() {
            let problem: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let detail = problem["detail"]
                .as_str()
                .or(problem["title"].as_str())
                .unwrap_or(text.trim());
            let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
                " (pass the [admin] token with --token or HOOKBOX_ADMIN_TOKEN)"
            } else {
                ""
            };
            return Err(Fail::Op(format!(
                "{} {} from {}: {detail}{hint}",
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                url.path()
            )));
        }
        serde_json::from_str(&text)
            .map_err(|e| Fail::Op(format!("{url} answered something other than JSON: {e}")))
    }
}

/// The innermost cause of an error: "Connection refused", not reqwest's wrapper text.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Aligned columns; the last one is not padded.
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&head).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
    }
    out
}

/// A JSON value as table text: strings bare, null as `-`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON serializes")
    );
}

fn event_row(e: &Value) -> Vec<String> {
    [
        "id",
        "received_at",
        "source",
        "type",
        "state",
        "attempts",
        "body_len",
    ]
    .iter()
    .map(|k| cell(&e[*k]))
    .collect()
}

const EVENT_HEAD: [&str; 7] = [
    "ID", "RECEIVED", "SOURCE", "TYPE", "STATE", "ATTEMPTS", "BYTES",
];

pub(crate) fn events(args: EventsArgs) -> std::result::Result<ExitCode, Usage> {
    block_on(async move {
        let api = Api::new(&args.admin)?;
        let json = args.admin.json;
        match args.command {
            EventsCommand::List(l) => list(&api, l, json).await,
            EventsCommand::Show { id } => show(&api, &id, json).await,
            EventsCommand::Tail {
                source,
                filter,
                lines,
            } => tail(&api, source, filter, lines, json).await,
            EventsCommand::Export {
                since,
                until,
                source,
                filter,
                output,
            } => export(&api, since, until, source, filter, output).await,
        }
    })
}

/// Fetches events newest first, following cursors until `limit` are in hand.
async fn fetch(api: &Api, filters: &[(&str, &str)], limit: usize) -> Result<(Vec<Value>, bool)> {
    let mut out: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let want = (limit - out.len()).min(1000).to_string();
        let mut q: Vec<(&str, &str)> = filters.to_vec();
        q.push(("limit", &want));
        if let Some(c) = &cursor {
            q.push(("cursor", c));
        }
        let page = api.get("/v1/events", &q).await?;
        out.extend(page["events"].as_array().cloned().unwrap_or_default());
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            return Ok((out, false));
        }
        if out.len() >= limit {
            return Ok((out, true));
        }
    }
}

async fn list(api: &Api, l: ListArgs, json: bool) -> Result<ExitCode> {
    if l.limit == 0 {
        return Err(Fail::Usage("--limit: must be at least 1".into()));
    }
    let mut filters: Vec<(&str, &str)> = Vec::new();
    for (k, v) in [
        ("source", &l.source),
        ("type", &l.event_type),
        ("state", &l.state),
        ("since", &l.since),
        ("until", &l.until),
        ("where", &l.filter),
    ] {
        if let Some(v) = v {
            filters.push((k, v));
        }
    }
    let (events, more) = fetch(api, &filters, l.limit).await?;
    if json {
        let next = more.then(|| events.last().map(|e| e["id"].clone()));
        print_json(&json!({ "events": events, "next_cursor": next.flatten() }));
        return Ok(ExitCode::SUCCESS);
    }
    if events.is_empty() {
        println!("no events");
    } else {
        let rows: Vec<_> = events.iter().map(event_row).collect();
        print!("{}", table(&EVENT_HEAD, &rows));
    }
    if more {
        eprintln!("(more events match: raise --limit or narrow the window with --since/--until)");
    }
    Ok(ExitCode::SUCCESS)
}

fn event_path(id: &str) -> Result<String> {
    let ok = id
        .strip_prefix("evt_")
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        return Err(Fail::Usage(format!(
            "{id:?} is not an event id (`evt_` and 16 hex digits)"
        )));
    }
    Ok(format!("/v1/events/{id}"))
}

async fn show(api: &Api, id: &str, json: bool) -> Result<ExitCode> {
    let e = api.get(&event_path(id)?, &[]).await?;
    if json {
        print_json(&e);
        return Ok(ExitCode::SUCCESS);
    }
    let d = &e["delivery"];
    let mut state = cell(&e["state"]);
    match d["attempts"].as_u64().unwrap_or(0) {
        0 => state.push_str(", not attempted yet"),
        1 => state.push_str(" after 1 attempt"),
        n => state.push_str(&format!(" after {n} attempts")),
    }
    if let Some(err) = d["last_error"].as_str() {
        state.push_str(&format!("; last error: {err}"));
    }
    if let Some(next) = d["next_at"].as_str() {
        state.push_str(&format!("; next at {next}"));
    }
    let fields = [
        ("id", cell(&e["id"])),
        (
            "source",
            format!("{} ({})", cell(&e["source"]), cell(&e["scheme"])),
        ),
        ("type", cell(&e["type"])),
        ("delivery id", cell(&e["delivery_id"])),
        ("received at", cell(&e["received_at"])),
        ("state", state),
    ];
    for (k, v) in fields {
        println!("{:<13}{v}", format!("{k}:"));
    }
    // A delivery pending behind an earlier event of its ordering key.
    for d in e["destinations"].as_array().into_iter().flatten() {
        if let Some(head) = d["waiting_for"].as_str() {
            let to = d["destination"]
                .as_str()
                .map_or(String::new(), |n| format!(" (to {n})"));
            println!("{:<13}{head}{to}", "waits for:");
        }
    }
    let named: Vec<&Value> = e["destinations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["destination"].is_string())
        .collect();
    if !named.is_empty() {
        println!("destinations:");
        let rows: Vec<Vec<String>> = named
            .iter()
            .map(|d| {
                ["destination", "state", "attempts", "next_at", "last_error"]
                    .iter()
                    .map(|k| cell(&d[*k]))
                    .collect()
            })
            .collect();
        let head = ["DESTINATION", "STATE", "ATTEMPTS", "NEXT AT", "LAST ERROR"];
        for line in table(&head, &rows).lines() {
            println!("  {line}");
        }
    }
    println!("headers:");
    for h in e["headers"].as_array().into_iter().flatten() {
        println!("  {}: {}", cell(&h[0]), cell(&h[1]));
    }
    println!(
        "body ({} bytes{}):",
        cell(&e["body_len"]),
        if e["body_encoding"] == "base64" {
            ", base64"
        } else {
            ""
        }
    );
    println!("{}", cell(&e["body"]));
    let attempts = e["attempts"].as_array().cloned().unwrap_or_default();
    if attempts.is_empty() {
        println!("attempts: none yet");
    } else {
        println!("attempts:");
        let rows: Vec<Vec<String>> = attempts
            .iter()
            .map(|a| {
                let n = match a["replay"].as_u64() {
                    Some(r) => format!("{} (replay {r})", cell(&a["n"])),
                    None => cell(&a["n"]),
                };
                vec![
                    n,
                    cell(&a["destination"]),
                    cell(&a["started_at"]),
                    format!("{} ms", cell(&a["duration_ms"])),
                    cell(&a["outcome"]),
                    cell(&a["error"]),
                ]
            })
            .collect();
        let head = [
            "#",
            "DESTINATION",
            "STARTED",
            "DURATION",
            "OUTCOME",
            "ERROR",
        ];
        for line in table(&head, &rows).lines() {
            println!("  {line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One `events tail` line: fixed widths, since rows arrive one poll at a time.
fn tail_line(row: &[String]) -> String {
    let widths = [20, 24, 12, 24, 8, 8];
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        match widths.get(i) {
            Some(w) => line.push_str(&format!("{cell:<w$}  ")),
            None => line.push_str(cell),
        }
    }
    line
}

async fn tail(
    api: &Api,
    source: Option<String>,
    filter: Option<String>,
    lines: usize,
    json: bool,
) -> Result<ExitCode> {
    let mut filters: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = &source {
        filters.push(("source", s));
    }
    if let Some(f) = &filter {
        filters.push(("where", f));
    }
    let print = |events: &[Value], head: &mut bool| {
        // Oldest first, as a log reads.
        for e in events.iter().rev() {
            if json {
                println!("{e}");
                continue;
            }
            if !*head {
                println!("{}", tail_line(&EVENT_HEAD.map(str::to_owned)));
                *head = true;
            }
            println!("{}", tail_line(&event_row(e)));
        }
        let _ = std::io::stdout().flush();
    };
    let mut head = false;
    let (recent, _) = fetch(api, &filters, lines.max(1)).await?;
    print(&recent[..lines.min(recent.len())], &mut head);
    // The newest event seen, with its receive time: ids are time-ordered and
    // fixed-width, so text order is time order.
    let mut last: Option<(String, String)> = recent
        .first()
        .map(|e| (cell(&e["id"]), cell(&e["received_at"])));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        // Newer than the last seen: from its receive time (the server's clock), keeping
        // only greater ids; with nothing seen yet, everything is new.
        let mut q = filters.clone();
        if let Some((_, at)) = &last {
            q.push(("since", at));
        }
        let mut fresh: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut page_q = q.clone();
            page_q.push(("limit", "1000"));
            if let Some(c) = &cursor {
                page_q.push(("cursor", c));
            }
            let page = api.get("/v1/events", &page_q).await?;
            let events = page["events"].as_array().cloned().unwrap_or_default();
            let mut reached = false;
            for e in events {
                let newer = last
                    .as_ref()
                    .is_none_or(|(id, _)| e["id"].as_str().is_some_and(|x| x > id.as_str()));
                if newer {
                    fresh.push(e);
                } else {
                    reached = true;
                }
            }
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if reached || cursor.is_none() {
                break;
            }
        }
        if let Some(newest) = fresh.first() {
            last = Some((cell(&newest["id"]), cell(&newest["received_at"])));
            print(&fresh, &mut head);
        }
    }
}

async fn export(
    api: &Api,
    since: String,
    until: Option<String>,
    source: Option<String>,
    filter: Option<String>,
    output: Option<PathBuf>,
) -> Result<ExitCode> {
    let until = until.unwrap_or_else(|| rfc3339(SystemTime::now()));
    let mut filters: Vec<(&str, &str)> = vec![("since", &since), ("until", &until)];
    if let Some(s) = &source {
        filters.push(("source", s));
    }
    if let Some(f) = &filter {
        filters.push(("where", f));
    }
    let (events, _) = fetch(api, &filters, usize::MAX).await?;
    let mut out: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| Fail::Op(format!("{}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let write_err = |e: std::io::Error| Fail::Op(format!("writing the export: {e}"));
    let mut written = 0usize;
    let mut gone = 0usize;
    for e in events.iter().rev() {
        let id = cell(&e["id"]);
        match api.get(&event_path(&id)?, &[]).await {
            Ok(full) => {
                serde_json::to_writer(&mut out, &full)
                    .map_err(|e| Fail::Op(format!("writing the export: {e}")))?;
                out.write_all(b"\n").map_err(write_err)?;
                written += 1;
            }
            // Removed by retention between the listing and now.
            Err(Fail::Op(msg)) if msg.starts_with("404 ") => gone += 1,
            Err(other) => return Err(other),
        }
    }
    out.flush().map_err(write_err)?;
    let to = output.map_or("standard output".to_owned(), |p| p.display().to_string());
    eprint!("exported {written} events to {to}");
    if gone > 0 {
        eprint!(" ({gone} removed by retention meanwhile)");
    }
    eprintln!();
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn dlq(args: DlqArgs) -> std::result::Result<ExitCode, Usage> {
    block_on(async move {
        let api = Api::new(&args.admin)?;
        let json = args.admin.json;
        match args.command {
            DlqCommand::List { source, limit } => {
                let limit = limit.to_string();
                let mut q: Vec<(&str, &str)> = vec![("limit", &limit)];
                if let Some(s) = &source {
                    q.push(("source", s));
                }
                let res = api.get("/v1/dlq", &q).await?;
                if json {
                    print_json(&res);
                    return Ok(ExitCode::SUCCESS);
                }
                let events = res["events"].as_array().cloned().unwrap_or_default();
                if events.is_empty() {
                    println!("the dead-letter queue is empty");
                    return Ok(ExitCode::SUCCESS);
                }
                let rows: Vec<Vec<String>> = events
                    .iter()
                    .map(|e| {
                        [
                            "id",
                            "source",
                            "destination",
                            "type",
                            "dead_at",
                            "attempts",
                            "last_error",
                        ]
                        .iter()
                        .map(|k| cell(&e[*k]))
                        .collect()
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "ID",
                            "SOURCE",
                            "DESTINATION",
                            "TYPE",
                            "DEAD AT",
                            "ATTEMPTS",
                            "LAST ERROR"
                        ],
                        &rows
                    )
                );
                Ok(ExitCode::SUCCESS)
            }
            DlqCommand::Redrive {
                ids,
                source,
                event_type,
                destination,
                since,
                until,
            } => {
                for id in &ids {
                    event_path(id)?;
                }
                let mut body = serde_json::Map::new();
                if !ids.is_empty() {
                    body.insert("ids".into(), json!(ids));
                }
                for (k, v) in [
                    ("source", source),
                    ("type", event_type),
                    ("destination", destination),
                    ("since", since),
                    ("until", until),
                ] {
                    if let Some(v) = v {
                        body.insert(k.into(), json!(v));
                    }
                }
                let res = api.post("/v1/dlq/redrive", &Value::Object(body)).await?;
                if json {
                    print_json(&res);
                } else {
                    match res["redriven"].as_u64().unwrap_or(0) {
                        0 => println!("no dead delivery matched; nothing redriven"),
                        1 => println!("redriven 1 delivery: pending again"),
                        n => println!("redriven {n} deliveries: pending again"),
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

pub(crate) fn replay(args: ReplayArgs) -> std::result::Result<ExitCode, Usage> {
    block_on(async move {
        let api = Api::new(&args.admin)?;
        let json = args.admin.json;
        let mut body = json!({
            "since": args.since,
            "until": args.until.unwrap_or_else(|| rfc3339(SystemTime::now())),
            "dry_run": args.dry_run,
        });
        for (k, v) in [
            ("source", args.source),
            ("type", args.event_type),
            ("destination", args.destination),
        ] {
            if let Some(v) = v {
                body[k] = json!(v);
            }
        }
        if let Some(f) = &args.filter {
            body["where"] = serde_json::from_str(f).expect("parse_where answers JSON");
        }
        let created = api.post("/v1/replay", &body).await?;
        let matched = created["matched"].as_u64().unwrap_or(0);
        if args.dry_run {
            if json {
                print_json(&created);
            } else {
                println!("{matched} events match; dry run, nothing queued");
            }
            return Ok(ExitCode::SUCCESS);
        }
        let Some(id) = created["replay_id"].as_u64() else {
            return Err(Fail::Op("the server answered no replay_id".into()));
        };
        if args.no_wait {
            if json {
                print_json(&created);
            } else {
                println!("replay {id} queued {matched} events");
            }
            return Ok(ExitCode::SUCCESS);
        }
        let bar = (!json && std::io::stdout().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(matched);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "replay {msg} [{bar:40}] {pos}/{len} settled ({elapsed})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message(id.to_string());
            bar
        });
        let path = format!("/v1/replays/{id}");
        let status = loop {
            let status = api.get(&path, &[]).await?;
            let settled =
                status["done"].as_u64().unwrap_or(0) + status["failed"].as_u64().unwrap_or(0);
            if let Some(bar) = &bar {
                bar.set_position(settled);
            }
            if status["complete"] == true {
                break status;
            }
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {
                    if let Some(bar) = &bar {
                        bar.abandon();
                    }
                    eprintln!("stopped following; replay {id} goes on (GET {path} shows its progress)");
                    return Ok(ExitCode::from(130));
                }
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        };
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if json {
            print_json(&status);
        } else {
            println!(
                "replayed {} events: {} delivered, {} failed",
                cell(&status["matched"]),
                cell(&status["done"]),
                cell(&status["failed"])
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The body `send` posts when given no file.
fn test_event(id: &str) -> Vec<u8> {
    let body = json!({
        "id": id,
        "type": "hookbox.test",
        "created": rfc3339(SystemTime::now()),
        "data": {"message": "a test event from hookbox send"},
    });
    body.to_string().into_bytes()
}

pub(crate) fn send(args: SendArgs) -> std::result::Result<ExitCode, Usage> {
    let mut cfg = SchemeConfig {
        secrets: args.secrets.iter().map(|s| s.as_str().into()).collect(),
        url: Some(args.url.clone()),
        ..Default::default()
    };
    for o in &args.options {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| Usage(format!("--option {o:?}: expected KEY=VALUE")))?;
        cfg.options.insert(k.trim().to_owned(), v.to_owned());
    }
    let extra = match parse_headers(&args.headers)? {
        Ok(h) => h,
        Err(detail) => return Err(Usage(format!("--header: {detail}"))),
    };
    let id = args.id.clone().unwrap_or_else(|| {
        let n = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("msg_{n:x}")
    });
    let body = match args.body.as_deref() {
        None => test_event(&id),
        Some("-") => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(|e| Usage(format!("reading standard input: {e}")))?;
            b
        }
        Some(path) => std::fs::read(path).map_err(|e| Usage(format!("{path}: {e}")))?,
    };
    let signed = match sign(
        &args.scheme,
        &cfg,
        &SignInput {
            body: &body,
            id: &id,
            now: SystemTime::now(),
        },
    ) {
        Ok(s) => s,
        Err(e) => return build_error(e),
    };
    let body = signed.body.unwrap_or(body);
    let url = args.url;
    block_on(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Fail::Op(format!("building the HTTP client: {e}")))?;
        // The signed headers, then the extra ones, which replace any of the same name.
        let mut headers = http::HeaderMap::new();
        for (k, v) in &signed.headers {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| Fail::Op(format!("the signer produced header {k:?}: {e}")))?;
            let value = http::HeaderValue::from_str(v)
                .map_err(|e| Fail::Op(format!("the signer produced a bad {k} value: {e}")))?;
            headers.append(name, value);
        }
        for name in extra.keys() {
            headers.remove(name);
        }
        for (k, v) in &extra {
            headers.append(k, v.clone());
        }
        if !headers.contains_key(http::header::CONTENT_TYPE) {
            let ct = if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() {
                "application/json"
            } else {
                "application/octet-stream"
            };
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(ct),
            );
        }
        let req = http.post(&url).headers(headers);
        let res = req
            .body(body)
            .send()
            .await
            .map_err(|e| Fail::Op(format!("cannot reach {url}: {}", root_cause(&e))))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        println!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        if !text.is_empty() {
            println!("{}", text.trim_end());
        }
        Ok(if status.is_success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}
