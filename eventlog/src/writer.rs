//! The one writer task of a process: every append and purge goes through it. Concurrent append
//! requests waiting in the queue are merged into one transaction (group commit: one head-lock
//! acquisition and one fsync for the lot); each request runs under its own savepoint so one
//! request's conflict or failing inline projection does not fail the others.
//! It never holds more than one transaction open.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, SqliteConnection};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{postgres, sqlite, AppendError, Counters, Envelope, Inline, LogError, StreamAppend};

pub(crate) struct AppendJob {
    pub batch: Vec<StreamAppend>,
    pub inline: Option<Inline>,
    pub reply: oneshot::Sender<Result<Vec<Envelope>, AppendError>>,
}

pub(crate) enum Job {
    Append(AppendJob),
    Purge {
        did: String,
        keep: Vec<i64>,
        reply: oneshot::Sender<Result<u64, LogError>>,
    },
}

/// The writer's connection and how to make it again.
pub(crate) enum Conn {
    Sqlite(SqliteConnection, SqliteConnectOptions),
    Postgres(PgConnection, PgConnectOptions),
}

impl Conn {
    /// After a database error: if the connection is dead (server restart, network), replace it
    /// so the log recovers without being reopened. Best effort; retried after the next failure.
    async fn heal(&mut self) {
        match self {
            Conn::Sqlite(c, opts) => {
                if c.ping().await.is_err() {
                    if let Ok(fresh) = opts.connect().await {
                        *c = fresh;
                    }
                }
            }
            Conn::Postgres(c, opts) => {
                if c.ping().await.is_err() {
                    if let Ok(fresh) = opts.connect().await {
                        *c = fresh;
                    }
                }
            }
        }
    }
}

/// What a group commit reports: per request its outcome, and the new head position if committed.
pub(crate) struct GroupOutcome {
    pub results: Vec<Result<Vec<Envelope>, AppendError>>,
    pub committed_head: Option<i64>,
}

pub(crate) async fn run(
    mut conn: Conn,
    mut jobs: mpsc::Receiver<Job>,
    head: watch::Sender<i64>,
    counters: Arc<Counters>,
    max_group: usize,
) {
    let mut deferred: Option<Job> = None;
    loop {
        let first = match deferred.take() {
            Some(j) => j,
            None => match jobs.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let first = match first {
            Job::Purge { did, keep, reply } => {
                let r = match &mut conn {
                    Conn::Sqlite(c, _) => sqlite::purge(c, &did, &keep).await,
                    Conn::Postgres(c, _) => postgres::purge(c, &did, &keep).await,
                };
                if r.is_err() {
                    conn.heal().await;
                }
                let _ = reply.send(r);
                continue;
            }
            Job::Append(a) => a,
        };
        // Group commit: take whatever else is already waiting.
        let mut group = vec![first];
        while group.len() < max_group {
            match jobs.try_recv() {
                Ok(Job::Append(a)) => group.push(a),
                Ok(purge) => {
                    deferred = Some(purge);
                    break;
                }
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(group.len());
        let mut work = Vec::with_capacity(group.len());
        for job in group {
            replies.push(job.reply);
            work.push((job.batch, job.inline));
        }
        let outcome = match &mut conn {
            Conn::Sqlite(c, _) => sqlite::commit_group(c, work).await,
            Conn::Postgres(c, _) => postgres::commit_group(c, work).await,
        };
        if outcome.committed_head.is_none()
            && outcome.results.iter().any(|r| matches!(r, Err(AppendError::Log(_))))
        {
            conn.heal().await;
        }
        if let Some(pos) = outcome.committed_head {
            let ok: Vec<&Vec<Envelope>> = outcome.results.iter().filter_map(|r| r.as_ref().ok()).collect();
            counters.transactions.fetch_add(1, Ordering::Relaxed);
            counters.appends.fetch_add(ok.len() as u64, Ordering::Relaxed);
            counters
                .events
                .fetch_add(ok.iter().map(|e| e.len() as u64).sum(), Ordering::Relaxed);
            head.send_if_modified(|h| {
                if pos > *h {
                    *h = pos;
                    true
                } else {
                    false
                }
            });
        }
        for (reply, result) in replies.into_iter().zip(outcome.results) {
            let _ = reply.send(result);
        }
    }
}

/// Runs each request of a group inside the caller's open transaction; shared by both backends
/// through this macro because the SQL differs but the control flow must not.
macro_rules! commit_group_body {
    ($conn:expr, $work:expr, $begin:expr, $lock_head:expr, $apply:path, $finish:path, $tx_variant:path) => {{
        use sqlx::Connection as _;
        let conn = $conn;
        let work: Vec<(Vec<crate::StreamAppend>, Option<crate::Inline>)> = $work;
        let n = work.len();
        let fail_all = |e: &sqlx::Error, n: usize| crate::writer::GroupOutcome {
            results: (0..n)
                .map(|_| Err(crate::AppendError::Log(crate::LogError::Database(std::sync::Arc::new(
                    sqlx::Error::Protocol(format!("group commit failed: {e}")),
                )))))
                .collect(),
            committed_head: None,
        };
        let mut tx = match conn.begin_with($begin).await {
            Ok(tx) => tx,
            Err(e) => return fail_all(&e, n),
        };
        let (mut position, mut seq) = match sqlx::query_as::<_, (i64, i64)>($lock_head)
            .fetch_one(&mut *tx)
            .await
        {
            Ok(h) => h,
            Err(e) => return fail_all(&e, n),
        };
        let (start_position, start_seq) = (position, seq);
        let recorded_at = crate::now_micros();
        let savepoints = n > 1;
        let mut results = Vec::with_capacity(n);
        for (batch, inline) in work {
            // `apply` checks every expected version before it writes anything, so a conflict
            // leaves nothing to undo; only inline work (which may fail after writing) needs a
            // savepoint when other requests share the transaction.
            let guarded = savepoints && inline.is_some();
            if guarded {
                if let Err(e) = sqlx::query("SAVEPOINT request").execute(&mut *tx).await {
                    return fail_all(&e, n);
                }
            }
            let before = (position, seq);
            let mut outcome = $apply(&mut *tx, batch, &mut position, &mut seq, recorded_at).await;
            let inline_result = match (&outcome, inline) {
                (Ok(envs), Some(f)) => f($tx_variant(&mut *tx), envs).await,
                _ => Ok(()),
            };
            if let Err(e) = inline_result {
                outcome = Err(crate::AppendError::Inline(e));
            }
            if let Err(err) = &outcome {
                (position, seq) = before;
                if guarded {
                    if let Err(e) = sqlx::query("ROLLBACK TO SAVEPOINT request").execute(&mut *tx).await {
                        return fail_all(&e, n);
                    }
                } else if savepoints && matches!(err, crate::AppendError::Log(_)) {
                    // A database error part-way through writes we cannot undo alone.
                    let e = sqlx::Error::Protocol(format!("a request in the group failed: {err}"));
                    return fail_all(&e, n);
                }
            }
            if guarded {
                if let Err(e) = sqlx::query("RELEASE SAVEPOINT request").execute(&mut *tx).await {
                    return fail_all(&e, n);
                }
            }
            results.push(outcome);
        }
        if position == start_position && seq == start_seq {
            // Nothing to commit (all failed, or only empty version checks).
            let _ = tx.rollback().await;
            let committed_head = None;
            return crate::writer::GroupOutcome { results, committed_head };
        }
        if let Err(e) = $finish(&mut *tx, position, seq).await {
            return fail_all(&e, n);
        }
        match tx.commit().await {
            Ok(()) => crate::writer::GroupOutcome {
                results,
                committed_head: Some(position),
            },
            Err(e) => fail_all(&e, n),
        }
    }};
}
pub(crate) use commit_group_body;

/// Decodes an `events` row (same column names on both backends).
macro_rules! envelope_from_row {
    ($row:expr) => {{
        use sqlx::Row;
        let row = $row;
        Ok::<crate::Envelope, sqlx::Error>(crate::Envelope {
            position: row.try_get("position")?,
            seq: row.try_get("seq")?,
            stream: row.try_get("stream")?,
            stream_version: row.try_get("stream_version")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            recorded_at: row.try_get("recorded_at")?,
            actor: row.try_get("actor")?,
            correlation: row.try_get("correlation")?,
        })
    }};
}
pub(crate) use envelope_from_row;

pub(crate) const EVENT_COLUMNS: &str = "position, seq, stream, stream_version, event_type, \
     event_version, payload, recorded_at, actor, correlation";
