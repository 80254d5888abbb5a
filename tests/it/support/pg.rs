//! A PostgreSQL database per test, on the server `HOOKBOX_TEST_DATABASE_URL` names
//! (default: the local one, user `postgres`). When no server answers, the test says so
//! and skips, unless `HOOKBOX_REQUIRE_POSTGRES` is set (as `.ci/run` does): then the
//! skip is a failure.

use std::sync::atomic::{AtomicU32, Ordering};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server's admin URL.
fn admin_url() -> String {
    std::env::var("HOOKBOX_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A database made for one test, dropped (with its connections) when this is dropped.
pub(crate) struct TestDb {
    /// `postgres://.../hookbox_test_...`, with `sslmode=disable`.
    pub(crate) url: String,
    name: String,
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

impl TestDb {
    /// A fresh, empty database, or `None` (with a line saying why) when no PostgreSQL
    /// server is reachable and none is required.
    pub(crate) async fn create(test: &str) -> Option<TestDb> {
        static N: AtomicU32 = AtomicU32::new(0);
        let admin = admin_url();
        let client = match connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                if std::env::var_os("HOOKBOX_REQUIRE_POSTGRES").is_some() {
                    panic!("{test}: PostgreSQL is required (HOOKBOX_REQUIRE_POSTGRES) but {admin} is unreachable: {e}");
                }
                eprintln!("SKIPPED {test}: no PostgreSQL at {admin} ({e}); set HOOKBOX_TEST_DATABASE_URL to run it");
                return None;
            }
        };
        let name = format!(
            "hookbox_test_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let base = base.split('?').next().unwrap_or(base);
        Some(TestDb {
            url: format!("{base}/{name}?sslmode=disable"),
            name,
        })
    }

    /// The test database's URL with the server's address replaced by `addr` (a proxy in
    /// front of it) and `params` as its query string (`sslmode=disable`, say).
    pub(crate) fn url_via(&self, addr: impl std::fmt::Display, params: &str) -> String {
        let (scheme, rest) = self.url.split_once("://").expect("a URL");
        let (authority, _) = rest.split_once('/').expect("a database name");
        let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
        format!(
            "{scheme}://{}{addr}/{}?{params}",
            user.unwrap_or_default(),
            self.name
        )
    }

    /// A connection to the test database, for statements a test makes itself.
    pub(crate) async fn client(&self) -> tokio_postgres::Client {
        let url = self.url.replace("?sslmode=disable", "");
        connect(&url).await.expect("connect to the test database")
    }
}

/// The address of the PostgreSQL server the tests use (for a proxy in front of it).
pub(crate) async fn server_addr() -> std::net::SocketAddr {
    let admin = admin_url();
    let rest = admin.split_once("://").map_or(admin.as_str(), |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let mut addrs = tokio::net::lookup_host(&host)
        .await
        .expect("resolve the PostgreSQL server");
    addrs.next().expect("an address for the PostgreSQL server")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: use a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(c) = connect(&admin_url()).await {
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}
