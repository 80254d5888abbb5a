//! The recent refusals of the webhook listener.

use maud::{html, Markup};

use super::events::{bytes, enc};
use super::{empty, layout, time, Nav};
use crate::layer::rejections::{Rejection, BODY_PREFIX, CAPACITY};

/// The page: `rows` newest first, `source` the filter in force.
pub(crate) fn page(rows: &[Rejection], sources: &[String], source: Option<&str>) -> Markup {
    let body = html! {
        div.head {
            h1 { "Rejected requests" }
            p.muted {
                "The last " (CAPACITY) " requests the webhook listener refused, kept in memory: why, never a secret, at most the first "
                (BODY_PREFIX) " bytes of a body. They were not journaled."
            }
        }
        div.presets {
            span.muted { "Source: " }
            a.chip.active[source.is_none()] href="/ui/rejected" { "All" }
            @for s in sources { a.chip.active[source == Some(s.as_str())] href={"/ui/rejected?source=" (enc(s))} { (s) } }
        }
        @if rows.is_empty() {
            (empty("No refused request", html! { "Every request since the start verified. Bad signatures, stale timestamps, missing headers and shed requests appear here." }))
        } @else {
            div.tablewrap {
                table.grid {
                    thead { tr { th { "When" } th { "Source" } th { "Status" } th { "Kind" } th { "Why" } th { "Request" } } }
                    tbody {
                        @for r in rows {
                            tr {
                                td { (time(r.at)) }
                                td { (r.source) }
                                td.num { span.badge.bad[r.status.is_client_error()].warn[r.status.is_server_error()] { (r.status.as_u16()) } }
                                td.mono { (r.kind) }
                                td.wrap { (r.detail) }
                                td.wrap {
                                    @if !r.headers.is_empty() { div.muted.small { "headers: " span.mono { (r.headers.join(", ")) } } }
                                    @if let (Some(p), Some(n)) = (&r.body_prefix, r.body_len) {
                                        div.small { "body (" (bytes(n as u64)) "): " code.clip { (String::from_utf8_lossy(p)) @if n > p.len() { "…" } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Rejected", Nav::Rejected, None, body)
}
