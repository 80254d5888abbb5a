//! VerifyLayer over real HTTP on 127.0.0.1: through an axum router and a plain hyper
//! service; rejections, limits and provider handshakes.

use std::time::{Duration, SystemTime};

use axum::routing::{any, post};
use axum::{Extension, Json, Router};
use hookbox::{sign, Event, SchemeConfig, SignInput, Verified, Verifier, VerifyLayer};
use serde_json::{json, Value};

use crate::support::{client, serve};

async fn echo(
    Extension(event): Extension<Verified<Event>>,
    body: axum::body::Bytes,
) -> Json<Value> {
    // The inner service sees the same bytes the signature covered.
    assert_eq!(body, event.body);
    Json(json!({
        "source": &*event.source,
        "scheme": &*event.scheme,
        "id": event.delivery_id,
        "type": event.event_type,
        "len": event.body.len(),
    }))
}

fn app(source: &str, verifier: Verifier) -> Router {
    Router::new()
        .route("/hook", any(echo))
        .layer(VerifyLayer::new(source, verifier).max_body(64 * 1024))
}

const GH: &str = "It's a Secret to Everybody";

fn github() -> Verifier {
    Verifier::builder("github").secret(GH).build().unwrap()
}

fn sign_headers(scheme: &str, cfg: &SchemeConfig, body: &[u8]) -> Vec<(String, String)> {
    sign(
        scheme,
        cfg,
        &SignInput {
            body,
            id: "d-1",
            now: SystemTime::now(),
        },
    )
    .unwrap()
    .headers
}

async fn post_signed(
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> (u16, String, Value) {
    let mut req = client().post(url).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = res.text().await.unwrap();
    (
        status,
        ct,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn verified_request_reaches_the_router_with_its_event() {
    let addr = serve(app("gh-main", github())).await;
    let body = br#"{"zen":"Keep it logically awesome."}"#.to_vec();
    let h = sign_headers("github", &secret(GH), &body);
    let (status, _, v) = post_signed(&format!("http://{addr}/hook"), &h, body.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["source"], "gh-main");
    assert_eq!(v["scheme"], "github");
    assert_eq!(v["id"], "d-1");
    assert_eq!(v["type"], "ping");
    assert_eq!(v["len"], body.len());
}

#[tokio::test]
async fn rejections_are_problem_json_without_secrets() {
    let addr = serve(app("gh", github())).await;
    let url = format!("http://{addr}/hook");
    let h = sign_headers("github", &secret(GH), b"original");

    type Case = (Vec<(String, String)>, &'static [u8], u16, &'static str);
    let cases: Vec<Case> = vec![
        (h.clone(), b"tampered", 401, "invalid_signature"),
        (vec![], b"original", 401, "missing_header"),
        (
            vec![("x-hub-signature-256".into(), "sha256=nothex".into())],
            b"original",
            400,
            "malformed_header",
        ),
        (
            [h.clone(), h.clone()].concat(),
            b"original",
            400,
            "malformed_header",
        ),
    ];
    for (headers, body, want_status, want_kind) in cases {
        let (status, ct, v) = post_signed(&url, &headers, body.to_vec()).await;
        assert_eq!(status, want_status, "{v}");
        assert_eq!(ct, "application/problem+json");
        assert_eq!(v["kind"], want_kind);
        assert_eq!(v["status"], want_status);
        assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(
            !v.to_string().contains(GH),
            "a rejection leaked the secret: {v}"
        );
    }
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_declared_or_streamed() {
    let addr = serve(app("gh", github())).await;
    let url = format!("http://{addr}/hook");
    let big = vec![b'x'; 64 * 1024 + 1];
    let (status, ct, v) = post_signed(&url, &[], big.clone()).await;
    assert_eq!(
        (status, ct.as_str()),
        (413, "application/problem+json"),
        "{v}"
    );
    assert_eq!(v["kind"], "body_too_large");

    // chunked, no Content-Length: the limit is enforced while reading
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let stream = futures_util::stream::iter(chunks);
    let res = client()
        .post(&url)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);

    // exactly at the limit is read and verified (and fails only on the missing header)
    let (status, _, v) = post_signed(&url, &[], big[..64 * 1024].to_vec()).await;
    assert_eq!((status, v["kind"].as_str()), (401, Some("missing_header")));
}

#[tokio::test]
async fn works_on_a_plain_hyper_service() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceBuilder;

    let svc =
        ServiceBuilder::new()
            .layer(VerifyLayer::new("gh", github()))
            .service_fn(|req: http::Request<axum::body::Body>| async move {
                let ok = req.extensions().get::<Verified<Event>>().is_some();
                Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::from(
                    if ok { "verified" } else { "unverified" },
                )))
            });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let h = sign_headers("github", &secret(GH), b"hi");
    let (status, _, v) = post_signed(&format!("http://{addr}/"), &h, b"hi".to_vec()).await;
    assert_eq!((status, v), (200, Value::String("verified".into())));
    let (status, _, _) = post_signed(&format!("http://{addr}/"), &h, b"ho".to_vec()).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn meta_subscription_handshake_is_answered_by_the_layer() {
    let v = Verifier::builder("meta")
        .secret("app")
        .option("verify_token", "vt-42")
        .build()
        .unwrap();
    let addr = serve(
        Router::new()
            .route("/hook", any(echo))
            .layer(VerifyLayer::new("meta", v)),
    )
    .await;
    let ok = client()
        .get(format!(
            "http://{addr}/hook?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=vt-42"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let bad = client()
        .get(format!(
            "http://{addr}/hook?hub.mode=subscribe&hub.challenge=1&hub.verify_token=guess"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
}

async fn handshake(
    scheme: &str,
    cfg: SchemeConfig,
    body: Value,
    extra: &[(&str, &str)],
) -> (u16, String, String) {
    let verifier = Verifier::new(scheme, &cfg).unwrap();
    let addr = serve(
        Router::new()
            .route("/hook", post(|| async { "an event, not a handshake" }))
            .layer(VerifyLayer::new(scheme, verifier)),
    )
    .await;
    let body = body.to_string().into_bytes();
    let now = SystemTime::now();
    let signed = sign(
        scheme,
        &cfg,
        &SignInput {
            body: &body,
            id: "hs-1",
            now,
        },
    )
    .unwrap();
    let mut req = client().post(format!("http://{addr}/hook")).body(body);
    for (k, v) in signed
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra.iter().copied())
    {
        req = req.header(k, v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    (status, ct, res.text().await.unwrap())
}

fn secret(s: &str) -> SchemeConfig {
    SchemeConfig {
        secrets: vec![s.into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn slack_url_verification() {
    let (status, _, text) = handshake(
        "slack",
        secret("8f742231b10e8888abcd99yyyzzz85a5"),
        json!({"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        text.contains("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"),
        "{text}"
    );
}

#[tokio::test]
async fn twitch_callback_verification() {
    let (status, ct, text) = handshake(
        "twitch",
        secret("s3cre77890ab"),
        json!({"challenge": "pogchamp-kappa-360noscope-vohiyo", "subscription": {"type": "channel.follow"}}),
        &[("twitch-eventsub-message-type", "webhook_callback_verification")],
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (200, "pogchamp-kappa-360noscope-vohiyo")
    );
    assert!(ct.starts_with("text/plain"));
}

#[tokio::test]
async fn zoom_url_validation() {
    let (status, ct, text) = handshake(
        "zoom",
        secret("zoom-secret-token"),
        json!({"payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"}, "event_ts": 1654503849680u64, "event": "endpoint.url_validation"}),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/json");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"zoom-secret-token").unwrap();
    mac.update(b"qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(
        v["encryptedToken"],
        hex::encode(mac.finalize().into_bytes())
    );
}

#[tokio::test]
async fn a_stale_signature_is_refused_at_the_edge() {
    let cfg = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let v = Verifier::new("standard-webhooks", &cfg).unwrap();
    let addr = serve(app("sw", v)).await;
    let body = b"{}".to_vec();
    let old = SystemTime::now() - Duration::from_secs(301);
    let h = sign(
        "standard-webhooks",
        &cfg,
        &SignInput {
            body: &body,
            id: "m",
            now: old,
        },
    )
    .unwrap()
    .headers;
    let (status, _, v) = post_signed(&format!("http://{addr}/hook"), &h, body).await;
    assert_eq!(
        (status, v["kind"].as_str()),
        (401, Some("timestamp_out_of_tolerance"))
    );
}

/// Writes `head` and then the whole of `body` (as a client that reads only after
/// sending would), then reads the answer to the end; `Err` when the server broke the
/// connection while the body was being written.
pub(crate) async fn post_whole_then_read(
    addr: std::net::SocketAddr,
    head: &str,
    body: &[u8],
) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    s.flush().await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer))
        .await
        .expect("the answer comes")?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_writes_a_whole_oversized_body_before_reading_gets_its_413() {
    let verifier = Verifier::builder("github")
        .secret("s3cret")
        .build()
        .unwrap();
    let addr = serve(
        Router::new()
            .route("/hook", post(|| async { "never" }))
            .layer(VerifyLayer::new("gh", verifier).max_body(1 << 20)),
    )
    .await;
    // Far more than the sockets buffer on loopback, within what is drained.
    let body = vec![b'x'; 12 << 20];
    // Declared: refused before reading; streamed (chunked): refused at the limit.
    let declared = format!(
        "POST /hook HTTP/1.1\r\nHost: hookbox\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut chunked = Vec::new();
    for part in body.chunks(64 << 10) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let streamed =
        "POST /hook HTTP/1.1\r\nHost: hookbox\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (what, head, body) in [
        ("declared", declared.as_str(), &body),
        ("streamed", streamed, &chunked),
    ] {
        for round in 0..3 {
            let answer = post_whole_then_read(addr, head, body)
                .await
                .unwrap_or_else(|e| panic!("{what}, round {round}: the connection broke: {e}"));
            assert!(answer.starts_with("HTTP/1.1 413"), "{what}: {answer}");
            assert!(
                answer.contains("application/problem+json"),
                "{what}: {answer}"
            );
            assert!(answer.contains("body_too_large"), "{what}: {answer}");
            assert!(
                answer.to_ascii_lowercase().contains("connection: close"),
                "{what}: {answer}"
            );
        }
    }
}
