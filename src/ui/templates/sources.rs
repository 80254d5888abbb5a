//! Sources and destinations as configured, with what they hold now.

use maud::{html, Markup};

use super::events::enc;
use super::{empty, layout, Nav};
use crate::ui::{DestinationInfo, SourceInfo};

/// The page; `backlog` is each source's, in the same order.
pub(crate) fn page(sources: &[SourceInfo], backlog: &[u64], dests: &[DestinationInfo]) -> Markup {
    let body = html! {
        div.head {
            h1 { "Sources and destinations" }
            p.muted { "As configured. Secrets are never shown: each is named by the first 8 hex digits of its SHA-256." }
        }
        section.card {
            h2 { "Sources" }
            @if sources.is_empty() {
                (empty("No source configured", html! { "Add a " code { "[[source]]" } " to the configuration file." }))
            } @else {
                table.grid {
                    thead { tr { th { "Source" } th { "Path" } th { "Scheme" } th { "Tolerance" } th { "Secrets" } th.num { "Backlog" } th { "Shedding" } th { "Destinations" } } }
                    tbody {
                        @for (s, b) in sources.iter().zip(backlog) {
                            tr {
                                td { a href={"/ui/events?source=" (enc(&s.name))} { (s.name) } }
                                td.mono { (s.path) }
                                td.mono { (s.scheme) }
                                td { (s.tolerance) }
                                td.mono { @for f in &s.fingerprints { span.chip { (f) } " " } }
                                td.num { a href={"/ui/events?state=pending&source=" (enc(&s.name))} { (b) } }
                                td { @if let Some(m) = s.max_backlog {
                                        @if *b >= m { span.badge.bad { "shedding" } " " }
                                        "429 at " (m)
                                    } @else { span.muted { "no backlog bound" } } }
                                td.mono { @if s.destinations.is_empty() { span.muted { "none (journal only)" } } @else { (s.destinations.join(", ")) } }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Destinations" }
            @if dests.is_empty() {
                (empty("No destination configured", html! { "Events wait, pending, until a " code { "[[destination]]" } " is added." }))
            } @else {
                table.grid {
                    thead { tr { th { "Destination" } th { "URL" } th { "Timeout" } th { "Retry schedule" } th { "Permanent statuses" } th { "Signing secret" } } }
                    tbody {
                        @for d in dests {
                            tr {
                                td { (d.name) }
                                td.mono.wrap { (d.url) }
                                td { (d.timeout) }
                                td.wrap { (d.retry) }
                                td.mono { @if d.permanent.is_empty() { "—" } @else { (d.permanent.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")) } }
                                td.mono { span.chip { (d.fingerprint) } }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Sources", Nav::Sources, None, body)
}
