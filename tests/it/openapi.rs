//! The admin API's OpenAPI document: the committed copy is the one the routes
//! generate, and a live admin listener serves it.

use reqwest::StatusCode;

use crate::support::{client, spawn_serve};

/// Where the repository keeps the document.
const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

#[test]
fn the_committed_document_is_the_generated_one() {
    let generated = hookbox::admin::openapi();
    if std::env::var_os("HOOKBOX_BLESS").is_some() {
        std::fs::write(COMMITTED, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "docs/openapi.json is stale: it differs from the document the admin routes \
             generate, first at line {}.\nRegenerate it with\n\n    \
             HOOKBOX_BLESS=1 cargo test --test it openapi::\n\nand commit it.",
            line + 1
        );
    }
}

#[tokio::test]
async fn a_live_admin_listener_serves_the_document_behind_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hookbox.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
journal = "{}"

[admin]
listen = "127.0.0.1:0"
token = "openapi-test-token"
"#,
            dir.path().join("journal.redb").display()
        ),
    )
    .unwrap();
    let server = spawn_serve(&cfg, &[], true);
    let url = format!("{}/v1/openapi.json", server.admin.as_deref().unwrap());

    let res = client()
        .get(&url)
        .bearer_auth("openapi-test-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.text().await.unwrap(), hookbox::admin::openapi());

    let res = client().get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}
