//! Replays: the form, the dry-run count to confirm, progress, history.

use maud::{html, Markup};

use super::{empty, equivalents, layout, time, Nav};
use crate::admin::ops::ReplayProgress;
use crate::ui::pages::ReplayForm;

fn form_fields(f: &ReplayForm, sources: &[String], destinations: &[String]) -> Markup {
    html! {
        label { span { "From (UTC)" } input type="datetime-local" name="since" value=(f.since) step="1" required; }
        label { span { "To (UTC)" } input type="datetime-local" name="until" value=(f.until) step="1" required; }
        label { span { "Source" }
            select name="source" {
                option value="" { "Any" }
                @for s in sources { option value=(s) selected[f.source.as_deref() == Some(s.as_str())] { (s) } }
            }
        }
        label { span { "Type" } input type="text" name="type" value=(f.event_type.as_deref().unwrap_or("")) placeholder="invoice.* or exact"; }
        label { span { "Only to destination" }
            select name="destination" {
                option value="" { "Every destination" }
                @for d in destinations { option value=(d) selected[f.destination.as_deref() == Some(d.as_str())] { (d) } }
            }
        }
    }
}

/// The replays page: the form and the history.
pub(crate) fn page(
    f: &ReplayForm,
    sources: &[String],
    destinations: &[String],
    history: &[ReplayProgress],
    error: Option<&str>,
) -> Markup {
    let body = html! {
        div.head {
            h1 { "Replays" }
            p.muted { "Deliver the events of a time window again. Their own history is left alone; the new deliveries carry " code { "hookbox-replay" } "." }
        }
        @if let Some(e) = error { p.alert.bad role="alert" { (e) } }
        section.card {
            h2 { "New replay" }
            div.presets {
                span.muted { "Window: " }
                @for (v, l) in [("15m", "last 15 min"), ("1h", "last hour"), ("24h", "last 24 hours"), ("7d", "last 7 days")] {
                    a.chip href={"/ui/replays?range=" (v)} { (l) }
                }
            }
            form.filters method="post" action="/ui/replays" {
                input type="hidden" name="action" value="preview";
                (form_fields(f, sources, destinations))
                div.actions { button.primary type="submit" { "Count matching events…" } }
            }
        }
        section.card {
            h2 { "History" }
            @if history.is_empty() {
                (empty("No replay yet", html! { "Replays started here, by the CLI or by the API are listed here." }))
            } @else {
                table.grid {
                    thead { tr { th { "Replay" } th { "Created" } th { "Destination" } th.num { "Matched" } th.num { "Done" } th.num { "Failed" } th { "Progress" } } }
                    tbody {
                        @for r in history {
                            tr {
                                td { a href={"/ui/replays/" (r.id)} { "#" (r.id) } }
                                td { (time(r.created_at)) }
                                td.mono { (r.destination.as_deref().unwrap_or("all")) }
                                td.num { (r.matched) } td.num { (r.done) } td.num { (r.failed) }
                                td { (bar(r)) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Replays", Nav::Replays, None, body)
}

fn bar(r: &ReplayProgress) -> Markup {
    let finished = r.done + r.failed;
    let pct = (finished * 100)
        .checked_div(r.matched)
        .map_or(100, |p| p.min(100));
    html! {
        progress value=(pct) max="100" aria-label="progress" { (pct) "%" }
        " " span.muted { (pct) "%" }
    }
}

/// The dry run's count, with the form that starts the replay.
pub(crate) fn preview(f: &ReplayForm, matched: u64, cli: &str, curl: &str) -> Markup {
    let body = html! {
        nav.crumbs { a href="/ui/replays" { "Replays" } " / confirm" }
        div.head { h1 { "Replay " (matched) " event" @if matched != 1 { "s" } "?" } }
        section.card {
            dl.kv {
                dt { "Window" } dd { (f.since) " → " (f.until) " UTC" }
                dt { "Source" } dd { (f.source.as_deref().unwrap_or("any")) }
                dt { "Type" } dd.mono { (f.event_type.as_deref().unwrap_or("any")) }
                dt { "Destination" } dd { (f.destination.as_deref().unwrap_or("every destination of each source")) }
            }
            @if matched == 0 {
                p.muted { "Nothing was received in this window with these filters." }
                p { a.button href="/ui/replays" { "Back" } }
            } @else {
                form method="post" action="/ui/replays" {
                    input type="hidden" name="action" value="confirm";
                    input type="hidden" name="since" value=(f.since);
                    input type="hidden" name="until" value=(f.until);
                    @if let Some(s) = &f.source { input type="hidden" name="source" value=(s); }
                    @if let Some(t) = &f.event_type { input type="hidden" name="type" value=(t); }
                    @if let Some(d) = &f.destination { input type="hidden" name="destination" value=(d); }
                    div.actions {
                        button.primary type="submit" { "Start the replay" }
                        a.button href="/ui/replays" { "Cancel" }
                    }
                }
            }
            (equivalents(cli, curl))
        }
    };
    layout("Confirm replay", Nav::Replays, None, body)
}

/// One replay's progress; reloads itself every 2 s until complete.
pub(crate) fn progress(r: &ReplayProgress, rate: f64, left_secs: Option<u64>) -> Markup {
    let (id, complete) = (r.id, r.complete);
    let body = html! {
        nav.crumbs { a href="/ui/replays" { "Replays" } " / #" (id) }
        div.head {
            h1 { "Replay #" (id) " "
                @if complete { span.badge.ok { "complete" } } @else { span.badge.warn { "running" } }
            }
            p.muted { "Created " (time(r.created_at)) " · to " (r.destination.as_deref().unwrap_or("every destination")) }
        }
        section.card {
            div.stats {
                div.stat { span.label { "Matched" } span.value data-stat="matched" { (r.matched) } }
                div.stat { span.label { "Done" } span.value data-stat="done" { (r.done) } }
                div.stat { span.label { "Failed" } span.value data-stat="failed" { (r.failed) } }
                div.stat { span.label { "Rate" } span.value {
                    @if complete { "—" } @else { (format!("{rate:.1}")) " /s" }
                } }
                div.stat { span.label { "Time left" } span.value {
                    @if complete { "—" } @else if let Some(s) = left_secs { (human(s)) } @else { "estimating" }
                } }
            }
            p { (bar(r)) }
            @if !complete { p.muted { "This page refreshes by itself every 2 seconds." } }
        }
    };
    layout(
        &format!("Replay #{id}"),
        Nav::Replays,
        (!complete).then_some(2),
        body,
    )
}

/// Seconds as `1h 2m`, `3m 4s` or `5s`.
pub(crate) fn human(s: u64) -> String {
    if s >= 3600 {
        format!("{}h {}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m {}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
