//! `importRepo`, the pure part: what a CAR's root commit must be ([`check_import_commit`]), and
//! how an imported tree becomes bounded events ([`ImportChunker`]): `repo.import_started`, then
//! `repo.import_chunk`s of at most about [`CHUNK_BYTES`] of blocks each (every record's block in
//! the same chunk as its path), then `repo.imported`. Reading the CAR and walking the tree
//! (`mst::TreeWalk`) are the caller's: nothing here holds more than one chunk.

use crate::car;
use crate::cbor::{self, Cid};
use crate::commit::{Commit, CommitError};
use crate::crypto::PublicKey;
use crate::syntax::Did;
use crate::tid::Tid;

use super::events::{ImportChunk, ImportStarted, Imported, RepoEvent};

/// Target size of one chunk's blocks (a chunk closes once it reaches this; one record block
/// more at most, and blocks are limited by the CAR reader).
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Why an imported repo is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    #[error("expected one root, found {0}")]
    RootCount(usize),
    #[error("the root block {0} is not in the CAR")]
    RootMissing(Cid),
    #[error("the root block {cid} is not a repo commit: {reason}")]
    NotACommit { cid: Cid, reason: String },
    #[error("the commit is for {found}, not {expected}")]
    WrongDid { expected: String, found: String },
    #[error("the commit's signature does not verify against the account's signing key")]
    BadSignature,
    #[error("the repo's tree is invalid: {0}")]
    Tree(String),
    #[error("the block of record {path} ({cid}) is not in the CAR")]
    RecordMissing { path: String, cid: Cid },
    #[error("Could not parse record at '{0}'")]
    BadRecord(String),
}

/// Decodes and checks the root commit of an imported CAR: a repo commit, for `did`, and — when
/// `key` is given (the account is already ours) — signed by it.
pub fn check_import_commit(did: &Did, cid: &Cid, bytes: &[u8], key: Option<&PublicKey>) -> Result<Commit, ImportError> {
    let not_commit = |e: CommitError| ImportError::NotACommit { cid: *cid, reason: e.to_string() };
    if cid.codec() != cbor::DAG_CBOR {
        return Err(ImportError::NotACommit { cid: *cid, reason: "not a dag-cbor block".into() });
    }
    let commit = Commit::decode(bytes).map_err(not_commit)?;
    if commit.did != *did {
        return Err(ImportError::WrongDid { expected: did.to_string(), found: commit.did.to_string() });
    }
    if let Some(key) = key {
        commit.verify(key).map_err(|_| ImportError::BadSignature)?;
    }
    Ok(commit)
}

/// Whether a record block is acceptable: canonical DAG-CBOR of a map (what the record index and
/// the blob references are read from).
pub fn check_record(path: &str, bytes: &[u8]) -> Result<(), ImportError> {
    match cbor::decode(bytes) {
        Ok(cbor::Ipld::Map(_)) => Ok(()),
        _ => Err(ImportError::BadRecord(path.to_string())),
    }
}

/// Cuts an imported tree into events (see the module docs). Feed it every node block and every
/// record (with its block) in walk order; take full chunks with [`ImportChunker::take_full`].
pub struct ImportChunker {
    did: Did,
    commit: Cid,
    rev: Tid,
    part: u64,
    records_total: u64,
    records: Vec<(String, Cid)>,
    blocks: Vec<u8>,
    block_bytes: usize,
}

impl ImportChunker {
    /// Starts an import of `commit` (at `rev`); the first event is `repo.import_started`.
    pub fn new(did: Did, commit: Cid, rev: Tid) -> (ImportChunker, RepoEvent) {
        let started = RepoEvent::ImportStarted(ImportStarted { did: did.clone(), commit, rev });
        let chunker = ImportChunker {
            did,
            commit,
            rev,
            part: 0,
            records_total: 0,
            records: Vec::new(),
            blocks: car::encode_header(&[commit]),
            block_bytes: 0,
        };
        (chunker, started)
    }

    pub fn add_block(&mut self, cid: &Cid, bytes: &[u8]) {
        self.block_bytes += bytes.len();
        self.blocks.extend_from_slice(&car::encode_block(cid, bytes));
    }

    /// A record and its block (the block goes into this chunk even if an earlier chunk had it).
    pub fn add_record(&mut self, path: String, cid: Cid, bytes: &[u8]) {
        self.records.push((path, cid));
        self.records_total += 1;
        self.add_block(&cid, bytes);
    }

    /// The current chunk as an event, if it has reached [`CHUNK_BYTES`].
    pub fn take_full(&mut self) -> Option<RepoEvent> {
        (self.block_bytes >= CHUNK_BYTES).then(|| self.take())
    }

    fn take(&mut self) -> RepoEvent {
        let chunk = ImportChunk {
            did: self.did.clone(),
            commit: self.commit,
            rev: self.rev,
            part: self.part,
            records: std::mem::take(&mut self.records),
            blocks: std::mem::replace(&mut self.blocks, car::encode_header(&[self.commit])),
        };
        self.part += 1;
        self.block_bytes = 0;
        RepoEvent::ImportChunk(chunk)
    }

    /// The last chunk (if anything is left) and `repo.imported` for the commit block and its
    /// MST root `data`.
    pub fn finish(mut self, commit_bytes: &[u8], data: Cid) -> Vec<RepoEvent> {
        let mut out = Vec::new();
        if !self.records.is_empty() || self.block_bytes > 0 {
            out.push(self.take());
        }
        out.push(RepoEvent::Imported(Imported {
            did: self.did.clone(),
            commit: self.commit,
            rev: self.rev,
            data,
            parts: self.part,
            records: self.records_total,
            blocks: car::write_car(&[self.commit], [(self.commit, commit_bytes.to_vec())]),
        }));
        out
    }
}
