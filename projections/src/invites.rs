//! `invites` (inline): invite codes (`invite_codes`: uses granted, the account they are for, who
//! made them) and their uses (`invite_code_uses`), from the `invite/<code>` streams
//! (`domain::invite`). Lookups: the codes made for an account, a code's row.
//!
//! Never reads the clock: times come from the events.

use domain::invite::{InviteEvent, EVENT_TYPES};
use eventlog::{Envelope, EventLog, ReadPool, Tx};
use futures_util::future::BoxFuture;

use crate::sql::{exec, numbered};
use crate::{Kind, ProjectionError, Projector, Table};

pub const NAME: &str = "invites";

pub const PROJECTOR: Projector = Projector {
    name: NAME,
    kind: Kind::Inline,
    handles: &EVENT_TYPES,
    tables: &[
        Table { name: "invite_codes", columns: &["code", "available", "for_account", "created_by", "created_at"] },
        Table { name: "invite_code_uses", columns: &["code", "used_by", "used_at"] },
    ],
    apply,
};

fn apply<'a>(mut tx: Tx<'a>, events: &'a [&'a Envelope]) -> BoxFuture<'a, Result<(), ProjectionError>> {
    Box::pin(async move {
        for e in events {
            let fail = |message: String| ProjectionError::Apply { projector: NAME, position: e.position, message };
            let event = InviteEvent::from_payload(&e.event_type, e.event_version, &e.payload)
                .map_err(|err| fail(err.to_string()))?;
            match &event {
                InviteEvent::Created { code, available, for_account, created_by, at } => {
                    exec(
                        &mut tx,
                        "INSERT INTO invite_codes (code, available, for_account, created_by, created_at) \
                         VALUES (?, ?, ?, ?, ?)",
                        &[
                            code.clone().into(),
                            (*available).into(),
                            for_account.clone().into(),
                            created_by.clone().into(),
                            (*at).into(),
                        ],
                    )
                    .await?;
                }
                // Disabled codes are read from their stream (`commands::invite_code_view`).
                InviteEvent::Disabled { .. } => {}
                InviteEvent::Used { code, used_by, at } => {
                    exec(
                        &mut tx,
                        "INSERT INTO invite_code_uses (code, used_by, used_at) VALUES (?, ?, ?)",
                        &[code.clone().into(), used_by.clone().into(), (*at).into()],
                    )
                    .await?;
                }
            }
        }
        Ok(())
    })
}

/// The codes made for `account` (a DID, or `admin`), oldest first.
pub async fn codes_for_account(log: &EventLog, account: &str) -> Result<Vec<String>, ProjectionError> {
    const SQL: &str = "SELECT code FROM invite_codes WHERE for_account = ? ORDER BY created_at, code";
    Ok(match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query_scalar(SQL).bind(account).fetch_all(p).await?,
        ReadPool::Postgres(p) => sqlx::query_scalar(&numbered(SQL)).bind(account).fetch_all(p).await?,
    })
}

/// How `getInviteCodes` orders codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeOrder {
    /// Newest first (`created_at`, then code, descending).
    Recent,
    /// Most used first (number of uses, then code, descending).
    Usage,
}

/// One page of every code: `(code, key)` where key is `created_at` (Recent) or the use count
/// (Usage); `after` = the last row of the previous page.
pub async fn list_codes(
    log: &EventLog,
    order: CodeOrder,
    after: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<(String, i64)>, ProjectionError> {
    const RECENT: &str = "SELECT code, created_at FROM invite_codes ORDER BY created_at DESC, code DESC LIMIT ?";
    const RECENT_AFTER: &str = "SELECT code, created_at FROM invite_codes WHERE created_at < ? OR (created_at = ? AND code < ?) \
                                ORDER BY created_at DESC, code DESC LIMIT ?";
    const USAGE: &str = "SELECT c.code, COUNT(u.code) AS n FROM invite_codes c LEFT JOIN invite_code_uses u ON u.code = c.code \
                         GROUP BY c.code ORDER BY n DESC, c.code DESC LIMIT ?";
    const USAGE_AFTER: &str = "SELECT c.code, COUNT(u.code) AS n FROM invite_codes c LEFT JOIN invite_code_uses u ON u.code = c.code \
                               GROUP BY c.code HAVING COUNT(u.code) < ? OR (COUNT(u.code) = ? AND c.code < ?) \
                               ORDER BY n DESC, c.code DESC LIMIT ?";
    let sql = match (order, after.is_some()) {
        (CodeOrder::Recent, false) => RECENT,
        (CodeOrder::Recent, true) => RECENT_AFTER,
        (CodeOrder::Usage, false) => USAGE,
        (CodeOrder::Usage, true) => USAGE_AFTER,
    };
    Ok(match log.read_pool() {
        ReadPool::Sqlite(p) => {
            let q = sqlx::query_as::<_, (String, i64)>(sql);
            let q = match &after {
                Some((k, c)) => q.bind(*k).bind(*k).bind(c.clone()),
                None => q,
            };
            q.bind(limit).fetch_all(p).await?
        }
        ReadPool::Postgres(p) => {
            let sql = numbered(sql);
            let q = sqlx::query_as::<_, (String, i64)>(&sql);
            let q = match &after {
                Some((k, c)) => q.bind(*k).bind(*k).bind(c.clone()),
                None => q,
            };
            q.bind(limit).fetch_all(p).await?
        }
    })
}
