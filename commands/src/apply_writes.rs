//! createRecord / putRecord / deleteRecord / applyWrites: a batch of record writes → at most one
//! signed commit on `repo/<did>`.
//!
//! Per repo, writes are serialized in this process by a per-DID async mutex, and across processes
//! by compare-and-swap: the append expects the stream version it loaded, and a `Conflict` reloads
//! and decides again (up to 32 times), so a write is never lost and the repo never forks.
//!
//! Only the head and the tree nodes the batch walks are read (`repo_tree`): the head from the last
//! event of the stream, nodes faulted in from `repo_blocks` and kept under the repo's lock
//! between writes, so a write costs O(tree depth), not O(repo size).
//!
//! Lexicon validation (`validate`): `Some(false)` skips it; `Some(true)` validates and refuses an
//! unknown collection; `None` validates known collections and reports `Unknown` for the others.
//! The catalog is built once from the embedded lexicons (`lexicon_docs.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use domain::cbor::{Cid, Ipld};
use domain::crypto::{KeyType, Keypair};
use domain::lexicon::Catalog;
use domain::mst::Mst;
use domain::repo::{self, RepoError, Write, WriteResult};
use domain::syntax::Did;
use domain::tid::TidClock;
use eventlog::{AppendError, ExpectedVersion, NewEvent, StreamAppend};

use crate::repo_tree::{self, RepoBlocks};
use crate::{now, CommandError, Ctx};

/// How many times a write is decided again after losing a race for the repo head.
const MAX_ATTEMPTS: usize = 32;

/// The lexicon verdict on one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationStatus {
    Valid,
    Unknown,
}

/// What a batch did.
#[derive(Debug, Clone)]
pub struct AppliedWrites {
    /// In input order.
    pub results: Vec<WriteResult>,
    /// Per write: `None` for deletes and when validation was skipped.
    pub validation: Vec<Option<ValidationStatus>>,
    /// The head after the batch (the new commit, or the unchanged head for a no-op batch).
    pub commit: Cid,
    pub rev: String,
    /// Whether a commit was appended.
    pub committed: bool,
}

fn catalog() -> &'static Catalog {
    crate::lexicon_docs::catalog()
}

/// The per-repo write lock; it guards the node blocks this process keeps for the repo.
pub(crate) fn repo_lock(did: &str) -> Arc<tokio::sync::Mutex<RepoBlocks>> {
    type Locks = Mutex<HashMap<String, Arc<tokio::sync::Mutex<RepoBlocks>>>>;
    static LOCKS: OnceLock<Locks> = OnceLock::new();
    let map = LOCKS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(did.to_owned()).or_default().clone()
}

fn clock() -> &'static Mutex<TidClock> {
    static CLOCK: OnceLock<Mutex<TidClock>> = OnceLock::new();
    CLOCK.get_or_init(|| Mutex::new(TidClock::with_random_clock_id()))
}

/// Lexicon validation of one write's record.
fn validate_write(write: &Write, validate: Option<bool>) -> Result<Option<ValidationStatus>, CommandError> {
    let (collection, rkey, value) = match write {
        Write::Create { collection, rkey, value } => (collection, rkey.as_deref(), value),
        Write::Update { collection, rkey, value, .. } => (collection, Some(rkey.as_str()), value),
        Write::Delete { .. } => return Ok(None),
    };
    if validate == Some(false) {
        return Ok(None);
    }
    let cat = catalog();
    let def = match cat.get(collection).and_then(|d| d.main()) {
        Some(domain::lexicon::Def::Record(r)) => Some(r),
        _ => None,
    };
    if let (Some(def), Some(rkey)) = (def, rkey) {
        use domain::lexicon::RecordKeyType as K;
        let ok = match &def.key {
            K::Tid => domain::syntax::is_valid_tid(rkey),
            K::Nsid => domain::syntax::is_valid_nsid(rkey),
            K::Literal(l) => rkey == l,
            K::Any => true,
        };
        if !ok {
            return Err(CommandError::InvalidRequest(format!("Invalid record key for {collection}: {rkey}")));
        }
    }
    if def.is_none() {
        return if validate == Some(true) {
            Err(CommandError::InvalidRequest(format!("Lexicon not found: lex:{collection}")))
        } else {
            Ok(Some(ValidationStatus::Unknown))
        };
    }
    let mut record = value.clone();
    if let Ipld::Map(m) = &mut record {
        m.entry("$type".to_owned()).or_insert_with(|| Ipld::String(collection.clone()));
    }
    cat.validate_record(collection, &record)
        .map_err(|e| CommandError::InvalidRequest(format!("Invalid {collection} record: {e}")))?;
    Ok(Some(ValidationStatus::Valid))
}

/// Applies `writes` to the repo of `did` (the caller's own).
pub async fn apply_writes(
    ctx: &Ctx,
    did: &str,
    writes: Vec<Write>,
    swap_commit: Option<Cid>,
    validate: Option<bool>,
) -> Result<AppliedWrites, CommandError> {
    if writes.len() > repo::MAX_WRITES {
        return Err(CommandError::InvalidRequest(format!("Too many writes. Max: {}", repo::MAX_WRITES)));
    }
    let validation = writes.iter().map(|w| validate_write(w, validate)).collect::<Result<Vec<_>, _>>()?;

    let account = crate::load_account_profile(ctx.log(), did).await?;
    let Some(account) = account.live() else {
        return Err(CommandError::RepoNotFound(format!("Could not find repo: {did}")));
    };
    if account.status().is_some() {
        return Err(CommandError::InvalidRequest(format!("Account is not active: {did}")));
    }
    let parsed = Did::parse(did).map_err(|_| CommandError::InvalidRequest(format!("invalid DID {did}")))?;
    let private = domain::key_encryption::decrypt_key(&ctx.kek, did, &account.signing_key_encrypted)
        .map_err(|e| CommandError::Internal(format!("signing key: {e}")))?;
    let key = Keypair::from_private_bytes(KeyType::K256, &private)
        .map_err(|e| CommandError::Internal(format!("signing key: {e}")))?;

    let blob_writes = crate::blob_refs::check_writes(ctx, did, &writes).await?;

    let lock = repo_lock(did);
    let mut cache = lock.lock().await;
    cache.trim();
    let stream = format!("repo/{did}");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some((state, version)) = repo_tree::load_head(ctx.log(), &parsed).await? else {
            return Err(CommandError::RepoNotFound(format!("Could not find repo: {did}")));
        };
        let Some(head) = state.root.clone() else {
            return Err(CommandError::RepoNotFound(format!("Could not find repo: {did}")));
        };
        let (now_micros, _) = now();
        let now_micros = u64::try_from(now_micros).unwrap_or(0);
        let decided = repo_tree::faulting(
            ctx.log(),
            did,
            &mut cache,
            |blocks| {
                let mst = Mst::load(blocks, head.data).map_err(|e| Box::new(RepoError::from(e)))?;
                let mut clock = clock().lock().unwrap_or_else(|p| p.into_inner());
                repo::decide_apply_writes(&state, &mst, blocks, &writes, swap_commit, &key, &mut clock, now_micros)
                    .map_err(Box::new)
            },
            |e| match &**e {
                RepoError::Mst(m) => repo_tree::missing_in_mst(m),
                _ => None,
            },
        )
        .await?;
        let outcome = decided.map_err(|e| repo_error(*e))?;
        let Some(commit) = outcome.commit else {
            return Ok(AppliedWrites {
                results: outcome.results,
                validation,
                commit: head.commit,
                rev: head.rev.to_string(),
                committed: false,
            });
        };
        let new_events = commit
            .events()
            .iter()
            .map(|e| {
                let payload = e.to_payload().map_err(|err| CommandError::Internal(format!("repo payload: {err}")))?;
                let version = i32::try_from(e.event_version()).unwrap_or(i32::MAX);
                let ev = NewEvent::new(e.event_type(), version, payload);
                Ok(if e.is_public() { ev.public() } else { ev })
            })
            .collect::<Result<Vec<_>, CommandError>>()?;
        let expected = ExpectedVersion::Exact(version);
        match ctx.appender.append(vec![StreamAppend::new(stream.clone(), expected, new_events)]).await {
            Ok(_) => {
                blob_writes.after_commit(ctx, did).await;
                // The new nodes are what the next write on this repo walks first.
                let records: Vec<Cid> = commit.event.ops.iter().filter_map(|o| o.cid).collect();
                for (cid, bytes) in commit.new_blocks.iter() {
                    if *cid != commit.root.commit && !records.contains(cid) {
                        cache.insert(*cid, bytes.clone());
                    }
                }
                return Ok(AppliedWrites {
                    results: outcome.results,
                    validation,
                    commit: commit.root.commit,
                    rev: commit.root.rev.to_string(),
                    committed: true,
                })
            }
            Err(AppendError::Conflict { .. }) if attempt < MAX_ATTEMPTS => continue,
            Err(AppendError::Conflict { stream, .. }) => return Err(CommandError::Conflict(stream)),
            Err(e) => return Err(CommandError::Internal(e.to_string())),
        }
    }
}

fn repo_error(e: RepoError) -> CommandError {
    match e {
        RepoError::InvalidSwap(m) => CommandError::InvalidSwap(m.to_string()),
        e @ (RepoError::TooManyWrites { .. }
        | RepoError::InvalidCollection(_)
        | RepoError::InvalidRecordKey(_)
        | RepoError::InvalidRecord { .. }
        | RepoError::RecordAlreadyExists(_)
        | RepoError::RecordTooLarge { .. }
        | RepoError::CommitTooLarge { .. }
        | RepoError::Cbor(_)) => CommandError::InvalidRequest(e.to_string()),
        e => CommandError::Internal(e.to_string()),
    }
}

/// A record as stored: CID and value (DAG-CBOR decoded).
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub rkey: String,
    pub cid: String,
    pub value: Ipld,
}

fn decode(row: projections::records::RecordRow) -> Result<StoredRecord, CommandError> {
    let value = domain::cbor::decode(&row.bytes).map_err(|e| CommandError::Internal(format!("stored record: {e}")))?;
    Ok(StoredRecord { rkey: row.rkey, cid: row.cid, value })
}

/// getRecord: the record at `did/collection/rkey` (`RecordNotFound` when absent or not `cid`).
pub async fn get_record(ctx: &Ctx, did: &str, collection: &str, rkey: &str, cid: Option<&str>) -> Result<StoredRecord, CommandError> {
    let uri = format!("at://{did}/{collection}/{rkey}");
    let row = projections::records::get(ctx.log(), did, collection, rkey).await?;
    match row {
        Some(r) if cid.is_none_or(|c| c == r.cid) => decode(r),
        _ => Err(CommandError::RecordNotFound(format!("Could not locate record: {uri}"))),
    }
}

/// listRecords: a page of `collection`.
pub async fn list_records(
    ctx: &Ctx,
    did: &str,
    collection: &str,
    limit: i64,
    cursor: Option<&str>,
    reverse: bool,
) -> Result<Vec<StoredRecord>, CommandError> {
    projections::records::list(ctx.log(), did, collection, limit, cursor, reverse).await?.into_iter().map(decode).collect()
}
