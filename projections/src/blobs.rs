//! `blobs` (inline): which blobs each account has stored and which records reference them.
//!
//! - `blobs` (did, cid → mime type, size, uploaded_at, takedown_ref): a row per `blob.uploaded`
//!   (a re-upload only moves `uploaded_at`); removed by `blob.expired` (a temporary blob past its
//!   grace period) and when the commit that drops a blob's last reference is applied;
//!   `blob.takedown_updated` sets or clears `takedown_ref`.
//! - `record_blobs` (did, path, cid, rev): from each `repo.committed` op, the blob refs of the
//!   record block it writes (read from the event's CAR slice), replacing the path's earlier refs.
//!
//! An import (`repo.import_started`, `repo.import_chunk`s) replaces the repo's references with
//! those of the imported records.
//!
//! A blob with a `blobs` row and no `record_blobs` row is temporary; a `record_blobs` row with no
//! `blobs` row is a missing blob (`listMissingBlobs`). Never touches the blob store: deleting the
//! bytes is the commands' job, after the append.

use std::collections::{BTreeSet, HashMap};

use domain::blob::{BlobEvent, BLOB_EXPIRED, BLOB_TAKEDOWN_UPDATED, BLOB_UPLOADED};
use domain::car;
use domain::cbor::Cid;
use domain::repo::{RepoEvent, REPO_COMMITTED, REPO_IMPORT_CHUNK, REPO_IMPORT_STARTED};
use eventlog::{Envelope, EventLog, ReadPool, Tx};
use futures_util::future::BoxFuture;

use crate::sql::{exec, insert_rows, numbered, Arg};
use crate::{Kind, ProjectionError, Projector, Table};

pub const NAME: &str = "blobs";

pub const PROJECTOR: Projector = Projector {
    name: NAME,
    kind: Kind::Inline,
    handles: &[BLOB_UPLOADED, BLOB_EXPIRED, BLOB_TAKEDOWN_UPDATED, REPO_COMMITTED, REPO_IMPORT_STARTED, REPO_IMPORT_CHUNK],
    tables: &[
        Table { name: "blobs", columns: &["did", "cid", "mime_type", "size", "uploaded_at", "takedown_ref"] },
        Table { name: "record_blobs", columns: &["did", "path", "cid", "rev"] },
    ],
    apply,
};

/// Deletes the path's refs and returns the CIDs they pointed at.
async fn take_refs(tx: &mut Tx<'_>, did: &str, path: &str) -> Result<Vec<String>, sqlx::Error> {
    let sql = "DELETE FROM record_blobs WHERE did = ? AND path = ? RETURNING cid";
    match tx {
        Tx::Sqlite(c) => sqlx::query_scalar(sql).bind(did).bind(path).fetch_all(&mut **c).await,
        Tx::Postgres(c) => sqlx::query_scalar(&numbered(sql)).bind(did).bind(path).fetch_all(&mut **c).await,
    }
}

fn apply<'a>(mut tx: Tx<'a>, events: &'a [&'a Envelope]) -> BoxFuture<'a, Result<(), ProjectionError>> {
    Box::pin(async move {
        for e in events {
            let fail = |message: String| ProjectionError::Apply { projector: NAME, position: e.position, message };
            let version = u32::try_from(e.event_version).map_err(|_| fail("negative event version".into()))?;
            if e.event_type == REPO_IMPORT_STARTED || e.event_type == REPO_IMPORT_CHUNK {
                let event =
                    RepoEvent::from_payload(&e.event_type, version, &e.payload).map_err(|err| fail(err.to_string()))?;
                match &event {
                    // An import replaces every record, so every reference; stored blobs stay (a
                    // blob no imported record references is temporary again, for the cleaner).
                    RepoEvent::ImportStarted(i) => {
                        exec(&mut tx, "DELETE FROM record_blobs WHERE did = ?", &[i.did.as_str().into()]).await?;
                    }
                    RepoEvent::ImportChunk(i) => {
                        let (did, rev) = (i.did.as_str(), i.rev.to_string());
                        let (_, blocks) = car::read_car(&i.blocks).map_err(|err| fail(format!("CAR slice: {err}")))?;
                        let blocks: HashMap<Cid, Vec<u8>> = blocks.into_iter().collect();
                        let mut rows = Vec::new();
                        for (path, cid) in &i.records {
                            let bytes =
                                blocks.get(cid).ok_or_else(|| fail(format!("record block {cid} not in the chunk")))?;
                            let record =
                                domain::cbor::decode(bytes).map_err(|err| fail(format!("record {cid}: {err}")))?;
                            for r in domain::blob::refs(&record) {
                                let row: Vec<Arg> =
                                    vec![did.into(), path.clone().into(), r.cid().to_string().into(), rev.clone().into()];
                                rows.push(row);
                            }
                        }
                        insert_rows(&mut tx, "INSERT INTO record_blobs (did, path, cid, rev)", "ON CONFLICT DO NOTHING", rows)
                            .await?;
                    }
                    _ => {}
                }
                continue;
            }
            if e.event_type == REPO_COMMITTED {
                let event =
                    RepoEvent::from_payload(&e.event_type, version, &e.payload).map_err(|err| fail(err.to_string()))?;
                let RepoEvent::Committed(c) = &event else { continue };
                let did = c.did.as_str();
                let rev = c.rev.to_string();
                let (_, blocks) = car::read_car(&c.blocks).map_err(|err| fail(format!("CAR slice: {err}")))?;
                let blocks: HashMap<Cid, Vec<u8>> = blocks.into_iter().collect();
                let mut dropped = BTreeSet::new();
                for op in &c.ops {
                    // A created path had no record, so no refs: one statement less per create.
                    if op.action != domain::mst::OpAction::Create {
                        dropped.extend(take_refs(&mut tx, did, &op.path).await?);
                    }
                    let Some(cid) = op.cid else { continue };
                    let bytes = blocks.get(&cid).ok_or_else(|| fail(format!("record block {cid} not in the CAR slice")))?;
                    let record = domain::cbor::decode(bytes).map_err(|err| fail(format!("record {cid}: {err}")))?;
                    for r in domain::blob::refs(&record) {
                        exec(
                            &mut tx,
                            "INSERT INTO record_blobs (did, path, cid, rev) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                            &[did.into(), op.path.clone().into(), r.cid().to_string().into(), rev.clone().into()],
                        )
                        .await?;
                    }
                }
                for cid in dropped {
                    exec(
                        &mut tx,
                        "DELETE FROM blobs WHERE did = ? AND cid = ? \
                         AND NOT EXISTS (SELECT 1 FROM record_blobs r WHERE r.did = ? AND r.cid = ?)",
                        &[did.into(), cid.clone().into(), did.into(), cid.into()],
                    )
                    .await?;
                }
                continue;
            }
            let event =
                BlobEvent::from_payload(&e.event_type, version, &e.payload).map_err(|err| fail(err.to_string()))?;
            let did = event.did().to_string();
            let cid = event.cid().to_string();
            match event {
                BlobEvent::Uploaded { mime_type, size, .. } => {
                    let size = i64::try_from(size).map_err(|_| fail("size out of range".into()))?;
                    exec(
                        &mut tx,
                        "INSERT INTO blobs (did, cid, mime_type, size, uploaded_at, takedown_ref) VALUES (?, ?, ?, ?, ?, NULL) \
                         ON CONFLICT (did, cid) DO UPDATE SET uploaded_at = excluded.uploaded_at",
                        &[did.into(), cid.into(), mime_type.into(), size.into(), e.recorded_at.into()],
                    )
                    .await?;
                }
                BlobEvent::Expired { .. } => {
                    exec(
                        &mut tx,
                        "DELETE FROM blobs WHERE did = ? AND cid = ? \
                         AND NOT EXISTS (SELECT 1 FROM record_blobs r WHERE r.did = ? AND r.cid = ?)",
                        &[did.clone().into(), cid.clone().into(), did.into(), cid.into()],
                    )
                    .await?;
                }
                BlobEvent::TakedownUpdated { takedown_ref, .. } => {
                    exec(
                        &mut tx,
                        "UPDATE blobs SET takedown_ref = ? WHERE did = ? AND cid = ?",
                        &[takedown_ref.into(), did.into(), cid.into()],
                    )
                    .await?;
                }
            }
        }
        Ok(())
    })
}

/// A stored blob, as its row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRow {
    pub mime_type: String,
    pub size: u64,
    pub uploaded_at: i64,
    pub takedown_ref: Option<String>,
}

macro_rules! fetch {
    ($pool:expr, $sql:expr, $row:ty, [$($arg:expr),*]) => {{
        let sql: &str = $sql;
        let rows: Vec<$row> = match $pool {
            ReadPool::Sqlite(p) => sqlx::query_as(sql)$(.bind($arg))*.fetch_all(p).await?,
            ReadPool::Postgres(p) => sqlx::query_as(&numbered(sql))$(.bind($arg))*.fetch_all(p).await?,
        };
        rows
    }};
}

/// `did`'s blob `cid`, if stored.
pub async fn get(log: &EventLog, did: &str, cid: &str) -> Result<Option<BlobRow>, ProjectionError> {
    let rows = fetch!(
        log.read_pool(),
        "SELECT mime_type, size, uploaded_at, takedown_ref FROM blobs WHERE did = ? AND cid = ?",
        (String, i64, i64, Option<String>),
        [did, cid]
    );
    Ok(rows.into_iter().next().map(|(mime_type, size, uploaded_at, takedown_ref)| BlobRow {
        mime_type,
        size: u64::try_from(size).unwrap_or(0),
        uploaded_at,
        takedown_ref,
    }))
}

/// Whether any record of `did` references `cid`.
pub async fn is_referenced(log: &EventLog, did: &str, cid: &str) -> Result<bool, ProjectionError> {
    let rows = fetch!(log.read_pool(), "SELECT 1 FROM record_blobs WHERE did = ? AND cid = ? LIMIT 1", (i32,), [did, cid]);
    Ok(!rows.is_empty())
}

/// Every blob CID stored for `did` (for erasure).
pub async fn cids_of(log: &EventLog, did: &str) -> Result<Vec<String>, ProjectionError> {
    let rows = fetch!(log.read_pool(), "SELECT cid FROM blobs WHERE did = ?", (String,), [did]);
    Ok(rows.into_iter().map(|(c,)| c).collect())
}

/// The blob CIDs the records at `paths` of `did` reference now.
pub async fn cids_at_paths(log: &EventLog, did: &str, paths: &[String]) -> Result<Vec<String>, ProjectionError> {
    let mut out = BTreeSet::new();
    for path in paths {
        let rows = fetch!(log.read_pool(), "SELECT cid FROM record_blobs WHERE did = ? AND path = ?", (String,), [did, path]);
        out.extend(rows.into_iter().map(|(c,)| c));
    }
    Ok(out.into_iter().collect())
}

/// `sync.listBlobs`: the CIDs `did`'s records reference (written after rev `since`), ascending,
/// after `cursor`.
pub async fn list(
    log: &EventLog,
    did: &str,
    since: Option<&str>,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, ProjectionError> {
    let sql = "SELECT DISTINCT cid FROM record_blobs WHERE did = ? AND rev > ? AND cid > ? ORDER BY cid LIMIT ?";
    let rows = fetch!(log.read_pool(), sql, (String,), [did, since.unwrap_or(""), cursor.unwrap_or(""), limit]);
    Ok(rows.into_iter().map(|(c,)| c).collect())
}

/// `repo.listMissingBlobs`: (cid, record path) of refs with no stored blob, by CID after `cursor`.
pub async fn list_missing(
    log: &EventLog,
    did: &str,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, String)>, ProjectionError> {
    let sql = "SELECT r.cid, MIN(r.path) FROM record_blobs r WHERE r.did = ? AND r.cid > ? \
               AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.did = r.did AND b.cid = r.cid) \
               GROUP BY r.cid ORDER BY r.cid LIMIT ?";
    Ok(fetch!(log.read_pool(), sql, (String, String), [did, cursor.unwrap_or(""), limit]))
}

/// (distinct blob CIDs the records reference, blobs stored) of `did`: `checkAccountStatus`'s
/// `expectedBlobs` and `importedBlobs`, counted as the reference counts them (`recordBlobCount`
/// and `blobCount`: every stored blob, referenced or not yet).
pub async fn counts(log: &EventLog, did: &str) -> Result<(i64, i64), ProjectionError> {
    let sql = "SELECT (SELECT COUNT(DISTINCT cid) FROM record_blobs WHERE did = ?), \
               (SELECT COUNT(*) FROM blobs WHERE did = ?)";
    let rows = fetch!(log.read_pool(), sql, (i64, i64), [did, did]);
    Ok(rows.into_iter().next().unwrap_or((0, 0)))
}

/// Temporary blobs (no record references them) uploaded before `before` (unix microseconds):
/// (did, cid), at most `limit`.
pub async fn expired_temporaries(log: &EventLog, before: i64, limit: i64) -> Result<Vec<(String, String)>, ProjectionError> {
    let sql = "SELECT b.did, b.cid FROM blobs b WHERE b.uploaded_at < ? \
               AND NOT EXISTS (SELECT 1 FROM record_blobs r WHERE r.did = b.did AND r.cid = b.cid) \
               ORDER BY b.uploaded_at LIMIT ?";
    Ok(fetch!(log.read_pool(), sql, (String, String), [before, limit]))
}


/// Every stored blob as (did, cid), in (did, cid) order after `after`, at most `limit` (for
/// `pds backup`).
pub async fn all_keys(log: &EventLog, after: (&str, &str), limit: i64) -> Result<Vec<(String, String)>, ProjectionError> {
    let sql = "SELECT did, cid FROM blobs WHERE did > ? OR (did = ? AND cid > ?) ORDER BY did, cid LIMIT ?";
    Ok(fetch!(log.read_pool(), sql, (String, String), [after.0, after.0, after.1, limit]))
}
