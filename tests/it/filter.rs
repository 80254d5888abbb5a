//! Filters on type and payload: the language over realistic provider bodies, its
//! configuration errors, the partition property, and routing end to end in
//! `hookbox serve`.

use std::sync::Arc;
use std::time::Duration;

use hookbox::filter::{ConditionSpec, FilterSpec};
use hookbox::{Config, Filter, FilterInput};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::serve::{post_ok, signed, write_config, APP_SECRET, STRIPE_SECRET};
use crate::support::server::Server;
use crate::support::{Downstream, Reply};

const STRIPE_INVOICE: &str = r#"{
  "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
  "object": "event",
  "type": "invoice.paid",
  "livemode": false,
  "data": {"object": {"id": "in_1", "object": "invoice", "amount_paid": 12500,
    "currency": "usd", "customer": "cus_9s6XKzkNRiz8i3", "status": "paid",
    "customer_email": "jenny.rosen@example.com",
    "lines": {"data": [{"price": {"id": "price_1", "recurring": {"interval": "month"}}}]},
    "metadata": {"tier": "gold"}}}
}"#;

const GITHUB_PUSH: &str = r#"{
  "ref": "refs/heads/main",
  "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
  "after": "0000000000000000000000000000000000000000",
  "repository": {"id": 186853002, "full_name": "octo-org/octo-repo", "private": false,
    "default_branch": "main", "topics": ["webhooks", "rust"]},
  "pusher": {"name": "octocat"},
  "forced": true,
  "commits": []
}"#;

const SHOPIFY_ORDER: &str = r#"{
  "id": 820982911946154508,
  "email": "jon@example.com",
  "total_price": "403.00",
  "subtotal_price": 398.0,
  "currency": "USD",
  "financial_status": "paid",
  "tags": "vip, wholesale",
  "shipping_address": {"country_code": "CA", "province_code": "ON"},
  "line_items": [{"sku": "IPOD2008PINK", "quantity": 1}, {"sku": "IPOD2008BLUE", "quantity": 2}],
  "note": null
}"#;

/// A filter from its TOML form, as a destination reference carries it.
fn parse(toml_text: &str) -> Result<Filter, String> {
    let spec: FilterSpec = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    Filter::from_spec(&spec).map_err(|e| e.to_string())
}

fn takes(filter: &str, event_type: Option<&str>, body: &str) -> bool {
    let f = parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    f.accepts(&FilterInput {
        event_type,
        body: body.as_bytes(),
    })
}

#[test]
fn the_filter_language_over_stripe_github_and_shopify_bodies() {
    let stripe = (Some("invoice.paid"), STRIPE_INVOICE);
    let github = (Some("push"), GITHUB_PUSH);
    let shopify = (Some("orders/paid"), SHOPIFY_ORDER);
    // (filter, event, expected)
    type Case<'a> = (&'a str, (Option<&'a str>, &'a str), bool);
    let cases: &[Case<'_>] = &[
        // types
        (r#"types = ["invoice.paid"]"#, stripe, true),
        (r#"types = ["invoice.*"]"#, stripe, true),
        (r#"types = ["invoice.*", "!invoice.paid"]"#, stripe, false),
        (r#"types = ["!invoice.upcoming"]"#, stripe, true),
        (r#"types = ["customer.*", "charge.*"]"#, stripe, false),
        (r#"types = ["*"]"#, github, true),
        (r#"types = ["orders/*"]"#, shopify, true),
        (r#"types = ["invoice"]"#, stripe, false),
        // equals, with numbers by value and nested paths
        (
            r#"when = { pointer = "/data/object/status", equals = "paid" }"#,
            stripe,
            true,
        ),
        (
            r#"when = { pointer = "/data/object/amount_paid", equals = 12500.0 }"#,
            stripe,
            true,
        ),
        (
            r#"when = { pointer = "/data/object/amount_paid", equals = "12500" }"#,
            stripe,
            false,
        ),
        (
            r#"when = { pointer = "/forced", equals = true }"#,
            github,
            true,
        ),
        (
            r#"when = { pointer = "/repository/topics/1", equals = "rust" }"#,
            github,
            true,
        ),
        (
            r#"when = { pointer = "/repository/topics", equals = ["webhooks", "rust"] }"#,
            github,
            true,
        ),
        (
            r#"when = { pointer = "/shipping_address", equals = { country_code = "CA", province_code = "ON" } }"#,
            shopify,
            true,
        ),
        (
            r#"when = { pointer = "/id", equals = 820982911946154508 }"#,
            shopify,
            true,
        ),
        (
            r#"when = { pointer = "/id", equals = 820982911946154509 }"#,
            shopify,
            false,
        ),
        // one_of
        (
            r#"when = { pointer = "/data/object/currency", one_of = ["eur", "usd"] }"#,
            stripe,
            true,
        ),
        (
            r#"when = { pointer = "/currency", one_of = ["EUR", "GBP"] }"#,
            shopify,
            false,
        ),
        // exists, also of a null value, and of an index past the end
        (
            r#"when = { pointer = "/data/object/metadata/tier", exists = true }"#,
            stripe,
            true,
        ),
        (
            r#"when = { pointer = "/data/object/metadata/region", exists = false }"#,
            stripe,
            true,
        ),
        (
            r#"when = { pointer = "/note", exists = true }"#,
            shopify,
            true,
        ),
        (
            r#"when = { pointer = "/line_items/2", exists = true }"#,
            shopify,
            false,
        ),
        // comparisons: numbers only; a numeric string is not a number
        (
            r#"when = { pointer = "/data/object/amount_paid", gt = 10000 }"#,
            stripe,
            true,
        ),
        (
            r#"when = { pointer = "/data/object/amount_paid", lt = 12500 }"#,
            stripe,
            false,
        ),
        (
            r#"when = { pointer = "/data/object/amount_paid", lte = 12500 }"#,
            stripe,
            true,
        ),
        (
            r#"when = { pointer = "/subtotal_price", gte = 398 }"#,
            shopify,
            true,
        ),
        (
            r#"when = { pointer = "/total_price", gt = 100 }"#,
            shopify,
            false,
        ),
        (
            r#"when = { pointer = "/line_items/1/quantity", gt = 1 }"#,
            shopify,
            true,
        ),
        (r#"when = { pointer = "/missing", lt = 1 }"#, shopify, false),
        // regular expressions on strings
        (
            r#"when = { pointer = "/ref", matches = "^refs/heads/(main|release/.*)$" }"#,
            github,
            true,
        ),
        (
            r#"when = { pointer = "/tags", matches = "\\bvip\\b" }"#,
            shopify,
            true,
        ),
        (
            r#"when = { pointer = "/data/object/customer_email", matches = "@example\\.org$" }"#,
            stripe,
            false,
        ),
        (
            r#"when = { pointer = "/forced", matches = "true" }"#,
            github,
            false,
        ),
        // keys with `/` and `~` escaped as in RFC 6901
        (
            r#"when = { pointer = "/repository/full_name", matches = "^octo-org/" }"#,
            github,
            true,
        ),
        // all / any / not, and types inside a tree
        (
            r#"types = ["invoice.*"]
               when = { all = [ { pointer = "/data/object/status", equals = "paid" },
                                { pointer = "/data/object/amount_paid", gt = 10000 } ] }"#,
            stripe,
            true,
        ),
        (
            r#"when = { any = [ { pointer = "/currency", equals = "EUR" },
                                { pointer = "/shipping_address/country_code", one_of = ["CA", "MX"] } ] }"#,
            shopify,
            true,
        ),
        (
            r#"when = { not = { pointer = "/repository/private", equals = true } }"#,
            github,
            true,
        ),
        (
            r#"when = { any = [ { types = ["charge.*"] },
                                { all = [ { types = ["invoice.*"] }, { pointer = "/livemode", equals = true } ] } ] }"#,
            stripe,
            false,
        ),
        (r#"when = { all = [] }"#, github, true),
        (r#"when = { any = [] }"#, github, false),
    ];
    for (filter, (event_type, body), expected) in cases {
        assert_eq!(
            takes(filter, *event_type, body),
            *expected,
            "{filter} on {event_type:?}"
        );
    }
}

#[test]
fn bodies_that_are_not_json_fail_every_payload_condition() {
    let form = "payload=%7B%22a%22%3A1%7D";
    assert!(!takes(
        r#"when = { pointer = "/a", exists = true }"#,
        None,
        form
    ));
    assert!(!takes(
        r#"when = { pointer = "/a", exists = false }"#,
        None,
        form
    ));
    assert!(takes(
        r#"when = { not = { pointer = "/a", exists = true } }"#,
        None,
        form
    ));
    assert!(
        takes(r#"types = ["!push"]"#, None, form),
        "types alone never read the body"
    );
    assert!(!takes(r#"types = ["*"]"#, None, form), "`*` wants a type");
}

#[test]
fn filter_errors_name_the_key() {
    let cases = [
        (
            r#"when = { pointer = "/a" }"#,
            "when: a `pointer` needs one test",
        ),
        (
            r#"when = { pointer = "/a", gt = 1, lt = 2 }"#,
            "when: one test per condition, found gt, lt",
        ),
        (
            r#"when = { equals = 1 }"#,
            "when: `equals` needs a `pointer`",
        ),
        (
            r#"when = { pointer = "a/b", equals = 1 }"#,
            "when.pointer: `a/b` is not a JSON pointer",
        ),
        (
            r#"when = { all = [ { any = [ { pointer = "/x", matches = "(" } ] } ] }"#,
            "when.all[0].any[0].matches: regex parse error",
        ),
        (
            r#"when = { all = [ {} ] }"#,
            "when.all[0]: an empty condition",
        ),
        (
            r#"when = { all = [], not = { pointer = "/a", exists = true } }"#,
            "when: one condition per table, found all, not",
        ),
        (
            r#"types = ["in*voice"]"#,
            "types[0]: `in*voice`: `*` may only end a pattern",
        ),
        (r#"types = ["!"]"#, "types[0]: an empty type pattern"),
    ];
    for (text, want) in cases {
        let err = parse(text)
            .err()
            .unwrap_or_else(|| panic!("{text} was accepted"));
        assert!(err.starts_with(want), "{text}: {err}");
    }
    // Unknown keys and wrong types are refused by the parser, with the key.
    let err = parse(r#"when = { pointer = "/a", equal = 1 }"#).unwrap_err();
    assert!(err.contains("equal"), "{err}");
    let err = parse(r#"when = { pointer = "/a", gt = "ten" }"#).unwrap_err();
    assert!(err.contains("gt"), "{err}");
}

#[test]
fn destination_references_take_filters_and_their_errors_name_the_source() {
    let base = r#"
[server]
journal = "journal.redb"

[[destination]]
name = "audit"
url = "http://127.0.0.1:1/a"
signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[destination]]
name = "billing"
url = "http://127.0.0.1:1/b"
signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[source]]
name = "stripe"
path = "/hooks/stripe"
scheme = "stripe"
secrets = ["whsec_test"]
"#;
    let ok = format!(
        "{base}destinations = [\"audit\", {{ name = \"billing\", types = [\"invoice.*\"], \
         when = {{ pointer = \"/data/object/amount_paid\", gt = 100 }} }}]\n"
    );
    let config = Config::from_toml(&ok).unwrap();
    let names: Vec<&str> = config.sources[0]
        .destinations
        .iter()
        .map(|d| d.name())
        .collect();
    assert_eq!(names, ["audit", "billing"]);
    let bad = format!(
        "{base}destinations = [\"audit\", {{ name = \"billing\", when = {{ pointer = \"/x\", gt = 1, lt = 2 }} }}]\n"
    );
    let err = Config::from_toml(&bad).unwrap_err().to_string();
    assert!(
        err.contains("source[0].destinations[1].when") && err.contains("one test per condition"),
        "{err}"
    );
    let unknown = format!("{base}destinations = [{{ name = \"billing\", typs = [\"x\"] }}]\n");
    let err = Config::from_toml(&unknown).unwrap_err().to_string();
    assert!(err.contains("typs"), "{err}");
    let missing = format!("{base}destinations = [{{ name = \"nobody\" }}]\n");
    let err = Config::from_toml(&missing).unwrap_err().to_string();
    assert!(
        err.contains("no [[destination]] is named `nobody`"),
        "{err}"
    );
}

// ---- the partition property -------------------------------------------------------

fn leaf() -> impl Strategy<Value = ConditionSpec> {
    let pointer = prop::sample::select(vec!["/a", "/b", "/a/x", "/list/0", "/s", "/missing"]);
    let value = prop_oneof![
        any::<i8>().prop_map(|n| json!(n)),
        prop::sample::select(vec!["x", "y", "paid", ""]).prop_map(|s| json!(s)),
        any::<bool>().prop_map(|b| json!(b)),
        Just(Value::Null),
    ];
    let types = prop::collection::vec(
        prop::sample::select(vec!["a.b", "a.*", "!a.b", "c", "!c.*", "*"]),
        0..3,
    )
    .prop_map(|t| ConditionSpec {
        types: Some(t.into_iter().map(str::to_owned).collect()),
        ..Default::default()
    });
    let payload = (pointer, 0..8u8, value, any::<i8>()).prop_map(|(p, op, v, n)| {
        let mut c = ConditionSpec {
            pointer: Some(p.to_owned()),
            ..Default::default()
        };
        let n = f64::from(n);
        match op {
            0 => c.equals = Some(v),
            1 => c.one_of = Some(vec![v, json!("y")]),
            2 => c.exists = Some(n > 0.0),
            3 => c.gt = Some(n),
            4 => c.gte = Some(n),
            5 => c.lt = Some(n),
            6 => c.lte = Some(n),
            _ => c.matches = Some("^[xp]".to_owned()),
        }
        c
    });
    prop_oneof![types, payload]
}

fn condition() -> impl Strategy<Value = ConditionSpec> {
    leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| ConditionSpec {
                all: Some(v),
                ..Default::default()
            }),
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| ConditionSpec {
                any: Some(v),
                ..Default::default()
            }),
            inner.prop_map(|c| ConditionSpec {
                not: Some(Box::new(c)),
                ..Default::default()
            }),
        ]
    })
}

fn event() -> impl Strategy<Value = (Option<String>, Vec<u8>)> {
    let ty = prop::option::of(prop::sample::select(vec!["a.b", "a.c", "c", "c.d"]))
        .prop_map(|t| t.map(str::to_owned));
    let body = prop_oneof![
        (
            any::<i8>(),
            prop::sample::select(vec!["x", "paid", "q"]),
            any::<bool>()
        )
            .prop_map(|(a, s, flag)| serde_json::to_vec(&json!({
                "a": a, "b": flag, "s": s, "list": [s], "x": null
            }))
            .unwrap()),
        Just(br#"{"a": {"x": "y"}, "list": []}"#.to_vec()),
        Just(b"not json at all".to_vec()),
        Just(Vec::new()),
    ];
    (ty, body)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A filter and its negation take complementary sets: every event is taken by
    /// exactly one of them.
    #[test]
    fn a_filter_and_its_negation_partition_every_event_set(
        types in prop::collection::vec(prop::sample::select(vec!["a.*", "!a.c", "c"]), 0..3),
        when in prop::option::of(condition()),
        events in prop::collection::vec(event(), 1..24),
    ) {
        let spec = FilterSpec {
            types: types.into_iter().map(str::to_owned).collect(),
            when,
        };
        let filter = Filter::from_spec(&spec).unwrap();
        let negated = filter.clone().negate();
        let (mut taken, mut rest) = (0, 0);
        for (ty, body) in &events {
            let input = FilterInput { event_type: ty.as_deref(), body };
            let (a, b) = (filter.accepts(&input), negated.accepts(&input));
            prop_assert!(a != b, "{spec:?} on {ty:?} {:?}: {a} and {b}", String::from_utf8_lossy(body));
            if a { taken += 1 } else { rest += 1 }
        }
        prop_assert_eq!(taken + rest, events.len());
    }

    /// A filter that says it does not need the body answers the same whatever the body
    /// is (so journal scans may skip reading it), and one with a payload test says it
    /// needs it.
    #[test]
    fn a_filter_that_needs_no_body_ignores_it(
        types in prop::collection::vec(prop::sample::select(vec!["a.*", "!a.c", "c"]), 0..3),
        when in prop::option::of(condition()),
        events in prop::collection::vec(event(), 1..24),
    ) {
        let spec = FilterSpec {
            types: types.into_iter().map(str::to_owned).collect(),
            when,
        };
        let filter = Filter::from_spec(&spec).unwrap();
        let has_pointer = serde_json::to_string(&spec).unwrap().contains("\"pointer\"");
        prop_assert_eq!(filter.needs_body(), has_pointer, "{:?}", spec);
        if !filter.needs_body() {
            for (ty, body) in &events {
                let with = filter.accepts(&FilterInput { event_type: ty.as_deref(), body });
                let without = filter.accepts(&FilterInput { event_type: ty.as_deref(), body: b"" });
                prop_assert_eq!(with, without);
            }
        }
        prop_assert_eq!(Filter::from_spec(&spec).unwrap(), filter, "equal by tree");
    }
}

#[test]
fn filters_compare_by_their_conditions() {
    let f = parse(
        r#"types = ["invoice.*"]
when = { pointer = "/data/amount", gt = 100 }"#,
    )
    .unwrap();
    assert_eq!(f, f.clone());
    for other in [
        r#"types = ["invoice.*"]
when = { pointer = "/data/amount", gte = 100 }"#,
        r#"types = ["invoice.*"]
when = { pointer = "/data/amount", gt = 101 }"#,
        r#"types = ["invoice.paid"]
when = { pointer = "/data/amount", gt = 100 }"#,
        r#"types = ["invoice.*"]"#,
    ] {
        assert_ne!(f, parse(other).unwrap(), "{other}");
    }
    assert_eq!(
        parse(r#"when = { pointer = "/id", matches = "^in_" }"#).unwrap(),
        parse(r#"when = { pointer = "/id", matches = "^in_" }"#).unwrap()
    );
    let code = Filter::from_fn(|i| i.body.is_empty());
    assert!(code.needs_body());
    assert_eq!(code, code.clone(), "a predicate equals its clone");
    assert_ne!(
        code,
        Filter::from_fn(|i| i.body.is_empty()),
        "not another one"
    );
    assert!(!Filter::all().needs_body() && !Filter::types(["a.*"]).unwrap().needs_body());
}

// ---- routing end to end -------------------------------------------------------------

/// Stripe's events go to `app` unless upcoming, and to `billing` when an invoice paid
/// more than 100; an event neither takes is done with the reason journaled, never dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_routes_each_event_to_the_destinations_whose_filter_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let app = Downstream::start(|_, _| Reply::ok()).await;
    let billing = Downstream::start(|_, _| Reply::ok()).await;
    let extra = format!(
        "[[destination]]\nname = \"billing\"\nurl = \"{}\"\n\
         signing_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"t\"\n",
        billing.url("/billing")
    );
    let cfg = write_config(dir.path(), &app.url("/in"), "{}", &extra);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let at = text.find("name = \"stripe\"").unwrap();
    let routed = text[..at].to_owned()
        + &text[at..].replacen(
            "destinations = [\"app\"]",
            "destinations = [{ name = \"app\", types = [\"!invoice.upcoming\"] },\n  \
             { name = \"billing\", types = [\"invoice.*\"], \
             when = { pointer = \"/data/object/amount_paid\", gt = 100 } }]",
            1,
        );
    std::fs::write(&cfg, routed).unwrap();
    let server = Server::start(&cfg);
    let client = crate::support::client();
    let post = |id: &'static str, ty: &str, amount: u32| {
        let body = json!({"id": id, "type": ty, "data": {"object": {"amount_paid": amount}}});
        signed(
            &client,
            &server.url("/hooks/stripe"),
            "stripe",
            STRIPE_SECRET,
            id,
            body.to_string().as_bytes(),
        )
    };
    let both = post_ok(post("evt_both", "invoice.paid", 500)).await;
    let app_only = post_ok(post("evt_small", "invoice.paid", 50)).await;
    let billing_only = post_ok(post("evt_upcoming", "invoice.upcoming", 500)).await;
    let neither = post_ok(post("evt_neither", "invoice.upcoming", 50)).await;
    let got_app = app.wait_for(2, Duration::from_secs(10)).await;
    let got_billing = billing.wait_for(2, Duration::from_secs(10)).await;
    let ids = |reqs: &[crate::support::Recorded]| {
        let mut v: Vec<String> = reqs
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        v.sort();
        v
    };
    let mut want_app = vec![both.clone(), app_only.clone()];
    want_app.sort();
    let mut want_billing = vec![both.clone(), billing_only.clone()];
    want_billing.sort();
    assert_eq!(ids(&got_app), want_app);
    assert_eq!(ids(&got_billing), want_billing);
    // The event no filter takes: done, one attempt, outcome `filtered`, with the reason.
    let admin = server.admin.as_deref().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let detail = loop {
        let v: Value = client
            .get(format!("{admin}/v1/events/{neither}"))
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["state"] == "done" || std::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(detail["state"], "done", "{detail:#}");
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{detail:#}");
    assert_eq!(attempts[0]["outcome"], "filtered");
    let error = attempts[0]["error"].as_str().unwrap();
    assert!(error.starts_with("filtered out"), "{error}");
    assert!(
        error.contains("`app`") && error.contains("`billing`"),
        "{error}"
    );
    // Nothing more arrived anywhere.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.requests().len(), 2);
    assert_eq!(billing.requests().len(), 2);
}

/// Two destinations with their own schedules: billing fails for a while and dies
/// alone while audit gets everything at once; the DLQ lists (event, billing), and a
/// redrive of billing delivers to billing only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_destination_retries_dies_and_is_redriven_on_its_own() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let billing = Downstream::start(move |_, _| {
        if h.load(Ordering::SeqCst) {
            Reply::ok()
        } else {
            Reply::status(503).body("billing is migrating")
        }
    })
    .await;
    let audit = Downstream::start(|_, _| Reply::ok()).await;
    let cfg = dir.path().join("hookbox.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
journal = "{journal}"

[admin]
listen = "127.0.0.1:0"
token = "t"

[[source]]
name = "stripe"
path = "/hooks/stripe"
scheme = "stripe"
secrets = ["{STRIPE_SECRET}"]
destinations = [{{ name = "billing", types = ["invoice.*"] }}, "audit"]
retry = {{ schedule = ["1h"] }}

[[destination]]
name = "billing"
url = "{billing}"
signing_secret = "{APP_SECRET}"
retry = {{ schedule = ["100ms", "100ms"] }}

[[destination]]
name = "audit"
url = "{audit}"
signing_secret = "{APP_SECRET}"
"#,
            journal = dir.path().join("journal.redb").display(),
            billing = billing.url("/billing"),
            audit = audit.url("/audit"),
        ),
    )
    .unwrap();
    let server = Server::start(&cfg);
    let client = crate::support::client();
    let admin = server.admin.clone().unwrap();
    let get = |path: String| {
        let client = client.clone();
        let admin = admin.clone();
        async move {
            let res = client
                .get(format!("{admin}{path}"))
                .bearer_auth("t")
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success(), "{path}: {}", res.status());
            res.json::<Value>().await.unwrap()
        }
    };
    let post = |id: &'static str, ty: &str| {
        let body = json!({"id": id, "type": ty});
        signed(
            &client,
            &server.url("/hooks/stripe"),
            "stripe",
            STRIPE_SECRET,
            id,
            body.to_string().as_bytes(),
        )
    };
    let invoice = post_ok(post("evt_inv", "invoice.paid")).await;
    let order = post_ok(post("evt_order", "order.created")).await;

    // Audit gets both at once, whatever billing does meanwhile.
    let got = audit.wait_for(2, Duration::from_secs(10)).await;
    let mut ids: Vec<_> = got
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    ids.sort();
    let mut want = vec![invoice.clone(), order.clone()];
    want.sort();
    assert_eq!(ids, want);

    // Billing: three attempts on its own 100 ms schedule (the source's is an hour),
    // then dead; the DLQ holds the (invoice, billing) pair only.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let dlq = loop {
        let v = get("/v1/dlq".to_owned()).await;
        if !v["events"].as_array().unwrap().is_empty() {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "nothing died: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let dead = dlq["events"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{dlq:#}");
    assert_eq!(dead[0]["id"], invoice.as_str());
    assert_eq!(dead[0]["destination"], "billing");
    assert_eq!(dead[0]["attempts"], 3);
    assert!(
        dead[0]["last_error"].as_str().unwrap().contains("503"),
        "{dlq:#}"
    );
    assert_eq!(billing.requests().len(), 3, "billing never got the order");
    let detail = get(format!("/v1/events/{invoice}")).await;
    assert_eq!(detail["state"], "dead", "{detail:#}");
    let per: Vec<_> = detail["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["destination"].clone(),
                d["state"].clone(),
                d["attempts"].clone(),
            )
        })
        .collect();
    assert_eq!(
        per,
        vec![
            (json!("audit"), json!("done"), json!(1)),
            (json!("billing"), json!("dead"), json!(3)),
        ],
        "{detail:#}"
    );
    let to: Vec<_> = detail["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["destination"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(to.iter().filter(|d| *d == "billing").count(), 3, "{to:?}");
    assert_eq!(to.iter().filter(|d| *d == "audit").count(), 1, "{to:?}");
    let order_detail = get(format!("/v1/events/{order}")).await;
    assert_eq!(order_detail["state"], "done", "{order_detail:#}");

    // Billing is back: redrive billing's deliveries only (the CLI, as an operator).
    healthy.store(true, Ordering::SeqCst);
    let out = crate::support::hookbox_bin()
        .args([
            "dlq",
            "redrive",
            "--destination",
            "billing",
            "--admin",
            &admin,
            "--token",
            "t",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("redriven 1 delivery"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let got = billing.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(got[3].header("webhook-id"), invoice);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = get(format!("/v1/events/{invoice}")).await;
        if v["state"] == "done" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {v:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        audit.requests().len(),
        2,
        "audit got nothing from the redrive"
    );
    assert_eq!(billing.requests().len(), 4);
}
