//! Leases: "only one node at a time runs this job". On Postgres a lease is a session advisory
//! lock taken on a connection of its own (not from the pool), kept by a [`LeaseClaim`] for the life
//! of the process: while that session lives and holds the lock, no other node gets it; when the
//! holder dies (crash, `kill -9`, network loss) Postgres ends the session and releases the lock,
//! and the next node that tries gets it. On SQLite the process is the only server of its file, so
//! a claim always holds.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::{EventLog, LogError, Reader};

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

/// One node's claim on the lease `name`: its own connection (made on first use, made again after
/// it fails), and whether it holds the lock now.
pub struct LeaseClaim {
    name: String,
    postgres: Option<PgConnectOptions>,
    conn: Option<PgConnection>,
    held: bool,
}

impl std::fmt::Debug for LeaseClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseClaim").field("name", &self.name).field("held", &self.held).finish_non_exhaustive()
    }
}

impl LeaseClaim {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Tries to take the lease (true = held now, also when it already was). One connection for
    /// every attempt: no connection churn while another node holds it.
    pub async fn try_acquire(&mut self) -> Result<bool, LogError> {
        let Some(options) = &self.postgres else {
            self.held = true;
            return Ok(true);
        };
        if self.held {
            return Ok(self.alive().await);
        }
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(PgConnection::connect_with(options).await?),
        };
        let got = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(lease_key(&self.name))
            .fetch_one(&mut *conn)
            .await;
        match got {
            Ok(got) => {
                self.held = got;
                Ok(got)
            }
            Err(e) => {
                self.conn = None;
                Err(e.into())
            }
        }
    }

    /// Whether the lease is still held: on Postgres, whether its session answers (a session that
    /// does not has lost the lock, and another node may hold it now; the connection is dropped).
    pub async fn alive(&mut self) -> bool {
        if self.postgres.is_none() {
            return self.held;
        }
        let ok = match &mut self.conn {
            Some(c) => self.held && c.ping().await.is_ok(),
            None => false,
        };
        if !ok {
            self.held = false;
            self.conn = None;
        }
        ok
    }

    /// Gives the lease up (Postgres: unlocks; a failure drops the connection, which unlocks too).
    pub async fn release(&mut self) {
        if !self.held {
            return;
        }
        self.held = false;
        if let Some(c) = &mut self.conn {
            let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
                .bind(lease_key(&self.name))
                .fetch_one(&mut *c)
                .await;
            if unlocked.is_err() {
                self.conn = None;
            }
        }
    }
}

impl EventLog {
    /// A claim on the lease `name` (nothing is taken until [`LeaseClaim::try_acquire`]).
    pub fn lease_claim(&self, name: &str) -> LeaseClaim {
        let postgres = match &self.inner.reader {
            Reader::Sqlite(_) => None,
            Reader::Postgres(pool) => Some((*pool.connect_options()).clone()),
        };
        LeaseClaim { name: name.to_owned(), postgres, conn: None, held: false }
    }
}
