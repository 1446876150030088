//! The REPO aggregate (stream `repo/<did>`): a repository's signed commits as domain events.
//!
//! - `events.rs` — `RepoEvent` (`repo.committed`, `repo.synced`) and their stored DAG-CBOR payloads.
//! - `state.rs` — `RepoState`, folded from the stream's events.
//! - `apply_writes.rs` — `decide_apply_writes`: a batch of record writes → one signed commit event.
//! - `genesis.rs` — `decide_genesis`: the empty repo's first commit (+ `#sync`).
//! - `firehose.rs` — `subscribeRepos` wire frames built from events (+ a decoder).
//! - `import.rs` — `importRepo`: the root commit's checks and the bounded import events.
//!
//! Pure: never reads or writes blocks anywhere but the `BlockSource` it is handed; clocks, keys and
//! the current time come in as arguments.

mod apply_writes;
mod events;
pub mod firehose;
mod genesis;
mod import;
mod state;

#[cfg(test)]
mod sync_check;
#[cfg(test)]
mod tests;

pub use apply_writes::{
    decide_apply_writes, ApplyWritesOutcome, NewCommit, Write, WriteEffect, WriteResult,
    MAX_COMMIT_BLOCKS_BYTES, MAX_RECORD_BYTES, MAX_WRITES,
};
pub use events::{
    Committed, EventError, ImportChunk, ImportStarted, Imported, RepoEvent, RepoOp, Synced, REPO_COMMITTED,
    REPO_IMPORTED, REPO_IMPORT_CHUNK, REPO_IMPORT_STARTED, REPO_SYNCED,
};
pub use import::{check_import_commit, check_record, ImportChunker, ImportError, CHUNK_BYTES};
pub use genesis::{decide_genesis, Genesis};
pub use state::{RepoRoot, RepoState};

use crate::cbor::{CborError, Cid};
use crate::commit::CommitError;
use crate::mst::MstError;

/// Why a repo command was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RepoError {
    #[error("Too many writes. Max: {max} (got {count})")]
    TooManyWrites { count: usize, max: usize },
    #[error("invalid collection NSID {0:?}")]
    InvalidCollection(String),
    #[error("invalid record key {0:?}")]
    InvalidRecordKey(String),
    #[error("invalid record at {path}: {reason}")]
    InvalidRecord { path: String, reason: String },
    #[error("record already exists at {0}")]
    RecordAlreadyExists(String),
    #[error("{}", .0)]
    InvalidSwap(Box<SwapMismatch>),
    #[error("record at {path} is {size} bytes; the maximum is {max}")]
    RecordTooLarge {
        path: String,
        size: usize,
        max: usize,
    },
    #[error("Too many writes. Max event size: 2MB (commit blocks are {size} bytes; the maximum is {max})")]
    CommitTooLarge { size: usize, max: usize },
    #[error("repo {0} has no commit yet")]
    NotInitialized(String),
    #[error("the MST given (root {given}) is not the repo's current data ({expected})")]
    StaleTree { given: Box<Cid>, expected: Box<Cid> },
    #[error("record could not be encoded: {0}")]
    Cbor(#[from] CborError),
    #[error(transparent)]
    Mst(#[from] MstError),
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// What a swap (compare-and-swap) condition named, and what was really there.
#[derive(Debug, PartialEq, Eq)]
pub struct SwapMismatch {
    pub target: SwapTarget,
    /// What the caller required (`None` = must not exist).
    pub expected: Option<Cid>,
    /// What the repo holds (`None` = absent).
    pub actual: Option<Cid>,
}

/// The object a swap condition was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapTarget {
    /// `swapCommit`: the repo head.
    Commit,
    /// `swapRecord`: the record at this path.
    Record(String),
}

impl std::fmt::Display for SwapMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |c: &Option<Cid>| c.map_or_else(|| "nothing".to_string(), |c| c.to_string());
        match &self.target {
            SwapTarget::Commit => write!(
                f,
                "Commit was at {}, not {}",
                show(&self.actual),
                show(&self.expected)
            ),
            SwapTarget::Record(path) => write!(
                f,
                "Record {path} was at {}, not {}",
                show(&self.actual),
                show(&self.expected)
            ),
        }
    }
}
