//! What a projector is, how inline projectors join an append, and the crate's error type.
//! A projector never reads the clock or anything outside its transaction and the envelope: that
//! is what makes its tables rebuildable byte for byte.

use std::sync::Arc;

use eventlog::{AppendError, Envelope, EventLog, InlineError, StreamAppend, Tx};
use futures_util::future::BoxFuture;

/// When a projector runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Inside the append transaction (read-your-writes models); no checkpoint needed.
    Inline,
    /// Behind the log, from its checkpoint; rows and checkpoint commit together.
    CatchUp,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Inline => "inline",
            Kind::CatchUp => "catch-up",
        }
    }
}

/// A read-model table, with the columns `verify` compares.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [&'static str],
}

/// Applies events, in log order, inside the given transaction: the events of one append or one
/// page of the log that the projector handles (never empty). Applying a slice must leave the same
/// rows as applying its events one by one; taking a slice lets a projector fold a page into one
/// statement per key (a round trip per event would make Postgres replays crawl).
pub type ApplyFn = for<'a> fn(Tx<'a>, &'a [&'a Envelope]) -> BoxFuture<'a, Result<(), ProjectionError>>;

/// A projector: a name, the event types it handles, its tables and its `apply`.
#[derive(Clone, Copy)]
pub struct Projector {
    pub name: &'static str,
    pub kind: Kind,
    /// Event types it handles; empty means every event.
    pub handles: &'static [&'static str],
    /// Tables it owns (emptied by `replay`, compared by `verify`).
    pub tables: &'static [Table],
    pub apply: ApplyFn,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector").field("name", &self.name).field("kind", &self.kind).finish()
    }
}

impl Projector {
    pub fn handles(&self, event_type: &str) -> bool {
        self.handles.is_empty() || self.handles.contains(&event_type)
    }

    /// Applies those of `events` this projector handles (with `position <= up_to`), in order.
    pub async fn apply_handled(&self, tx: Tx<'_>, events: &[Envelope], up_to: i64) -> Result<(), ProjectionError> {
        let mine: Vec<&Envelope> =
            events.iter().filter(|e| e.position <= up_to && self.handles(&e.event_type)).collect();
        if mine.is_empty() {
            return Ok(());
        }
        (self.apply)(tx, &mine).await
    }
}

/// Applies `events` (in log order) to every projector; projectors own disjoint tables, so each
/// takes the whole slice in turn.
pub(crate) async fn apply_events(
    projectors: &[Projector],
    mut tx: Tx<'_>,
    events: &[Envelope],
) -> Result<(), ProjectionError> {
    for p in projectors {
        p.apply_handled(tx.reborrow(), events, i64::MAX).await?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("read model database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Log(#[from] eventlog::LogError),
    #[error(transparent)]
    Transact(#[from] eventlog::TransactError),
    #[error("no projection named {name:?}; known: {known}")]
    UnknownProjection { name: String, known: String },
    #[error("unsupported database URL {0:?}: expected sqlite:<path> or postgres://...")]
    UnsupportedUrl(String),
    #[error("scratch database: {0}")]
    Scratch(#[from] std::io::Error),
    #[error("projector {projector} failed on the event at position {position}: {message}")]
    Apply { projector: &'static str, position: i64, message: String },
}

/// Appends through the log with every inline production projector in the same transaction, so
/// read-your-writes models commit with their events or not at all (design invariant 2). Every
/// append of the server goes through one of these.
#[derive(Clone)]
pub struct Appender {
    log: EventLog,
    inline: Arc<[Projector]>,
}

impl Appender {
    /// The production inline projectors of [`crate::all`].
    pub fn new(log: EventLog) -> Self {
        let inline: Vec<Projector> = crate::all().into_iter().filter(|p| p.kind == Kind::Inline).collect();
        Appender { log, inline: inline.into() }
    }

    /// Explicit inline projectors (tests).
    pub fn with_projectors(log: EventLog, inline: Vec<Projector>) -> Self {
        Appender { log, inline: inline.into() }
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// One part of an `EventLog::append_parts` run, with the inline projectors run on its
    /// envelopes inside the same transaction.
    pub fn part(&self, batch: Vec<StreamAppend>) -> eventlog::Part {
        let projectors = self.inline.clone();
        eventlog::Part::Events(
            batch,
            Some(eventlog::inline(move |tx, events| {
                Box::pin(async move {
                    apply_events(&projectors, tx, events).await.map_err(|e| Box::new(e) as InlineError)
                })
            })),
        )
    }

    /// `EventLog::append` with the inline projectors run on the new envelopes.
    pub async fn append(&self, batch: Vec<StreamAppend>) -> Result<Vec<Envelope>, AppendError> {
        let projectors = self.inline.clone();
        self.log
            .append_with(
                batch,
                eventlog::inline(move |tx, events| {
                    Box::pin(async move {
                        apply_events(&projectors, tx, events).await.map_err(|e| Box::new(e) as InlineError)
                    })
                }),
            )
            .await
    }
}
