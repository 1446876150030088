//! `decide_genesis`: a new account's empty repo — its first signed commit, announced as
//! `repo.committed` (no ops, no `since`, no `prevData`) followed by `repo.synced`.
//!
//! Never checks whether the repo already exists: the caller appends at stream version 0.

use crate::cbor::Cid;
use crate::commit::{next_rev, UnsignedCommit};
use crate::crypto::Keypair;
use crate::mst::{BlockMap, Mst, NoBlocks};
use crate::syntax::Did;
use crate::tid::TidClock;

use super::apply_writes::commit_car;
use super::events::{Committed, RepoEvent, Synced};
use super::state::RepoRoot;
use super::RepoError;

/// The genesis commit.
#[derive(Clone, Debug)]
pub struct Genesis {
    /// `repo.committed` then `repo.synced`.
    pub events: Vec<RepoEvent>,
    /// The empty tree.
    pub mst: Mst,
    pub root: RepoRoot,
    /// Blocks to store: the commit and the empty MST node.
    pub new_blocks: BlockMap,
}

/// The first commit of `did`'s repo, signed with `key`.
pub fn decide_genesis(
    did: Did,
    key: &Keypair,
    clock: &mut TidClock,
    now_micros: u64,
) -> Result<Genesis, RepoError> {
    let mst = Mst::new();
    let data = mst.root_cid()?;
    let rev = next_rev(clock, now_micros, None);
    let signed = UnsignedCommit::new(did.clone(), data, rev).sign(key)?;
    let (commit, commit_bytes) = signed.encode_with_cid()?;

    let mut nodes = BlockMap::new();
    for (cid, bytes) in mst.node_blocks(&NoBlocks)? {
        nodes.insert(cid, bytes);
    }
    let blocks = commit_car(commit, &commit_bytes, nodes.clone());
    let sync_blocks = commit_car(commit, &commit_bytes, BlockMap::new());
    let mut new_blocks = nodes;
    new_blocks.insert(commit, commit_bytes);

    let committed = Committed {
        did: did.clone(),
        commit,
        rev,
        since: None,
        data,
        prev_data: None,
        ops: Vec::new(),
        blocks,
        blobs: Vec::new(),
    };
    let synced = Synced {
        did,
        commit,
        rev,
        data,
        blocks: sync_blocks,
    };
    Ok(Genesis {
        events: vec![RepoEvent::Committed(committed), RepoEvent::Synced(synced)],
        mst,
        root: RepoRoot { commit, rev, data },
        new_blocks,
    })
}

/// The commit CID of a genesis (convenience for callers that only need the head).
impl Genesis {
    pub fn commit(&self) -> Cid {
        self.root.commit
    }
}
