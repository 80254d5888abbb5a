//! How to configure each built-in scheme for a test: verifying and signing secrets, and
//! which parts of a request its signature covers.

use hookbox::SchemeConfig;

/// One scheme's test configuration.
pub(crate) struct Fixture {
    /// The scheme name.
    pub(crate) name: &'static str,
    /// Configuration for verifying.
    pub(crate) verify: SchemeConfig,
    /// Configuration for signing (a private key for asymmetric schemes).
    pub(crate) sign: SchemeConfig,
    /// Whether the signature covers every byte of the raw body.
    pub(crate) covers_body: bool,
    /// Headers whose every byte the signature covers (or that carry it).
    pub(crate) covered_headers: &'static [&'static str],
    /// A realistic body for this provider.
    pub(crate) body: fn() -> Vec<u8>,
}

fn cfg(secrets: &[&str]) -> SchemeConfig {
    SchemeConfig {
        secrets: secrets.iter().map(|s| (*s).into()).collect(),
        ..Default::default()
    }
}

fn json_body() -> Vec<u8> {
    br#"{"id":"evt_123","type":"invoice.paid","data":{"object":{"amount":1200,"currency":"usd"}}}"#
        .to_vec()
}

fn symmetric(
    name: &'static str,
    secret: &str,
    covered_headers: &'static [&'static str],
) -> Fixture {
    Fixture {
        name,
        verify: cfg(&[secret]),
        sign: cfg(&[secret]),
        covers_body: true,
        covered_headers,
        body: json_body,
    }
}

/// Every scheme that hookbox can sign, with its fixture.
pub(crate) fn all() -> Vec<Fixture> {
    let mut v = vec![
        symmetric(
            "standard-webhooks",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            &["webhook-id", "webhook-timestamp", "webhook-signature"],
        ),
        symmetric(
            "svix",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            &["svix-id", "svix-timestamp", "svix-signature"],
        ),
        symmetric("stripe", "whsec_test_secret", &["stripe-signature"]),
        symmetric("github", "gh-secret", &["x-hub-signature-256"]),
        symmetric("github-sha1", "gh-secret", &["x-hub-signature"]),
        symmetric("shopify", "shpss_secret", &["x-shopify-hmac-sha256"]),
        symmetric("meta", "app-secret", &["x-hub-signature-256"]),
        symmetric("intercom", "client-secret", &["x-hub-signature"]),
        symmetric("lemonsqueezy", "lemon", &["x-signature"]),
    ];
    let mut square = symmetric("square", "sq-key", &["x-square-hmacsha256-signature"]);
    square.verify.url = Some("https://example.com/hooks/square".into());
    square.sign.url = square.verify.url.clone();
    v.push(square);
    v
}
