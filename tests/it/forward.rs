//! Forwarding: journaled events posted to a real downstream server, re-signed with
//! Standard Webhooks, and every kind of answer classified.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hookbox::{
    AppendOptions, Destination, DestinationConfig, ForwardError, HumanDuration, Journal,
    RedbJournal, StoredEvent, Verifier,
};
use http::HeaderMap;

use crate::support::{downstream, Downstream, Reply};

/// The secret hookbox signs forwarded events with.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The provider's secret, which the downstream never sees.
const PROVIDER_SECRET: &str = "whsec_cHJvdmlkZXItc2VjcmV0LWZvci10ZXN0cw==";
const BODY: &[u8] = br#"{"type":"invoice.paid","data":{"amount":1200}}"#;

/// An event as the delivery runtime would read it: verified from a provider's
/// Standard Webhooks request, journaled, and read back.
async fn journaled(content_type: Option<&str>, body: &[u8]) -> StoredEvent {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(RedbJournal::open(dir.path().join("j.redb")).unwrap());
    let cfg = hookbox::SchemeConfig {
        secrets: vec![PROVIDER_SECRET.into()],
        ..Default::default()
    };
    let now = SystemTime::now();
    let signed = hookbox::sign(
        "standard-webhooks",
        &cfg,
        &hookbox::SignInput {
            body,
            id: "msg_provider_1",
            now,
        },
    )
    .unwrap();
    let mut headers = HeaderMap::new();
    for (k, v) in signed.headers {
        headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    if let Some(ct) = content_type {
        headers.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
    }
    let verified = Verifier::new("standard-webhooks", &cfg)
        .unwrap()
        .verified_event("payments", headers, Bytes::copy_from_slice(body), now)
        .unwrap();
    let appended = journal
        .append(&verified, &AppendOptions::default())
        .await
        .unwrap();
    journal.get(appended.id).await.unwrap().unwrap()
}

async fn event() -> StoredEvent {
    journaled(Some("application/json"), BODY).await
}

fn config(url: String) -> DestinationConfig {
    DestinationConfig {
        name: "app".into(),
        url,
        signing_secret: SECRET.into(),
        timeout: None,
        retry: None,
        permanent_statuses: Vec::new(),
        max_connections: None,
        headers: Default::default(),
    }
}

fn destination(url: String) -> Destination {
    Destination::new(0, &config(url), SECRET).unwrap()
}

/// Delivers one event to a downstream answering `reply`; the error it gives.
async fn failure(reply: Reply) -> ForwardError {
    let app = Downstream::start(move |_, _| reply.clone()).await;
    destination(app.url("/hooks"))
        .deliver(&event().await, 1, None)
        .await
        .unwrap_err()
}

#[tokio::test]
async fn signature_verifies_with_the_destination_secret_only() {
    let app = downstream().await;
    let event = event().await;
    let delivered = destination(app.url("/hooks"))
        .deliver(&event, 1, None)
        .await
        .unwrap();
    assert_eq!(delivered.status, 200);
    let [req] = &app.requests()[..] else {
        panic!("one request expected")
    };
    assert_eq!(req.method, http::Method::POST);
    assert_eq!(req.uri.path(), "/hooks");
    standardwebhooks::Webhook::new(SECRET)
        .unwrap()
        .verify(&req.body, &req.headers)
        .expect("signed with the destination's secret");
    for other in [PROVIDER_SECRET, "whsec_dGVzdA=="] {
        assert!(standardwebhooks::Webhook::new(other)
            .unwrap()
            .verify(&req.body, &req.headers)
            .is_err());
    }
    let ts: u64 = req.header("webhook-timestamp").parse().unwrap();
    assert!(ts.abs_diff(crate::support::now()) <= 5);
    assert!(req.header("webhook-signature").starts_with("v1,"));
}

#[tokio::test]
async fn headers_describe_the_event_attempt_and_replay() {
    let app = downstream().await;
    let mut cfg = config(app.url("/hooks"));
    cfg.headers = [
        (
            "authorization".to_owned(),
            "Bearer downstream-token".to_owned(),
        ),
        ("x-team".to_owned(), "payments".to_owned()),
    ]
    .into();
    let destination = Destination::new(0, &cfg, SECRET).unwrap();
    let event = event().await;
    destination.deliver(&event, 1, None).await.unwrap();
    destination.deliver(&event, 2, None).await.unwrap();
    destination.deliver(&event, 1, Some(42)).await.unwrap();
    let reqs = app.requests();
    assert_eq!(reqs.len(), 3);
    for req in &reqs {
        assert_eq!(req.header("webhook-id"), event.id.to_string());
        assert_eq!(req.header("hookbox-source"), "payments");
        assert_eq!(req.header("hookbox-event-type"), "invoice.paid");
        assert_eq!(req.header("hookbox-delivery-id"), "msg_provider_1");
        assert_eq!(
            req.header("user-agent"),
            concat!("hookbox/", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(req.header("authorization"), "Bearer downstream-token");
        assert_eq!(req.header("x-team"), "payments");
        // The provider's own signature headers are not passed on.
        assert_eq!(req.headers.get_all("webhook-signature").iter().count(), 1);
    }
    assert_eq!(reqs[0].header("hookbox-attempt"), "1");
    assert_eq!(reqs[1].header("hookbox-attempt"), "2");
    assert_eq!(reqs[2].header("hookbox-attempt"), "1");
    assert!(reqs[0].headers.get("hookbox-replay").is_none());
    assert!(reqs[1].headers.get("hookbox-replay").is_none());
    assert_eq!(reqs[2].header("hookbox-replay"), "42");
}

#[tokio::test]
async fn body_and_content_type_are_the_originals() {
    let app = downstream().await;
    let destination = destination(app.url("/hooks"));
    let form: &[u8] = b"amount=1200&note=caf\xc3\xa9+%26+\xff";
    let ct = "application/x-www-form-urlencoded; charset=utf-8";
    let form_event = journaled(Some(ct), form).await;
    destination.deliver(&form_event, 1, None).await.unwrap();
    let untyped = journaled(None, BODY).await;
    destination.deliver(&untyped, 1, None).await.unwrap();
    let reqs = app.requests();
    assert_eq!(&reqs[0].body[..], form);
    assert_eq!(reqs[0].header("content-type"), ct);
    assert_eq!(&reqs[1].body[..], BODY);
    assert_eq!(reqs[1].header("content-type"), "application/json");
    standardwebhooks::Webhook::new(SECRET)
        .unwrap()
        .verify(&reqs[1].body, &reqs[1].headers)
        .unwrap();
    // The reference crate verifies UTF-8 bodies only; the signature covers raw bytes.
    let verifier = Verifier::builder("standard-webhooks")
        .secret(SECRET)
        .build()
        .unwrap();
    for req in &reqs {
        verifier
            .verify(&hookbox::Inbound::new(&req.headers, &req.body))
            .unwrap();
    }
}

#[tokio::test]
async fn server_error_is_retried_with_the_body_in_the_reason() {
    let e = failure(Reply::status(500).body("database is down\n")).await;
    assert_eq!(
        e,
        ForwardError::Retry {
            after: None,
            reason: "HTTP 500: database is down".into()
        }
    );
    // Retry-After counts on 429 and 503 only.
    let e = failure(Reply::status(500).header("retry-after", "7")).await;
    assert_eq!(
        e,
        ForwardError::Retry {
            after: None,
            reason: "HTTP 500".into()
        }
    );
    // A long body is cut.
    let e = failure(Reply::status(502).body("x".repeat(10_000))).await;
    let ForwardError::Retry { reason, .. } = e else {
        panic!("{e:?}")
    };
    assert!(reason.len() < 300, "{reason}");
}

#[tokio::test]
async fn too_many_requests_honours_retry_after_seconds() {
    let e = failure(Reply::status(429).header("retry-after", "7")).await;
    assert_eq!(
        e,
        ForwardError::Retry {
            after: Some(Duration::from_secs(7)),
            reason: "HTTP 429".into()
        }
    );
}

#[tokio::test]
async fn unavailable_honours_retry_after_as_a_date() {
    let app = Downstream::start(|_, _| {
        let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        Reply::status(503).header("retry-after", at)
    })
    .await;
    let e = destination(app.url("/hooks"))
        .deliver(&event().await, 1, None)
        .await
        .unwrap_err();
    let ForwardError::Retry {
        after: Some(after), ..
    } = e
    else {
        panic!("{e:?}")
    };
    // The date has whole seconds.
    assert!(
        (115..=120).contains(&after.as_secs()),
        "{after:?} is not about 120 s"
    );
    let e = failure(Reply::status(503).header("retry-after", "tomorrow")).await;
    assert!(
        matches!(e, ForwardError::Retry { after: None, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn permanent_statuses_are_not_retried() {
    let app = Downstream::start(|n, _| match n {
        0 => Reply::status(410).body("gone"),
        1 => Reply::status(400),
        _ => Reply::status(404),
    })
    .await;
    let mut cfg = config(app.url("/hooks"));
    cfg.permanent_statuses = vec![400, 410];
    let destination = Destination::new(0, &cfg, SECRET).unwrap();
    let event = event().await;
    assert_eq!(
        destination.deliver(&event, 1, None).await.unwrap_err(),
        ForwardError::Permanent {
            reason: "HTTP 410: gone".into()
        }
    );
    assert_eq!(
        destination.deliver(&event, 1, None).await.unwrap_err(),
        ForwardError::Permanent {
            reason: "HTTP 400".into()
        }
    );
    // Not listed: retried.
    assert!(matches!(
        destination.deliver(&event, 1, None).await.unwrap_err(),
        ForwardError::Retry { .. }
    ));
}

#[tokio::test]
async fn a_slow_destination_times_out() {
    let app = Downstream::start(|_, _| Reply::ok().delay(Duration::from_secs(5))).await;
    let mut cfg = config(app.url("/hooks"));
    cfg.timeout = Some(HumanDuration(Duration::from_millis(300)));
    let destination = Destination::new(0, &cfg, SECRET).unwrap();
    let started = Instant::now();
    let e = destination
        .deliver(&event().await, 1, None)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        e,
        ForwardError::Retry {
            after: None,
            reason: "timed out after 300ms".into()
        }
    );
}

#[tokio::test]
async fn a_closed_port_is_a_connect_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let e = destination(format!("http://{addr}/hooks"))
        .deliver(&event().await, 1, None)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ForwardError::Retry {
            after: None,
            reason: "connect: connection refused".into()
        }
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let app = Downstream::start(|_, req| {
        if req.uri.path() == "/hooks" {
            Reply::status(302).header("location", "/elsewhere")
        } else {
            Reply::ok()
        }
    })
    .await;
    let e = destination(app.url("/hooks"))
        .deliver(&event().await, 1, None)
        .await
        .unwrap_err();
    let ForwardError::Retry {
        after: None,
        reason,
    } = e
    else {
        panic!("{e:?}")
    };
    assert!(reason.starts_with("HTTP 302"), "{reason}");
    let reqs = app.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].uri.path(), "/hooks");
}

#[tokio::test]
async fn max_connections_bounds_requests_in_flight() {
    let app = Downstream::start(|_, _| Reply::ok().delay(Duration::from_millis(150))).await;
    let mut cfg = config(app.url("/hooks"));
    cfg.max_connections = Some(2);
    let destination = Destination::new(0, &cfg, SECRET).unwrap();
    let event = event().await;
    let deliveries = (1..=10).map(|n| {
        let destination = destination.clone();
        let event = event.clone();
        tokio::spawn(async move { destination.deliver(&event, n, None).await })
    });
    for d in futures_util::future::join_all(deliveries).await {
        d.unwrap().unwrap();
    }
    assert_eq!(app.requests().len(), 10);
    assert_eq!(app.max_in_flight(), 2);
}
