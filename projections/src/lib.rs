//! projections: the read side. One file per projector (its table, its `apply`, the queries over
//! its table), the registry of production projectors ([`all`]), the inline hook for appends
//! ([`Appender`]), the catch-up runner and its checkpoints, and the operator jobs `replay` and
//! `verify`.
//!
//! Every read model here is a pure function of the log: nothing in this crate writes a read-model
//! row except a projector's `apply`, and nothing but `replay` deletes one.

pub mod accounts;
pub mod blobs;
pub mod checkpoints;
pub mod event_stats;
pub mod invites;
pub mod oauth;
pub mod plc_operations;
mod projector;
pub mod preferences;
pub mod records;
pub mod replay;
pub mod repo_blocks;
pub mod runner;
pub mod sql;
pub mod stream_index;
pub mod sync_reads;
pub mod verify;

pub use projector::{ApplyFn, Appender, Kind, ProjectionError, Projector, Table};

/// Every production projector, inline ones first.
pub fn all() -> Vec<Projector> {
    vec![
        stream_index::PROJECTOR,
        accounts::PROJECTOR,
        invites::PROJECTOR,
        repo_blocks::PROJECTOR,
        records::PROJECTOR,
        blobs::PROJECTOR,
        oauth::PROJECTOR,
        plc_operations::PROJECTOR,
        preferences::PROJECTOR,
        event_stats::PROJECTOR,
    ]
}

/// The production projector called `name`.
pub fn by_name(name: &str) -> Option<Projector> {
    all().into_iter().find(|p| p.name == name)
}

/// `all()`, or only `name` (an unknown name is an error that lists the known ones).
pub fn select(name: Option<&str>) -> Result<Vec<Projector>, ProjectionError> {
    match name {
        None => Ok(all()),
        Some(n) => by_name(n).map(|p| vec![p]).ok_or_else(|| ProjectionError::UnknownProjection {
            name: n.to_owned(),
            known: all().iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
        }),
    }
}
