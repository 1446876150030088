//! Moving a log between databases and keeping its numbers ahead of what was ever served: the
//! pieces `pds backup` / `pds restore` are built from. Nothing here renumbers or rewrites an event:
//! an import keeps every position, seq and stream version; the only update is `raise_head`, which
//! moves the `log_head` counters forward (never back), so the next append numbers above it.

use std::path::Path;

use crate::writer::{envelope_from_row, EVENT_COLUMNS};
use crate::{Envelope, EventLog, Head, LogError, Reader, TransactError, Tx};

/// Rows per statement when importing into Postgres.
const PG_CHUNK: usize = 500;

impl EventLog {
    /// Raises the `log_head` counters to at least `position` / `seq` (each kept if already
    /// higher), in a writer transaction, and returns the new head. The next public event gets a
    /// seq above `seq`: how a restored or moved log is put back above every seq a relay has seen.
    pub async fn raise_head(&self, position: i64, seq: i64) -> Result<Head, TransactError> {
        self.transact(move |tx| {
            Box::pin(async move {
                match tx {
                    Tx::Sqlite(c) => {
                        sqlx::query("UPDATE log_head SET position = max(position, ?1), seq = max(seq, ?2) WHERE id = 1")
                            .bind(position)
                            .bind(seq)
                            .execute(&mut *c)
                            .await?;
                    }
                    Tx::Postgres(c) => {
                        sqlx::query(
                            "UPDATE log_head SET position = GREATEST(position, $1), seq = GREATEST(seq, $2) WHERE id = 1",
                        )
                        .bind(position)
                        .bind(seq)
                        .execute(&mut *c)
                        .await?;
                    }
                }
                Ok(())
            })
        })
        .await?;
        Ok(self.head().await?)
    }

    /// Rows of the `streams` table (every stream ever written and its version, purged ones too)
    /// after `after` in name order, at most `limit`.
    pub async fn read_streams(&self, after: &str, limit: u32) -> Result<Vec<(String, i64)>, LogError> {
        let rows = match &self.inner.reader {
            Reader::Sqlite(p) => {
                sqlx::query_as("SELECT stream, version FROM streams WHERE stream > ? ORDER BY stream LIMIT ?")
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(p)
                    .await?
            }
            Reader::Postgres(p) => {
                sqlx::query_as(
                    "SELECT stream, version FROM streams WHERE stream COLLATE \"C\" > $1 ORDER BY stream COLLATE \"C\" LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await?
            }
        };
        Ok(rows)
    }

    /// Inserts events exactly as they are (positions, seqs, stream versions, audit fields) and
    /// stream versions (raised, never lowered), in one writer transaction, then raises the head to
    /// cover them. For filling an EMPTY log from another one; a position already present fails the
    /// whole call (primary key) and nothing of it is stored.
    pub async fn import(&self, events: Vec<Envelope>, streams: Vec<(String, i64)>) -> Result<(), TransactError> {
        self.transact(move |tx| {
            Box::pin(async move {
                let max_position = events.iter().map(|e| e.position).max().unwrap_or(0);
                let max_seq = events.iter().filter_map(|e| e.seq).max().unwrap_or(0);
                match tx {
                    Tx::Sqlite(c) => {
                        for e in &events {
                            sqlx::query(
                                "INSERT INTO events (position, seq, stream, stream_version, event_type, \
                                 event_version, payload, recorded_at, actor, correlation) \
                                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            )
                            .bind(e.position)
                            .bind(e.seq)
                            .bind(&e.stream)
                            .bind(e.stream_version)
                            .bind(&e.event_type)
                            .bind(e.event_version)
                            .bind(e.payload.as_slice())
                            .bind(e.recorded_at)
                            .bind(e.actor.as_deref())
                            .bind(e.correlation.as_deref())
                            .execute(&mut *c)
                            .await?;
                        }
                        for (stream, version) in &streams {
                            sqlx::query(
                                "INSERT INTO streams (stream, version) VALUES (?, ?) \
                                 ON CONFLICT (stream) DO UPDATE SET version = max(version, excluded.version)",
                            )
                            .bind(stream)
                            .bind(version)
                            .execute(&mut *c)
                            .await?;
                        }
                        sqlx::query("UPDATE log_head SET position = max(position, ?1), seq = max(seq, ?2) WHERE id = 1")
                            .bind(max_position)
                            .bind(max_seq)
                            .execute(&mut *c)
                            .await?;
                    }
                    Tx::Postgres(c) => {
                        for chunk in events.chunks(PG_CHUNK) {
                            let col = |f: fn(&Envelope) -> i64| chunk.iter().map(f).collect::<Vec<i64>>();
                            let seqs: Vec<Option<i64>> = chunk.iter().map(|e| e.seq).collect();
                            let streams_col: Vec<&str> = chunk.iter().map(|e| e.stream.as_str()).collect();
                            let types: Vec<&str> = chunk.iter().map(|e| e.event_type.as_str()).collect();
                            let versions: Vec<i32> = chunk.iter().map(|e| e.event_version).collect();
                            let payloads: Vec<&[u8]> = chunk.iter().map(|e| e.payload.as_slice()).collect();
                            let actors: Vec<Option<&str>> = chunk.iter().map(|e| e.actor.as_deref()).collect();
                            let corr: Vec<Option<&str>> = chunk.iter().map(|e| e.correlation.as_deref()).collect();
                            sqlx::query(
                                "INSERT INTO events (position, seq, stream, stream_version, event_type, event_version, \
                                 payload, recorded_at, actor, correlation) \
                                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], \
                                 $6::int[], $7::bytea[], $8::bigint[], $9::text[], $10::text[])",
                            )
                            .bind(col(|e| e.position))
                            .bind(seqs)
                            .bind(streams_col)
                            .bind(col(|e| e.stream_version))
                            .bind(types)
                            .bind(versions)
                            .bind(payloads)
                            .bind(col(|e| e.recorded_at))
                            .bind(actors)
                            .bind(corr)
                            .execute(&mut *c)
                            .await?;
                        }
                        for chunk in streams.chunks(PG_CHUNK) {
                            let names: Vec<&str> = chunk.iter().map(|(s, _)| s.as_str()).collect();
                            let versions: Vec<i64> = chunk.iter().map(|(_, v)| *v).collect();
                            sqlx::query(
                                "INSERT INTO streams (stream, version) SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
                                 ON CONFLICT (stream) DO UPDATE SET version = GREATEST(streams.version, excluded.version)",
                            )
                            .bind(names)
                            .bind(versions)
                            .execute(&mut *c)
                            .await?;
                        }
                        sqlx::query(
                            "UPDATE log_head SET position = GREATEST(position, $1), seq = GREATEST(seq, $2) WHERE id = 1",
                        )
                        .bind(max_position)
                        .bind(max_seq)
                        .execute(&mut *c)
                        .await?;
                    }
                }
                Ok(())
            })
        })
        .await
    }

    /// SQLite only: a consistent copy of the whole database file (log and read models) at `dest`
    /// with `VACUUM INTO`, taken on a read connection while the server keeps writing (WAL: the copy
    /// is one read transaction's snapshot). `dest` must not exist.
    pub async fn snapshot_into(&self, dest: &Path) -> Result<(), LogError> {
        match &self.inner.reader {
            Reader::Sqlite(p) => {
                let path = dest.to_str().ok_or_else(|| LogError::UnsupportedUrl(dest.display().to_string()))?;
                sqlx::query("VACUUM INTO ?").bind(path).execute(p).await?;
                Ok(())
            }
            Reader::Postgres(_) => Err(LogError::UnsupportedUrl(
                "VACUUM INTO is SQLite only; export the log instead (export_into)".into(),
            )),
        }
    }
}

/// Events per page of an export.
const EXPORT_PAGE: i64 = 2000;

/// Progress of an export: events copied of the total at the start.
#[derive(Debug, Clone, Copy)]
pub struct ExportProgress {
    pub done: u64,
    pub total: u64,
}

/// Reads one consistent snapshot of a log (head, every event up to it, every stream version) page
/// by page, inside ONE read transaction, handing each page to `sink`.
macro_rules! export_body {
    ($pool:expr, $begin:expr, $events_sql:expr, $streams_sql:expr, $dest:expr, $progress:expr) => {{
        use sqlx::Row as _;
        let mut tx = $pool.begin().await?;
        if let Some(stmt) = $begin {
            sqlx::query(stmt).execute(&mut *tx).await?;
        }
        let (position, seq): (i64, i64) =
            sqlx::query_as("SELECT position, seq FROM log_head WHERE id = 1").fetch_one(&mut *tx).await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&mut *tx).await?;
        let total = u64::try_from(total).unwrap_or(0);
        let mut done = 0u64;
        let mut after = 0i64;
        loop {
            let rows = sqlx::query($events_sql).bind(after).bind(position).bind(EXPORT_PAGE).fetch_all(&mut *tx).await?;
            let page: Vec<Envelope> = rows.iter().map(|r| envelope_from_row!(r)).collect::<Result<_, _>>()?;
            let Some(last) = page.last().map(|e| e.position) else { break };
            after = last;
            done += page.len() as u64;
            $dest.import(page, Vec::new()).await.map_err(ExportError::Import)?;
            ($progress)(ExportProgress { done, total });
        }
        let mut stream_after = String::new();
        loop {
            let rows = sqlx::query($streams_sql).bind(&stream_after).bind(EXPORT_PAGE).fetch_all(&mut *tx).await?;
            let mut page = Vec::with_capacity(rows.len());
            for r in &rows {
                page.push((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?));
            }
            let Some(last) = page.last().map(|(s, _)| s.clone()) else { break };
            stream_after = last;
            $dest.import(Vec::new(), page).await.map_err(ExportError::Import)?;
        }
        let _ = tx.rollback().await;
        Head { position, seq }
    }};
}

/// Why an export stopped. The destination may hold part of the log: start again from an empty one.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("reading the source log: {0}")]
    Read(#[from] LogError),
    #[error("writing the destination log: {0}")]
    Import(#[source] TransactError),
}

impl From<sqlx::Error> for ExportError {
    fn from(e: sqlx::Error) -> Self {
        ExportError::Read(e.into())
    }
}

impl EventLog {
    /// Copies this whole log — every event as it is, every stream version, the head counters — into
    /// `dest`, which must be EMPTY, from one consistent snapshot of this log taken at the start
    /// (appends made meanwhile are not copied). Read models are not copied: rebuild them in `dest`
    /// with a replay. Works between any two backends (SQLite → Postgres and back).
    pub async fn export_into(
        &self,
        dest: &EventLog,
        mut progress: impl FnMut(ExportProgress) + Send,
    ) -> Result<Head, ExportError> {
        let head = match &self.inner.reader {
            Reader::Sqlite(p) => export_body!(
                p,
                None::<&str>,
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE position > ? AND position <= ? ORDER BY position LIMIT ?"),
                "SELECT stream, version FROM streams WHERE stream > ? ORDER BY stream LIMIT ?",
                dest,
                progress
            ),
            Reader::Postgres(p) => export_body!(
                p,
                Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3"),
                "SELECT stream, version FROM streams WHERE stream COLLATE \"C\" > $1 ORDER BY stream COLLATE \"C\" LIMIT $2",
                dest,
                progress
            ),
        };
        dest.raise_head(head.position, head.seq).await.map_err(ExportError::Import)?;
        Ok(head)
    }
}

impl EventLog {
    /// SQLite: folds the write-ahead log into the database file (`wal_checkpoint(TRUNCATE)`), so
    /// the file alone is complete (before copying it). Postgres: nothing to do.
    pub async fn checkpoint_wal(&self) -> Result<(), LogError> {
        if let Reader::Sqlite(p) = &self.inner.reader {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(p).await?;
        }
        Ok(())
    }
}
