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

/// What PostgreSQL counted for the bench database (its cumulative statistics), to
/// see where a cell's work went: transactions, rows written per table (and how many
/// updates were HOT, needing no index change), index entries read per index scan.
///
/// A backend reports its counts when a transaction ends at least a second after its
/// last report, and when it exits: read after the journal is closed, so that every
/// count is in.
#[derive(Debug, Clone, Default)]
pub(crate) struct Activity {
    commits: i64,
    /// Table: inserted, updated, of which HOT, deleted, dead now, autovacuums.
    tables: std::collections::BTreeMap<String, [i64; 6]>,
    /// Index: scans, entries read.
    indexes: std::collections::BTreeMap<String, [i64; 2]>,
}

impl BenchDb {
    pub(crate) async fn activity(&self) -> Activity {
        let c = self.client().await;
        fn fail<T>(e: tokio_postgres::Error) -> T {
            panic!("read PostgreSQL's statistics: {}", describe(&e))
        }
        let commits: i64 = c
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await
            .unwrap_or_else(fail)
            .get(0);
        let tables = c
            .query(
                "SELECT relname::text, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del,
                        n_dead_tup, autovacuum_count
                 FROM pg_stat_user_tables",
                &[],
            )
            .await
            .unwrap_or_else(fail)
            .iter()
            .map(|r| {
                let v = |i| r.get::<_, i64>(i);
                (r.get(0), [v(1), v(2), v(3), v(4), v(5), v(6)])
            })
            .collect();
        let indexes = c
            .query(
                "SELECT indexrelname::text, idx_scan, idx_tup_read FROM pg_stat_user_indexes",
                &[],
            )
            .await
            .unwrap_or_else(fail)
            .iter()
            .map(|r| (r.get(0), [r.get::<_, i64>(1), r.get::<_, i64>(2)]))
            .collect();
        Activity {
            commits,
            tables,
            indexes,
        }
    }
}

impl Activity {
    /// What happened since `before`, per `n` units of work (`unit`: "event",
    /// "delivery"), as indented lines.
    pub(crate) fn since(&self, before: &Activity, n: u64, unit: &str) -> String {
        let n = n.max(1) as f64;
        let mut out = format!(
            "    {:.2} transactions per {unit}\n",
            (self.commits - before.commits) as f64 / n
        );
        for (name, now) in &self.tables {
            let was = before.tables.get(name).copied().unwrap_or_default();
            let d: Vec<i64> = now.iter().zip(was).map(|(a, b)| a - b).collect();
            if ((d[0] + d[1] + d[3]) as f64) < n / 100.0 {
                continue;
            }
            out += &format!(
                "    {name}: per {unit} {:.2} inserted, {:.2} updated ({:.0}% HOT), {:.2} \
                 deleted; {} dead rows now, {} autovacuums\n",
                d[0] as f64 / n,
                d[1] as f64 / n,
                d[2] as f64 * 100.0 / d[1].max(1) as f64,
                d[3] as f64 / n,
                now[4],
                d[5]
            );
        }
        for (name, now) in &self.indexes {
            let was = before.indexes.get(name).copied().unwrap_or_default();
            let (scans, read) = (now[0] - was[0], now[1] - was[1]);
            if scans == 0 || (read as f64) < n / 10.0 {
                continue;
            }
            out += &format!(
                "    index {name}: {:.2} scans and {:.1} entries read per {unit} \
                 ({:.1} per scan)\n",
                scans as f64 / n,
                read as f64 / n,
                read as f64 / scans as f64
            );
        }
        out
    }
}

/// Samples what the bench database's backends are doing (`pg_stat_activity`) every
/// 20 ms, on a thread of its own, until [`WaitSampler::finish`]: the share of time
/// spent running, waiting for a lock, for the WAL flush, or for the client inside a
/// transaction.
pub(crate) struct WaitSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<std::collections::BTreeMap<String, u64>>,
}

impl BenchDb {
    pub(crate) fn sample_waits(&self) -> WaitSampler {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let url = self.url.replace("?sslmode=disable", "");
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("sampler runtime");
            rt.block_on(async move {
                let mut counts = std::collections::BTreeMap::new();
                let Ok(c) = connect(&url).await else {
                    return counts;
                };
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                while !stopped.load(Ordering::Acquire) {
                    tick.tick().await;
                    let Ok(rows) = c
                        .query(
                            "SELECT CASE
                               WHEN state = 'idle' THEN 'idle (between transactions)'
                               WHEN state = 'idle in transaction' THEN 'in a transaction, waiting for the client'
                               WHEN wait_event IS NULL THEN 'running'
                               ELSE wait_event_type || ':' || wait_event END
                             FROM pg_stat_activity
                             WHERE datname = current_database() AND pid <> pg_backend_pid()
                               AND backend_type = 'client backend'",
                            &[],
                        )
                        .await
                    else {
                        break;
                    };
                    for r in rows {
                        *counts.entry(r.get::<_, String>(0)).or_insert(0) += 1;
                    }
                }
                counts
            })
        });
        WaitSampler { stop, thread }
    }
}

impl WaitSampler {
    /// Stops sampling; the shares of the non-idle samples, largest first, and the idle
    /// share apart, as one line.
    pub(crate) fn finish(self) -> String {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let counts = self.thread.join().unwrap_or_default();
        let idle = counts
            .iter()
            .filter(|(k, _)| k.starts_with("idle"))
            .map(|(_, v)| *v)
            .sum::<u64>();
        let busy: u64 = counts.values().sum::<u64>() - idle;
        let mut shares: Vec<(&String, &u64)> = counts
            .iter()
            .filter(|(k, _)| !k.starts_with("idle"))
            .collect();
        shares.sort_by(|a, b| b.1.cmp(a.1));
        let list: Vec<String> = shares
            .iter()
            .map(|(k, v)| format!("{k} {:.0}%", **v as f64 * 100.0 / busy.max(1) as f64))
            .collect();
        format!(
            "{} backend samples in a statement or transaction: {}; idle between transactions: {}",
            busy,
            if list.is_empty() {
                "-".to_owned()
            } else {
                list.join(", ")
            },
            idle
        )
    }
}
