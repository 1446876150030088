//! `decide_apply_writes`: a batch of record writes (createRecord, putRecord, deleteRecord,
//! applyWrites) → at most one signed commit, as a `repo.committed` event.
//!
//! Never loads or stores blocks itself: it reads the tree through the `BlockSource` it is given
//! and returns the blocks to store. Never validates records against lexicons (the caller does, and
//! owns `validationStatus`); it checks only what the repo itself requires.

use std::collections::{BTreeMap, HashSet};

use crate::car;
use crate::cbor::{self, Cid, Ipld};
use crate::commit::{next_rev, UnsignedCommit};
use crate::crypto::Keypair;
use crate::json::{blob_ref_from_ipld, validate_data_model, BlobRef};
use crate::mst::{diff, is_valid_mst_key, BlockMap, BlockSource, Mst};
use crate::syntax::{is_valid_nsid, is_valid_record_key};
use crate::tid::TidClock;

use super::events::{Committed, RepoEvent, RepoOp};
use super::state::{RepoRoot, RepoState};
use super::{RepoError, SwapMismatch, SwapTarget};

/// Most writes in one commit (reference: "Too many writes. Max: 200"; lexicon `ops` maxLength).
pub const MAX_WRITES: usize = 200;
/// Largest record block (sync spec: "individual record blocks … one million bytes").
pub const MAX_RECORD_BYTES: usize = 1_000_000;
/// Largest CAR slice of one commit (`#commit.blocks` maxLength). Measured on the whole CAR
/// (header and CIDs included), so the frame always fits the lexicon; the reference measures
/// the sum of block bytes, a little less.
pub const MAX_COMMIT_BLOCKS_BYTES: usize = 2_000_000;

/// One write of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// createRecord / applyWrites#create. No `rkey` → a fresh TID. Fails if the path exists.
    Create {
        collection: String,
        rkey: Option<String>,
        value: Ipld,
    },
    /// putRecord / applyWrites#update: creates when absent; the same record again is a no-op.
    /// `swap_record`: `None` = no condition, `Some(None)` = must not exist, `Some(Some(c))` =
    /// must currently be `c`.
    Update {
        collection: String,
        rkey: String,
        value: Ipld,
        swap_record: Option<Option<Cid>>,
    },
    /// deleteRecord / applyWrites#delete: deleting an absent record is a no-op.
    /// `swap_record`: must currently be this CID.
    Delete {
        collection: String,
        rkey: String,
        swap_record: Option<Cid>,
    },
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteEffect {
    Created,
    Updated,
    Deleted,
    /// No change: a put of the record already there, or a delete of an absent record.
    Unchanged,
}

/// Result of one write, in input order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteResult {
    /// `at://<did>/<collection>/<rkey>`.
    pub uri: String,
    pub collection: String,
    pub rkey: String,
    /// The record's CID after the write (`None` once deleted or when absent).
    pub cid: Option<Cid>,
    pub effect: WriteEffect,
}

/// A commit to append.
#[derive(Clone, Debug)]
pub struct NewCommit {
    pub event: Committed,
    /// The tree after the commit (its root is `event.data`).
    pub mst: Mst,
    pub root: RepoRoot,
    /// Blocks new in this rev, to store: the commit block, the new MST nodes, the new records.
    pub new_blocks: BlockMap,
}

impl NewCommit {
    /// The events to append, in order.
    pub fn events(&self) -> Vec<RepoEvent> {
        vec![RepoEvent::Committed(self.event.clone())]
    }
}

/// Outcome of a batch: per-write results and, unless every write was a no-op, the commit.
#[derive(Clone, Debug)]
pub struct ApplyWritesOutcome {
    pub results: Vec<WriteResult>,
    pub commit: Option<NewCommit>,
}

/// Decides a batch of writes against the repo's current head.
///
/// `mst` must be the tree of `state`'s head and `blocks` must hold its stored nodes. Writes apply
/// in order (each sees the ones before it); `ops` are the net change per path. Errors leave
/// nothing to append.
#[allow(clippy::too_many_arguments)]
pub fn decide_apply_writes(
    state: &RepoState,
    mst: &Mst,
    blocks: &dyn BlockSource,
    writes: &[Write],
    swap_commit: Option<Cid>,
    key: &Keypair,
    clock: &mut TidClock,
    now_micros: u64,
) -> Result<ApplyWritesOutcome, RepoError> {
    if writes.len() > MAX_WRITES {
        return Err(RepoError::TooManyWrites {
            count: writes.len(),
            max: MAX_WRITES,
        });
    }
    let Some(head) = &state.root else {
        return Err(RepoError::NotInitialized(state.did.to_string()));
    };
    if let Some(expected) = swap_commit {
        if expected != head.commit {
            return Err(swap_error(
                SwapTarget::Commit,
                Some(expected),
                Some(head.commit),
            ));
        }
    }
    let given = mst.root_cid()?;
    if given != head.data {
        return Err(RepoError::StaleTree {
            given: Box::new(given),
            expected: Box::new(head.data),
        });
    }

    let mut tree = mst.clone();
    let mut results = Vec::with_capacity(writes.len());
    // Path → value before the batch, in first-touch order.
    let mut touched: Vec<(String, Option<Cid>)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    // Record blocks and blob refs of every record put, by CID.
    let mut records: BTreeMap<Cid, (Vec<u8>, Vec<Cid>)> = BTreeMap::new();

    for write in writes {
        let (collection, rkey) = match write {
            Write::Create {
                collection, rkey, ..
            } => {
                let rkey = match rkey {
                    Some(r) => r.clone(),
                    None => clock.next(now_micros).to_string(),
                };
                (collection, rkey)
            }
            Write::Update {
                collection, rkey, ..
            }
            | Write::Delete {
                collection, rkey, ..
            } => (collection, rkey.clone()),
        };
        let path = checked_path(collection, &rkey)?;
        let current = tree.get(blocks, &path)?;
        if seen.insert(path.clone()) {
            touched.push((path.clone(), current));
        }

        let (cid, effect) = match write {
            Write::Create { value, .. } => {
                let (cid, bytes, blobs) = prepare_record(collection, &path, value)?;
                if current.is_some() {
                    return Err(RepoError::RecordAlreadyExists(path));
                }
                tree.put(blocks, &path, cid)?;
                records.insert(cid, (bytes, blobs));
                (Some(cid), WriteEffect::Created)
            }
            Write::Update {
                value, swap_record, ..
            } => {
                if let Some(expected) = swap_record {
                    if *expected != current {
                        return Err(swap_error(SwapTarget::Record(path), *expected, current));
                    }
                }
                let (cid, bytes, blobs) = prepare_record(collection, &path, value)?;
                if current == Some(cid) {
                    (Some(cid), WriteEffect::Unchanged)
                } else {
                    tree.put(blocks, &path, cid)?;
                    records.insert(cid, (bytes, blobs));
                    let effect = if current.is_some() {
                        WriteEffect::Updated
                    } else {
                        WriteEffect::Created
                    };
                    (Some(cid), effect)
                }
            }
            Write::Delete { swap_record, .. } => {
                if let Some(expected) = swap_record {
                    if Some(*expected) != current {
                        return Err(swap_error(
                            SwapTarget::Record(path),
                            Some(*expected),
                            current,
                        ));
                    }
                }
                if current.is_none() {
                    (None, WriteEffect::Unchanged)
                } else {
                    tree.delete(blocks, &path)?;
                    (None, WriteEffect::Deleted)
                }
            }
        };
        results.push(WriteResult {
            uri: format!("at://{}/{}", state.did, path),
            collection: collection.clone(),
            rkey,
            cid,
            effect,
        });
    }

    // Net change per path.
    let mut ops = Vec::new();
    for (path, before) in touched {
        let after = tree.get(blocks, &path)?;
        let op = crate::mst::RecordOp {
            path,
            old: before,
            new: after,
        };
        if let Some(op) = RepoOp::from_record_op(&op) {
            ops.push(op);
        }
    }
    if ops.is_empty() {
        return Ok(ApplyWritesOutcome {
            results,
            commit: None,
        });
    }

    let data = tree.root_cid()?;
    let rev = next_rev(clock, now_micros, Some(&head.rev));
    let signed = UnsignedCommit::new(state.did.clone(), data, rev).sign(key)?;
    let (commit_cid, commit_bytes) = signed.encode_with_cid()?;

    // Blocks new in this rev: commit, new MST nodes, the records the ops point at.
    let created_nodes = diff(mst, &tree, blocks)?.created_nodes;
    let mut new_blocks = created_nodes;
    let mut blobs: Vec<Cid> = Vec::new();
    for op in &ops {
        let Some(cid) = op.cid else { continue };
        if let Some((bytes, record_blobs)) = records.get(&cid) {
            new_blocks.insert(cid, bytes.clone());
            for b in record_blobs {
                if !blobs.contains(b) {
                    blobs.push(*b);
                }
            }
        }
    }

    // The CAR slice: commit first, then the new blocks and the covering proofs of every op.
    let paths: Vec<&str> = ops.iter().map(|o| o.path.as_str()).collect();
    let mut slice = new_blocks.clone();
    slice.extend(tree.covering_proof_for(blocks, &paths)?);
    let car_bytes = commit_car(commit_cid, &commit_bytes, slice);
    if car_bytes.len() > MAX_COMMIT_BLOCKS_BYTES {
        return Err(RepoError::CommitTooLarge {
            size: car_bytes.len(),
            max: MAX_COMMIT_BLOCKS_BYTES,
        });
    }
    new_blocks.insert(commit_cid, commit_bytes);

    let event = Committed {
        did: state.did.clone(),
        commit: commit_cid,
        rev,
        since: Some(head.rev),
        data,
        prev_data: Some(head.data),
        ops,
        blocks: car_bytes,
        blobs,
    };
    Ok(ApplyWritesOutcome {
        results,
        commit: Some(NewCommit {
            event,
            mst: tree,
            root: RepoRoot {
                commit: commit_cid,
                rev,
                data,
            },
            new_blocks,
        }),
    })
}

/// A CAR with root `commit`: the commit block first, then `rest` (without a second commit copy).
pub(super) fn commit_car(commit: Cid, commit_bytes: &[u8], rest: BlockMap) -> Vec<u8> {
    let mut out = car::encode_header(&[commit]);
    out.extend_from_slice(&car::encode_block(&commit, commit_bytes));
    for (cid, bytes) in rest.iter() {
        if *cid != commit {
            out.extend_from_slice(&car::encode_block(cid, bytes));
        }
    }
    out
}

fn swap_error(target: SwapTarget, expected: Option<Cid>, actual: Option<Cid>) -> RepoError {
    RepoError::InvalidSwap(Box::new(SwapMismatch {
        target,
        expected,
        actual,
    }))
}

fn checked_path(collection: &str, rkey: &str) -> Result<String, RepoError> {
    if !is_valid_nsid(collection) {
        return Err(RepoError::InvalidCollection(collection.to_string()));
    }
    if !is_valid_record_key(rkey) {
        return Err(RepoError::InvalidRecordKey(rkey.to_string()));
    }
    let path = format!("{collection}/{rkey}");
    if !is_valid_mst_key(&path) {
        return Err(RepoError::InvalidRecordKey(rkey.to_string()));
    }
    Ok(path)
}

/// The record as stored: `$type` filled in (or checked), data-model rules, size; its block, CID
/// and the blobs it references.
fn prepare_record(
    collection: &str,
    path: &str,
    value: &Ipld,
) -> Result<(Cid, Vec<u8>, Vec<Cid>), RepoError> {
    let invalid = |reason: String| RepoError::InvalidRecord {
        path: path.to_string(),
        reason,
    };
    let Ipld::Map(map) = value else {
        return Err(invalid("a record must be an object".to_string()));
    };
    let mut map = map.clone();
    match map.get("$type") {
        None => {
            map.insert("$type".to_string(), Ipld::String(collection.to_string()));
        }
        Some(Ipld::String(t)) if t == collection => {}
        Some(Ipld::String(t)) => {
            return Err(invalid(format!(
                "Invalid $type: expected {collection}, got {t}"
            )))
        }
        Some(_) => return Err(invalid("$type must be a string".to_string())),
    }
    let record = Ipld::Map(map);
    validate_data_model(&record).map_err(|e| invalid(e.to_string()))?;
    let mut blobs = Vec::new();
    find_blobs(&record, &mut blobs).map_err(invalid)?;
    let bytes = cbor::encode(&record)?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(RepoError::RecordTooLarge {
            path: path.to_string(),
            size: bytes.len(),
            max: MAX_RECORD_BYTES,
        });
    }
    Ok((cbor::cid_cbor(&bytes), bytes, blobs))
}

/// Typed blob refs anywhere in the record (legacy `{cid, mimeType}` refs may not be written).
fn find_blobs(v: &Ipld, out: &mut Vec<Cid>) -> Result<(), String> {
    match v {
        Ipld::Map(m) => {
            match blob_ref_from_ipld(v) {
                Some(BlobRef::Typed { cid, .. }) => {
                    if !out.contains(&cid) {
                        out.push(cid);
                    }
                    return Ok(());
                }
                Some(BlobRef::Legacy { .. }) => {
                    return Err("legacy blob references cannot be written".to_string())
                }
                None => {}
            }
            m.values().try_for_each(|x| find_blobs(x, out))
        }
        Ipld::List(l) => l.iter().try_for_each(|x| find_blobs(x, out)),
        _ => Ok(()),
    }
}
