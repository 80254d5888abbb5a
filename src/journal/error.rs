//! Journal errors, one enum per stage.

/// Appending, reading or querying the journal failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The writer's queue is full: shed load and ask the sender to retry.
    #[error("the journal writer is over its queue bound ({0} waiting)")]
    Overloaded(usize),
    /// The disk or the database failed (I/O error, disk full); nothing was acknowledged.
    #[error("journal storage failed: {0}")]
    Storage(String),
    /// The journal is shutting down or recovering from a storage failure.
    #[error("the journal is not accepting writes: {0}")]
    Unavailable(&'static str),
    /// The claim this write presented is no longer held: its node was declared dead
    /// and another took the delivery over, or the claim was abandoned. Nothing was
    /// written; the delivery belongs to whoever holds it now.
    #[error("the claim on {id} was taken back (fencing token {token} is stale)")]
    LeaseLost {
        /// The event.
        id: u64,
        /// The stale token.
        token: u64,
    },
    /// A stored record could not be decoded (corruption or a newer format).
    #[error("journal record {id} is unreadable: {problem}")]
    Corrupt {
        /// The record's id.
        id: u64,
        /// What is wrong with it.
        problem: String,
    },
}

impl JournalError {
    /// True when the condition is temporary and the sender should retry later (503).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            JournalError::Corrupt { .. } | JournalError::LeaseLost { .. }
        )
    }
}

/// Opening the journal failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The database file could not be created or opened.
    #[error("cannot open journal {path}: {source}")]
    Database {
        /// The file.
        path: String,
        /// redb's explanation.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database's address or options are wrong (`server.journal`).
    #[error("journal configuration: {0}")]
    Config(String),
    /// The file or the database schema was written by a newer, incompatible hookbox.
    #[error("journal format version {found} is newer than this hookbox understands ({supported})")]
    Version {
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for JournalError {
            fn from(e: $t) -> Self {
                JournalError::Storage(e.to_string())
            }
        }
    )*};
}

storage_from!(
    redb::Error,
    redb::StorageError,
    redb::TransactionError,
    redb::TableError,
    redb::CommitError
);
