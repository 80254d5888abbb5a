//! Dead letters, one row per dead (event, destination) delivery: filters, failures
//! grouped, per-row redrive, selection and filter redrive with a bound preview.

use maud::{html, Markup};

use super::{empty, equivalents, layout, time, Nav};
use crate::admin::ops::RedriveRequest;
use crate::ui::pages::{DeadFilter, DeadRow};

/// A delivery's destination, `—` for a source's only, unnamed one.
fn destination(r: &DeadRow) -> &str {
    r.destination.as_deref().unwrap_or("—")
}

/// The list page.
pub(crate) fn page(
    f: &DeadFilter,
    sources: &[String],
    groups: &[(String, usize)],
    rows: &[DeadRow],
    truncated: bool,
    notice: Option<&str>,
) -> Markup {
    let body = html! {
        div.head {
            h1 { "Dead letters" }
            p.muted { "Deliveries that gave up, one row per event and destination. Redrive sends one again from attempt 1, to that destination only; its history stays." }
        }
        @if let Some(n) = notice { p.alert.good role="status" { (n) } }
        form.filters method="get" action="/ui/dlq" {
            label { span { "Source" }
                select name="source" {
                    option value="" { "Any" }
                    @for s in sources { option value=(s) selected[f.source.as_deref() == Some(s.as_str())] { (s) } }
                }
            }
            label { span { "Type" } input type="text" name="type" value=(f.event_type.as_deref().unwrap_or("")) placeholder="invoice.* or exact"; }
            label.grow { span { "Error contains" } input type="search" name="error" value=(f.error.as_deref().unwrap_or("")); }
            @if let Some(g) = &f.group { input type="hidden" name="group" value=(g); }
            div.actions {
                button.primary type="submit" { "Apply" }
                a.button href="/ui/dlq" { "Reset" }
            }
        }
        @if !groups.is_empty() {
            section.card {
                h2 { "Failures by destination, status and error" }
                table.grid.compact {
                    thead { tr { th { "Failure" } th.num { "Deliveries" } th {} } }
                    tbody {
                        @for (g, n) in groups {
                            tr.selected[f.group.as_deref() == Some(g.as_str())] {
                                td.mono.wrap { (g) }
                                td.num { (n) }
                                td { a href={"/ui/dlq?" (f.with_group(g))} { "Show" } }
                            }
                        }
                    }
                }
            }
        }
        @if rows.is_empty() {
            (empty("The dead-letter queue is empty", html! {
                @if f.is_empty() { "Nothing has given up. A delivery lands here after its last retry, or at once on a permanent status." }
                @else { "No dead delivery matches these filters. " a href="/ui/dlq" { "Show all" } }
            }))
        } @else {
            @if truncated { p.alert.warn { "Showing the oldest " (rows.len()) " dead deliveries; narrow the filters to see the rest." } }
            form method="post" action="/ui/dlq/redrive" {
                input type="hidden" name="action" value="preview";
                div.tablewrap {
                    table.grid {
                        thead { tr {
                            th { input type="checkbox" data-select-all aria-label="Select all" hidden; }
                            th { "Event" } th { "Source" } th { "Destination" } th { "Type" } th { "Dead since" } th.num { "Attempts" } th { "Last error" } th {}
                        } }
                        tbody {
                            @for r in rows {
                                @let key = r.key();
                                tr {
                                    td { input type="checkbox" name="id" value=(key) aria-label={"select " (r.id) " to " (destination(r))}; }
                                    td.mono { a href={"/ui/events/" (r.id)} { (r.id) } }
                                    td { (r.source) }
                                    td.mono { (destination(r)) }
                                    td.mono { (r.event_type.as_deref().unwrap_or("—")) }
                                    td { @if let Some(t) = r.dead_at { (time(t)) } }
                                    td.num { (r.attempts) }
                                    td.mono.wrap { (r.last_error.as_deref().unwrap_or("")) }
                                    td { button.small type="submit" form="dlq-one" name="id" value=(key) aria-label={"redrive " (r.id) " to " (destination(r))} { "Redrive" } }
                                }
                            }
                        }
                    }
                }
                div.pager {
                    button.primary type="submit" { "Redrive selected…" }
                }
            }
            // The rows' own buttons submit this form: one delivery, nothing else.
            form #dlq-one method="post" action="/ui/dlq/redrive" {
                input type="hidden" name="action" value="one";
                (f.hidden())
            }
            form.inline method="post" action="/ui/dlq/redrive" {
                input type="hidden" name="action" value="preview";
                input type="hidden" name="scope" value="filter";
                (f.hidden())
                button type="submit" { "Redrive everything matching these filters…" }
            }
        }
    };
    layout("Dead letters", Nav::Dlq, None, body)
}

/// The preview of a bulk redrive, with the form that confirms exactly this set.
pub(crate) fn preview(
    rows: &[DeadRow],
    f: &DeadFilter,
    scope_filter: bool,
    digest: &str,
    cli: &str,
    curl: &str,
) -> Markup {
    let body = html! {
        nav.crumbs { a href="/ui/dlq" { "Dead letters" } " / redrive" }
        div.head { h1 { "Redrive " (rows.len()) " dead deliver" @if rows.len() == 1 { "y" } @else { "ies" } "?" } }
        @if rows.is_empty() {
            (empty("Nothing to redrive", html! { "No dead delivery is selected or matches. " a href="/ui/dlq" { "Back" } }))
        } @else {
            section.card {
                p { "Exactly these deliveries go back to pending and are delivered again, each to its own destination only: an event's other destinations keep their state. If the set changes before you confirm (a delivery is redriven or dies meanwhile), nothing is done and you are asked again." }
                table.grid.compact {
                    thead { tr { th { "Event" } th { "Source" } th { "Destination" } th { "Last error" } } }
                    tbody {
                        @for r in rows.iter().take(20) {
                            tr { td.mono { (r.id) } td { (r.source) } td.mono { (destination(r)) } td.mono.wrap { (r.last_error.as_deref().unwrap_or("")) } }
                        }
                        @if rows.len() > 20 { tr { td colspan="4" { "… and " (rows.len() - 20) " more" } } }
                    }
                }
                form method="post" action="/ui/dlq/redrive" {
                    input type="hidden" name="action" value="confirm";
                    input type="hidden" name="expect" value=(rows.len());
                    input type="hidden" name="digest" value=(digest);
                    @if scope_filter {
                        input type="hidden" name="scope" value="filter";
                        (f.hidden())
                    } @else {
                        @for r in rows { input type="hidden" name="id" value=(r.key()); }
                    }
                    div.actions {
                        button.primary type="submit" { "Redrive " (rows.len()) }
                        a.button href={"/ui/dlq?" (f.query_string())} { "Cancel" }
                    }
                }
                (equivalents(cli, curl))
            }
        }
    };
    layout("Redrive", Nav::Dlq, None, body)
}

/// `hookbox dlq redrive` and `curl` for redrives of ids (one line each: one per
/// destination).
pub(crate) fn commands(redrives: &[RedriveRequest], admin_url: &str) -> (String, String) {
    let mut cli = Vec::new();
    let mut curl = Vec::new();
    for r in redrives {
        let ids: Vec<String> = r.ids.iter().flatten().map(ToString::to_string).collect();
        let mut line = "hookbox dlq redrive".to_owned();
        if let Some(d) = &r.destination {
            line.push_str(&format!(" --destination {d}"));
        }
        for i in &ids {
            line.push_str(&format!(" --id {i}"));
        }
        cli.push(line);
        let json = match &r.destination {
            Some(d) => serde_json::json!({ "ids": ids, "destination": d }),
            None => serde_json::json!({ "ids": ids }),
        }
        .to_string();
        curl.push(format!(
            "curl -X POST -H \"Authorization: Bearer $HOOKBOX_ADMIN_TOKEN\" -H 'content-type: application/json' -d '{json}' {admin_url}/v1/dlq/redrive"
        ));
    }
    (cli.join("\n"), curl.join("\n"))
}
