//! `event_stats` (catch-up): per event type, how many events, the first and last position and when
//! the last was recorded. Served at `org.eventpds.admin.getEventStats`. It never reads the clock:
//! `last_recorded_at` is the envelope's, so a replay rebuilds the same bytes.

use std::collections::BTreeMap;

use eventlog::{Envelope, EventLog, ReadPool, Tx};
use futures_util::future::BoxFuture;

use crate::{Kind, ProjectionError, Projector, Table};

pub const NAME: &str = "event_stats";

pub const PROJECTOR: Projector = Projector {
    name: NAME,
    kind: Kind::CatchUp,
    handles: &[],
    tables: &[Table {
        name: "event_stats",
        columns: &["event_type", "count", "first_position", "last_position", "last_recorded_at"],
    }],
    apply,
};

/// One event type's share of a slice of events.
struct Fold {
    count: i64,
    first_position: i64,
    last_position: i64,
    last_recorded_at: i64,
}

/// Folds events (in log order) per type: one upsert per type instead of one per event.
fn fold<'e>(events: &[&'e Envelope]) -> BTreeMap<&'e str, Fold> {
    let mut by_type: BTreeMap<&str, Fold> = BTreeMap::new();
    for e in events {
        let f = by_type.entry(e.event_type.as_str()).or_insert(Fold {
            count: 0,
            first_position: e.position,
            last_position: e.position,
            last_recorded_at: e.recorded_at,
        });
        f.count += 1;
        f.last_position = e.position;
        f.last_recorded_at = e.recorded_at;
    }
    by_type
}

fn apply<'a>(tx: Tx<'a>, events: &'a [&'a Envelope]) -> BoxFuture<'a, Result<(), ProjectionError>> {
    Box::pin(async move {
        let folded = fold(events);
        match tx {
            Tx::Sqlite(c) => {
                for (event_type, f) in &folded {
                    sqlx::query(
                        "INSERT INTO event_stats (event_type, count, first_position, last_position, last_recorded_at) \
                         VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_type) DO UPDATE SET \
                         count = count + excluded.count, last_position = excluded.last_position, \
                         last_recorded_at = excluded.last_recorded_at",
                    )
                    .bind(event_type)
                    .bind(f.count)
                    .bind(f.first_position)
                    .bind(f.last_position)
                    .bind(f.last_recorded_at)
                    .execute(&mut *c)
                    .await?;
                }
            }
            Tx::Postgres(c) => {
                let types: Vec<&str> = folded.keys().copied().collect();
                let column = |get: fn(&Fold) -> i64| folded.values().map(get).collect::<Vec<i64>>();
                sqlx::query(
                    "INSERT INTO event_stats (event_type, count, first_position, last_position, last_recorded_at) \
                     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) \
                     ON CONFLICT (event_type) DO UPDATE SET count = event_stats.count + excluded.count, \
                     last_position = excluded.last_position, last_recorded_at = excluded.last_recorded_at",
                )
                .bind(&types)
                .bind(column(|f| f.count))
                .bind(column(|f| f.first_position))
                .bind(column(|f| f.last_position))
                .bind(column(|f| f.last_recorded_at))
                .execute(c)
                .await?;
            }
        }
        Ok(())
    })
}

/// One row of `event_stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypeStats {
    pub event_type: String,
    pub count: i64,
    pub first_position: i64,
    pub last_position: i64,
    /// Unix microseconds.
    pub last_recorded_at: i64,
}

/// Every event type, by name.
pub async fn list(log: &EventLog) -> Result<Vec<EventTypeStats>, ProjectionError> {
    const SQL: &str = "SELECT event_type, count, first_position, last_position, last_recorded_at \
                       FROM event_stats ORDER BY event_type";
    type Row = (String, i64, i64, i64, i64);
    let rows: Vec<Row> = match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query_as(SQL).fetch_all(p).await?,
        ReadPool::Postgres(p) => sqlx::query_as(SQL).fetch_all(p).await?,
    };
    Ok(rows
        .into_iter()
        .map(|(event_type, count, first_position, last_position, last_recorded_at)| EventTypeStats {
            event_type,
            count,
            first_position,
            last_position,
            last_recorded_at,
        })
        .collect())
}
