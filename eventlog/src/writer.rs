//! The one writer task of a process: every append and purge goes through it. Concurrent append
//! requests waiting in the queue are merged into one transaction (group commit: one head-lock
//! acquisition and one fsync for the lot); each request runs under its own savepoint so one
//! request's conflict or failing inline projection does not fail the others.
//! It never holds more than one transaction open.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, SqliteConnection};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    postgres, sqlite, AppendError, Counters, Envelope, Inline, LogError, StreamAppend, TransactError, Work,
};

pub(crate) struct AppendJob {
    pub batch: Vec<StreamAppend>,
    pub inline: Option<Inline>,
    pub reply: oneshot::Sender<Result<Vec<Envelope>, AppendError>>,
    /// When the request was queued (append latency = queue wait + its group commit).
    pub enqueued: std::time::Instant,
}

pub(crate) enum Job {
    Append(AppendJob),
    Purge {
        did: String,
        streams: Vec<String>,
        keep: Vec<i64>,
        reply: oneshot::Sender<Result<u64, LogError>>,
    },
    Transact {
        work: Work,
        reply: oneshot::Sender<Result<(), TransactError>>,
    },
    Parts {
        parts: mpsc::Receiver<crate::Part>,
        reply: oneshot::Sender<Result<Vec<Envelope>, AppendError>>,
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
            Job::Purge { did, streams, keep, reply } => {
                let r = match &mut conn {
                    Conn::Sqlite(c, _) => sqlite::purge(c, &did, &streams, &keep).await,
                    Conn::Postgres(c, _) => postgres::purge(c, &did, &streams, &keep).await,
                };
                if r.is_err() {
                    conn.heal().await;
                }
                let _ = reply.send(r);
                continue;
            }
            Job::Transact { work, reply } => {
                let r = match &mut conn {
                    Conn::Sqlite(c, _) => sqlite::transact(c, work).await,
                    Conn::Postgres(c, _) => postgres::transact(c, work).await,
                };
                if matches!(r, Err(TransactError::Log(_))) {
                    conn.heal().await;
                }
                let _ = reply.send(r);
                continue;
            }
            Job::Parts { parts, reply } => {
                let r = match &mut conn {
                    Conn::Sqlite(c, _) => sqlite::append_parts(c, parts).await,
                    Conn::Postgres(c, _) => postgres::append_parts(c, parts).await,
                };
                match &r {
                    Ok((Some(pos), events)) => {
                        counters.transactions.fetch_add(1, Ordering::Relaxed);
                        counters.appends.fetch_add(1, Ordering::Relaxed);
                        counters.events.fetch_add(events.len() as u64, Ordering::Relaxed);
                        let pos = *pos;
                        head.send_if_modified(|h| {
                            if pos > *h {
                                *h = pos;
                                true
                            } else {
                                false
                            }
                        });
                    }
                    Ok((None, _)) => {}
                    Err(AppendError::Log(_)) => conn.heal().await,
                    Err(_) => {}
                }
                let _ = reply.send(r.map(|(_, events)| events));
                continue;
            }
            Job::Append(a) => a,
        };
        // Group commit: take whatever else is already waiting.
        let mut group = vec![first];
        while group.len() < max_group {
            match jobs.try_recv() {
                Ok(Job::Append(a)) => group.push(a),
                Ok(other) => {
                    deferred = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(group.len());
        let mut work = Vec::with_capacity(group.len());
        let mut enqueued = Vec::with_capacity(group.len());
        let started = std::time::Instant::now();
        for job in group {
            replies.push(job.reply);
            enqueued.push(job.enqueued);
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
            if let Some(observe) = counters.observer.get() {
                let done = std::time::Instant::now();
                observe(&crate::CommitObservation {
                    requests: ok.len(),
                    events: ok.iter().map(|e| e.len()).sum(),
                    commit: done.duration_since(started),
                    latencies: enqueued.iter().map(|t| done.duration_since(*t)).collect(),
                });
            }
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

/// Numbering and pending writes of one group transaction.
pub(crate) struct GroupState {
    /// Last position / seq handed out so far (starts at the locked head).
    pub position: i64,
    pub seq: i64,
    /// Stream versions as of this transaction (prefetched or looked up, then updated in memory).
    pub versions: HashMap<String, i64>,
    /// Rows not yet sent (backends that batch inserts; the SQLite backend writes at once).
    pub pending: PendingRows,
}

/// Column vectors of events waiting to be inserted with one `UNNEST`.
#[derive(Default)]
pub(crate) struct PendingRows {
    /// One timestamp per group transaction.
    pub recorded_at: i64,
    pub position: Vec<i64>,
    pub seq: Vec<Option<i64>>,
    pub stream: Vec<String>,
    pub stream_version: Vec<i64>,
    pub event_type: Vec<String>,
    pub event_version: Vec<i32>,
    pub payload: Vec<Vec<u8>>,
    pub actor: Vec<Option<String>>,
    pub correlation: Vec<Option<String>>,
}

impl PendingRows {
    pub fn push(&mut self, e: &Envelope) {
        self.recorded_at = e.recorded_at;
        self.position.push(e.position);
        self.seq.push(e.seq);
        self.stream.push(e.stream.clone());
        self.stream_version.push(e.stream_version);
        self.event_type.push(e.event_type.clone());
        self.event_version.push(e.event_version);
        self.payload.push(e.payload.clone());
        self.actor.push(e.actor.clone());
        self.correlation.push(e.correlation.clone());
    }

    pub fn is_empty(&self) -> bool {
        self.position.is_empty()
    }

    pub fn take(&mut self) -> PendingRows {
        std::mem::take(self)
    }
}

/// Runs a group of append requests in one transaction: lock the head, number and write each
/// request (checking all its expected versions before writing any of it), run its inline work,
/// write the head, commit. Shared by both backends through this macro because the SQL differs but
/// the control flow must not. Failure rules: a conflict writes nothing, so it needs no undo; a
/// request with inline work runs under a savepoint when it shares the transaction (its rows are
/// flushed first, so the inline work sees them); any other database error fails the whole group.
macro_rules! commit_group_body {
    ($conn:expr, $work:expr, $begin:expr, $lock_head:expr, $prefetch:path, $apply:expr, $flush:path, $finish:path, $tx_variant:path) => {{
        use sqlx::Connection as _;
        let conn = $conn;
        let work: Vec<(Vec<crate::StreamAppend>, Option<crate::Inline>)> = $work;
        let n = work.len();
        let fail_all = |e: &dyn std::fmt::Display, n: usize| crate::writer::GroupOutcome {
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
        let (start_position, start_seq) = match sqlx::query_as::<_, (i64, i64)>($lock_head)
            .fetch_one(&mut *tx)
            .await
        {
            Ok(h) => h,
            Err(e) => return fail_all(&e, n),
        };
        let names = crate::writer::group_streams(&work);
        let versions = match $prefetch(&mut *tx, names).await {
            Ok(v) => v,
            Err(e) => return fail_all(&e, n),
        };
        let mut st = crate::writer::GroupState {
            position: start_position,
            seq: start_seq,
            versions,
            pending: Default::default(),
        };
        let recorded_at = crate::now_micros();
        let savepoints = n > 1;
        let mut results = Vec::with_capacity(n);
        for (batch, inline) in work {
            let guarded = savepoints && inline.is_some();
            let before = (st.position, st.seq);
            let snapshot = if inline.is_some() {
                if let Err(e) = $flush(&mut *tx, &mut st).await {
                    return fail_all(&e, n);
                }
                Some(st.versions.clone())
            } else {
                None
            };
            if guarded {
                if let Err(e) = sqlx::query("SAVEPOINT request").execute(&mut *tx).await {
                    return fail_all(&e, n);
                }
            }
            let mut outcome = $apply(&mut *tx, &mut st, batch, recorded_at).await;
            if let (Ok(_), Some(_)) = (&outcome, &inline) {
                if let Err(e) = $flush(&mut *tx, &mut st).await {
                    outcome = Err(e.into());
                }
            }
            let inline_result = match (&outcome, inline) {
                (Ok(envs), Some(f)) => f($tx_variant(&mut *tx), envs).await,
                _ => Ok(()),
            };
            if let Err(e) = inline_result {
                outcome = Err(crate::AppendError::Inline(e));
            }
            if let Err(err) = &outcome {
                (st.position, st.seq) = before;
                if let Some(v) = snapshot {
                    st.versions = v;
                }
                if guarded {
                    if let Err(e) = sqlx::query("ROLLBACK TO SAVEPOINT request").execute(&mut *tx).await {
                        return fail_all(&e, n);
                    }
                } else if savepoints && !matches!(err, crate::AppendError::Conflict { .. }) {
                    // A database error part-way through writes we cannot undo alone.
                    return fail_all(err, n);
                }
            }
            if guarded {
                if let Err(e) = sqlx::query("RELEASE SAVEPOINT request").execute(&mut *tx).await {
                    return fail_all(&e, n);
                }
            }
            results.push(outcome);
        }
        if st.position == start_position && st.seq == start_seq {
            // Nothing to commit (all failed, or only version checks / empty appends).
            let _ = tx.rollback().await;
            return crate::writer::GroupOutcome { results, committed_head: None };
        }
        if let Err(e) = $flush(&mut *tx, &mut st).await {
            return fail_all(&e, n);
        }
        if let Err(e) = $finish(&mut *tx, st.position, st.seq).await {
            return fail_all(&e, n);
        }
        match tx.commit().await {
            Ok(()) => crate::writer::GroupOutcome {
                results,
                committed_head: Some(st.position),
            },
            Err(e) => fail_all(&e, n),
        }
    }};
}
pub(crate) use commit_group_body;

/// How long a parts append waits for the producer's next part before rolling back (the writer is
/// held meanwhile: producers must send parts they have already prepared).
pub(crate) const PART_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One transaction fed part by part (see `EventLog::append_parts`): lock the head, then for each
/// part look up the versions of streams not seen yet, number, write, run its inline work; commit
/// on `Part::Commit`, roll back on any failure, on a closed channel or after `PART_TIMEOUT`.
/// Returns the committed head (None if nothing was appended) and the last part's envelopes.
macro_rules! append_parts_body {
    ($conn:expr, $parts:expr, $begin:expr, $lock_head:expr, $prefetch:path, $flush:path, $finish:path, $tx_variant:path) => {{
        use sqlx::Connection as _;
        let conn = $conn;
        let mut parts: tokio::sync::mpsc::Receiver<crate::Part> = $parts;
        let mut tx = conn.begin_with($begin).await?;
        let (start_position, start_seq) = sqlx::query_as::<_, (i64, i64)>($lock_head).fetch_one(&mut *tx).await?;
        let mut st = crate::writer::GroupState {
            position: start_position,
            seq: start_seq,
            versions: Default::default(),
            pending: Default::default(),
        };
        let mut known: std::collections::HashSet<String> = Default::default();
        let recorded_at = crate::now_micros();
        let mut last: Vec<crate::Envelope> = Vec::new();
        loop {
            let msg = match tokio::time::timeout(crate::writer::PART_TIMEOUT, parts.recv()).await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    let _ = tx.rollback().await;
                    return Err(crate::AppendError::Aborted("the producer stopped before committing".into()));
                }
                Err(_) => {
                    let _ = tx.rollback().await;
                    return Err(crate::AppendError::Aborted(format!(
                        "no part within {:?}",
                        crate::writer::PART_TIMEOUT
                    )));
                }
            };
            let (batch, inline) = match msg {
                crate::Part::Commit => break,
                crate::Part::Events(batch, inline) => (batch, inline),
            };
            let mut new: Vec<String> =
                batch.iter().map(|a| a.stream.clone()).filter(|s| !known.contains(s)).collect();
            new.sort_unstable();
            new.dedup();
            if !new.is_empty() {
                let names: Vec<&str> = new.iter().map(String::as_str).collect();
                let found = $prefetch(&mut *tx, names).await?;
                st.versions.extend(found);
                known.extend(new);
            }
            let envelopes = match st.number(batch, recorded_at) {
                Ok(e) => e,
                Err(e) => {
                    let _ = tx.rollback().await;
                    return Err(e);
                }
            };
            $flush(&mut *tx, &mut st).await?;
            if let Some(f) = inline {
                if let Err(e) = f($tx_variant(&mut *tx), &envelopes).await {
                    let _ = tx.rollback().await;
                    return Err(crate::AppendError::Inline(e));
                }
            }
            last = envelopes;
        }
        if st.position == start_position && st.seq == start_seq {
            let _ = tx.rollback().await;
            return Ok((None, last));
        }
        $finish(&mut *tx, st.position, st.seq).await?;
        tx.commit().await?;
        Ok((Some(st.position), last))
    }};
}
pub(crate) use append_parts_body;

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

impl GroupState {
    /// `number` in the shape the group macro calls (`apply(conn, state, batch, recorded_at)`).
    pub async fn number_async<C>(
        _conn: &mut C,
        st: &mut GroupState,
        batch: Vec<StreamAppend>,
        recorded_at: i64,
    ) -> Result<Vec<Envelope>, AppendError> {
        st.number(batch, recorded_at)
    }

    /// Checks every expected version of `batch` (nothing changes on a conflict), then numbers its
    /// events, queues them as pending rows and advances the in-memory stream versions.
    pub fn number(&mut self, batch: Vec<StreamAppend>, recorded_at: i64) -> Result<Vec<Envelope>, AppendError> {
        let mut seen: HashMap<&str, i64> = HashMap::new();
        for append in &batch {
            let actual = seen
                .get(append.stream.as_str())
                .or_else(|| self.versions.get(&append.stream))
                .copied()
                .unwrap_or(0);
            if !append.expected.admits(actual) {
                return Err(AppendError::Conflict {
                    stream: append.stream.clone(),
                    expected: append.expected,
                    actual,
                });
            }
            seen.insert(&append.stream, actual + append.events.len() as i64);
        }
        let mut out = Vec::new();
        for append in batch {
            if append.events.is_empty() {
                continue;
            }
            let mut version = self.versions.get(&append.stream).copied().unwrap_or(0);
            for ev in append.events {
                self.position += 1;
                version += 1;
                let seq = if ev.public {
                    self.seq += 1;
                    Some(self.seq)
                } else {
                    None
                };
                let envelope = Envelope {
                    position: self.position,
                    seq,
                    stream: append.stream.clone(),
                    stream_version: version,
                    event_type: ev.event_type,
                    event_version: ev.event_version,
                    payload: ev.payload,
                    recorded_at,
                    actor: ev.actor,
                    correlation: ev.correlation,
                };
                self.pending.push(&envelope);
                out.push(envelope);
            }
            self.versions.insert(append.stream, version);
        }
        Ok(out)
    }
}

impl PendingRows {
    /// The highest new version of each stream in these rows.
    pub fn stream_heads(&self) -> (Vec<String>, Vec<i64>) {
        let mut heads: HashMap<&str, i64> = HashMap::new();
        for (s, v) in self.stream.iter().zip(&self.stream_version) {
            let h = heads.entry(s.as_str()).or_insert(*v);
            *h = (*h).max(*v);
        }
        heads.into_iter().map(|(s, v)| (s.to_owned(), v)).unzip()
    }
}

/// Every distinct stream named in a group.
pub(crate) fn group_streams(work: &[(Vec<StreamAppend>, Option<Inline>)]) -> Vec<&str> {
    let mut names: Vec<&str> = work
        .iter()
        .flat_map(|(batch, _)| batch.iter().map(|a| a.stream.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}
