//! Run with: `cargo run --example hyper_service`
//!
//! VerifyLayer on a plain hyper service (no axum router): a `tower::ServiceBuilder`
//! stack served by hyper-util, answering 401/400 itself and calling the service only
//! for verified requests.

use std::convert::Infallible;

use axum::body::Body;
use hookbox::{Event, Verified, Verifier, VerifyLayer};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let verifier = Verifier::builder("shopify")
        .secret("shpss_example")
        .build()?;
    let svc = ServiceBuilder::new()
        .layer(VerifyLayer::new("shopify", verifier))
        .service_fn(|req: http::Request<Body>| async move {
            let event = req
                .extensions()
                .get::<Verified<Event>>()
                .expect("VerifyLayer ran");
            let text = format!("got {:?}\n", event.event_type);
            Ok::<_, Infallible>(http::Response::new(Body::from(text)))
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let svc = TowerToHyperService::new(svc.clone());
        tokio::spawn(async move {
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
