//! `notifications` (inline): the outbox's read model — one row per `notification/<id>` stream
//! (`domain::notification`): recipient, channel, template, status, attempts, when it is next due,
//! the last error, and the stream version the row reflects (what a claim is appended against).
//! Queries: the due messages (the sender's work list), an account's history, the operator's list.
//!
//! Never reads the clock and never holds message content (that stays sealed in the log).

use domain::notification::{NotificationEvent, Status, EVENT_TYPES};
use eventlog::{Envelope, EventLog, ReadPool, Tx};
use futures_util::future::BoxFuture;

use crate::sql::{exec, numbered};
use crate::{Kind, ProjectionError, Projector, Table};

pub const NAME: &str = "notifications";

pub const PROJECTOR: Projector = Projector {
    name: NAME,
    kind: Kind::Inline,
    handles: &EVENT_TYPES,
    tables: &[Table {
        name: "notifications",
        columns: &[
            "id", "did", "channel", "recipient", "template", "status", "attempts", "next_at", "last_error", "version",
            "queued_at", "updated_at",
        ],
    }],
    apply,
};

fn apply<'a>(mut tx: Tx<'a>, events: &'a [&'a Envelope]) -> BoxFuture<'a, Result<(), ProjectionError>> {
    Box::pin(async move {
        for e in events {
            let fail = |message: String| ProjectionError::Apply { projector: NAME, position: e.position, message };
            let event = NotificationEvent::from_payload(&e.event_type, e.event_version, &e.payload)
                .map_err(|err| fail(err.to_string()))?;
            let id = e.stream.strip_prefix("notification/").unwrap_or(&e.stream).to_owned();
            let v = e.stream_version;
            match event {
                NotificationEvent::Queued { id, did, channel, to, template, at, .. } => {
                    exec(
                        &mut tx,
                        "INSERT INTO notifications (id, did, channel, recipient, template, status, attempts, next_at, \
                         last_error, version, queued_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?, NULL, ?, ?, ?)",
                        &[
                            id.into(),
                            did.into(),
                            channel.as_str().into(),
                            to.into(),
                            template.as_str().into(),
                            Status::Queued.as_str().into(),
                            at.into(),
                            v.into(),
                            at.into(),
                            at.into(),
                        ],
                    )
                    .await?;
                }
                NotificationEvent::Claimed { attempt, until, at, .. } => {
                    exec(
                        &mut tx,
                        "UPDATE notifications SET status = ?, attempts = ?, next_at = ?, version = ?, updated_at = ? WHERE id = ?",
                        &[Status::Sending.as_str().into(), attempt.into(), until.into(), v.into(), at.into(), id.into()],
                    )
                    .await?;
                }
                NotificationEvent::Sent { at, .. } => {
                    exec(
                        &mut tx,
                        "UPDATE notifications SET status = ?, version = ?, updated_at = ? WHERE id = ?",
                        &[Status::Sent.as_str().into(), v.into(), at.into(), id.into()],
                    )
                    .await?;
                }
                NotificationEvent::AttemptFailed { error, retry_at, at, .. } => {
                    exec(
                        &mut tx,
                        "UPDATE notifications SET status = ?, next_at = ?, last_error = ?, version = ?, updated_at = ? WHERE id = ?",
                        &[Status::Queued.as_str().into(), retry_at.into(), error.into(), v.into(), at.into(), id.into()],
                    )
                    .await?;
                }
                NotificationEvent::Failed { error, at, .. } => {
                    exec(
                        &mut tx,
                        "UPDATE notifications SET status = ?, last_error = ?, version = ?, updated_at = ? WHERE id = ?",
                        &[Status::Failed.as_str().into(), error.into(), v.into(), at.into(), id.into()],
                    )
                    .await?;
                }
            }
        }
        Ok(())
    })
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: String,
    pub did: String,
    pub channel: String,
    pub recipient: String,
    pub template: String,
    pub status: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub version: i64,
    pub queued_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, did, channel, recipient, template, status, attempts, next_at, last_error, version, queued_at, updated_at";

type Tuple = (String, String, String, String, String, String, i64, i64, Option<String>, i64, i64, i64);

fn row(t: Tuple) -> Row {
    let (id, did, channel, recipient, template, status, attempts, next_at, last_error, version, queued_at, updated_at) = t;
    Row { id, did, channel, recipient, template, status, attempts, next_at, last_error, version, queued_at, updated_at }
}

async fn rows(log: &EventLog, sql: &str, text: &[&str], ints: &[i64]) -> Result<Vec<Row>, ProjectionError> {
    let tuples: Vec<Tuple> = match log.read_pool() {
        ReadPool::Sqlite(p) => {
            let mut q = sqlx::query_as::<_, Tuple>(sql);
            for t in text {
                q = q.bind(*t);
            }
            for i in ints {
                q = q.bind(*i);
            }
            q.fetch_all(p).await?
        }
        ReadPool::Postgres(p) => {
            let sql = numbered(sql);
            let mut q = sqlx::query_as::<_, Tuple>(&sql);
            for t in text {
                q = q.bind(*t);
            }
            for i in ints {
                q = q.bind(*i);
            }
            q.fetch_all(p).await?
        }
    };
    Ok(tuples.into_iter().map(row).collect())
}

/// Messages due at `now` (queued and due, or claimed with a lapsed lease), oldest due first.
pub async fn due(log: &EventLog, now: i64, limit: i64) -> Result<Vec<Row>, ProjectionError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM notifications WHERE status IN (?, ?) AND next_at <= ? ORDER BY next_at, id LIMIT ?"
    );
    rows(log, &sql, &[Status::Queued.as_str(), Status::Sending.as_str()], &[now, limit]).await
}

/// When the next message falls due (`None`: nothing pending).
pub async fn next_due(log: &EventLog) -> Result<Option<i64>, ProjectionError> {
    const SQL: &str = "SELECT MIN(next_at) FROM notifications WHERE status IN (?, ?)";
    let (a, b) = (Status::Queued.as_str(), Status::Sending.as_str());
    Ok(match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query_scalar::<_, Option<i64>>(SQL).bind(a).bind(b).fetch_one(p).await?,
        ReadPool::Postgres(p) => sqlx::query_scalar::<_, Option<i64>>(&numbered(SQL)).bind(a).bind(b).fetch_one(p).await?,
    })
}

/// An account's messages, newest first, queued before `before` (unix micros; `i64::MAX` for all).
pub async fn history(log: &EventLog, did: &str, before: i64, limit: i64) -> Result<Vec<Row>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM notifications WHERE did = ? AND queued_at < ? ORDER BY queued_at DESC, id DESC LIMIT ?");
    rows(log, &sql, &[did], &[before, limit]).await
}

/// Every message, newest first, optionally of one status (the operator's view).
pub async fn list(log: &EventLog, status: Option<&str>, limit: i64) -> Result<Vec<Row>, ProjectionError> {
    match status {
        Some(s) => {
            let sql = format!("SELECT {COLUMNS} FROM notifications WHERE status = ? ORDER BY queued_at DESC, id DESC LIMIT ?");
            rows(log, &sql, &[s], &[limit]).await
        }
        None => {
            let sql = format!("SELECT {COLUMNS} FROM notifications ORDER BY queued_at DESC, id DESC LIMIT ?");
            rows(log, &sql, &[], &[limit]).await
        }
    }
}

/// The streams of `did`'s messages (erasure purges them with the account).
pub async fn streams_of(log: &EventLog, did: &str) -> Result<Vec<String>, ProjectionError> {
    const SQL: &str = "SELECT id FROM notifications WHERE did = ?";
    let ids: Vec<String> = match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query_scalar(SQL).bind(did).fetch_all(p).await?,
        ReadPool::Postgres(p) => sqlx::query_scalar(&numbered(SQL)).bind(did).fetch_all(p).await?,
    };
    Ok(ids.iter().map(|id| domain::notification::stream_name(id)).collect())
}
