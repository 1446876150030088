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

/// Applies one event inside the given transaction (same SQL shape on both backends).
pub type ApplyFn = for<'a> fn(Tx<'a>, &'a Envelope) -> BoxFuture<'a, Result<(), ProjectionError>>;

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

    /// Applies `event` if this projector handles its type.
    pub async fn apply_if_handled(&self, tx: Tx<'_>, event: &Envelope) -> Result<(), ProjectionError> {
        if self.handles(&event.event_type) {
            (self.apply)(tx, event).await
        } else {
            Ok(())
        }
    }
}

/// Applies every event to every projector that handles it, in log order.
pub(crate) async fn apply_events(
    projectors: &[Projector],
    mut tx: Tx<'_>,
    events: &[Envelope],
) -> Result<(), ProjectionError> {
    for event in events {
        for p in projectors {
            p.apply_if_handled(tx.reborrow(), event).await?;
        }
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
