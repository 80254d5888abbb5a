//! The dashboard in a real headless Chromium: sign in, filter events, open one, compare
//! two attempts, redrive a dead event and see it delivered, replay a window and watch
//! it complete, sign out. A screenshot of every page goes to `target/ui-screenshots/`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fantoccini::Locator;

use crate::support::chromium;
use crate::support::dashboard::{self, TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_finds_a_failure_redrives_it_and_replays_a_window() {
    let Some(b) = chromium::start("ui_browser").await else {
        return;
    };
    let started = Instant::now();
    let d = dashboard::start("").await;
    let c = &b.client;

    // Some history: delivered orders, two that fail for good, a refused request.
    for (i, kind) in [
        "order.created",
        "order.paid",
        "order.created",
        "customer.updated",
    ]
    .iter()
    .enumerate()
    {
        d.post(
            &format!(
                r#"{{"type":"{kind}","data":{{"n":{i},"amount":{}}}}}"#,
                1000 + i
            ),
            &[],
        )
        .await;
    }
    let dead = d
        .post(
            r#"{"type":"order.refunded","data":{"note":"fail this one"}}"#,
            &[],
        )
        .await;
    let dead2 = d
        .post(
            r#"{"type":"order.refunded","data":{"note":"fail again"}}"#,
            &[],
        )
        .await;
    d.wait_state(&dead, "dead").await;
    d.wait_state(&dead2, "dead").await;
    let refused = dashboard::http()
        .post(d.server.url("/hooks/shop"))
        .header("webhook-id", "msg_x")
        .header("webhook-timestamp", "1")
        .header("webhook-signature", "v1,bm90IGEgc2lnbmF0dXJl")
        .body(r#"{"type":"order.created"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // Signing in: any page sends the browser to the form first.
    c.goto(&d.url("/ui/events")).await.unwrap();
    wait_for(c, "input[name=token]").await;
    b.shot("01-login").await;
    let form = c
        .form(Locator::Css("form[action='/ui/login']"))
        .await
        .unwrap();
    form.set_by_name("token", TOKEN).await.unwrap();
    form.submit().await.unwrap();
    wait_for(c, "table.grid").await;
    assert!(c
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/ui/events"));

    // Filtering: the filters end up in the address bar.
    let form = c.form(Locator::Css("form.filters")).await.unwrap();
    form.set_by_name("type", "order.*").await.unwrap();
    form.submit().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !query_of(c).await.contains("type=order.*&") {
        assert!(
            Instant::now() < deadline,
            "the filter never reached the URL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for(c, "table.grid").await;
    let rows = c
        .find_all(Locator::Css("table.grid tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 5, "five order.* events");
    b.shot("02-events-filtered").await;

    // Live tail: an event posted now appears without a reload.
    d.post(r#"{"type":"order.created","data":{"live":true}}"#, &[])
        .await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("table.grid tbody tr.fresh"))
        .await
        .unwrap();
    assert_eq!(
        c.find_all(Locator::Css("table.grid tbody tr"))
            .await
            .unwrap()
            .len(),
        6
    );

    // The dead event: its two attempts, compared.
    click(c, Locator::Css(&format!("a[href='/ui/events/{dead}']"))).await;
    wait_for(c, "input[name=a]").await;
    b.shot("03-event-dead").await;
    click(
        c,
        Locator::XPath("//button[contains(., 'Compare A and B')]"),
    )
    .await;
    let diff = wait_for(c, "table.diff").await;
    let text = diff.text().await.unwrap();
    assert!(
        text.contains(r#""attempt":1"#) && text.contains(r#""attempt":2"#),
        "{text}"
    );
    c.find(Locator::Id("diff")).await.unwrap();
    b.shot("04-attempt-diff").await;

    // Dead letters: the two failures grouped; redrive one from the list, delivered.
    d.failing.store(false, Ordering::SeqCst);
    c.goto(&d.url("/ui/dlq")).await.unwrap();
    wait_for(c, "input[name=id]").await;
    b.shot("05-dead-letters").await;
    click(
        c,
        Locator::Css(&format!("input[name=id][value='{dead2}/app']")),
    )
    .await;
    click(
        c,
        Locator::XPath("//button[contains(., 'Redrive selected')]"),
    )
    .await;
    wait_for(c, "input[name=digest]").await;
    b.shot("06-redrive-preview").await;
    click(c, Locator::XPath("//button[starts-with(., 'Redrive 1')]")).await;
    b.wait_text("Redriven 1 dead delivery", Duration::from_secs(5), None)
        .await;
    d.wait_state(&dead2, "done").await;

    // The other one, from its own page.
    c.goto(&d.url(&format!("/ui/events/{dead}"))).await.unwrap();
    click(c, Locator::XPath("//button[.='Redrive']")).await;
    b.wait_text("Redriven", Duration::from_secs(5), None).await;
    // The Destinations table's badge (and the last attempt's outcome).
    b.wait_text(
        "done",
        Duration::from_secs(15),
        Some(Duration::from_millis(500)),
    )
    .await;
    b.shot("07-event-delivered").await;

    // A replay of the last hour: count, confirm, watch it complete.
    c.goto(&d.url("/ui/replays")).await.unwrap();
    wait_for(c, "input[name=since]").await;
    let form = c
        .form(Locator::Css("form[action='/ui/replays']"))
        .await
        .unwrap();
    form.submit().await.unwrap();
    c.wait()
        .for_element(Locator::XPath("//button[.='Start the replay']"))
        .await
        .unwrap();
    b.shot("08-replay-confirm").await;
    click(c, Locator::XPath("//button[.='Start the replay']")).await;
    b.wait_text("complete", Duration::from_secs(20), None).await;
    b.shot("09-replay-complete").await;
    c.goto(&d.url("/ui/replays")).await.unwrap();
    b.shot("10-replays").await;

    // The other pages.
    for (path, name) in [
        ("/ui/", "11-overview"),
        ("/ui/rejected", "12-rejected"),
        ("/ui/sources", "13-sources"),
    ] {
        c.goto(&d.url(path)).await.unwrap();
        wait_for(c, "main h1").await;
        b.shot(name).await;
    }

    // Signing out: the session is gone.
    c.goto(&d.url("/ui/")).await.unwrap();
    click(c, Locator::XPath("//button[.='Log out']")).await;
    wait_for(c, "input[name=token]").await;
    c.goto(&d.url("/ui/events")).await.unwrap();
    wait_for(c, "input[name=token]").await;
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));

    b.close().await;

    // The dark theme, as a browser whose system prefers it sees the dashboard.
    let dark = chromium::start_with(
        "ui_browser (dark)",
        &[
            "--force-dark-mode",
            "--blink-settings=preferredColorScheme=0",
        ],
    )
    .await
    .expect("the same Chromium starts again");
    let c = &dark.client;
    c.goto(&d.url(&format!("/ui/login?next=/ui/events/{dead}")))
        .await
        .unwrap();
    let form = c
        .form(Locator::Css("form[action='/ui/login']"))
        .await
        .unwrap();
    form.set_by_name("token", TOKEN).await.unwrap();
    form.submit().await.unwrap();
    wait_for(c, "table.grid").await;
    let bg = c
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .css_value("background-color")
        .await
        .unwrap();
    assert!(
        bg.contains("15, 18, 22"),
        "the dark palette follows the system: {bg}"
    );
    dark.shot("14-event-dark").await;
    dark.close().await;
    eprintln!(
        "ui_browser: the whole flow took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        chromium::screenshot_dir().display()
    );
}

/// The current URL's query, decoded, as `k=v&` pairs.
async fn query_of(c: &fantoccini::Client) -> String {
    let u = c.current_url().await.unwrap();
    form_urlencoded::parse(u.query().unwrap_or("").as_bytes())
        .map(|(k, v)| format!("{k}={v}&"))
        .collect()
}

/// Clicks the element `at` finds.
async fn click(c: &fantoccini::Client, at: Locator<'_>) {
    c.find(at).await.unwrap().click().await.unwrap();
}

/// Waits for the element `css` finds.
async fn wait_for(c: &fantoccini::Client, css: &str) -> fantoccini::elements::Element {
    c.wait().for_element(Locator::Css(css)).await.unwrap()
}
