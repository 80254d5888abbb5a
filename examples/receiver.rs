//! Run with: `cargo run --example receiver` (listens on 127.0.0.1:3000; pass
//! `--listen ADDR` or set `RECEIVER_ADDR` to change it, `RECEIVER_SECRET` to change the
//! signing secret).
//!
//! The application side of `hookbox serve`: the endpoint hookbox forwards events to.
//! Whatever provider sent an event, it arrives here signed with one scheme, Standard
//! Webhooks, under the destination's `signing_secret`; this receiver verifies that
//! signature with hookbox's own verifier and prints each event. The shipped
//! `examples/hookbox.toml` forwards its `demo` source here.

use std::time::SystemTime;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hookbox::{Inbound, SchemeConfig, Verifier};

/// The `signing_secret` of the `app` destination in `examples/hookbox.toml`.
const SECRET: &str = "whsec_aG9va2JveC1leGFtcGxlLWFwcC1zZWNy";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("receiver: {problem}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut addr = std::env::var("RECEIVER_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => addr = args.next().ok_or("--listen needs an address")?,
            other => return Err(format!("unknown argument `{other}` (try --listen ADDR)")),
        }
    }
    let secret = std::env::var("RECEIVER_SECRET").unwrap_or_else(|_| SECRET.into());
    let verifier = Verifier::new(
        "standard-webhooks",
        &SchemeConfig {
            secrets: vec![secret.into()],
            ..SchemeConfig::default()
        },
    )
    .map_err(|e| format!("RECEIVER_SECRET: {e}"))?;
    let app = Router::new().route(
        "/webhooks",
        post(move |headers: HeaderMap, body: Bytes| {
            let verifier = verifier.clone();
            async move { receive(&verifier, &headers, &body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!("receiver listening on http://{addr}/webhooks");
    axum::serve(listener, app)
        .await
        .map_err(|e| format!("serving: {e}"))
}

fn receive(verifier: &Verifier, headers: &HeaderMap, body: &Bytes) -> StatusCode {
    if let Err(e) = verifier.verify_at(&Inbound::new(headers, body), SystemTime::now()) {
        println!("refused: {e}");
        return StatusCode::UNAUTHORIZED;
    }
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    println!(
        "{} from {} ({}), attempt {}{}: {}",
        h("webhook-id"),
        h("hookbox-source"),
        h("hookbox-event-type"),
        h("hookbox-attempt"),
        headers
            .get("hookbox-replay")
            .map(|r| format!(", replay {}", r.to_str().unwrap_or("?")))
            .unwrap_or_default(),
        String::from_utf8_lossy(body)
    );
    StatusCode::NO_CONTENT
}
