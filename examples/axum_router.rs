//! Run with: `cargo run --example axum_router`
//!
//! Mounts a durable GitHub endpoint and a verify-only Stripe route on one axum router.
//! Try it with `hookbox sign --scheme github --secret s3cret body.json` and curl.

use std::sync::Arc;

use axum::routing::post;
use axum::{Extension, Router};
use hookbox::{Event, Hookbox, RedbJournal, Source, Verified, Verifier, VerifyLayer};

async fn on_stripe(Extension(event): Extension<Verified<Event>>) -> String {
    format!("verified {:?} {:?}\n", event.event_type, event.delivery_id)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let journal = Arc::new(RedbJournal::open("data/example.redb")?);
    let github = Verifier::builder("github").secret("s3cret").build()?;
    let hookbox = Hookbox::new(journal).source(Source::new("github", github));

    let stripe = Verifier::builder("stripe")
        .secret("whsec_example")
        .build()?;
    let app = Router::new()
        // shed + verify + journal + 202
        .route_service("/hooks/github", hookbox.endpoint("github"))
        // verify only, then your handler
        .route(
            "/hooks/stripe",
            post(on_stripe).layer(VerifyLayer::new("stripe", stripe)),
        );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
