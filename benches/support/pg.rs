//! The benchmarks' PostgreSQL database: one per run, `hookbox_bench_<pid>`, created on
//! the server `HOOKBOX_BENCH_DATABASE_URL` names (default: the local one, user
//! `postgres`), emptied between cells and dropped (with its connections) at the end.
//!
//! Journals opened here take the builder's defaults, except where
//! `HOOKBOX_BENCH_PG_WRITERS` (append transactions in flight per node) or
//! `HOOKBOX_BENCH_PG_POOL` (connections per node) say otherwise: knobs for exploring,
//! the figures reported are with the defaults.

use std::time::Duration;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database made for one benchmark run, dropped when this is dropped.
pub(crate) struct BenchDb {
    admin: String,
    name: String,
    /// `postgres://.../hookbox_bench_<pid>?sslmode=disable`, for [`hookbox::PostgresJournal`].
    pub(crate) url: String,
}

/// One connection outside any pool; its driver runs on the current runtime.
pub(crate) async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A database error with the server's own message (tokio-postgres shows only "db error").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

impl BenchDb {
    /// Creates the run's database; `Err` says why none could be had.
    pub(crate) async fn create() -> Result<BenchDb, String> {
        let admin = std::env::var("HOOKBOX_BENCH_DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        let name = format!("hookbox_bench_{}", std::process::id());
        let client = tokio::time::timeout(Duration::from_secs(5), connect(&admin))
            .await
            .map_err(|_| format!("{admin}: no answer within 5 s"))?
            .map_err(|e| format!("{admin}: {e}"))?;
        // Two statements: CREATE DATABASE cannot run in the implicit transaction of a
        // multi-statement query.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| format!("{sql}: {}", describe(&e)))?;
        }
        let base = admin.split('?').next().unwrap_or(&admin);
        let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
        Ok(BenchDb {
            url: format!("{base}/{name}?sslmode=disable"),
            admin,
            name,
        })
    }

    /// A connection to the bench database, for the statements a benchmark makes itself.
    pub(crate) async fn client(&self) -> tokio_postgres::Client {
        let url = self.url.replace("?sslmode=disable", "");
        connect(&url).await.expect("connect to the bench database")
    }

    /// Empties the database (every table goes with the schema; the journal migrates
    /// again when next opened), then checkpoints, so that each cell starts from the
    /// same empty database with no earlier cell's WAL to flush.
    pub(crate) async fn reset(&self) {
        let c = self.client().await;
        for sql in [
            "DROP SCHEMA public CASCADE; CREATE SCHEMA public",
            "CHECKPOINT",
        ] {
            c.batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
        }
    }

    /// The server processes working for this database now: its backends (the
    /// journal's and the benchmark's connections, autovacuum) and the shared WAL
    /// writer, checkpointer and background writer.
    pub(crate) async fn server_pids(&self) -> Vec<u32> {
        let rows = self
            .client()
            .await
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()
                   OR backend_type IN ('walwriter', 'checkpointer', 'background writer')",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("list the server's processes: {}", describe(&e)));
        rows.iter().map(|r| r.get::<_, i32>(0) as u32).collect()
    }

    /// Opens journal node `node` on the bench database (migrating it when new).
    pub(crate) async fn journal(&self, node: &str) -> hookbox::PostgresJournal {
        let knob = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
        };
        let mut builder = hookbox::PostgresJournal::builder(self.url.as_str()).node(node);
        if let Some(n) = knob("HOOKBOX_BENCH_PG_WRITERS") {
            builder = builder.writers(n);
        }
        if let Some(n) = knob("HOOKBOX_BENCH_PG_POOL") {
            builder = builder.pool_size(n);
        }
        builder
            .open()
            .await
            .unwrap_or_else(|e| panic!("open PostgreSQL journal node {node}: {e}"))
    }

    /// The database's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run inside a runtime: use a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime to drop the bench database");
            rt.block_on(async {
                let c = connect(&admin).await.map_err(|e| e.to_string())?;
                c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| describe(&e))
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "warning: could not drop database {}: {dropped:?}",
                self.name
            );
        }
    }
}
