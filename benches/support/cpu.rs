//! CPU time per thread group of this process (from `/proc/self/task`) and of the local
//! PostgreSQL server's processes (from `/proc/<pid>`), Linux only (`None` elsewhere).
//!
//! The server may serve other databases meanwhile: only the processes the benchmark
//! names are counted (the backends of its database and the shared WAL writer,
//! checkpointer and background writer: see `pg::BenchDb::server_pids`).

use std::collections::HashMap;
use std::path::Path;

/// Thread groups: a label and the thread-name prefix that selects it. Threads no group
/// selects count as `other`.
pub(crate) type Groups = &'static [(&'static str, &'static str)];

/// CPU used so far (nanoseconds): by thread group of this process, then `other`; and by
/// PostgreSQL process.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    threads: Vec<u64>,
    postgres: HashMap<u32, u64>,
    /// The machine's (busy, steal) time, from `/proc/stat`.
    machine: (u64, u64),
}

/// CPU used between two snapshots (nanoseconds).
#[derive(Debug, Clone, Default)]
pub(crate) struct Used {
    /// One value per group, then `other`.
    pub(crate) threads: Vec<u64>,
    /// The PostgreSQL processes named to [`Snapshot::since`] together, if any.
    pub(crate) postgres: Option<u64>,
    /// Every process on the machine together (this one, PostgreSQL, anything else).
    pub(crate) machine: u64,
    /// Time the hypervisor gave the machine's CPUs to someone else.
    pub(crate) steal: u64,
}

impl Used {
    /// The group labelled `label` (`other`: the threads no group selects).
    pub(crate) fn group(&self, groups: Groups, label: &str) -> u64 {
        let i = groups
            .iter()
            .position(|(l, _)| *l == label)
            .unwrap_or(groups.len());
        self.threads.get(i).copied().unwrap_or(0)
    }
}

pub(crate) fn snapshot(groups: Groups) -> Option<Snapshot> {
    let mut threads = vec![0; groups.len() + 1];
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let Some(ns) = cpu_ns(&dir) else {
            continue;
        };
        let i = groups
            .iter()
            .position(|(_, prefix)| comm.starts_with(prefix))
            .unwrap_or(groups.len());
        threads[i] += ns;
    }
    let mut postgres = HashMap::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() == "postgres" {
            if let Some(ns) = cpu_ns(&dir) {
                postgres.insert(pid, ns);
            }
        }
    }
    Some(Snapshot {
        threads,
        postgres,
        machine: machine().unwrap_or_default(),
    })
}

/// The machine's busy and stolen CPU time so far (ns), from the first line of
/// `/proc/stat` (user nice system idle iowait irq softirq steal ..., in USER_HZ = 100
/// ticks).
fn machine() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?;
    Some((busy * 10_000_000, f.get(7)? * 10_000_000))
}

/// The CPU a thread or process has used, in ns.
fn cpu_ns(dir: &Path) -> Option<u64> {
    // schedstat: run time in ns; stat: utime + stime in clock ticks (USER_HZ = 100).
    if let Ok(s) = std::fs::read_to_string(dir.join("schedstat")) {
        if let Some(ns) = s.split_whitespace().next().and_then(|v| v.parse().ok()) {
            return Some(ns);
        }
    }
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000)
}

impl Snapshot {
    /// What was used since `before`, with the PostgreSQL processes `postgres` (those
    /// that started meanwhile count whole; those that ended meanwhile are not counted).
    pub(crate) fn since(&self, before: &Snapshot, postgres: Option<&[u32]>) -> Used {
        Used {
            threads: self
                .threads
                .iter()
                .zip(&before.threads)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            machine: self.machine.0.saturating_sub(before.machine.0),
            steal: self.machine.1.saturating_sub(before.machine.1),
            postgres: postgres.map(|pids| {
                pids.iter()
                    .filter_map(|pid| {
                        let now = self.postgres.get(pid)?;
                        Some(now.saturating_sub(before.postgres.get(pid).copied().unwrap_or(0)))
                    })
                    .sum()
            }),
        }
    }
}
