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

/// A PostgreSQL server of one test's own: a cluster made by `initdb` in a temporary
/// directory and started on a free loopback port, so that the test can crash it
/// (`pg_ctl stop -m immediate`: no shutdown checkpoint, as a power cut or an OOM kill
/// of the postmaster would leave it) and start it again without touching the server
/// every other test uses. Stopped and removed when dropped.
///
/// The binaries come from `HOOKBOX_TEST_PG_BINDIR`, else `pg_config --bindir`, else
/// Debian's `/usr/lib/postgresql/*/bin`. PostgreSQL refuses to run as root, so as root
/// the server runs as the `postgres` user. Without the binaries the test says so and
/// skips, unless `HOOKBOX_REQUIRE_POSTGRES` is set: then that is a failure.
pub(crate) struct PrivateServer {
    /// Holds the data directory and the socket directory.
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    /// `postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable`.
    pub(crate) url: String,
}

/// The directory holding `initdb` and `pg_ctl`, if any.
fn pg_bindir() -> Option<std::path::PathBuf> {
    let has = |d: &std::path::Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(d) = std::env::var_os("HOOKBOX_TEST_PG_BINDIR") {
        return Some(d.into());
    }
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        let d = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has(&d) {
            return Some(d);
        }
    }
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|d| has(d))
        .collect();
    found.sort();
    found.pop()
}

/// Whether this process runs as root (the owner of `/proc/self`).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl PrivateServer {
    /// A new cluster, started and accepting connections; `None` (with a line saying
    /// why) when PostgreSQL's server binaries are not on this machine and none is
    /// required.
    pub(crate) fn start(test: &str) -> Option<PrivateServer> {
        let Some(bin) = pg_bindir() else {
            if std::env::var_os("HOOKBOX_REQUIRE_POSTGRES").is_some() {
                panic!("{test}: PostgreSQL is required (HOOKBOX_REQUIRE_POSTGRES) but no initdb was found; set HOOKBOX_TEST_PG_BINDIR");
            }
            eprintln!("SKIPPED {test}: no PostgreSQL server binaries (initdb, pg_ctl); set HOOKBOX_TEST_PG_BINDIR to run it");
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        if is_root() {
            let status = std::process::Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(
                status.success(),
                "chown postgres {}: {status}",
                dir.path().display()
            );
        }
        // A free port: bound here, released, then taken by the postmaster.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = PrivateServer {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable"),
            dir,
            bin,
        };
        server.run(
            "initdb",
            &[
                "--no-sync",
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--pgdata",
            ],
            true,
        );
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = on\nsynchronous_commit = on\nmax_connections = 60\nshared_buffers = 32MB\n",
            server.dir.path().display()
        );
        let path = server.data().join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&conf);
        std::fs::write(&path, text).expect("write postgresql.auto.conf");
        server.start_again();
        Some(server)
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// `tool` of the server binaries, to run as the `postgres` user when this is root.
    fn command(&self, tool: &str) -> std::process::Command {
        let exe = self.bin.join(tool);
        if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        }
    }

    /// Runs `tool` with `args` (then the data directory when `data` is set); panics
    /// when it fails.
    fn run(&self, tool: &str, args: &[&str], data: bool) {
        let mut cmd = self.command(tool);
        cmd.args(args);
        if data {
            cmd.arg(self.data());
        }
        let out = cmd.output().unwrap_or_else(|e| panic!("run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, action: &[&str]) {
        let log = self.dir.path().join("server.log");
        let log = log.to_str().expect("a UTF-8 path");
        let mut args = vec!["--wait", "--timeout=60", "--log", log];
        args.extend_from_slice(action);
        args.push("--pgdata");
        self.run("pg_ctl", &args, true);
    }

    /// Starts the server and waits until it accepts connections (after a crash: once
    /// its recovery from the WAL is done).
    pub(crate) fn start_again(&self) {
        self.pg_ctl(&["start"]);
    }

    /// Crashes the server: every backend killed at once, no checkpoint, nothing
    /// flushed that was not flushed already.
    pub(crate) fn crash(&self) {
        self.pg_ctl(&["stop", "--mode=immediate"]);
    }

    /// A fresh database on this server, dropped with it.
    pub(crate) async fn database(&self) -> String {
        let client = connect(&self.url)
            .await
            .expect("connect to the private server");
        client
            .batch_execute("CREATE DATABASE hookbox")
            .await
            .expect("create the database");
        self.url.replace("/postgres?", "/hookbox?")
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        // Stopped before its directory goes (a stopped server's stop fails harmlessly).
        let _ = self
            .command("pg_ctl")
            .args(["stop", "--wait", "--mode=immediate", "--pgdata"])
            .arg(self.data())
            .output();
    }
}
