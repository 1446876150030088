//! `pds replay`: empties the chosen projectors' tables and rebuilds them from position 0, all in
//! one writer transaction — an interrupted replay leaves the old read models, never half-built
//! ones. Catch-up checkpoints move to the last replayed event in the same transaction. Meant to run
//! with the server stopped (it holds the writer for its whole duration).

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventlog::{EventLog, InlineError, ReadPool, Tx};

use crate::projector::apply_events;
use crate::{checkpoints, Kind, ProjectionError, Projector};

/// Events read per page.
const PAGE: u32 = 1000;
/// Least time between two progress reports.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// A progress report: `done` of about `total` events after `elapsed`.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub elapsed: Duration,
}

impl Progress {
    /// Events per second so far.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub projections: Vec<&'static str>,
    pub events: u64,
    /// The last position replayed (0 for an empty log).
    pub position: i64,
    pub elapsed: Duration,
}

/// How many events the log holds now (purged ones excluded).
pub async fn count_events(log: &EventLog) -> Result<u64, ProjectionError> {
    let n: i64 = match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(p).await?,
        ReadPool::Postgres(p) => sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(p).await?,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Empties a projector's tables inside `tx`.
pub(crate) async fn clear(tx: &mut Tx<'_>, projector: &Projector) -> Result<(), ProjectionError> {
    for table in projector.tables {
        let sql = format!("DELETE FROM {}", table.name);
        match tx {
            Tx::Sqlite(c) => sqlx::query(&sql).execute(&mut **c).await.map(drop)?,
            Tx::Postgres(c) => sqlx::query(&sql).execute(&mut **c).await.map(drop)?,
        }
    }
    Ok(())
}

/// Rebuilds `projectors` from position 0; `progress` is called at most twice a second.
pub async fn replay(
    log: &EventLog,
    projectors: Vec<Projector>,
    progress: Arc<dyn Fn(Progress) + Send + Sync>,
) -> Result<ReplayReport, ProjectionError> {
    let total = count_events(log).await?;
    let started = Instant::now();
    let names: Vec<&'static str> = projectors.iter().map(|p| p.name).collect();
    let (events, position) = log
        .transact(move |mut tx| {
            Box::pin(async move {
                let run: Result<(u64, i64), ProjectionError> = async {
                    for p in &projectors {
                        clear(&mut tx, p).await?;
                    }
                    let (mut done, mut cursor) = (0u64, 0i64);
                    let mut reported = Instant::now();
                    loop {
                        let page = tx.read_all(cursor, PAGE).await?;
                        let Some(last) = page.last().map(|e| e.position) else { break };
                        apply_events(&projectors, tx.reborrow(), &page).await?;
                        done += page.len() as u64;
                        cursor = last;
                        if reported.elapsed() >= PROGRESS_EVERY {
                            reported = Instant::now();
                            progress(Progress { done, total: total.max(done), elapsed: started.elapsed() });
                        }
                    }
                    for p in projectors.iter().filter(|p| p.kind == Kind::CatchUp) {
                        checkpoints::set(&mut tx, p.name, cursor).await?;
                    }
                    Ok((done, cursor))
                }
                .await;
                run.map_err(|e| Box::new(e) as InlineError)
            })
        })
        .await?;
    Ok(ReplayReport { projections: names, events, position, elapsed: started.elapsed() })
}
