//! Run with: `cargo run --example handler`, then in another terminal:
//!
//! ```sh
//! cargo run -- send --scheme stripe --secret whsec_example --url http://127.0.0.1:8090/hooks/stripe
//! ```
//!
//! The library end to end: an axum router takes Stripe webhooks (verified, journaled,
//! `202`), and the delivery runtime hands each `invoice.*` event to a handler actor
//! whose side effect runs exactly once through a memoised step, whatever retries,
//! crashes or restarts happen in between. Everything else from Stripe goes to a
//! catch-all handler. Ctrl-C stops intake, lets deliveries finish, and exits.

use std::sync::Arc;
use std::time::Duration;

use hookbox::actix::prelude::*;
use hookbox::{
    Delivery, Hookbox, Outcome, RedbJournal, RetryPolicy, Route, Runtime, Source, SourceOptions,
    Verifier,
};

/// Credits an account once per paid invoice.
struct Invoices;

impl Actor for Invoices {
    type Context = Context<Self>;
}

impl Handler<Delivery> for Invoices {
    type Result = ResponseFuture<Outcome>;

    fn handle(&mut self, d: Delivery, _: &mut Context<Self>) -> Self::Result {
        Box::pin(async move {
            let invoice: serde_json::Value = match d.json() {
                Ok(v) => v,
                Err(e) => return Outcome::fail(format!("not JSON: {e}")),
            };
            // Pass `key` to the remote side as its idempotency key: it covers a crash
            // after the call and before its result is journaled.
            let key = d.idempotency_key("credit");
            let credited = d
                .step("credit", || async move {
                    println!("crediting for {} (idempotency key {key})", invoice["id"]);
                    Ok::<_, std::io::Error>(true)
                })
                .await;
            match credited {
                Ok(_) => Outcome::Done,
                Err(e) => Outcome::retry(e),
            }
        })
    }
}

/// Acknowledges whatever else Stripe sends.
struct Ignore;

impl Actor for Ignore {
    type Context = Context<Self>;
}

impl Handler<Delivery> for Ignore {
    type Result = Outcome;

    fn handle(&mut self, d: Delivery, _: &mut Context<Self>) -> Outcome {
        println!("{} {:?}: nothing to do", d.id(), d.event_type());
        Outcome::Done
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let journal = Arc::new(RedbJournal::open("data/example-handler.redb")?);
    let stripe = Verifier::builder("stripe")
        .secret("whsec_example")
        .build()?;
    let hookbox = Hookbox::new(journal.clone()).source(Source::new("stripe", stripe));
    let app = axum::Router::new().route_service("/hooks/stripe", hookbox.endpoint("stripe"));

    let runtime = Runtime::builder(journal.clone())
        .handler(Route::source("stripe").event_type("invoice.*"), || Invoices)
        .handler(Route::source("stripe"), || Ignore)
        .source(
            "stripe",
            SourceOptions::default()
                .concurrency(8)
                .retry(RetryPolicy::exponential(
                    Duration::from_secs(1),
                    Duration::from_secs(600),
                )),
        )
        .start();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:8090").await?;
    println!("POST Stripe webhooks to http://127.0.0.1:8090/hooks/stripe");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    runtime.shutdown_async(Duration::from_secs(10)).await;
    journal.shutdown();
    Ok(())
}
