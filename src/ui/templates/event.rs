//! One event: headers (signatures masked), body, each destination's delivery, the
//! attempt timeline, a diff of two attempts, and its actions.

use maud::{html, Markup};
use serde_json::Value;

use crate::admin::ops::{AttemptRecord, EventDetail};

use super::events::{bytes, enc};
use super::{equivalents, layout, rfc3339, state, time, Nav};

/// How the body is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    Pretty,
    Raw,
    Hex,
}

/// Header names whose values are credentials or signatures: shown masked.
pub(crate) fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "signature",
        "hmac",
        "token",
        "secret",
        "authorization",
        "cookie",
        "api-key",
        "apikey",
        "x-hub-signature",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// A hex dump: offset, 16 bytes, their printable ASCII.
pub(crate) fn hexdump(body: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in body.chunks(16).take(4096).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("{:08x}  {:<47}  {ascii}\n", i * 16, hex.join(" ")));
    }
    if body.len() > 16 * 4096 {
        out.push_str("… (first 64 KiB shown; download the raw body for the rest)\n");
    }
    out
}

/// Words of `a` and `b` aligned: `(text, -1 removed | 0 same | 1 added)`.
pub(crate) fn word_diff(a: &str, b: &str) -> Vec<(String, i8)> {
    let x: Vec<&str> = a.split_inclusive(' ').collect();
    let y: Vec<&str> = b.split_inclusive(' ').collect();
    if x.len() * y.len() > 250_000 {
        return vec![(a.to_owned(), -1), (b.to_owned(), 1)];
    }
    let mut lcs = vec![vec![0u32; y.len() + 1]; x.len() + 1];
    for i in (0..x.len()).rev() {
        for j in (0..y.len()).rev() {
            lcs[i][j] = if x[i] == y[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::<(String, i8)>::new());
    let mut push = |s: &str, k: i8| match out.last_mut() {
        Some((t, kk)) if *kk == k => t.push_str(s),
        _ => out.push((s.to_owned(), k)),
    };
    while i < x.len() || j < y.len() {
        if i < x.len() && j < y.len() && x[i] == y[j] {
            push(x[i], 0);
            i += 1;
            j += 1;
        } else if j < y.len() && (i == x.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            push(y[j], 1);
            j += 1;
        } else {
            push(x[i], -1);
            i += 1;
        }
    }
    out
}

fn attempt_label(a: &AttemptRecord) -> String {
    match a.replay {
        Some(r) => format!("#{} (replay {r})", a.n),
        None => format!("#{}", a.n),
    }
}

fn diff_table(a: &AttemptRecord, b: &AttemptRecord) -> Markup {
    let fields = |x: &AttemptRecord| {
        [
            ("Started", rfc3339(x.started_at)),
            ("Duration (ms)", x.duration_ms.to_string()),
            ("Outcome", x.outcome.as_str().to_owned()),
            (
                "Destination",
                x.destination.clone().unwrap_or_else(|| "—".to_owned()),
            ),
            (
                "Replay",
                x.replay.map_or_else(|| "—".to_owned(), |r| r.to_string()),
            ),
        ]
    };
    let ea = a.error.as_deref().unwrap_or("");
    let eb = b.error.as_deref().unwrap_or("");
    html! {
        table.grid.diff {
            thead { tr { th { "" } th { "Attempt " (attempt_label(a)) } th { "Attempt " (attempt_label(b)) } } }
            tbody {
                @for ((label, va), (_, vb)) in fields(a).into_iter().zip(fields(b)) {
                    tr.changed[va != vb] { th { (label) } td.mono { (va) } td.mono { (vb) } }
                }
                tr.changed[ea != eb] {
                    th { "Error" }
                    td.mono.wrap { @for (t, k) in word_diff(ea, eb) { @if k == -1 { del { (t) } } @else if k == 0 { (t) } } }
                    td.mono.wrap { @for (t, k) in word_diff(ea, eb) { @if k == 1 { ins { (t) } } @else if k == 0 { (t) } } }
                }
            }
        }
    }
}

/// Everything the page shows.
pub(crate) struct EventPage<'a> {
    pub(crate) event: &'a EventDetail,
    pub(crate) body: &'a [u8],
    pub(crate) view: View,
    pub(crate) diff: Option<(usize, usize)>,
    pub(crate) notice: Option<&'a str>,
    pub(crate) admin_url: &'a str,
}

/// The page.
pub(crate) fn page(p: &EventPage<'_>) -> Markup {
    let e = p.event;
    let id = e.id.to_string();
    let st = e.state.map_or("unknown", |s| s.as_str());
    let attempts = &e.attempts;
    let headers = &e.headers;
    let base = format!("/ui/events/{id}");
    let view_link = |v: &str| {
        let mut q = format!("{base}?view={v}");
        if let Some((a, b)) = p.diff {
            q.push_str(&format!("&a={a}&b={b}"));
        }
        q
    };
    let body_text = String::from_utf8_lossy(p.body);
    let pretty = serde_json::from_slice::<Value>(p.body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    let delivery = e.delivery.as_ref();
    let next_at = delivery.and_then(|d| d.next_at);
    // Named destinations get their own table; a source's only delivery is the summary.
    let named = e.destinations.iter().any(|d| d.destination.is_some());
    let any_dead = st == "dead" || e.destinations.iter().any(|d| d.state.as_str() == "dead");
    let body = html! {
        nav.crumbs { a href="/ui/events" { "Events" } " / " span.mono { (id) } }
        div.head {
            h1.mono { (id) " " (state(st)) }
            p.muted {
                a.plain href={"/ui/events?source=" (enc(&e.source))} { (e.source) }
                " · " span.mono { (e.event_type.as_deref().unwrap_or("no type")) }
                " · received " (time(e.received_at))
                " · " (bytes(e.body_len as u64))
            }
        }
        @if let Some(n) = p.notice { p.alert.good role="status" { (n) } }
        div.cols {
            section.card {
                h2 { "Delivery" }
                dl.kv {
                    dt { "Scheme" } dd.mono { (e.scheme) }
                    dt { "Provider delivery id" } dd.mono { (e.delivery_id.as_deref().unwrap_or("—")) }
                    dt { "Attempts" } dd { (delivery.map_or(0, |d| d.attempts)) }
                    dt { "Redrives" } dd { (delivery.map_or(0, |d| d.redrives)) }
                    @if let Some(t) = next_at { dt { "Next attempt" } dd { (time(t)) } }
                    @if let Some(t) = delivery.and_then(|d| d.dead_at) { dt { "Dead since" } dd { (time(t)) } }
                    @if let Some(err) = delivery.and_then(|d| d.last_error.as_deref()) { dt { "Last failure" } dd.mono.wrap { (err) } }
                }
            }
            section.card {
                h2 { "Actions" }
                @if any_dead {
                    form.inline method="post" action={(base) "/redrive"} {
                        button.primary type="submit" { "Redrive" }
                        span.muted { " Its dead deliveries back to pending; delivered again at once." }
                    }
                    (equivalents(&format!("hookbox dlq redrive --id {id}"),
                        &format!("curl -X POST -H \"Authorization: Bearer $HOOKBOX_ADMIN_TOKEN\" -H 'content-type: application/json' -d '{{\"ids\":[\"{id}\"]}}' {}/v1/dlq/redrive", p.admin_url)))
                }
                form.inline method="post" action={(base) "/replay"} {
                    input type="hidden" name="action" value="preview";
                    button type="submit" { "Replay this event…" }
                    span.muted { " Shows what would be delivered first." }
                }
                p { a.button href={(base) "/raw"} download { "Download raw body" } }
            }
        }
        @if named {
            section.card {
                h2 { "Destinations" }
                p.muted.small { "Each destination has its own delivery: its own attempts, retries and dead state." }
                div.tablewrap {
                    table.grid {
                        thead { tr { th { "Destination" } th { "State" } th.num { "Attempts" } th { "Next attempt" } th { "Last error" } th.num { "Redrives" } th {} } }
                        tbody {
                            @for d in &e.destinations {
                                @let name = d.destination.as_deref().unwrap_or("—");
                                tr {
                                    td.mono { (name) }
                                    td {
                                        (state(d.state.as_str()))
                                        @if let Some(head) = d.waiting_for {
                                            " " span.muted.waiting { "behind " a.mono href={"/ui/events/" (head)} { (head) } }
                                        }
                                    }
                                    td.num { (d.delivery.attempts) }
                                    td { @if let Some(t) = d.delivery.next_at { (time(t)) } @else { "—" } }
                                    td.mono.wrap { (d.delivery.last_error.as_deref().unwrap_or("")) }
                                    td.num { (d.delivery.redrives) }
                                    td {
                                        @if let (Some(dest), "dead") = (&d.destination, d.state.as_str()) {
                                            form.inline method="post" action={(base) "/redrive"} {
                                                input type="hidden" name="destination" value=(dest);
                                                button.small type="submit" aria-label={"redrive the delivery to " (dest)} { "Redrive " (dest) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Attempts" }
            @if attempts.is_empty() {
                p.muted {
                    "No attempt yet."
                    @if let Some(head) = e.destinations.iter().find_map(|d| d.waiting_for) {
                        " It waits behind " a.mono href={"/ui/events/" (head)} { (head) } ", an earlier event of its ordering key that is not done yet."
                    } @else if st == "pending" {
                        " The event is waiting for its first delivery."
                    }
                }
            } @else {
                form method="get" action={(base) "#diff"} {
                    input type="hidden" name="view" value=(match p.view { View::Pretty => "pretty", View::Raw => "raw", View::Hex => "hex" });
                    table.grid {
                        thead { tr { th { "A" } th { "B" } th { "Attempt" } th { "Destination" } th { "Started" } th.num { "Duration" } th { "Outcome" } th { "Error" } } }
                        tbody {
                            @for (i, a) in attempts.iter().enumerate() {
                                tr {
                                    td { input type="radio" name="a" value=(i) checked[p.diff.map_or(i + 2 == attempts.len(), |d| d.0 == i)] aria-label={"compare attempt " (attempt_label(a)) " as A"}; }
                                    td { input type="radio" name="b" value=(i) checked[p.diff.map_or(i + 1 == attempts.len(), |d| d.1 == i)] aria-label={"compare attempt " (attempt_label(a)) " as B"}; }
                                    td.mono { (attempt_label(a)) }
                                    td.mono { (a.destination.as_deref().unwrap_or("—")) }
                                    td { (time(a.started_at)) }
                                    td.num { (a.duration_ms) " ms" }
                                    td { (state(a.outcome.as_str())) }
                                    td.mono.wrap { (a.error.as_deref().unwrap_or("")) }
                                }
                            }
                            @if let Some(t) = next_at {
                                tr.next { td {} td {} td.mono { "next" } td {} td { (time(t)) } td {} td { span.badge { "scheduled" } } td {} }
                            }
                        }
                    }
                    @if attempts.len() > 1 {
                        button type="submit" { "Compare A and B" }
                    }
                }
                @if let Some((a, b)) = p.diff {
                    @if let (Some(a), Some(b)) = (attempts.get(a), attempts.get(b)) {
                        h3 #diff { "Attempt " (attempt_label(a)) " vs " (attempt_label(b)) }
                        (diff_table(a, b))
                    }
                }
            }
        }
        section.card {
            h2 { "Headers" }
            table.grid.compact {
                tbody {
                    @for [name, value] in headers {
                        tr {
                            th.mono { (name) }
                            @if is_secret_header(name) {
                                td.mono.muted { "•••••• masked (" (value.len()) " chars)" }
                            } @else {
                                td.mono.wrap { (value) }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            div.cardhead {
                h2 { "Body" }
                nav.tabs {
                    a href=(view_link("pretty")) class=[(p.view == View::Pretty).then_some("active")] { "Pretty" }
                    a href=(view_link("raw")) class=[(p.view == View::Raw).then_some("active")] { "Raw" }
                    a href=(view_link("hex")) class=[(p.view == View::Hex).then_some("active")] { "Hex" }
                }
            }
            @match p.view {
                View::Pretty => {
                    @if let Some(pretty) = &pretty {
                        p.muted.small { "Indented, keys sorted. Raw shows the bytes as received." }
                        pre.body { code { (pretty) } }
                    }
                    @else { p.muted { "Not JSON; shown as text." } pre.body { code { (body_text) } } }
                }
                View::Raw => { pre.body { code { (body_text) } } }
                View::Hex => { pre.body.hex { code { (hexdump(p.body)) } } }
            }
        }
    };
    layout(&id, Nav::Events, None, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_keeps_common_words() {
        let d = word_diff("HTTP 500: boom", "HTTP 503: boom");
        assert_eq!(d[0], ("HTTP ".to_owned(), 0));
        assert!(d.iter().any(|(t, k)| t == "500: " && *k == -1));
        assert!(d.iter().any(|(t, k)| t == "503: " && *k == 1));
    }

    #[test]
    fn signature_headers_are_masked() {
        assert!(is_secret_header("Stripe-Signature"));
        assert!(is_secret_header("x-hub-signature-256"));
        assert!(is_secret_header("X-Shopify-Hmac-Sha256"));
        assert!(!is_secret_header("content-type"));
    }
}
