//! `records` (inline): the record index of every repo — (did, collection, rkey) → record CID and
//! the rev that wrote it — from the `repo.committed` ops (create/update upsert, delete removes).
//! The record bytes are the `repo_blocks` row of that CID. Lookups: one record, a page of a
//! collection (by rkey, descending unless `reverse`), the collections of a repo.
//!
//! An import (`repo.import_started`, `repo.import_chunk`s) replaces the repo's whole index.
//!
//! Never computes anything: it stores what the events' ops say.

use domain::mst::OpAction;
use domain::repo::{RepoEvent, REPO_COMMITTED, REPO_IMPORT_CHUNK, REPO_IMPORT_STARTED};
use eventlog::{Envelope, EventLog, ReadPool, Tx};
use futures_util::future::BoxFuture;

use crate::sql::{exec, insert_rows, numbered, Arg};
use crate::{Kind, ProjectionError, Projector, Table};

pub const NAME: &str = "records";

pub const PROJECTOR: Projector = Projector {
    name: NAME,
    kind: Kind::Inline,
    handles: &[REPO_COMMITTED, REPO_IMPORT_STARTED, REPO_IMPORT_CHUNK],
    tables: &[Table { name: "records", columns: &["did", "collection", "rkey", "cid", "rev"] }],
    apply,
};

fn apply<'a>(mut tx: Tx<'a>, events: &'a [&'a Envelope]) -> BoxFuture<'a, Result<(), ProjectionError>> {
    Box::pin(async move {
        for e in events {
            let fail = |message: String| ProjectionError::Apply { projector: NAME, position: e.position, message };
            let version = u32::try_from(e.event_version).map_err(|_| fail("negative event version".into()))?;
            let event =
                RepoEvent::from_payload(&e.event_type, version, &e.payload).map_err(|err| fail(err.to_string()))?;
            let c = match &event {
                RepoEvent::Committed(c) => c,
                RepoEvent::ImportStarted(i) => {
                    // An import replaces the whole record index of the repo.
                    exec(&mut tx, "DELETE FROM records WHERE did = ?", &[i.did.as_str().into()]).await?;
                    continue;
                }
                RepoEvent::ImportChunk(i) => {
                    let (did, rev) = (i.did.as_str(), i.rev.to_string());
                    let mut rows = Vec::with_capacity(i.records.len());
                    for (path, cid) in &i.records {
                        let Some((collection, rkey)) = path.split_once('/') else {
                            return Err(fail(format!("record path {path:?} is not collection/rkey")));
                        };
                        let row: Vec<Arg> =
                            vec![did.into(), collection.into(), rkey.into(), cid.to_string().into(), rev.clone().into()];
                        rows.push(row);
                    }
                    insert_rows(&mut tx, "INSERT INTO records (did, collection, rkey, cid, rev)", "", rows).await?;
                    continue;
                }
                _ => continue,
            };
            let did = c.did.as_str();
            let rev = c.rev.to_string();
            for op in &c.ops {
                let Some((collection, rkey)) = op.path.split_once('/') else {
                    return Err(fail(format!("op path {:?} is not collection/rkey", op.path)));
                };
                match (op.action, op.cid) {
                    (OpAction::Delete, _) | (_, None) => {
                        exec(
                            &mut tx,
                            "DELETE FROM records WHERE did = ? AND collection = ? AND rkey = ?",
                            &[did.into(), collection.into(), rkey.into()],
                        )
                        .await?;
                    }
                    (_, Some(cid)) => {
                        exec(
                            &mut tx,
                            "INSERT INTO records (did, collection, rkey, cid, rev) VALUES (?, ?, ?, ?, ?) \
                             ON CONFLICT (did, collection, rkey) DO UPDATE SET cid = excluded.cid, rev = excluded.rev",
                            &[did.into(), collection.into(), rkey.into(), cid.to_string().into(), rev.clone().into()],
                        )
                        .await?;
                    }
                }
            }
        }
        Ok(())
    })
}

/// One indexed record: its key, CID, and block bytes.
#[derive(Debug, Clone)]
pub struct RecordRow {
    pub rkey: String,
    pub cid: String,
    pub bytes: Vec<u8>,
}

const SELECT: &str = "SELECT r.rkey, r.cid, b.bytes FROM records r \
     JOIN repo_blocks b ON b.did = r.did AND b.cid = r.cid \
     WHERE r.did = ? AND r.collection = ?";

async fn rows(log: &EventLog, sql: &str, args: Vec<String>, limit: Option<i64>) -> Result<Vec<RecordRow>, ProjectionError> {
    let out: Vec<(String, String, Vec<u8>)> = match log.read_pool() {
        ReadPool::Sqlite(p) => {
            let mut q = sqlx::query_as(sql);
            for a in &args {
                q = q.bind(a.clone());
            }
            if let Some(l) = limit {
                q = q.bind(l);
            }
            q.fetch_all(p).await?
        }
        ReadPool::Postgres(p) => {
            let sql = numbered(sql);
            let mut q = sqlx::query_as(&sql);
            for a in &args {
                q = q.bind(a.clone());
            }
            if let Some(l) = limit {
                q = q.bind(l);
            }
            q.fetch_all(p).await?
        }
    };
    Ok(out.into_iter().map(|(rkey, cid, bytes)| RecordRow { rkey, cid, bytes }).collect())
}

/// The record at `did/collection/rkey`, if indexed.
pub async fn get(log: &EventLog, did: &str, collection: &str, rkey: &str) -> Result<Option<RecordRow>, ProjectionError> {
    let sql = format!("{SELECT} AND r.rkey = ?");
    Ok(rows(log, &sql, vec![did.into(), collection.into(), rkey.into()], None).await?.into_iter().next())
}

/// A page of `collection`: rkeys descending after `cursor` (ascending when `reverse`).
pub async fn list(
    log: &EventLog,
    did: &str,
    collection: &str,
    limit: i64,
    cursor: Option<&str>,
    reverse: bool,
) -> Result<Vec<RecordRow>, ProjectionError> {
    let (cmp, order) = if reverse { (">", "ASC") } else { ("<", "DESC") };
    let mut args = vec![did.to_owned(), collection.to_owned()];
    let mut sql = SELECT.to_owned();
    if let Some(c) = cursor {
        sql.push_str(&format!(" AND r.rkey {cmp} ?"));
        args.push(c.to_owned());
    }
    sql.push_str(&format!(" ORDER BY r.rkey {order} LIMIT ?"));
    rows(log, &sql, args, Some(limit)).await
}

/// Every block stored for `did`'s repo (CID string, bytes).
pub async fn repo_blocks(log: &EventLog, did: &str) -> Result<Vec<(String, Vec<u8>)>, ProjectionError> {
    let sql = "SELECT cid, bytes FROM repo_blocks WHERE did = ?";
    Ok(match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query_as(sql).bind(did).fetch_all(p).await?,
        ReadPool::Postgres(p) => sqlx::query_as(&numbered(sql)).bind(did).fetch_all(p).await?,
    })
}

/// The collections `did`'s repo holds at least one record of, in name order (`describeRepo`).
pub async fn collections(log: &EventLog, did: &str) -> Result<Vec<String>, ProjectionError> {
    let sql = "SELECT DISTINCT collection FROM records WHERE did = ? ORDER BY collection";
    let rows: Vec<(String,)> = match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query_as(sql).bind(did).fetch_all(p).await?,
        ReadPool::Postgres(p) => sqlx::query_as(&numbered(sql)).bind(did).fetch_all(p).await?,
    };
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// A record written by a commit after some rev (read-after-write).
#[derive(Debug, Clone)]
pub struct RecordSince {
    pub collection: String,
    pub rkey: String,
    pub cid: String,
    /// The rev of the commit that last wrote it.
    pub rev: String,
    pub bytes: Vec<u8>,
}

/// `did`'s records last written by a commit with a rev after `rev`, oldest first, at most
/// `limit` (reference `getRecordsSinceRev`: the AppView answered as of `rev`; these are what it
/// has not seen yet). Empty when no record is at or before `rev`: a rev older than the whole
/// repo (a migrated account, a confused upstream) would otherwise bring back everything.
pub async fn since_rev(log: &EventLog, did: &str, rev: &str, limit: i64) -> Result<Vec<RecordSince>, ProjectionError> {
    const SQL: &str = "SELECT r.collection, r.rkey, r.cid, r.rev, b.bytes FROM records r \
         JOIN repo_blocks b ON b.did = r.did AND b.cid = r.cid \
         WHERE r.did = ? AND r.rev > ? ORDER BY r.rev, r.collection, r.rkey LIMIT ?";
    const BEFORE: &str = "SELECT rev FROM records WHERE did = ? AND rev <= ? LIMIT 1";
    type Row = (String, String, String, String, Vec<u8>);
    let rows: Vec<Row> = match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query_as(SQL).bind(did).bind(rev).bind(limit).fetch_all(p).await?,
        ReadPool::Postgres(p) => sqlx::query_as(&numbered(SQL)).bind(did).bind(rev).bind(limit).fetch_all(p).await?,
    };
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let before: Option<String> = match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query_scalar(BEFORE).bind(did).bind(rev).fetch_optional(p).await?,
        ReadPool::Postgres(p) => sqlx::query_scalar(&numbered(BEFORE)).bind(did).bind(rev).fetch_optional(p).await?,
    };
    if before.is_none() {
        return Ok(vec![]);
    }
    Ok(rows
        .into_iter()
        .map(|(collection, rkey, cid, rev, bytes)| RecordSince { collection, rkey, cid, rev, bytes })
        .collect())
}
