//! The overview: per source, per destination, the journal; every number links to the
//! list behind it.

use maud::{html, Markup};

use super::events::enc;
use super::replays::human;
use super::{empty, layout, sparkline, Nav};

/// One source's row.
#[derive(Debug, Default)]
pub(crate) struct SourceRow {
    pub(crate) name: String,
    pub(crate) received_hour: u64,
    /// True when the last hour held more events than were counted.
    pub(crate) at_least: bool,
    /// Events received per minute over the last hour, oldest first.
    pub(crate) per_minute: Vec<u64>,
    /// Requests refused in the last hour (by this process), and per minute.
    pub(crate) rejected: u64,
    pub(crate) rejected_per_minute: Vec<u64>,
    /// Requests shed (429/503) in the last hour (by this process), and per minute.
    pub(crate) shed: u64,
    pub(crate) shed_per_minute: Vec<u64>,
    pub(crate) backlog: u64,
    pub(crate) oldest_pending_secs: Option<u64>,
    /// True when more events are pending than were looked at: the oldest is older.
    pub(crate) oldest_at_least: bool,
    /// Dead deliveries of its events (one per event and destination that gave up).
    pub(crate) dead: u64,
}

/// One destination's row.
#[derive(Debug, Default)]
pub(crate) struct DestinationRow {
    pub(crate) name: String,
    pub(crate) delivered: u64,
    pub(crate) failed: u64,
    pub(crate) mean_ms: Option<f64>,
}

/// The journal's health.
#[derive(Debug, Default)]
pub(crate) struct Health {
    pub(crate) ready: bool,
    pub(crate) reason: String,
    pub(crate) queued: u64,
    pub(crate) capacity: u64,
    pub(crate) commit_mean_ms: Option<f64>,
    /// Dead deliveries, over every source.
    pub(crate) dead: u64,
    pub(crate) total: u64,
}

/// The page.
pub(crate) fn page(sources: &[SourceRow], dests: &[DestinationRow], h: &Health) -> Markup {
    let body = html! {
        div.head {
            h1 { "Overview" }
            p.muted { "The last hour, and the journal as it is now. Rejected and shed requests are those this process answered; deliveries count since it started." }
        }
        div.stats.top {
            div.stat { span.label { "Journal" } span.value {
                @if h.ready { span.badge.ok { "ready" } } @else { span.badge.bad { "not ready" } }
            } span.sub { (h.reason) } }
            div.stat { span.label { "Events held" } a.value href="/ui/events" { (h.total) } }
            div.stat { span.label { "Dead deliveries" } a.value.bad[h.dead > 0] href="/ui/dlq" { (h.dead) } }
            div.stat { span.label { "Writer queue" } span.value { (h.queued) " / " (h.capacity) } }
            div.stat { span.label { "Mean commit" } span.value {
                @if let Some(ms) = h.commit_mean_ms { (format!("{ms:.2}")) " ms" } @else { "—" }
            } }
        }
        section.card {
            h2 { "Sources" }
            @if sources.is_empty() {
                (empty("No source yet", html! { "Configure a " code { "[[source]]" } " and send it a webhook." }))
            } @else {
                table.grid {
                    thead { tr {
                        th { "Source" } th colspan="2" { "Received, last hour" } th colspan="2" { "Rejected" } th colspan="2" { "Shed" }
                        th.num { "Backlog" } th.num { "Oldest pending" } th.num { "Dead deliveries" }
                    } }
                    tbody {
                        @for s in sources {
                            @let q = enc(&s.name);
                            tr {
                                td { a href={"/ui/events?source=" (q)} { (s.name) } }
                                td { (sparkline(&s.per_minute, &format!("events per minute for {}", s.name))) }
                                td.num { a href={"/ui/events?range=1h&source=" (q)} { @if s.at_least { "≥" } (s.received_hour) } }
                                td { (sparkline(&s.rejected_per_minute, &format!("requests refused per minute for {}", s.name))) }
                                td.num { a.bad[s.rejected > 0] href={"/ui/rejected?source=" (q)} { (s.rejected) } }
                                td { (sparkline(&s.shed_per_minute, &format!("requests shed per minute for {}", s.name))) }
                                td.num { a href={"/ui/rejected?source=" (q)} { (s.shed) } }
                                td.num { a href={"/ui/events?state=pending&source=" (q)} { (s.backlog) } }
                                td.num { @if let Some(a) = s.oldest_pending_secs { a href={"/ui/events?state=pending&source=" (q)} { @if s.oldest_at_least { "≥ " } (human(a)) } } @else { "—" } }
                                td.num { a.bad[s.dead > 0] href={"/ui/dlq?source=" (q)} { (s.dead) } }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Destinations" }
            @if dests.is_empty() {
                (empty("No destination", html! { "Events are journaled and wait until a " code { "[[destination]]" } " is configured." }))
            } @else {
                table.grid {
                    thead { tr { th { "Destination" } th.num { "Delivered" } th.num { "Failed" } th.num { "Success rate" } th.num { "Mean latency" } } }
                    tbody {
                        @for d in dests {
                            @let total = d.delivered + d.failed;
                            tr {
                                td { a href="/ui/sources" { (d.name) } }
                                td.num { (d.delivered) }
                                td.num { a href={"/ui/dlq?error=" (enc(&format!("{}: ", d.name)))} { (d.failed) } }
                                td.num { @if total > 0 { (format!("{:.1}", d.delivered as f64 * 100.0 / total as f64)) " %" } @else { "—" } }
                                td.num { @if let Some(ms) = d.mean_ms { (format!("{ms:.1}")) " ms" } @else { "—" } }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Overview", Nav::Overview, None, body)
}
