//! `stream_index` (inline): every aggregate (stream) with its kind — the stream name before the
//! first '/' — its version and the position of its last event, committed with each append so
//! operators can list aggregates. Served at `org.eventpds.admin.listStreams`.

use std::collections::BTreeMap;

use eventlog::{Envelope, EventLog, ReadPool, Tx};
use futures_util::future::BoxFuture;

use crate::{Kind, ProjectionError, Projector, Table};

pub const NAME: &str = "stream_index";

pub const PROJECTOR: Projector = Projector {
    name: NAME,
    kind: Kind::Inline,
    handles: &[],
    tables: &[Table { name: "stream_index", columns: &["stream", "kind", "version", "last_position"] }],
    apply,
};

/// The aggregate kind of a stream name: `repo/did:plc:x` → `repo`.
pub fn kind_of(stream: &str) -> &str {
    stream.split_once('/').map_or(stream, |(k, _)| k)
}

fn apply<'a>(tx: Tx<'a>, events: &'a [&'a Envelope]) -> BoxFuture<'a, Result<(), ProjectionError>> {
    Box::pin(async move {
        // Each stream's last event in the slice (events come in log order): one upsert per stream.
        let mut last: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for e in events {
            last.insert(e.stream.as_str(), (e.stream_version, e.position));
        }
        match tx {
            Tx::Sqlite(c) => {
                for (stream, (version, position)) in &last {
                    sqlx::query(
                        "INSERT INTO stream_index (stream, kind, version, last_position) VALUES (?, ?, ?, ?) \
                         ON CONFLICT (stream) DO UPDATE SET version = excluded.version, \
                         last_position = excluded.last_position",
                    )
                    .bind(stream)
                    .bind(kind_of(stream))
                    .bind(version)
                    .bind(position)
                    .execute(&mut *c)
                    .await?;
                }
            }
            Tx::Postgres(c) => {
                let streams: Vec<&str> = last.keys().copied().collect();
                let kinds: Vec<&str> = streams.iter().map(|s| kind_of(s)).collect();
                let versions: Vec<i64> = last.values().map(|v| v.0).collect();
                let positions: Vec<i64> = last.values().map(|v| v.1).collect();
                sqlx::query(
                    "INSERT INTO stream_index (stream, kind, version, last_position) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
                     ON CONFLICT (stream) DO UPDATE SET version = excluded.version, \
                     last_position = excluded.last_position",
                )
                .bind(&streams)
                .bind(&kinds)
                .bind(&versions)
                .bind(&positions)
                .execute(c)
                .await?;
            }
        }
        Ok(())
    })
}

/// One row of `stream_index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub stream: String,
    pub kind: String,
    pub version: i64,
    pub last_position: i64,
}

/// Streams in name order after `after` (a cursor: the last stream of the previous page),
/// optionally only of one `kind`, at most `limit`.
pub async fn list(
    log: &EventLog,
    kind: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<StreamEntry>, ProjectionError> {
    let after = after.unwrap_or("");
    let limit = i64::from(limit);
    let rows: Vec<(String, String, i64, i64)> = match log.read_pool() {
        ReadPool::Sqlite(p) => {
            sqlx::query_as(
                "SELECT stream, kind, version, last_position FROM stream_index \
                 WHERE (? IS NULL OR kind = ?) AND stream > ? ORDER BY stream LIMIT ?",
            )
            .bind(kind)
            .bind(kind)
            .bind(after)
            .bind(limit)
            .fetch_all(p)
            .await?
        }
        ReadPool::Postgres(p) => {
            sqlx::query_as(
                "SELECT stream, kind, version, last_position FROM stream_index \
                 WHERE ($1::text IS NULL OR kind = $1) AND stream COLLATE \"C\" > $2 ORDER BY stream COLLATE \"C\" LIMIT $3",
            )
            .bind(kind)
            .bind(after)
            .bind(limit)
            .fetch_all(p)
            .await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|(stream, kind, version, last_position)| StreamEntry { stream, kind, version, last_position })
        .collect())
}
