//! Reads for `com.atproto.sync.*` over the `accounts`, `repo_roots` and `repo_blocks` read
//! models: a repo's head with its account status, pages of repos (`listRepos`), pages of a repo's
//! blocks by CID (so `getRepo` streams in constant memory), and blocks by CID (`getBlocks`).

use eventlog::{EventLog, ReadPool};

use crate::sql::numbered;
use crate::ProjectionError;

/// A hosted repo: its head and its account's status.
#[derive(Debug, Clone)]
pub struct RepoHead {
    pub did: String,
    /// Unix microseconds of the account's creation (the `listRepos` order).
    pub created_at: i64,
    pub commit_cid: String,
    pub rev: String,
    pub data_cid: String,
    pub deactivated: bool,
    pub taken_down: bool,
}

type HeadRow = (
    String,
    i64,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
);

const HEAD_SELECT: &str = "SELECT a.did, a.created_at, r.commit_cid, r.rev, r.data_cid, a.deactivated_at, a.taken_down_at \
     FROM accounts a JOIN repo_roots r ON r.did = a.did";

fn head(r: HeadRow) -> RepoHead {
    RepoHead {
        did: r.0,
        created_at: r.1,
        commit_cid: r.2,
        rev: r.3,
        data_cid: r.4,
        deactivated: r.5.is_some(),
        taken_down: r.6.is_some(),
    }
}

/// The head of `did`'s repo, if the account exists and has a repo.
pub async fn repo_head(log: &EventLog, did: &str) -> Result<Option<RepoHead>, ProjectionError> {
    let sql = format!("{HEAD_SELECT} WHERE a.did = ?");
    let row: Option<HeadRow> = match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query_as(&sql).bind(did).fetch_optional(p).await?,
        ReadPool::Postgres(p) => {
            sqlx::query_as(&numbered(&sql))
                .bind(did)
                .fetch_optional(p)
                .await?
        }
    };
    Ok(row.map(head))
}

/// Up to `limit` repos in (creation time, DID) order, after `after` = (created_at, did).
pub async fn list_repos(
    log: &EventLog,
    after: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<RepoHead>, ProjectionError> {
    let rows: Vec<HeadRow> = match after {
        Some((t, d)) => {
            let sql = format!(
                "{HEAD_SELECT} WHERE a.created_at > ? OR (a.created_at = ? AND a.did > ?) \
                 ORDER BY a.created_at ASC, a.did ASC LIMIT ?"
            );
            match log.read_pool() {
                ReadPool::Sqlite(p) => {
                    sqlx::query_as(&sql)
                        .bind(t)
                        .bind(t)
                        .bind(d)
                        .bind(limit)
                        .fetch_all(p)
                        .await?
                }
                ReadPool::Postgres(p) => {
                    sqlx::query_as(&numbered(&sql))
                        .bind(t)
                        .bind(t)
                        .bind(d)
                        .bind(limit)
                        .fetch_all(p)
                        .await?
                }
            }
        }
        None => {
            let sql = format!("{HEAD_SELECT} ORDER BY a.created_at ASC, a.did ASC LIMIT ?");
            match log.read_pool() {
                ReadPool::Sqlite(p) => sqlx::query_as(&sql).bind(limit).fetch_all(p).await?,
                ReadPool::Postgres(p) => {
                    sqlx::query_as(&numbered(&sql))
                        .bind(limit)
                        .fetch_all(p)
                        .await?
                }
            }
        }
    };
    Ok(rows.into_iter().map(head).collect())
}

/// Up to `limit` of `did`'s blocks with CID strings greater than `after`, in CID-string order;
/// with `since`, only blocks first stored by a rev greater than it (`getRepo?since`).
pub async fn blocks_page(
    log: &EventLog,
    did: &str,
    after: &str,
    since: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, Vec<u8>)>, ProjectionError> {
    let sql = if since.is_some() {
        "SELECT cid, bytes FROM repo_blocks WHERE did = ? AND cid > ? AND rev > ? ORDER BY cid ASC LIMIT ?"
    } else {
        "SELECT cid, bytes FROM repo_blocks WHERE did = ? AND cid > ? ORDER BY cid ASC LIMIT ?"
    };
    Ok(match log.read_pool() {
        ReadPool::Sqlite(p) => {
            let mut q = sqlx::query_as(sql).bind(did).bind(after);
            if let Some(s) = since {
                q = q.bind(s);
            }
            q.bind(limit).fetch_all(p).await?
        }
        ReadPool::Postgres(p) => {
            let sql = numbered(sql);
            let mut q = sqlx::query_as(&sql).bind(did).bind(after);
            if let Some(s) = since {
                q = q.bind(s);
            }
            q.bind(limit).fetch_all(p).await?
        }
    })
}

/// The bytes of `did`'s block `cid`, if stored.
pub async fn block(
    log: &EventLog,
    did: &str,
    cid: &str,
) -> Result<Option<Vec<u8>>, ProjectionError> {
    let sql = "SELECT bytes FROM repo_blocks WHERE did = ? AND cid = ?";
    let row: Option<(Vec<u8>,)> = match log.read_pool() {
        ReadPool::Sqlite(p) => {
            sqlx::query_as(sql)
                .bind(did)
                .bind(cid)
                .fetch_optional(p)
                .await?
        }
        ReadPool::Postgres(p) => {
            sqlx::query_as(&numbered(sql))
                .bind(did)
                .bind(cid)
                .fetch_optional(p)
                .await?
        }
    };
    Ok(row.map(|r| r.0))
}

/// Those of `cids` that `did` has stored (any order; at most a few hundred per call).
pub async fn blocks_in(
    log: &EventLog,
    did: &str,
    cids: &[String],
) -> Result<Vec<(String, Vec<u8>)>, ProjectionError> {
    if cids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; cids.len()].join(", ");
    let sql = format!("SELECT cid, bytes FROM repo_blocks WHERE did = ? AND cid IN ({marks})");
    Ok(match log.read_pool() {
        ReadPool::Sqlite(p) => {
            let mut q = sqlx::query_as(&sql).bind(did);
            for c in cids {
                q = q.bind(c);
            }
            q.fetch_all(p).await?
        }
        ReadPool::Postgres(p) => {
            // One array parameter: a statement with hundreds of parameters is planned badly.
            sqlx::query_as("SELECT cid, bytes FROM repo_blocks WHERE did = $1 AND cid = ANY($2)")
                .bind(did)
                .bind(cids)
                .fetch_all(p)
                .await?
        }
    })
}
