//! How to configure each built-in scheme for a test: the fuzz harness's fixtures (one
//! set of keys for the whole test suite), plus which parts of a request each scheme's
//! signature covers.

use hookbox::{SchemeConfig, SCHEMES};

/// One scheme's test configuration.
pub(crate) struct Fixture {
    /// The scheme name.
    pub(crate) name: &'static str,
    /// Configuration for verifying.
    pub(crate) verify: SchemeConfig,
    /// Configuration for signing (a private key for asymmetric schemes).
    pub(crate) sign: SchemeConfig,
    /// Whether the signature covers every byte of the raw body. Twilio signs decoded
    /// form parameters, Mailgun a token, Adyen selected fields, GitLab nothing.
    pub(crate) covers_body: bool,
    /// Headers whose every byte the signature covers (or that carry it).
    pub(crate) covered_headers: &'static [&'static str],
    /// A realistic body for this provider.
    pub(crate) body: fn() -> Vec<u8>,
}

fn json_body() -> Vec<u8> {
    br#"{"id":"evt_123","type":"invoice.paid","data":{"object":{"amount":1200,"currency":"usd"}}}"#
        .to_vec()
}

fn adyen_body() -> Vec<u8> {
    br#"{"live":"false","notificationItems":[{"NotificationRequestItem":{"additionalData":{},"amount":{"currency":"EUR","value":1130},"eventCode":"AUTHORISATION","merchantAccountCode":"TestMerchant","merchantReference":"ref-1","pspReference":"7914073381342284","success":"true"}}]}"#
        .to_vec()
}

/// Every built-in scheme with its fixture.
pub(crate) fn all() -> Vec<Fixture> {
    SCHEMES
        .iter()
        .map(|&name| {
            let f = crate::fuzz_corpus::common::fixture(name);
            let covered_headers: &'static [&'static str] = match name {
                "standard-webhooks" => &["webhook-id", "webhook-timestamp", "webhook-signature"],
                "svix" => &["svix-id", "svix-timestamp", "svix-signature"],
                "stripe" => &["stripe-signature"],
                "github" | "meta" => &["x-hub-signature-256"],
                "github-sha1" | "intercom" => &["x-hub-signature"],
                "slack" => &["x-slack-signature", "x-slack-request-timestamp"],
                "shopify" => &["x-shopify-hmac-sha256"],
                "twilio" => &["x-twilio-signature"],
                "square" => &["x-square-hmacsha256-signature"],
                "paddle" => &["paddle-signature"],
                "zoom" => &["x-zm-signature", "x-zm-request-timestamp"],
                "linear" => &["linear-signature"],
                "twitch" => &[
                    "twitch-eventsub-message-id",
                    "twitch-eventsub-message-timestamp",
                    "twitch-eventsub-message-signature",
                ],
                "lemonsqueezy" => &["x-signature"],
                "discord" => &["x-signature-ed25519", "x-signature-timestamp"],
                "sendgrid" => &[
                    "x-twilio-email-event-webhook-signature",
                    "x-twilio-email-event-webhook-timestamp",
                ],
                "gitlab" => &["x-gitlab-token"],
                "generic-hmac" => &["x-signature", "x-timestamp", "x-id"],
                _ => &[],
            };
            Fixture {
                name,
                verify: f.verify,
                sign: f.sign,
                covers_body: !matches!(name, "twilio" | "mailgun" | "adyen" | "gitlab"),
                covered_headers,
                body: if name == "adyen" {
                    adyen_body
                } else {
                    json_body
                },
            }
        })
        .collect()
}
