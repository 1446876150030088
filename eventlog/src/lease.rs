//! Leases: "only one node at a time runs this job". On Postgres a lease is a session advisory
//! lock held by a connection of its own (not from the pool): while that connection lives, no other
//! node gets the lock; when the holder dies (crash, `kill -9`, network loss) Postgres closes the
//! session and releases the lock, and the next node that tries gets it. On SQLite the process is
//! the only server of its file, so a lease is always granted.

use sqlx::{Connection, PgConnection};

use crate::{EventLog, LogError, Reader};

/// A held lease. Dropping it releases the lock (its connection closes).
pub struct Lease {
    name: String,
    conn: Option<PgConnection>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The advisory-lock key of a job name: FNV-1a 64 of `pds-job:<name>` (stable across builds and
/// nodes, unlike `std`'s hasher).
pub fn lease_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "pds-job:".bytes().chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

impl Lease {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the lease is still held: on Postgres, whether its session answers (a dead session
    /// has lost the lock, and another node may hold it now).
    pub async fn alive(&mut self) -> bool {
        match &mut self.conn {
            None => true,
            Some(c) => c.ping().await.is_ok(),
        }
    }
}

impl EventLog {
    /// Tries once to take the lease `name`; `None` when another node holds it.
    pub async fn try_lease(&self, name: &str) -> Result<Option<Lease>, LogError> {
        match &self.inner.reader {
            Reader::Sqlite(_) => Ok(Some(Lease { name: name.to_owned(), conn: None })),
            Reader::Postgres(pool) => {
                let options = pool.connect_options();
                let mut conn = PgConnection::connect_with(&options).await?;
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(lease_key(name))
                    .fetch_one(&mut conn)
                    .await?;
                if got {
                    Ok(Some(Lease { name: name.to_owned(), conn: Some(conn) }))
                } else {
                    let _ = conn.close().await;
                    Ok(None)
                }
            }
        }
    }
}
