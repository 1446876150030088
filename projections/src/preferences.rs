//! `preferences` (inline, so a `getPreferences` right after a `putPreferences` sees it): each
//! account's preferences (`account_preferences`: did, namespace, position in the namespace,
//! `$type`, the JSON object as text) from the `account/<did>` stream's
//! `account.preferences_put` events, which carry a namespace's whole new content. An account's
//! creation or deletion leaves it none.
//!
//! Never interprets a preference beyond its `$type` (the rules are `domain::account::preferences`);
//! never reads the clock.

use domain::account::preferences::Preference;
use domain::account::{AccountEvent, AccountStatus, PREFERENCE_EVENT_TYPES};
use eventlog::{Envelope, EventLog, ReadPool, Tx};
use futures_util::future::BoxFuture;

use crate::sql::{exec, numbered};
use crate::{Kind, ProjectionError, Projector, Table};

pub const NAME: &str = "preferences";

pub const PROJECTOR: Projector = Projector {
    name: NAME,
    kind: Kind::Inline,
    handles: &PREFERENCE_EVENT_TYPES,
    tables: &[Table {
        name: "account_preferences",
        columns: &["did", "namespace", "idx", "pref_type", "value_json"],
    }],
    apply,
};

fn apply<'a>(mut tx: Tx<'a>, events: &'a [&'a Envelope]) -> BoxFuture<'a, Result<(), ProjectionError>> {
    Box::pin(async move {
        for e in events {
            let fail = |message: String| ProjectionError::Apply { projector: NAME, position: e.position, message };
            let Some(did) = e.stream.strip_prefix("account/") else {
                return Err(fail(format!("event in stream {} outside account/<did>", e.stream)));
            };
            let event = AccountEvent::from_payload(&e.event_type, e.event_version, &e.payload)
                .map_err(|err| fail(err.to_string()))?;
            match &event {
                AccountEvent::Created(_)
                | AccountEvent::Deleted { .. }
                | AccountEvent::Status { status: Some(AccountStatus::Deleted), .. } => {
                    exec(&mut tx, "DELETE FROM account_preferences WHERE did = ?", &[did.into()]).await?;
                }
                AccountEvent::PreferencesPut { namespace, prefs, .. } => {
                    exec(
                        &mut tx,
                        "DELETE FROM account_preferences WHERE did = ? AND namespace = ?",
                        &[did.into(), namespace.clone().into()],
                    )
                    .await?;
                    for (idx, json) in prefs.iter().enumerate() {
                        let pref = Preference::from_json(json).map_err(|err| fail(format!("preference {idx}: {err}")))?;
                        exec(
                            &mut tx,
                            "INSERT INTO account_preferences (did, namespace, idx, pref_type, value_json) \
                             VALUES (?, ?, ?, ?, ?)",
                            &[
                                did.into(),
                                namespace.clone().into(),
                                i64::try_from(idx).unwrap_or(i64::MAX).into(),
                                pref.pref_type().into(),
                                json.clone().into(),
                            ],
                        )
                        .await?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    })
}

/// The stored preferences of `did` in `namespace`, in order, as JSON object texts.
pub async fn list(log: &EventLog, did: &str, namespace: &str) -> Result<Vec<String>, ProjectionError> {
    const SQL: &str = "SELECT value_json FROM account_preferences WHERE did = ? AND namespace = ? ORDER BY idx";
    Ok(match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query_scalar(SQL).bind(did).bind(namespace).fetch_all(p).await?,
        ReadPool::Postgres(p) => sqlx::query_scalar(&numbered(SQL)).bind(did).bind(namespace).fetch_all(p).await?,
    })
}
