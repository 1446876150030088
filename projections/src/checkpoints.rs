//! `projection_checkpoints`: how far each catch-up projector has applied the log. A checkpoint is
//! only ever written in the transaction that writes the rows it covers, so after a crash the rows
//! and the checkpoint agree: no event is applied twice or skipped.

use eventlog::{EventLog, ReadPool, Tx};

use crate::ProjectionError;

/// The committed checkpoint of `name` (0 when it has none yet).
pub async fn get(log: &EventLog, name: &str) -> Result<i64, ProjectionError> {
    let v: Option<i64> = match log.read_pool() {
        ReadPool::Sqlite(p) => {
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = ?")
                .bind(name)
                .fetch_optional(p)
                .await?
        }
        ReadPool::Postgres(p) => {
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(p)
                .await?
        }
    };
    Ok(v.unwrap_or(0))
}

/// Takes `name`'s checkpoint row for this transaction, creating it at 0 if missing. On Postgres
/// the row is locked (`FOR UPDATE SKIP LOCKED`): `None` means another node's projector holds it
/// right now, so this one must not apply anything (it would double-apply). SQLite transactions of
/// the writer are serialised by the database lock, so the row is always available there.
pub async fn lock(tx: &mut Tx<'_>, name: &str) -> Result<Option<i64>, ProjectionError> {
    match tx {
        Tx::Sqlite(c) => {
            sqlx::query("INSERT INTO projection_checkpoints (name, position) VALUES (?, 0) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .execute(&mut **c)
                .await?;
            let v: i64 = sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = ?")
                .bind(name)
                .fetch_one(&mut **c)
                .await?;
            Ok(Some(v))
        }
        Tx::Postgres(c) => {
            sqlx::query(
                "INSERT INTO projection_checkpoints (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .execute(&mut **c)
            .await?;
            Ok(sqlx::query_scalar(
                "SELECT position FROM projection_checkpoints WHERE name = $1 FOR UPDATE SKIP LOCKED",
            )
            .bind(name)
            .fetch_optional(&mut **c)
            .await?)
        }
    }
}

/// Sets `name`'s checkpoint inside the transaction that wrote the rows up to `position`.
pub async fn set(tx: &mut Tx<'_>, name: &str, position: i64) -> Result<(), ProjectionError> {
    match tx {
        Tx::Sqlite(c) => {
            sqlx::query(
                "INSERT INTO projection_checkpoints (name, position) VALUES (?, ?) \
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            )
            .bind(name)
            .bind(position)
            .execute(&mut **c)
            .await?;
        }
        Tx::Postgres(c) => {
            sqlx::query(
                "INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            )
            .bind(name)
            .bind(position)
            .execute(&mut **c)
            .await?;
        }
    }
    Ok(())
}
