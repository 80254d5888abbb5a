//! What verifying costs: `Verifier::verify_at` for every built-in scheme that can sign,
//! over realistic JSON bodies of 1 KiB, 16 KiB and 256 KiB, beside
//!
//! - `floor-hmac-sha256`: the raw floor, HMAC-SHA256 (`hmac` 0.12 + `sha2` 0.10) over the
//!   same body keyed afresh each time, as a naive receiver does, then a constant-time
//!   compare against a precomputed tag;
//! - `floor-keyed-once`: the same with the MAC keyed once and cloned per request (what
//!   hookbox's schemes do);
//! - `peer-standardwebhooks`: the `standardwebhooks` crate's `Webhook::verify` on the same
//!   Standard Webhooks message the `standard-webhooks` row verifies. (The `svix` crate
//!   would be the other peer, but it does not build against the current hyper-util.)
//!
//! Also `filter/<size>` (1 KiB, 16 KiB): a destination's filter on the same Stripe body
//! beside its verification, and after criterion a table of each filter's cost as a share
//! of the verification's, measured in the same run.
//!
//! Groups are `verify/<size>`, ids the scheme name or one of the three above, so a
//! scheme x size table can be read off `target/criterion`. Schemes `hookbox::sign`
//! cannot sign with the fixture keys (or whose verifier cannot be built) are skipped with
//! a note. Run: `cargo bench --bench verify -- --warm-up-time 1 --measurement-time 3`.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

#[path = "../fuzz/fuzz_targets/common.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use criterion::{criterion_group, Criterion, Throughput};
use hmac::{Hmac, Mac};
use hookbox::{sign, Inbound, SignInput, Verifier, SCHEMES};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const SIZES: [(&str, usize); 3] = [("1KiB", 1024), ("16KiB", 16 * 1024), ("256KiB", 256 * 1024)];

const STANDARD_WEBHOOKS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A Stripe-style `invoice.paid` event of exactly `size` bytes (for sizes of 1 KiB and up):
/// line items while they fit, then a top-level `memo` string pads to the size.
fn event_json(size: usize) -> Vec<u8> {
    let open = r#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","api_version":"2023-10-16","created":1700000000,"type":"invoice.paid","livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":"5a4c8e1f-0b7d-4f3e-9a61-2d8c7b9e0f13"},"data":{"object":{"id":"in_1NG8Dt2eZvKYlo2C8zYwQ0Ua","object":"invoice","customer":"cus_NrAHvT5hG6hVYb","currency":"usd","status":"paid","amount_paid":1200,"lines":["#;
    padded_json(size, open, "]}}}", |i| {
        format!(
            r#"{{"id":"il_1NG8Dt2eZvKYlo2C{i:08}","object":"line_item","amount":1200,"currency":"usd","description":"1 × Pro plan (at $12.00 / month)","period":{{"start":1700000000,"end":1702592000}},"price":{{"id":"price_1MoBy5LkdIwHu7ixZhnattbh","unit_amount":1200,"recurring":{{"interval":"month"}}}},"quantity":1,"metadata":{{"order":"ord_{i:06}"}}}}"#
        )
    })
}

/// An Adyen notification of exactly `size` bytes: a batch of AUTHORISATION items (each
/// with its own HMAC), then a top-level `memo` pads to the size.
fn adyen_json(size: usize) -> Vec<u8> {
    padded_json(
        size,
        r#"{"live":"false","notificationItems":["#,
        "]}",
        |i| {
            format!(
                r#"{{"NotificationRequestItem":{{"additionalData":{{"authCode":"{i:06}","cardSummary":"1111","expiryDate":"03/2030","paymentMethodVariant":"visa","recurring.shopperReference":"shopper-{i}"}},"amount":{{"currency":"EUR","value":{}}},"eventCode":"AUTHORISATION","eventDate":"2023-11-14T22:13:20+01:00","merchantAccountCode":"AcmeShopECOM","merchantReference":"order-{i:08}","paymentMethod":"visa","pspReference":"{}","reason":"{i:06}:1111:03/2030","success":"true"}}}}"#,
                1000 + i,
                7_914_073_381_342_284u64 + i as u64
            )
        },
    )
}

/// `open` (ending in `[`), comma-separated items while they fit, then `close` (ending
/// with the outermost `}`), with `,"memo":"xxx..."` before that last brace.
fn padded_json(size: usize, open: &str, close: &str, item: impl Fn(usize) -> String) -> Vec<u8> {
    const MEMO: &str = r#","memo":"""#;
    let mut out = open.to_owned();
    for i in 0.. {
        let next = item(i);
        let sep = usize::from(i > 0);
        if out.len() + sep + next.len() + close.len() + MEMO.len() > size {
            break;
        }
        if i > 0 {
            out.push(',');
        }
        out.push_str(&next);
    }
    let (inner, outer) = close.split_at(close.len() - 1);
    out.push_str(inner);
    let room = size.saturating_sub(out.len() + MEMO.len() + outer.len());
    out.push_str(&MEMO[..MEMO.len() - 1]);
    out.push_str(&"x".repeat(room));
    out.push('"');
    out.push_str(outer);
    out.into_bytes()
}

/// One prepared verification: a verifier, and the request it accepts.
struct Case {
    name: String,
    verifier: Verifier,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    map
}

/// Signs `body` for `scheme` at `now` and checks the verifier accepts it.
fn prepare(scheme: &str, body: &[u8], now: SystemTime) -> Result<Case, String> {
    let mut fx = common::fixture(scheme);
    if scheme == "twilio" {
        // JSON bodies: Twilio signs the URL, which carries the body's SHA-256.
        let url = format!(
            "https://example.com/hooks/twilio?bodySHA256={}",
            hex::encode(Sha256::digest(body))
        );
        fx.verify.url = Some(url.clone());
        fx.sign.url = Some(url);
    }
    let input = SignInput {
        body,
        id: "msg_2Lh9KRb0pWKlFEsGBDyXKp3BVfU",
        now,
    };
    let signed = sign(scheme, &fx.sign, &input).map_err(|e| format!("sign failed: {e}"))?;
    let verifier =
        Verifier::new(scheme, &fx.verify).map_err(|e| format!("verifier not built: {e}"))?;
    let case = Case {
        name: scheme.to_owned(),
        verifier,
        headers: header_map(&signed.headers),
        body: signed.body.unwrap_or_else(|| body.to_vec()),
    };
    case.verifier
        .verify_at(&Inbound::new(&case.headers, &case.body), now)
        .map_err(|e| format!("its own signature does not verify: {e}"))?;
    Ok(case)
}

fn bench_verify(c: &mut Criterion) {
    for (label, size) in SIZES {
        // Signed now, per group, so that the peer (which reads the system clock, with a
        // 300 s window) accepts the message while its group runs.
        let now = UNIX_EPOCH
            + Duration::from_secs(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .expect("clock after 1970")
                    .as_secs(),
            );
        let event = event_json(size);
        let adyen = adyen_json(size);
        for json in [&event, &adyen] {
            assert_eq!(json.len(), size);
            serde_json::from_slice::<serde_json::Value>(json).expect("the payload is JSON");
        }
        let mut cases = Vec::new();
        for &scheme in SCHEMES {
            let body = if scheme == "adyen" { &adyen } else { &event };
            match prepare(scheme, body, now) {
                Ok(case) => cases.push(case),
                Err(why) => println!("verify/{label}: skipping {scheme}: {why}"),
            }
        }

        let mut group = c.benchmark_group(format!("verify/{label}"));
        for case in &cases {
            group.throughput(Throughput::Bytes(case.body.len() as u64));
            let inbound = Inbound::new(&case.headers, &case.body);
            group.bench_function(case.name.as_str(), |b| {
                b.iter(|| case.verifier.verify_at(black_box(&inbound), now))
            });
        }

        group.throughput(Throughput::Bytes(event.len() as u64));
        // The floor's key: the Standard Webhooks secret's key bytes.
        let key = base64::engine::general_purpose::STANDARD
            .decode(&STANDARD_WEBHOOKS_SECRET["whsec_".len()..])
            .unwrap();
        let tag = {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
            mac.update(&event);
            mac.finalize().into_bytes()
        };
        group.bench_function("floor-hmac-sha256", |b| {
            b.iter(|| {
                let mut mac = Hmac::<Sha256>::new_from_slice(black_box(&key)).unwrap();
                mac.update(black_box(&event));
                bool::from(mac.finalize().into_bytes().ct_eq(black_box(&tag)))
            })
        });
        let keyed = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        group.bench_function("floor-keyed-once", |b| {
            b.iter(|| {
                let mut mac = black_box(&keyed).clone();
                mac.update(black_box(&event));
                bool::from(mac.finalize().into_bytes().ct_eq(black_box(&tag)))
            })
        });

        // The peer verifies the very message the `standard-webhooks` row verifies.
        match prepare("standard-webhooks", &event, now) {
            Ok(case) => {
                let peer = standardwebhooks::Webhook::new(STANDARD_WEBHOOKS_SECRET).unwrap();
                peer.verify(&case.body, &case.headers)
                    .expect("the peer accepts hookbox's signature");
                group.throughput(Throughput::Bytes(case.body.len() as u64));
                group.bench_function("peer-standardwebhooks", |b| {
                    b.iter(|| peer.verify(black_box(&case.body), black_box(&case.headers)))
                });
            }
            Err(why) => println!("verify/{label}: skipping peer-standardwebhooks: {why}"),
        }
        group.finish();
    }
}

/// The filters a destination reference can carry, against the verification of the same
/// body (`stripe`, the scheme of the event): `filter/<size>`, ids `verify-stripe`,
/// `types` (patterns only: never reads the body), `payload` (a pointer test, which
/// parses the body) and `payload-tree` (types and three payload tests under all/any).
/// After criterion, `filter_ratios` prints each filter's cost over the verification's,
/// measured in the same run.
fn filters() -> Vec<(&'static str, hookbox::Filter)> {
    let spec = |text: &str| {
        let spec: hookbox::filter::FilterSpec = toml::from_str(text).unwrap();
        hookbox::Filter::from_spec(&spec).unwrap()
    };
    vec![
        (
            "types",
            spec(r#"types = ["invoice.*", "!invoice.upcoming"]"#),
        ),
        (
            "payload",
            spec(r#"when = { pointer = "/data/object/status", equals = "paid" }"#),
        ),
        (
            "payload-tree",
            spec(
                r#"types = ["invoice.*"]
                   when = { all = [
                     { pointer = "/data/object/status", equals = "paid" },
                     { any = [ { pointer = "/data/object/amount_paid", gt = 100 },
                               { pointer = "/data/object/customer", matches = "^cus_" } ] } ] }"#,
            ),
        ),
    ]
}

fn bench_filter(c: &mut Criterion) {
    let now = SystemTime::now();
    for (label, size) in &SIZES[..2] {
        let event = event_json(*size);
        let case = prepare("stripe", &event, now).expect("stripe signs");
        let inbound = Inbound::new(&case.headers, &case.body);
        let mut group = c.benchmark_group(format!("filter/{label}"));
        group.throughput(Throughput::Bytes(event.len() as u64));
        group.bench_function("verify-stripe", |b| {
            b.iter(|| case.verifier.verify_at(black_box(&inbound), now))
        });
        for (name, filter) in filters() {
            let input = hookbox::FilterInput {
                event_type: Some("invoice.paid"),
                body: &event,
            };
            assert!(filter.accepts(&input), "{name} takes the event");
            group.bench_function(name, |b| b.iter(|| filter.accepts(black_box(&input))));
        }
        group.finish();
    }
}

/// Prints each filter's cost per event as a share of verifying the same body, timed
/// here (median of 15 rounds) so that both come from the same run.
fn filter_ratios() {
    fn median_ns(mut f: impl FnMut() -> bool) -> f64 {
        let mut rounds = Vec::new();
        for _ in 0..15 {
            let n = 2_000u32;
            let start = std::time::Instant::now();
            for _ in 0..n {
                black_box(f());
            }
            rounds.push(start.elapsed().as_nanos() as f64 / f64::from(n));
        }
        rounds.sort_by(f64::total_cmp);
        rounds[rounds.len() / 2]
    }
    let now = SystemTime::now();
    println!("filter cost per event / verify cost of the same body (target: under 2 %):");
    for (label, size) in &SIZES[..2] {
        let event = event_json(*size);
        let case = prepare("stripe", &event, now).expect("stripe signs");
        let inbound = Inbound::new(&case.headers, &case.body);
        let verify = median_ns(|| case.verifier.verify_at(black_box(&inbound), now).is_ok());
        for (name, filter) in filters() {
            let input = hookbox::FilterInput {
                event_type: Some("invoice.paid"),
                body: &event,
            };
            let cost = median_ns(|| filter.accepts(black_box(&input)));
            println!(
                "  {label:>6} {name:<13} {cost:>9.1} ns  verify {verify:>9.1} ns  {:>7.2} %",
                100.0 * cost / verify
            );
        }
    }
}

criterion_group!(benches, bench_verify, bench_filter);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    filter_ratios();
}
