//! The events list: filters in the URL, cursor paging, a live tail.

use maud::{html, Markup};

use super::{empty, layout, state, time, Nav};
use crate::admin::ops::EventRow;
use crate::ui::pages::EventFilter;

const RANGES: [(&str, &str); 5] = [
    ("", "All time"),
    ("15m", "15 min"),
    ("1h", "1 hour"),
    ("24h", "24 hours"),
    ("7d", "7 days"),
];

/// The table's rows (also the live tail's fragment).
pub(crate) fn rows(events: &[EventRow]) -> Markup {
    html! {
        @for e in events {
            tr data-id=(e.id) {
                td.mono { a href={"/ui/events/" (e.id)} { (e.id) } }
                td { (time(e.received_at)) }
                td { a.plain href={"/ui/events?source=" (enc(&e.source))} { (e.source) } }
                td.mono { (e.event_type.as_deref().unwrap_or("—")) }
                td { (state(e.state.as_str())) }
                td.num { (e.attempts) }
                td.num { (bytes(u64::from(e.body_len))) }
                td.mono.muted.clip { (e.delivery_id.as_deref().unwrap_or("")) }
            }
        }
    }
}

/// `n` bytes, short.
pub(crate) fn bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    }
}

/// A query-string value, percent-encoded.
pub(crate) fn enc(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// The whole page.
pub(crate) fn page(
    f: &EventFilter,
    sources: &[String],
    events: &[EventRow],
    next_cursor: Option<&str>,
    notice: Option<&str>,
) -> Markup {
    let tail = f.cursor.is_none().then(|| f.query_string(&[]));
    let body = html! {
        div.head {
            h1 { "Events" }
            p.muted { "Newest first. Filters live in the address bar, so a link shares this view." }
        }
        @if let Some(n) = notice { p.alert role="status" { (n) } }
        form.filters method="get" action="/ui/events" {
            label { span { "Source" }
                select name="source" {
                    option value="" { "Any" }
                    @for s in sources {
                        option value=(s) selected[f.source.as_deref() == Some(s.as_str())] { (s) }
                    }
                }
            }
            label { span { "Type" }
                input type="text" name="type" value=(f.event_type.as_deref().unwrap_or("")) placeholder="invoice.* or exact";
            }
            label { span { "State" }
                select name="state" {
                    option value="" { "Any" }
                    @for s in ["pending", "retrying", "done", "dead"] {
                        option value=(s) selected[f.state.as_deref() == Some(s)] { (s) }
                    }
                }
            }
            label { span { "Received" }
                select name="range" {
                    @for (v, l) in RANGES {
                        option value=(v) selected[f.range.as_deref().unwrap_or("") == v] { (l) }
                    }
                    option value="custom" selected[f.range.as_deref() == Some("custom")] { "Between…" }
                }
            }
            label { span { "From (UTC)" }
                input type="datetime-local" name="since" value=(f.since.as_deref().unwrap_or("")) step="1";
            }
            label { span { "To (UTC)" }
                input type="datetime-local" name="until" value=(f.until.as_deref().unwrap_or("")) step="1";
            }
            label.grow { span { "Payload filter (JSON)" }
                input type="text" name="where" value=(f.where_.as_deref().unwrap_or(""))
                    placeholder=r#"{"when":{"pointer":"/data/object/amount","gt":100}}"#
                    spellcheck="false" autocomplete="off";
            }
            label.grow { span { "Event id or provider delivery id" }
                input type="search" name="q" value=(f.q.as_deref().unwrap_or("")) placeholder="evt_… or the provider's id";
            }
            div.actions {
                button.primary type="submit" { "Apply" }
                a.button href="/ui/events" { "Reset" }
            }
        }
        div.presets {
            span.muted { "Quick: " }
            @for (v, l) in &RANGES[1..] {
                a.chip.active[f.range.as_deref() == Some(*v)] href={"/ui/events?" (f.with_range(v))} { (l) }
            }
        }
        @if events.is_empty() {
            (empty("No events match", html! {
                @if f.is_empty() { "Nothing has been received yet. Send a test webhook with " code { "hookbox send" } "." }
                @else { "Try a wider time range or fewer filters. " a href="/ui/events" { "Show all events" } }
            }))
        } @else {
            div.tablewrap {
                table.grid data-tail=[tail.as_ref().map(|q| format!("/ui/events/rows?{q}"))] {
                    thead { tr {
                        th { "Event" } th { "Received" } th { "Source" } th { "Type" }
                        th { "State" } th.num { "Attempts" } th.num { "Size" } th { "Delivery id" }
                    } }
                    tbody { (rows(events)) }
                }
            }
            div.pager {
                @if f.cursor.is_some() {
                    a.button href={"/ui/events?" (f.query_string(&[]))} { "← Newest" }
                } @else {
                    label.live hidden { input type="checkbox" data-live checked; " Live: new events appear on top" }
                }
                @if let Some(c) = next_cursor {
                    a.button href={"/ui/events?" (f.query_string(&[("cursor", c)]))} { "Older →" }
                }
            }
        }
    };
    layout("Events", Nav::Events, None, body)
}
