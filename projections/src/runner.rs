//! The catch-up runner: one task per catch-up projector, following the log from its checkpoint.
//! Each step is one writer transaction (`EventLog::transact`) that locks the checkpoint row, reads
//! the next events *inside* the transaction, applies them and moves the checkpoint to the last one
//! — so a crash or a failing `apply` leaves rows and checkpoint exactly as they were (no event
//! applied twice, none skipped). Several nodes on one Postgres database may run the same runner:
//! the row lock (`SKIP LOCKED`) lets one apply at a time and the others skip the round.
//! It never applies an event at or below the locked checkpoint.

use std::time::Duration;

use eventlog::{EventLog, InlineError};
use tokio::task::JoinHandle;

use crate::projector::apply_events;
use crate::{checkpoints, Kind, ProjectionError, Projector};

/// Events applied per transaction.
pub const BATCH: u32 = 500;

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Events read after the checkpoint (all of them applied or skipped as unhandled).
    pub read: u64,
    /// The checkpoint after the step.
    pub checkpoint: i64,
    /// Another node held the checkpoint row; nothing was done.
    pub busy: bool,
}

/// Applies at most `limit` events after `projector`'s checkpoint in one transaction.
pub async fn step(log: &EventLog, projector: Projector, limit: u32) -> Result<Step, ProjectionError> {
    Ok(log
        .transact(move |mut tx| {
            Box::pin(async move {
                let result: Result<Step, ProjectionError> = async {
                    let Some(checkpoint) = checkpoints::lock(&mut tx, projector.name).await? else {
                        return Ok(Step { read: 0, checkpoint: 0, busy: true });
                    };
                    let events = tx.read_all(checkpoint, limit).await?;
                    let Some(last) = events.last().map(|e| e.position) else {
                        return Ok(Step { read: 0, checkpoint, busy: false });
                    };
                    apply_events(&[projector], tx.reborrow(), &events).await?;
                    checkpoints::set(&mut tx, projector.name, last).await?;
                    Ok(Step { read: events.len() as u64, checkpoint: last, busy: false })
                }
                .await;
                result.map_err(|e| Box::new(e) as InlineError)
            })
        })
        .await?)
}

/// Applies everything committed so far (repeated steps until one reads nothing).
pub async fn catch_up(log: &EventLog, projector: Projector) -> Result<i64, ProjectionError> {
    loop {
        let s = step(log, projector, BATCH).await?;
        if s.busy {
            tokio::time::sleep(Duration::from_millis(50)).await;
        } else if s.read == 0 {
            return Ok(s.checkpoint);
        }
    }
}

/// Follows the log forever: steps while there is work, waits for new commits otherwise, and backs
/// off (up to 30 s) after a failure, retrying from the committed checkpoint.
pub async fn run(log: EventLog, projector: Projector) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match step(&log, projector, BATCH).await {
            Ok(s) if s.busy => tokio::time::sleep(Duration::from_millis(200)).await,
            Ok(s) if s.read == 0 => {
                backoff = Duration::from_millis(100);
                // Positions up to the head may be purged: wait for something above both.
                let head = log.head().await.map(|h| h.position).unwrap_or(s.checkpoint);
                log.wait_past(head.max(s.checkpoint), Duration::from_secs(1)).await;
            }
            Ok(_) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::error!(projection = projector.name, error = %e, "catch-up projection failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Spawns one [`run`] task per catch-up projector of `projectors`.
pub fn spawn(log: &EventLog, projectors: &[Projector]) -> Vec<JoinHandle<()>> {
    projectors
        .iter()
        .filter(|p| p.kind == Kind::CatchUp)
        .map(|p| tokio::spawn(run(log.clone(), *p)))
        .collect()
}
