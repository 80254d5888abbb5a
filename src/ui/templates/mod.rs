//! The dashboard's markup, written with maud: every `(value)` is HTML-escaped, and
//! nothing from the journal is ever emitted as `PreEscaped`.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use std::time::SystemTime;

use maud::{html, Markup, DOCTYPE};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub(crate) mod dlq;
pub(crate) mod event;
pub(crate) mod events;
pub(crate) mod overview;
pub(crate) mod rejected;
pub(crate) mod replays;
pub(crate) mod sources;

/// The sections of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Events,
    Dlq,
    Replays,
    Rejected,
    Sources,
    Nothing,
}

const SECTIONS: [(Nav, &str, &str); 6] = [
    (Nav::Overview, "/ui/", "Overview"),
    (Nav::Events, "/ui/events", "Events"),
    (Nav::Dlq, "/ui/dlq", "Dead letters"),
    (Nav::Replays, "/ui/replays", "Replays"),
    (Nav::Rejected, "/ui/rejected", "Rejected"),
    (Nav::Sources, "/ui/sources", "Sources"),
];

/// A whole page: `head`, the navigation bar with `nav` highlighted, then `body`.
/// `refresh` reloads the page every so many seconds (a replay in progress), which
/// works with scripts off.
pub(crate) fn layout(title: &str, nav: Nav, refresh: Option<u32>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                @if let Some(s) = refresh {
                    meta http-equiv="refresh" content=(s);
                }
                title { (title) " · hookbox" }
                link rel="stylesheet" href="/ui/assets/app.css";
                link rel="icon" href="/ui/assets/icon.svg" type="image/svg+xml";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/" { span.logo { "hb" } "hookbox" }
                    @if nav != Nav::Nothing {
                        nav {
                            @for (n, href, label) in SECTIONS {
                                a href=(href) class=[(n == nav).then_some("active")] { (label) }
                            }
                        }
                        div.tools {
                            div.timefmt role="group" aria-label="Times" hidden {
                                button type="button" data-time="utc" { "UTC" }
                                button type="button" data-time="local" { "Local" }
                                button type="button" data-time="relative" { "Relative" }
                            }
                            form method="post" action="/ui/logout" {
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// `markup` as a `text/html` response with `status`.
pub(crate) fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut res = (status, markup.into_string()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res
}

/// A page that says what went wrong.
pub(crate) fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = html! {
        section.card.narrow {
            h1 { (title) }
            p.muted { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            @if !detail.is_empty() { p { (detail) } }
            p { a href="/ui/" { "Back to the overview" } }
        }
    };
    respond(status, layout(title, Nav::Nothing, None, body))
}

/// The login form; `failed` says the last token was wrong.
pub(crate) fn login(next: &str, failed: bool) -> Markup {
    let body = html! {
        section.card.login {
            h1 { "Sign in to hookbox" }
            p.muted { "Paste the admin token (" code { "[admin] token" } " in the configuration)." }
            @if failed {
                p.alert.bad role="alert" { "That is not the admin token." }
            }
            form method="post" action="/ui/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button.primary type="submit" { "Sign in" }
            }
        }
    };
    layout("Sign in", Nav::Nothing, None, body)
}

/// A time as `<time>`: UTC on the server, local or relative in the browser.
pub(crate) fn time(t: SystemTime) -> Markup {
    let full = rfc3339(t);
    let short = short_time(&full);
    html! { time datetime=(full) title=(full) { (short) } }
}

/// RFC 3339 with milliseconds, UTC.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t).format(&Rfc3339).unwrap_or_default()
}

/// `2026-12-01T21:46:53.123456Z` -> `2026-12-01 21:46:53Z`.
pub(crate) fn short_time(rfc3339: &str) -> String {
    let mut s = rfc3339.replacen('T', " ", 1);
    if let Some(dot) = s.find('.') {
        let end = s[dot..]
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .map_or(s.len(), |i| dot + i);
        s.replace_range(dot..end, "");
    }
    s
}

/// A delivery state as a coloured badge.
pub(crate) fn state(name: &str) -> Markup {
    let class = match name {
        "done" | "delivered" => "badge ok",
        "dead" | "fail" | "crashed" | "timeout" => "badge bad",
        "retrying" | "retry" | "failing" => "badge warn",
        _ => "badge",
    };
    html! { span class=(class) { (name) } }
}

/// The equivalent `hookbox` command and `curl` call of an action, for runbooks.
pub(crate) fn equivalents(cli: &str, curl: &str) -> Markup {
    html! {
        details.equiv open {
            summary { "Same thing from a terminal" }
            p.muted { "CLI" }
            pre.cmd { code { (cli) } }
            p.muted { "Admin API" }
            pre.cmd { code { (curl) } }
        }
    }
}

/// An empty table's message.
pub(crate) fn empty(title: &str, hint: Markup) -> Markup {
    html! {
        div.empty {
            p.empty-title { (title) }
            p.muted { (hint) }
        }
    }
}

/// An SVG sparkline of `values` (oldest first), scaled to its maximum.
pub(crate) fn sparkline(values: &[u64], label: &str) -> Markup {
    let w = 120.0_f64;
    let h = 28.0_f64;
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = if values.len() > 1 {
        w / (values.len() - 1) as f64
    } else {
        w
    };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                h - 2.0 - (*v as f64 / max) * (h - 4.0)
            )
        })
        .collect();
    let line = points.join(" ");
    let area = format!("0,{h} {line} {w},{h}");
    html! {
        svg.spark viewBox={"0 0 " (w) " " (h)} width=(w) height=(h) role="img" aria-label=(label) {
            polygon.area points=(area) {}
            polyline points=(line) {}
        }
    }
}
