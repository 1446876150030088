//! `event_stats` (catch-up): per event type, how many events, the first and last position and when
//! the last was recorded. Served at `org.eventpds.admin.getEventStats`. It never reads the clock:
//! `last_recorded_at` is the envelope's, so a replay rebuilds the same bytes.

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

fn apply<'a>(tx: Tx<'a>, e: &'a Envelope) -> BoxFuture<'a, Result<(), ProjectionError>> {
    Box::pin(async move {
        match tx {
            Tx::Sqlite(c) => {
                sqlx::query(
                    "INSERT INTO event_stats (event_type, count, first_position, last_position, last_recorded_at) \
                     VALUES (?, 1, ?, ?, ?) ON CONFLICT (event_type) DO UPDATE SET count = count + 1, \
                     last_position = excluded.last_position, last_recorded_at = excluded.last_recorded_at",
                )
                .bind(&e.event_type)
                .bind(e.position)
                .bind(e.position)
                .bind(e.recorded_at)
                .execute(c)
                .await?;
            }
            Tx::Postgres(c) => {
                sqlx::query(
                    "INSERT INTO event_stats (event_type, count, first_position, last_position, last_recorded_at) \
                     VALUES ($1, 1, $2, $2, $3) ON CONFLICT (event_type) DO UPDATE SET \
                     count = event_stats.count + 1, last_position = excluded.last_position, \
                     last_recorded_at = excluded.last_recorded_at",
                )
                .bind(&e.event_type)
                .bind(e.position)
                .bind(e.recorded_at)
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
