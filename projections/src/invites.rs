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
