//! The dashboard over plain HTTP: security headers, the session cookie, CSRF, escaping
//! of everything the journal holds (an XSS corpus parsed back with an HTML parser), no
//! external URL anywhere, and redrive and replay through plain form posts.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use scraper::{Html, Selector};

use crate::support::dashboard::{self, http, TOKEN};

/// Pages to check, signed in.
const PAGES: [&str; 7] = [
    "/ui/",
    "/ui/events",
    "/ui/events?state=dead&range=1h",
    "/ui/dlq",
    "/ui/replays",
    "/ui/rejected",
    "/ui/sources",
];

fn assert_security_headers(path: &str, res: &reqwest::Response) {
    let h = res.headers();
    let get = |n: &str| {
        h.get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let csp = get("content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{path}: CSP {csp:?}");
    assert!(csp.contains("default-src 'none'"), "{path}: CSP {csp:?}");
    assert!(
        csp.contains("frame-ancestors 'none'"),
        "{path}: CSP {csp:?}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{path}: {csp}"
    );
    assert_eq!(get("x-content-type-options"), "nosniff", "{path}");
    assert_eq!(get("x-frame-options"), "DENY", "{path}");
    assert_eq!(get("referrer-policy"), "same-origin", "{path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ui_response_carries_the_security_headers() {
    let d = dashboard::start("").await;
    let id = d.post(r#"{"type":"order.created"}"#, &[]).await;
    let cookie = d.session().await;
    let mut paths: Vec<String> = PAGES.iter().map(|p| p.to_string()).collect();
    paths.extend([
        format!("/ui/events/{id}"),
        format!("/ui/events/{id}?view=hex"),
        format!("/ui/events/{id}/raw"),
        "/ui/events/evt_0000000000000000".to_owned(),
        "/ui/no-such-page".to_owned(),
        "/ui/replays/999".to_owned(),
        "/ui/assets/app.css".to_owned(),
        "/ui/assets/app.js".to_owned(),
    ]);
    for p in &paths {
        let res = http()
            .get(d.url(p))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_security_headers(p, &res);
        if !p.starts_with("/ui/assets/") {
            assert_eq!(res.headers()["cache-control"], "no-store", "{p}");
        }
    }
    // Signed out, refused, and the answers to posts too.
    for p in ["/ui/login", "/ui/events", "/ui/"] {
        let res = http().get(d.url(p)).send().await.unwrap();
        assert_security_headers(p, &res);
    }
    let res = http()
        .post(d.url("/ui/login"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_security_headers("cross-site login", &res);
    let res = d
        .form(
            &cookie,
            "/ui/replays",
            &[("action", "preview"), ("since", "x")],
        )
        .await;
    assert_security_headers("replay preview", &res);
    // The raw body is a download, never rendered.
    let res = http()
        .get(d.url(&format!("/ui/events/{id}/raw")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    assert!(res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_httponly_strict_and_a_wrong_token_gets_none() {
    let d = dashboard::start("").await;
    let res = http()
        .post(d.url("/ui/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("token", TOKEN), ("next", "/ui/dlq")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/ui/dlq");
    let set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.starts_with("hookbox_session="), "{set}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    assert_eq!(d.get(&cookie, "/ui/events").await.0, 200);

    // A wrong token: 401, the form again, no cookie.
    for token in ["wrong", "", &format!("{TOKEN}x")] {
        let res = http()
            .post(d.url("/ui/login"))
            .header("sec-fetch-site", "same-origin")
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{token:?}");
        assert!(res.headers().get("set-cookie").is_none(), "{token:?}");
    }
    // A made-up session, and an offsite `next`.
    let (status, _) = d.get("hookbox_session=00ff", "/ui/events").await;
    assert_eq!(status, 303);
    let res = http()
        .post(d.url("/ui/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("token", TOKEN), ("next", "//evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/ui/");

    // Logout ends the session on the server, not only in the browser.
    let res = d.form(&cookie, "/ui/logout", &[]).await;
    assert_eq!(res.status(), 303);
    assert!(res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(d.get(&cookie, "/ui/events").await.0, 303);

    // Bearer tokens keep working for the API, and for the pages.
    let res = http()
        .get(d.url("/v1/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = http()
        .get(d.url("/v1/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        401,
        "the session cookie is for the dashboard only"
    );
    let res = http()
        .get(d.url("/ui/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_cookies_marks_the_cookie_secure() {
    let d = dashboard::start("secure_cookies = true").await;
    let res = http()
        .post(d.url("/ui/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    let set = res.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("; Secure"), "{set}");
}

/// A CSRF case: its name, the request's headers, and whether it is accepted.
type CsrfCase = (&'static str, Vec<(&'static str, String)>, bool);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changing_requests_must_be_same_origin_or_carry_the_bearer_token() {
    let d = dashboard::start("").await;
    let cookie = d.session().await;
    let host = d.admin.trim_start_matches("http://").to_owned();
    let same_origin = format!("http://{host}");
    let cases: Vec<CsrfCase> = vec![
        (
            "cross-site",
            vec![("sec-fetch-site", "cross-site".into())],
            false,
        ),
        (
            "same-site",
            vec![("sec-fetch-site", "same-site".into())],
            false,
        ),
        (
            "user-initiated",
            vec![("sec-fetch-site", "none".into())],
            false,
        ),
        (
            "evil origin",
            vec![("origin", "http://evil.example".into())],
            false,
        ),
        ("null origin", vec![("origin", "null".into())], false),
        ("neither header", vec![], false),
        (
            "cross-site with a same origin",
            vec![
                ("sec-fetch-site", "cross-site".into()),
                ("origin", same_origin.clone()),
            ],
            false,
        ),
        (
            "same-origin",
            vec![("sec-fetch-site", "same-origin".into())],
            true,
        ),
        (
            "matching origin",
            vec![("origin", same_origin.clone())],
            true,
        ),
    ];
    let dead = {
        let id = d.post(r#"{"type":"csrf.test","note":"fail"}"#, &[]).await;
        d.wait_state(&id, "dead").await;
        id
    };
    for (name, headers, accepted) in &cases {
        for path in ["/ui/dlq/redrive", "/ui/replays", "/ui/logout-not-really"] {
            let mut req = http().post(d.url(path)).header("cookie", &cookie);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            let res = req
                .form(&[("action", "preview"), ("id", dead.as_str())])
                .send()
                .await
                .unwrap();
            let refused = res.status() == 403;
            assert_eq!(!refused, *accepted, "{name} on {path}: {}", res.status());
        }
        // Signing in is covered too (no login CSRF).
        let mut req = http().post(d.url("/ui/login"));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let res = req.form(&[("token", TOKEN)]).send().await.unwrap();
        assert_eq!(res.status() != 403, *accepted, "{name} on /ui/login");
    }
    // The bearer token is never sent by a browser on its own: accepted without either.
    let res = http()
        .post(d.url(&format!("/ui/events/{dead}/redrive")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    // A cross-site redrive changed nothing before that.
    assert_eq!(d.event(&dead).await["delivery"]["redrives"], 1);
}

/// Hostile strings as a provider (or an attacker with a valid secret) could send them.
const XSS: [&str; 6] = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(2)>",
    "' onmouseover='alert(3)",
    "javascript:alert(4)",
    "</textarea></pre><svg onload=alert(5)>",
    "<a href=\"javascript:alert(6)\">click</a>",
];

fn assert_no_injection(what: &str, html: &str) {
    let doc = Html::parse_document(html);
    let all = Selector::parse("*").unwrap();
    for el in doc.select(&all) {
        let name = el.value().name();
        assert!(
            !["img", "iframe", "object", "embed", "textarea", "b", "base"].contains(&name),
            "{what}: injected <{name}>"
        );
        if name == "script" {
            assert_eq!(
                el.value().attr("src"),
                Some("/ui/assets/app.js"),
                "{what}: a script element"
            );
            assert!(
                el.text().all(|t| t.trim().is_empty()),
                "{what}: inline script"
            );
        }
        if name == "svg" {
            assert!(
                el.value().classes().any(|c| c == "spark"),
                "{what}: an injected svg"
            );
        }
        if name == "a" && el.text().any(|t| t == "click") {
            panic!("{what}: an injected link");
        }
        for (attr, value) in el.value().attrs() {
            assert!(!attr.starts_with("on"), "{what}: <{name} {attr}>");
            let v = value.trim().to_ascii_lowercase();
            if ["href", "src", "action", "formaction"].contains(&attr) {
                assert!(
                    !v.starts_with("javascript:"),
                    "{what}: <{name} {attr}={value}>"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xss_corpus_in_events_is_rendered_as_text() {
    let d = dashboard::start("").await;
    let mut ids = Vec::new();
    for (i, x) in XSS.iter().enumerate() {
        let body = serde_json::json!({ "type": x, "data": { "note": x, "n": i } }).to_string();
        let header = x.replace(['\r', '\n'], "");
        ids.push(
            d.post(
                &body,
                &[("x-custom", &header), ("x-signature-extra", &header)],
            )
            .await,
        );
    }
    // Failures keep the downstream's hostile response in their error text.
    let failing = serde_json::json!({ "type": XSS[0], "note": "hostile", "x": XSS[1] }).to_string();
    let dead = d.post(&failing, &[]).await;
    d.wait_state(&dead, "dead").await;
    // A refused request with hostile headers and body.
    let _ = http()
        .post(d.server.url("/hooks/shop"))
        .header("webhook-id", XSS[1])
        .header("webhook-timestamp", "<b>1</b>")
        .header("webhook-signature", XSS[2])
        .body(XSS[0])
        .send()
        .await
        .unwrap();
    let cookie = d.session().await;
    let mut pages: Vec<String> = PAGES.iter().map(|p| p.to_string()).collect();
    for id in ids.iter().chain([&dead]) {
        for v in ["pretty", "raw", "hex"] {
            pages.push(format!("/ui/events/{id}?view={v}"));
        }
        pages.push(format!("/ui/events/{id}?a=0&b=1"));
    }
    pages.push(format!("/ui/events?type={}", urlenc(XSS[0])));
    pages.push(format!(
        "/ui/events?source={}&type={}",
        urlenc(XSS[1]),
        urlenc(XSS[2])
    ));
    pages.push(format!(
        "/ui/dlq?error={}&type={}",
        urlenc(XSS[1]),
        urlenc(XSS[5])
    ));
    pages.push(format!("/ui/events?q={}", urlenc(XSS[4])));
    let hostile_filter = serde_json::json!({ "types": [XSS[0]] }).to_string();
    pages.push(format!("/ui/events?where={}", urlenc(&hostile_filter)));
    pages.push(format!("/ui/events?where={}", urlenc(XSS[1])));
    pages.push(format!("/ui/replays?source={}", urlenc(XSS[1])));
    pages.push(format!("/ui/events/rows?after=&type={}", urlenc(XSS[0])));
    let mut saw_payload = false;
    for p in &pages {
        let (status, html) = d.get(&cookie, p).await;
        assert!(status < 500, "{p}: {status}");
        assert_no_injection(p, &html);
        saw_payload |= html.contains("&lt;script&gt;alert(1)&lt;/script&gt;");
    }
    assert!(saw_payload, "the payloads are shown, escaped");
    // The downstream's response is in the dead event's page and in the DLQ, as text.
    let (_, html) = d.get(&cookie, &format!("/ui/events/{dead}")).await;
    assert!(
        html.contains("alert(&#39;downstream&#39;)") || html.contains("alert('downstream')"),
        "{html}"
    );
    let (_, html) = d.get(&cookie, "/ui/dlq").await;
    assert!(html.contains("onerror=alert(1)"), "the error text is shown");
    assert_no_injection("dlq", &html);
    // The redrive preview and the replay preview echo the filters back, escaped.
    let res = d
        .form(
            &cookie,
            "/ui/dlq/redrive",
            &[
                ("action", "preview"),
                ("scope", "filter"),
                ("type", XSS[1]),
                ("error", XSS[0]),
            ],
        )
        .await;
    assert_no_injection("dlq preview", &res.text().await.unwrap());
    let res = d
        .form(
            &cookie,
            "/ui/replays",
            &[
                ("action", "preview"),
                ("since", "2020-01-01T00:00"),
                ("until", "2030-01-01T00:00"),
                ("type", XSS[2]),
                ("source", XSS[1]),
            ],
        )
        .await;
    assert_no_injection("replay preview", &res.text().await.unwrap());
    // Signature headers are masked.
    let (_, html) = d.get(&cookie, &format!("/ui/events/{}", ids[0])).await;
    assert!(html.contains("masked"), "signature headers are masked");
    assert!(!html.contains("v1,"), "no signature value is shown");
}

/// The texts of the cells of `table`'s body rows, row by row.
fn cells(table: scraper::ElementRef<'_>) -> Vec<Vec<String>> {
    let tr = Selector::parse("tbody tr").unwrap();
    let td = Selector::parse("td").unwrap();
    table
        .select(&tr)
        .map(|r| {
            r.select(&td)
                .map(|c| c.text().collect::<String>().trim().to_owned())
                .collect()
        })
        .collect()
}

/// The first table of the card whose heading is `heading`.
fn table_under(html: &str, heading: &str) -> Vec<Vec<String>> {
    let doc = Html::parse_document(html);
    let card = Selector::parse("section.card").unwrap();
    let h2 = Selector::parse("h2").unwrap();
    let table = Selector::parse("table").unwrap();
    let section = doc
        .select(&card)
        .find(|s| {
            s.select(&h2)
                .next()
                .is_some_and(|h| h.text().collect::<String>() == heading)
        })
        .unwrap_or_else(|| panic!("no {heading:?} card: {html}"));
    cells(section.select(&table).next().expect("a table"))
}

/// The dead-letter list's rows: (event, destination).
fn dead_pairs(html: &str) -> Vec<(String, String)> {
    let doc = Html::parse_document(html);
    let form = Selector::parse("form[action='/ui/dlq/redrive'] table").unwrap();
    let Some(table) = doc.select(&form).next() else {
        return Vec::new();
    };
    let mut pairs: Vec<(String, String)> = cells(table)
        .into_iter()
        .map(|r| (r[1].clone(), r[3].clone()))
        .collect();
    pairs.sort();
    pairs
}

/// The delivery of `id` to `dest` as the admin API shows it.
async fn delivery(d: &dashboard::Dashboard, id: &str, dest: &str) -> serde_json::Value {
    let v = d.event(id).await;
    v["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["destination"] == dest)
        .unwrap_or_else(|| panic!("{id} has no delivery to {dest}: {v:#}"))
        .clone()
}

/// Waits (up to 15 s) until the delivery of `id` to `dest` is in `state`.
async fn wait_delivery(d: &dashboard::Dashboard, id: &str, dest: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = delivery(d, id, dest).await;
        if v["state"] == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} to {dest} never became {state}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A source with two destinations: the dead-letter list has one row per dead (event,
/// destination) pair, a row's redrive redrives that pair only, a bulk redrive exactly
/// the selected pairs, and the event page shows each destination's delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_redriven_per_destination() {
    let d = dashboard::start_fanout().await;
    let (audit, audit_failing) = d.audit.as_ref().unwrap();
    let cookie = d.session().await;
    // `a` and `c` die at both destinations, `b` at app only (audit takes it at once).
    let a = d
        .post(r#"{"type":"invoice.paid","note":"fail both"}"#, &[])
        .await;
    let b = d
        .post(r#"{"type":"invoice.paid","note":"fail"}"#, &[])
        .await;
    let c = d
        .post(r#"{"type":"invoice.voided","note":"fail both"}"#, &[])
        .await;
    for id in [&a, &c] {
        wait_delivery(&d, id, "app", "dead").await;
        wait_delivery(&d, id, "audit", "dead").await;
    }
    wait_delivery(&d, &b, "app", "dead").await;
    wait_delivery(&d, &b, "audit", "done").await;

    let (status, html) = d.get(&cookie, "/ui/dlq").await;
    assert_eq!(status, 200);
    let mut want = vec![
        (a.clone(), "app".to_owned()),
        (a.clone(), "audit".to_owned()),
        (b.clone(), "app".to_owned()),
        (c.clone(), "app".to_owned()),
        (c.clone(), "audit".to_owned()),
    ];
    want.sort();
    assert_eq!(dead_pairs(&html), want, "{html}");
    // Grouped by destination, and a group narrows the list to its destination.
    assert!(html.contains("audit · HTTP 502"), "{html}");
    let (_, html) = d
        .get(
            &cookie,
            &format!("/ui/dlq?group={}", urlenc("audit · HTTP 502")),
        )
        .await;
    let mut want = vec![
        (a.clone(), "audit".to_owned()),
        (c.clone(), "audit".to_owned()),
    ];
    want.sort();
    assert_eq!(dead_pairs(&html), want);

    // The event page: both destinations' deliveries, and whose each attempt was.
    let (_, html) = d.get(&cookie, &format!("/ui/events/{a}")).await;
    let rows = table_under(&html, "Destinations");
    let states: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(states, vec![("app", "dead"), ("audit", "dead")], "{html}");
    assert_eq!(rows[1][2], "2", "audit's attempts");
    assert!(rows[1][4].contains("audit store is read-only"), "{rows:?}");
    let attempts = table_under(&html, "Attempts");
    let to: Vec<&str> = attempts.iter().map(|r| r[3].as_str()).collect();
    assert_eq!(to.iter().filter(|t| **t == "app").count(), 2, "{to:?}");
    assert_eq!(to.iter().filter(|t| **t == "audit").count(), 2, "{to:?}");
    let (_, html) = d.get(&cookie, &format!("/ui/events/{b}")).await;
    let rows = table_under(&html, "Destinations");
    let states: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(states, vec![("app", "dead"), ("audit", "done")], "{html}");

    // A row's own redrive: (a, app) only; a's audit delivery and b stay dead.
    d.failing.store(false, Ordering::SeqCst);
    let audit_before = audit.requests().len();
    let res = d
        .form(
            &cookie,
            "/ui/dlq/redrive",
            &[("action", "one"), ("id", &format!("{a}/app"))],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/ui/dlq?redriven=1");
    wait_delivery(&d, &a, "app", "done").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let untouched = delivery(&d, &a, "audit").await;
    assert_eq!(untouched["state"], "dead", "{untouched:#}");
    assert_eq!(untouched["redrives"], 0, "{untouched:#}");
    assert_eq!(untouched["attempts"], 2, "{untouched:#}");
    assert_eq!(
        audit.requests().len(),
        audit_before,
        "nothing went to audit"
    );
    assert_eq!(delivery(&d, &a, "app").await["redrives"], 1);
    assert_eq!(delivery(&d, &b, "app").await["state"], "dead");
    let (_, html) = d.get(&cookie, &format!("/ui/events/{a}")).await;
    let rows = table_under(&html, "Destinations");
    let states: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(states, vec![("app", "done"), ("audit", "dead")], "{html}");
    let (_, html) = d.get(&cookie, "/ui/dlq").await;
    let mut want = vec![
        (a.clone(), "audit".to_owned()),
        (b.clone(), "app".to_owned()),
        (c.clone(), "app".to_owned()),
        (c.clone(), "audit".to_owned()),
    ];
    want.sort();
    assert_eq!(dead_pairs(&html), want, "{html}");
    // Again: not dead any more.
    let res = d
        .form(
            &cookie,
            "/ui/dlq/redrive",
            &[("action", "one"), ("id", &format!("{a}/app"))],
        )
        .await;
    assert_eq!(res.status(), 409);

    // A selection: exactly the pairs previewed, one redrive per destination; the
    // other dead deliveries of the same events (c to audit) and b stay dead.
    audit_failing.store(false, Ordering::SeqCst);
    let a_audit = format!("{a}/audit");
    let c_app = format!("{c}/app");
    let picked = [("id", a_audit.as_str()), ("id", c_app.as_str())];
    let res = d
        .form(
            &cookie,
            "/ui/dlq/redrive",
            &[&picked[..], &[("action", "preview")]].concat(),
        )
        .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("Redrive 2 dead deliveries?"), "{html}");
    assert!(
        html.contains(&format!("hookbox dlq redrive --destination app --id {c}")),
        "{html}"
    );
    assert!(
        html.contains(&format!("hookbox dlq redrive --destination audit --id {a}")),
        "{html}"
    );
    let doc = Html::parse_document(&html);
    let hidden = Selector::parse("input[type=hidden][name=id]").unwrap();
    let mut bound: Vec<String> = doc
        .select(&hidden)
        .map(|e| e.value().attr("value").unwrap().to_owned())
        .collect();
    bound.sort();
    let mut want = vec![a_audit.clone(), c_app.clone()];
    want.sort();
    assert_eq!(bound, want);
    let digest = doc
        .select(&Selector::parse("input[name=digest]").unwrap())
        .next()
        .unwrap()
        .value()
        .attr("value")
        .unwrap()
        .to_owned();
    let res = d
        .form(
            &cookie,
            "/ui/dlq/redrive",
            &[
                &picked[..],
                &[
                    ("action", "confirm"),
                    ("expect", "2"),
                    ("digest", digest.as_str()),
                ],
            ]
            .concat(),
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/ui/dlq?redriven=2");
    wait_delivery(&d, &a, "audit", "done").await;
    wait_delivery(&d, &c, "app", "done").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(delivery(&d, &a, "app").await["redrives"], 1, "a/app once");
    let c_audit = delivery(&d, &c, "audit").await;
    assert_eq!(c_audit["state"], "dead", "{c_audit:#}");
    assert_eq!(c_audit["redrives"], 0, "{c_audit:#}");
    assert_eq!(delivery(&d, &b, "app").await["state"], "dead");
    let (_, html) = d.get(&cookie, "/ui/dlq").await;
    let mut want = vec![
        (b.clone(), "app".to_owned()),
        (c.clone(), "audit".to_owned()),
    ];
    want.sort();
    assert_eq!(dead_pairs(&html), want, "{html}");

    // From the event page, one destination: the live one is not dead, so nothing.
    let (_, html) = d.get(&cookie, &format!("/ui/events/{c}")).await;
    let rows = table_under(&html, "Destinations");
    assert_eq!(rows[0][6], "", "app is done: no redrive");
    assert_eq!(rows[1][6], "Redrive audit", "{rows:?}");
    let path = format!("/ui/events/{c}/redrive");
    let res = d.form(&cookie, &path, &[("destination", "app")]).await;
    assert_eq!(res.status(), 409);
    let res = d.form(&cookie, &path, &[("destination", "audit")]).await;
    assert_eq!(res.status(), 303);
    wait_delivery(&d, &c, "audit", "done").await;
    assert_eq!(delivery(&d, &c, "app").await["redrives"], 1);
    assert_eq!(delivery(&d, &c, "audit").await["redrives"], 1);
    assert_eq!(delivery(&d, &b, "app").await["state"], "dead");
}

/// An event waiting behind an earlier one of its ordering key says so on its page,
/// with a link to the one it waits for, for as long as that one is not done (dead
/// included); redriven and delivered, the head lets it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_delivery_links_the_event_it_waits_for() {
    let d = dashboard::start("").await;
    let head = d.post(r#"{"customer":"cus_9","fail":true}"#, &[]).await;
    let next = d.post(r#"{"customer":"cus_9","n":2}"#, &[]).await;
    let other = d.post(r#"{"customer":"cus_8","n":3}"#, &[]).await;
    d.wait_state(&head, "dead").await;
    d.wait_state(&other, "done").await;
    let cookie = d.session().await;
    let (_, html) = d.get(&cookie, &format!("/ui/events/{next}")).await;
    let rows = table_under(&html, "Destinations");
    assert_eq!(rows[0][1], format!("pending behind {head}"), "{rows:?}");
    let doc = Html::parse_document(&html);
    let link = Selector::parse(".waiting a").unwrap();
    let hrefs: Vec<_> = doc
        .select(&link)
        .filter_map(|a| a.value().attr("href"))
        .collect();
    assert_eq!(hrefs, [format!("/ui/events/{head}")]);
    assert!(
        html.contains(&format!(
            "It waits behind <a class=\"mono\" href=\"/ui/events/{head}\">{head}</a>, an earlier event of its ordering key"
        )),
        "{html}"
    );
    assert_eq!(
        delivery(&d, &next, "app").await["waiting_for"],
        head.as_str()
    );
    // The CLI says so too.
    let o = crate::support::hookbox_bin()
        .args(["events", "show", &next])
        .env("HOOKBOX_ADMIN_URL", &d.admin)
        .env("HOOKBOX_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines()
            .any(|l| l == format!("waits for:   {head} (to app)")),
        "{out}"
    );
    for id in [&head, &other] {
        let (_, html) = d.get(&cookie, &format!("/ui/events/{id}")).await;
        assert!(!html.contains("behind"), "{id} waits for nothing");
    }

    d.failing.store(false, Ordering::SeqCst);
    let res = d
        .form(&cookie, &format!("/ui/events/{head}/redrive"), &[])
        .await;
    assert_eq!(res.status(), 303);
    d.wait_state(&next, "done").await;
    let (_, html) = d.get(&cookie, &format!("/ui/events/{next}")).await;
    assert!(!html.contains("behind"), "{html}");
    assert!(delivery(&d, &next, "app").await["waiting_for"].is_null());
}

/// The events page takes the admin API's payload filter, keeps it in its form, and
/// answers a bad one with a 400 that names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_page_filters_by_payload() {
    let d = dashboard::start("").await;
    let small = d
        .post(r#"{"type":"invoice.paid","data":{"amount":50}}"#, &[])
        .await;
    let big = d
        .post(r#"{"type":"invoice.paid","data":{"amount":500}}"#, &[])
        .await;
    let other = d
        .post(r#"{"type":"customer.created","data":{"amount":900}}"#, &[])
        .await;
    let cookie = d.session().await;
    let filter = r#"{"types":["invoice.*"],"when":{"pointer":"/data/amount","gt":100}}"#;
    let (status, html) = d
        .get(&cookie, &format!("/ui/events?where={}", urlenc(filter)))
        .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(&big), "the matching event is listed");
    assert!(!html.contains(&small), "below the amount: not listed");
    assert!(!html.contains(&other), "another type: not listed");
    let doc = Html::parse_document(&html);
    let input = doc
        .select(&Selector::parse("input[name=where]").unwrap())
        .next()
        .expect("a payload filter field");
    assert_eq!(
        input.value().attr("value"),
        Some(filter),
        "the field keeps it"
    );
    let (_, all) = d.get(&cookie, "/ui/events").await;
    assert!(
        all.contains(&small) && all.contains(&other),
        "unfiltered: all"
    );
    let (status, html) = d
        .get(
            &cookie,
            &format!("/ui/events?where={}", urlenc(r#"{"when":1}"#)),
        )
        .await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("where"), "the error names the filter: {html}");
}

fn urlenc(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_or_asset_refers_to_an_external_url() {
    let d = dashboard::start("").await;
    let id = d
        .post(
            r#"{"type":"order.created","url":"https://example.com/x"}"#,
            &[],
        )
        .await;
    let cookie = d.session().await;
    let mut pages: Vec<String> = PAGES.iter().map(|p| p.to_string()).collect();
    pages.push(format!("/ui/events/{id}"));
    pages.push("/ui/login".to_owned());
    let attr = Selector::parse("[href], [src], [action], [formaction]").unwrap();
    for p in &pages {
        let (_, html) = d.get(&cookie, p).await;
        let doc = Html::parse_document(&html);
        for el in doc.select(&attr) {
            for name in ["href", "src", "action", "formaction"] {
                if let Some(v) = el.value().attr(name) {
                    assert!(
                        (v.starts_with('/') && !v.starts_with("//"))
                            || v.starts_with('#')
                            || v.starts_with('?'),
                        "{p}: <{} {name}={v:?}> is not a dashboard URL",
                        el.value().name()
                    );
                }
            }
        }
        assert!(!html.contains("@import"), "{p}");
    }
    for asset in ["app.css", "app.js"] {
        let (status, text) = d.get(&cookie, &format!("/ui/assets/{asset}")).await;
        assert_eq!(status, 200);
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{asset} names a URL"
        );
        assert!(
            !text.contains("url(") && !text.contains("@import"),
            "{asset} loads something"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_and_replay_work_through_plain_form_posts() {
    let d = dashboard::start("").await;
    let cookie = d.session().await;
    let a = d
        .post(r#"{"type":"invoice.paid","note":"fail a"}"#, &[])
        .await;
    let b = d
        .post(r#"{"type":"invoice.paid","note":"fail b"}"#, &[])
        .await;
    let c = d
        .post(r#"{"type":"invoice.voided","note":"fail c"}"#, &[])
        .await;
    for id in [&a, &b, &c] {
        d.wait_state(id, "dead").await;
    }
    d.failing.store(false, Ordering::SeqCst);

    // One event from its page.
    let res = d
        .form(&cookie, &format!("/ui/events/{a}/redrive"), &[])
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        format!("/ui/events/{a}?done=redrive").as_str()
    );
    d.wait_state(&a, "done").await;
    let res = d
        .form(&cookie, &format!("/ui/events/{a}/redrive"), &[])
        .await;
    assert_eq!(res.status(), 409, "not dead any more");

    // A filter: the preview counts and binds the set; a changed set is refused.
    let filter = [("scope", "filter"), ("type", "invoice.*")];
    let res = d
        .form(
            &cookie,
            "/ui/dlq/redrive",
            &[&filter[..], &[("action", "preview")]].concat(),
        )
        .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("Redrive 2 dead deliveries?"), "{html}");
    assert!(
        html.contains(&format!(
            "hookbox dlq redrive --destination app --id {b} --id {c}"
        )),
        "the CLI line"
    );
    assert!(html.contains("/v1/dlq/redrive"), "the curl line");
    let doc = Html::parse_document(&html);
    let digest = doc
        .select(&Selector::parse("input[name=digest]").unwrap())
        .next()
        .unwrap()
        .value()
        .attr("value")
        .unwrap()
        .to_owned();
    // Meanwhile one of them is redriven elsewhere (the API).
    let res = http()
        .post(d.url("/v1/dlq/redrive"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "ids": [c] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let confirm = [
        &filter[..],
        &[
            ("action", "confirm"),
            ("expect", "2"),
            ("digest", digest.as_str()),
        ],
    ]
    .concat();
    let res = d.form(&cookie, "/ui/dlq/redrive", &confirm).await;
    assert_eq!(res.status(), 409);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("changed since the preview"));
    assert_eq!(d.event(&b).await["state"], "dead", "nothing was redriven");
    // Preview again, confirm: exactly that set.
    let res = d
        .form(
            &cookie,
            "/ui/dlq/redrive",
            &[&filter[..], &[("action", "preview")]].concat(),
        )
        .await;
    let html = res.text().await.unwrap();
    assert!(html.contains("Redrive 1 dead delivery?"), "{html}");
    let doc = Html::parse_document(&html);
    let digest = doc
        .select(&Selector::parse("input[name=digest]").unwrap())
        .next()
        .unwrap()
        .value()
        .attr("value")
        .unwrap()
        .to_owned();
    let confirm = [
        &filter[..],
        &[
            ("action", "confirm"),
            ("expect", "1"),
            ("digest", digest.as_str()),
        ],
    ]
    .concat();
    let res = d.form(&cookie, "/ui/dlq/redrive", &confirm).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/ui/dlq?redriven=1");
    d.wait_state(&b, "done").await;
    d.wait_state(&c, "done").await;

    // A replay: count, confirm, progress to completion.
    let before = d.downstream.requests().len();
    let window = [
        ("since", "2020-01-01T00:00"),
        ("until", "2099-01-01T00:00"),
        ("type", "invoice.paid"),
    ];
    let res = d
        .form(
            &cookie,
            "/ui/replays",
            &[&window[..], &[("action", "preview")]].concat(),
        )
        .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("Replay 2 events?"), "{html}");
    assert!(html.contains("hookbox replay --since 2020-01-01T00:00:00Z --until 2099-01-01T00:00:00Z --type invoice.paid"), "{html}");
    let res = d
        .form(
            &cookie,
            "/ui/replays",
            &[&window[..], &[("action", "confirm")]].concat(),
        )
        .await;
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/ui/replays/"), "{location}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, html) = d.get(&cookie, &location).await;
        assert_eq!(status, 200);
        if html.contains("complete") {
            assert!(
                !html.contains("http-equiv=\"refresh\""),
                "a complete replay stops reloading"
            );
            break;
        }
        assert!(
            html.contains("http-equiv=\"refresh\""),
            "a running replay reloads itself"
        );
        assert!(
            Instant::now() < deadline,
            "the replay never completed: {html}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let replayed: Vec<_> = d.downstream.requests()[before..]
        .iter()
        .filter(|r| r.headers.contains_key("hookbox-replay"))
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(replayed.len(), 2, "{replayed:?}");
    assert!(replayed.contains(&a) && replayed.contains(&b));
    let (_, html) = d.get(&cookie, "/ui/replays").await;
    assert!(html.contains(&location), "the history lists it");

    // Replaying one event from its page: a preview of its millisecond, then the same
    // confirmation as any replay.
    let res = d
        .form(
            &cookie,
            &format!("/ui/events/{a}/replay"),
            &[("action", "preview")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("Replay 1 event?"), "{html}");
    assert!(html.contains("--source shop --type invoice.paid"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_are_listed_with_why_and_never_a_secret() {
    let d = dashboard::start("").await;
    let cookie = d.session().await;
    let body = format!(
        "{{\"secret\":\"{}\",\"pad\":\"{}\"}}",
        "s".repeat(10),
        "p".repeat(200)
    );
    let res = http()
        .post(d.server.url("/hooks/shop"))
        .header("webhook-id", "msg_refused")
        .header("webhook-timestamp", "1000")
        .header(
            "webhook-signature",
            "v1,c2lnbmF0dXJlLXZhbHVlLXNob3VsZC1ub3QtYXBwZWFy",
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = http()
        .post(d.server.url("/hooks/shop"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let (status, html) = d.get(&cookie, "/ui/rejected?source=shop").await;
    assert_eq!(status, 200);
    assert!(html.contains("timestamp_out_of_tolerance"), "{html}");
    assert!(
        html.contains("tolerance is 300 s"),
        "the skew against the tolerance"
    );
    assert!(html.contains("missing_header"), "{html}");
    assert!(!html.contains("c2lnbmF0dXJl"), "no header value is kept");
    assert!(
        !html.contains(&"p".repeat(100)),
        "only a prefix of the body"
    );
    assert!(!html.contains(dashboard::SHOP_SECRET), "no secret");
    // The overview counts them in the last hour, with the link to the list behind it.
    let (_, html) = d.get(&cookie, "/ui/").await;
    assert!(
        html.contains(r#"<a class="bad" href="/ui/rejected?source=shop">2</a>"#),
        "{html}"
    );
    assert!(
        html.contains("requests refused per minute for shop"),
        "{html}"
    );
    let (_, html) = d.get(&cookie, "/ui/sources").await;
    assert!(
        !html.contains(dashboard::SHOP_SECRET),
        "no secret on the sources page"
    );
    assert!(html.contains("sha256:"), "a fingerprint instead");
}
