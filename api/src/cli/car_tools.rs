//! Operator tools over repository CAR files: `pds car inspect | verify | diff`.
//! Reads files and renders reports; every check itself is `domain`'s (commit, MST, CAR).

// Errors here end a one-shot CLI command; their size is irrelevant.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::Path;

use domain::car::{CarError, CarReader};
use domain::cbor::Cid;
use domain::commit::{Commit, CommitError};
use domain::crypto::{CryptoError, PublicKey};
use domain::mst::{self, BlockMap, Mst, MstError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum CarToolError {
    #[error("{path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("{path}: not a valid CAR file: {source}")]
    Car { path: String, source: CarError },
    #[error("{path}: the CAR header names no root")]
    NoRoot { path: String },
    #[error("{path}: root block {cid} is not in the file")]
    MissingRoot { path: String, cid: Cid },
    #[error("{path}: root block {cid} is not a repo commit: {source}")]
    NotACommit { path: String, cid: Cid, source: CommitError },
    #[error("{path}: MST is invalid: {source}")]
    Mst { path: String, source: MstError },
    #[error("{path}: record {key} ({cid}) is not in the file")]
    MissingRecord { path: String, key: String, cid: Cid },
    #[error("commit is for {found}, expected {expected}")]
    DidMismatch { expected: String, found: String },
    #[error("--key {key}: not a did:key: {source}")]
    BadKey { key: String, source: CryptoError },
    #[error("commit signature does not verify with {key}: {source}")]
    Signature { key: String, source: CommitError },
    #[error("diff: {0}")]
    Diff(MstError),
}

/// A repository read from a CAR file: the signed commit, its MST and every block.
pub struct CarRepo {
    pub commit_cid: Cid,
    pub commit: Commit,
    pub blocks: BlockMap,
    pub mst: Mst,
}

/// Reads a CAR file (streaming, hash-checked), decodes its root commit and loads the full MST
/// (which validates every node's structure).
pub fn load(path: &Path) -> Result<CarRepo, CarToolError> {
    let p = || path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| CarToolError::Open { path: p(), source })?;
    let car_err = |source| CarToolError::Car { path: p(), source };
    let mut reader = CarReader::new(BufReader::new(file)).map_err(car_err)?;
    let commit_cid = *reader.roots().first().ok_or_else(|| CarToolError::NoRoot { path: p() })?;
    let mut blocks = BlockMap::new();
    while let Some((cid, bytes)) = reader.next_block().map_err(car_err)? {
        blocks.insert(cid, bytes);
    }
    let commit_bytes = blocks.get(&commit_cid).ok_or(CarToolError::MissingRoot { path: p(), cid: commit_cid })?;
    let commit = Commit::decode(commit_bytes)
        .map_err(|source| CarToolError::NotACommit { path: p(), cid: commit_cid, source })?;
    let mst = Mst::load_all(&blocks, commit.data).map_err(|source| CarToolError::Mst { path: p(), source })?;
    Ok(CarRepo { commit_cid, commit, blocks, mst })
}

fn entries(repo: &CarRepo, path: &Path) -> Result<Vec<(String, Cid)>, CarToolError> {
    repo.mst
        .entries(&repo.blocks)
        .map_err(|source| CarToolError::Mst { path: path.display().to_string(), source })
}

/// `pds car inspect`: root, commit fields, node and record counts, records per collection.
pub fn inspect(path: &Path) -> Result<serde_json::Value, CarToolError> {
    let repo = load(path)?;
    let entries = entries(&repo, path)?;
    let mut per_collection: BTreeMap<String, u64> = BTreeMap::new();
    for (key, _) in &entries {
        let collection = key.split_once('/').map_or(key.as_str(), |(c, _)| c);
        *per_collection.entry(collection.to_string()).or_default() += 1;
    }
    let nodes = repo
        .mst
        .node_blocks(&repo.blocks)
        .map_err(|source| CarToolError::Mst { path: path.display().to_string(), source })?
        .len();
    Ok(json!({
        "root": repo.commit_cid.to_string(),
        "commit": {
            "did": repo.commit.did.as_str(),
            "version": repo.commit.version,
            "rev": repo.commit.rev.as_str(),
            "data": repo.commit.data.to_string(),
            "prev": repo.commit.prev.map(|c| c.to_string()),
        },
        "blocks": repo.blocks.len(),
        "mst_nodes": nodes,
        "records": entries.len(),
        "collections": per_collection,
    }))
}

/// `pds car verify`: the root is a commit (of `did`, signed by `key`, when given), the MST is
/// well-formed, and every record it names is in the file.
pub fn verify(path: &Path, did: Option<&str>, key: Option<&str>) -> Result<serde_json::Value, CarToolError> {
    let repo = load(path)?;
    if let Some(expected) = did {
        if repo.commit.did.as_str() != expected {
            return Err(CarToolError::DidMismatch {
                expected: expected.to_string(),
                found: repo.commit.did.to_string(),
            });
        }
    }
    let signature = match key {
        Some(k) => {
            let public = PublicKey::from_did_key(k)
                .map_err(|source| CarToolError::BadKey { key: k.to_string(), source })?;
            repo.commit
                .verify(&public)
                .map_err(|source| CarToolError::Signature { key: k.to_string(), source })?;
            "verified"
        }
        None => "not checked (no --key)",
    };
    let entries = entries(&repo, path)?;
    for (k, cid) in &entries {
        if repo.blocks.get(cid).is_none() {
            return Err(CarToolError::MissingRecord { path: path.display().to_string(), key: k.clone(), cid: *cid });
        }
    }
    Ok(json!({
        "ok": true,
        "did": repo.commit.did.as_str(),
        "rev": repo.commit.rev.as_str(),
        "records": entries.len(),
        "signature": signature,
    }))
}

/// `pds car diff A B`: how B's tree differs from A's — nodes created and deleted, record
/// operations, and the covering-proof nodes a consumer needs to invert B's operations.
pub fn diff(a: &Path, b: &Path) -> Result<serde_json::Value, CarToolError> {
    let old = load(a)?;
    let new = load(b)?;
    let src = (&old.blocks, &new.blocks);
    let d = mst::diff(&old.mst, &new.mst, &src).map_err(CarToolError::Diff)?;
    let paths: Vec<&str> = d.ops.iter().map(|op| op.path.as_str()).collect();
    let proof = new.mst.covering_proof_for(&src, &paths).map_err(CarToolError::Diff)?;
    let mut created: Vec<String> = d.created_nodes.cids().map(Cid::to_string).collect();
    let mut deleted: Vec<String> = d.deleted_nodes.iter().map(Cid::to_string).collect();
    let mut proof_nodes: Vec<String> = proof.cids().map(Cid::to_string).collect();
    created.sort();
    deleted.sort();
    proof_nodes.sort();
    let mut ops: Vec<_> = d.ops.iter().collect();
    ops.sort_by(|x, y| x.path.cmp(&y.path));
    let record_ops: Vec<_> = ops
        .iter()
        .map(|op| {
            json!({
                "rpath": op.path,
                "old_value": op.old.map(|c| c.to_string()),
                "new_value": op.new.map(|c| c.to_string()),
            })
        })
        .collect();
    Ok(json!({
        "created_nodes": created,
        "deleted_nodes": deleted,
        "record_ops": record_ops,
        "proof_nodes": proof_nodes,
    }))
}
