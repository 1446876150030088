//! Reading a repo's head and just the part of its MST one operation needs, instead of the whole
//! repo: O(tree depth) per write or proof, not O(repo size).
//!
//! - The head (commit, rev, MST root) and the stream version it was read at come from the LAST
//!   event of `repo/<did>` (`EventLog::read_stream_last`): both from one row, so the version the
//!   append then expects is exactly the one the head belongs to (the compare-and-swap stays sound
//!   across processes). Every repo event carries the full head, so nothing needs folding.
//! - Tree nodes are faulted in: the pure code runs against a [`BlockMap`]; when it stops with
//!   `MissingBlock(cid)`, that one block is read from the `repo_blocks` read model (one point
//!   query) and the code runs again. A walk touches the root-to-key path and the covering-proof
//!   neighbours, so a write costs about `depth` reads when nothing is cached.
//! - [`RepoBlocks`]: the node blocks this process has seen for one repo, kept under that repo's
//!   write lock between writes (the new nodes of every commit are added), so repeated writes to a
//!   repo read no block at all. Blocks are content-addressed, so the cache is never stale: a block
//!   another process wrote is simply faulted in. It is bounded per repo ([`PER_REPO_BYTES`]) and
//!   in total ([`TOTAL_BYTES`]): over either bound, the repo about to be written drops its cache
//!   and refills it on demand (idle repos keep theirs: the total bound is soft).

use std::sync::atomic::{AtomicUsize, Ordering};

use domain::cbor::Cid;
use domain::mst::BlockMap;
use domain::repo::{RepoEvent, RepoState};
use domain::syntax::Did;
use eventlog::EventLog;

use crate::CommandError;

/// Most bytes of node blocks cached for one repo.
pub const PER_REPO_BYTES: usize = 8 << 20;
/// Most bytes of node blocks cached over all repos of this process (checked when a repo's cache
/// grows; a repo over its share is cleared first).
pub const TOTAL_BYTES: usize = 256 << 20;

static TOTAL: AtomicUsize = AtomicUsize::new(0);

/// The head of `repo/<did>` and the stream version it is at (`None`: no repo events).
pub async fn load_head(log: &EventLog, did: &Did) -> Result<Option<(RepoState, i64)>, CommandError> {
    let stream = format!("repo/{did}");
    let Some(e) = log.read_stream_last(&stream).await? else {
        return Ok(None);
    };
    let v = u32::try_from(e.event_version).map_err(|_| CommandError::Internal("negative event version".into()))?;
    let event = RepoEvent::from_payload(&e.event_type, v, &e.payload)
        .map_err(|err| CommandError::Internal(format!("{} v{}: {err}", e.stream, e.stream_version)))?;
    Ok(Some((RepoState::from_events(did.clone(), [&event]), e.stream_version)))
}

/// Node blocks of one repo held between operations (see the module docs).
#[derive(Debug, Default)]
pub struct RepoBlocks {
    blocks: BlockMap,
    bytes: usize,
}

impl RepoBlocks {
    pub fn blocks(&self) -> &BlockMap {
        &self.blocks
    }

    /// Adds a block (no-op if present). Never evicts, so an operation in progress never loses
    /// a block it faulted in; [`RepoBlocks::trim`] enforces the bounds between operations.
    pub fn insert(&mut self, cid: Cid, bytes: Vec<u8>) {
        if self.blocks.contains(&cid) {
            return;
        }
        let n = bytes.len() + 64;
        self.bytes += n;
        TOTAL.fetch_add(n, Ordering::Relaxed);
        self.blocks.insert(cid, bytes);
    }

    /// Drops this repo's blocks if it is over its bound or the process is over its total (so the
    /// bounds are exceeded by at most one operation's working set).
    pub fn trim(&mut self) {
        if self.bytes > PER_REPO_BYTES || TOTAL.load(Ordering::Relaxed) > TOTAL_BYTES {
            self.clear();
        }
    }

    pub fn clear(&mut self) {
        TOTAL.fetch_sub(self.bytes.min(TOTAL.load(Ordering::Relaxed)), Ordering::Relaxed);
        self.bytes = 0;
        self.blocks = BlockMap::new();
    }
}

impl Drop for RepoBlocks {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Runs `run` against `cache` (whose blocks it may read), faulting in from the `repo_blocks` read
/// model of `did` each block it reports missing (`missing` picks the CID out of its error), until
/// it returns something other than a missing block. The faulted blocks stay in `cache`.
///
/// A block the read model does not hold either is an internal error (the tree is corrupt).
pub async fn faulting<T, E>(
    log: &EventLog,
    did: &str,
    cache: &mut RepoBlocks,
    mut run: impl FnMut(&BlockMap) -> Result<T, E>,
    missing: impl Fn(&E) -> Option<Cid>,
) -> Result<Result<T, E>, CommandError> {
    loop {
        let err = match run(cache.blocks()) {
            Ok(v) => return Ok(Ok(v)),
            Err(e) => e,
        };
        let Some(cid) = missing(&err).filter(|c| !cache.blocks().contains(c)) else {
            return Ok(Err(err));
        };
        let cid_str = cid.to_string();
        let bytes = projections::sync_reads::block(log, did, &cid_str)
            .await?
            .ok_or_else(|| CommandError::Internal(format!("repo {did}: block {cid_str} is not stored")))?;
        cache.insert(cid, bytes);
    }
}

/// The CID a tree walk is missing, if that is what stopped it.
pub fn missing_in_mst(e: &domain::mst::MstError) -> Option<Cid> {
    match e {
        domain::mst::MstError::MissingBlock(c) => Some(*c),
        _ => None,
    }
}
