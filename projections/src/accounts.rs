//! `accounts` (inline): accounts by DID with their handle and email (lowercase, each UNIQUE, so
//! two creations racing for one handle cannot both commit), password hash, encrypted signing key
//! and status; their app passwords; their refresh tokens by hash, with family, expiry and
//! successor. Applied from the `account/<did>` stream's events (`domain::account`), the same rules
//! `evolve` folds, so the tables always describe the state the commands decide on.
//!
//! Never holds a secret in the clear: it stores what the events carry (hashes, encrypted keys).
//! Never reads the clock: token pruning uses the events' own times.

use domain::account::{AccountEvent, AccountStatus, EVENT_TYPES, RETIRED_TOKEN_MEMORY_MICROS};
use eventlog::{Envelope, EventLog, Tx};
use futures_util::future::BoxFuture;

use crate::sql::{exec, fetch_text};
use crate::{Kind, ProjectionError, Projector, Table};

pub const NAME: &str = "accounts";

pub const PROJECTOR: Projector = Projector {
    name: NAME,
    kind: Kind::Inline,
    handles: &EVENT_TYPES,
    tables: &[
        Table {
            name: "accounts",
            columns: &[
                "did",
                "handle",
                "email",
                "email_confirmed_at",
                "password_hash",
                "signing_key_encrypted",
                "signing_did_key",
                "plc_genesis",
                "invite_code",
                "created_at",
                "deactivated_at",
                "delete_after",
                "takedown_ref",
                "taken_down_at",
                "email_auth_factor",
            ],
        },
        Table {
            name: "account_app_passwords",
            columns: &["did", "name", "password_hash", "privileged", "created_at"],
        },
        Table {
            name: "account_refresh_tokens",
            columns: &["token_hash", "did", "family", "app_password_name", "expires_at", "successor"],
        },
        Table { name: "account_email_tokens", columns: &["did", "purpose", "token_hash", "expires_at"] },
    ],
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
            apply_one(&mut tx, did, &event).await?;
        }
        Ok(())
    })
}

const DELETE_TOKENS: &str = "DELETE FROM account_refresh_tokens WHERE did = ?";
const PRUNE_TOKENS: &str = "DELETE FROM account_refresh_tokens WHERE did = ? AND \
     ((successor IS NULL AND expires_at <= ?) OR (successor IS NOT NULL AND expires_at + ? <= ?))";

async fn prune(tx: &mut Tx<'_>, did: &str, at: i64) -> Result<(), sqlx::Error> {
    exec(tx, PRUNE_TOKENS, &[did.into(), at.into(), RETIRED_TOKEN_MEMORY_MICROS.into(), at.into()]).await?;
    Ok(())
}

async fn delete_account(tx: &mut Tx<'_>, did: &str) -> Result<(), sqlx::Error> {
    exec(tx, "DELETE FROM accounts WHERE did = ?", &[did.into()]).await?;
    exec(tx, "DELETE FROM account_app_passwords WHERE did = ?", &[did.into()]).await?;
    exec(tx, DELETE_TOKENS, &[did.into()]).await?;
    exec(tx, "DELETE FROM account_email_tokens WHERE did = ?", &[did.into()]).await?;
    Ok(())
}

async fn apply_one(tx: &mut Tx<'_>, did: &str, event: &AccountEvent) -> Result<(), sqlx::Error> {
    match event {
        AccountEvent::Created(c) => {
            delete_account(tx, did).await?;
            exec(
                tx,
                "INSERT INTO accounts (did, handle, email, email_confirmed_at, password_hash, \
                 signing_key_encrypted, signing_did_key, plc_genesis, invite_code, created_at, \
                 deactivated_at, delete_after, takedown_ref, taken_down_at) \
                 VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)",
                &[
                    did.into(),
                    c.handle.as_str().into(),
                    c.email.clone().into(),
                    c.password_hash.clone().into(),
                    c.signing_key_encrypted.clone().into(),
                    c.signing_did_key.clone().into(),
                    c.plc_genesis.map(|cid| cid.to_string()).into(),
                    c.invite_code.clone().into(),
                    c.created_at.into(),
                    c.deactivated.then_some(c.created_at).into(),
                ],
            )
            .await?;
        }
        AccountEvent::HandleUpdated { handle, .. } => {
            exec(tx, "UPDATE accounts SET handle = ? WHERE did = ?", &[handle.as_str().into(), did.into()]).await?;
        }
        AccountEvent::EmailUpdated { email, .. } => {
            exec(
                tx,
                "UPDATE accounts SET email = ?, email_confirmed_at = NULL WHERE did = ?",
                &[email.clone().into(), did.into()],
            )
            .await?;
        }
        AccountEvent::EmailConfirmed { email, at } => {
            exec(
                tx,
                "UPDATE accounts SET email_confirmed_at = ? WHERE did = ? AND email = ?",
                &[(*at).into(), did.into(), email.clone().into()],
            )
            .await?;
        }
        AccountEvent::PasswordChanged { password_hash, .. } => {
            exec(tx, "UPDATE accounts SET password_hash = ? WHERE did = ?", &[password_hash.clone().into(), did.into()])
                .await?;
            exec(tx, DELETE_TOKENS, &[did.into()]).await?;
        }
        AccountEvent::AppPasswordCreated { name, password_hash, privileged, at } => {
            exec(
                tx,
                "INSERT INTO account_app_passwords (did, name, password_hash, privileged, created_at) \
                 VALUES (?, ?, ?, ?, ?)",
                &[did.into(), name.clone().into(), password_hash.clone().into(), i64::from(*privileged).into(), (*at).into()],
            )
            .await?;
        }
        AccountEvent::AppPasswordRevoked { name, .. } => {
            exec(tx, "DELETE FROM account_app_passwords WHERE did = ? AND name = ?", &[did.into(), name.clone().into()])
                .await?;
            exec(
                tx,
                "DELETE FROM account_refresh_tokens WHERE did = ? AND app_password_name = ?",
                &[did.into(), name.clone().into()],
            )
            .await?;
        }
        AccountEvent::SessionCreated { token_hash, app_password_name, expires_at, at } => {
            prune(tx, did, *at).await?;
            exec(
                tx,
                "INSERT INTO account_refresh_tokens (token_hash, did, family, app_password_name, expires_at, successor) \
                 VALUES (?, ?, ?, ?, ?, NULL)",
                &[
                    token_hash.clone().into(),
                    did.into(),
                    token_hash.clone().into(),
                    app_password_name.clone().into(),
                    (*expires_at).into(),
                ],
            )
            .await?;
        }
        AccountEvent::SessionRefreshed { family, old_hash, new_hash, grace_expires_at, expires_at, at } => {
            exec(
                tx,
                "INSERT INTO account_refresh_tokens (token_hash, did, family, app_password_name, expires_at, successor) \
                 VALUES (?, ?, ?, (SELECT app_password_name FROM account_refresh_tokens WHERE token_hash = ?), ?, NULL)",
                &[new_hash.clone().into(), did.into(), family.clone().into(), old_hash.clone().into(), (*expires_at).into()],
            )
            .await?;
            exec(
                tx,
                "UPDATE account_refresh_tokens SET expires_at = ?, successor = ? WHERE token_hash = ?",
                &[(*grace_expires_at).into(), new_hash.clone().into(), old_hash.clone().into()],
            )
            .await?;
            prune(tx, did, *at).await?;
        }
        AccountEvent::SessionRevoked { family, .. } | AccountEvent::SessionFamilyRevoked { family, .. } => {
            exec(
                tx,
                "DELETE FROM account_refresh_tokens WHERE did = ? AND family = ?",
                &[did.into(), family.clone().into()],
            )
            .await?;
        }
        AccountEvent::EmailTokenIssued { purpose, token_hash, expires_at, .. } => {
            exec(
                tx,
                "DELETE FROM account_email_tokens WHERE did = ? AND purpose = ?",
                &[did.into(), purpose.as_str().into()],
            )
            .await?;
            exec(
                tx,
                "INSERT INTO account_email_tokens (did, purpose, token_hash, expires_at) VALUES (?, ?, ?, ?)",
                &[did.into(), purpose.as_str().into(), token_hash.clone().into(), (*expires_at).into()],
            )
            .await?;
        }
        AccountEvent::EmailTokenUsed { purpose, .. } => {
            exec(
                tx,
                "DELETE FROM account_email_tokens WHERE did = ? AND purpose = ?",
                &[did.into(), purpose.as_str().into()],
            )
            .await?;
        }
        AccountEvent::EmailAuthFactorUpdated { enabled, .. } => {
            exec(tx, "UPDATE accounts SET email_auth_factor = ? WHERE did = ?", &[i64::from(*enabled).into(), did.into()])
                .await?;
        }
        AccountEvent::Activated { .. } => {
            exec(tx, "UPDATE accounts SET deactivated_at = NULL, delete_after = NULL WHERE did = ?", &[did.into()])
                .await?;
        }
        AccountEvent::Deactivated { delete_after, at } => {
            exec(
                tx,
                "UPDATE accounts SET deactivated_at = ?, delete_after = ? WHERE did = ?",
                &[(*at).into(), (*delete_after).into(), did.into()],
            )
            .await?;
        }
        AccountEvent::TakedownUpdated { applied, reference, at } => {
            if *applied {
                exec(
                    tx,
                    "UPDATE accounts SET takedown_ref = ?, taken_down_at = ? WHERE did = ?",
                    &[reference.clone().into(), (*at).into(), did.into()],
                )
                .await?;
                exec(tx, DELETE_TOKENS, &[did.into()]).await?;
            } else {
                exec(tx, "UPDATE accounts SET takedown_ref = NULL, taken_down_at = NULL WHERE did = ?", &[did.into()])
                    .await?;
            }
        }
        AccountEvent::Deleted { .. } | AccountEvent::Status { status: Some(AccountStatus::Deleted), .. } => {
            delete_account(tx, did).await?;
        }
        // `preferences.rs` projects preferences.
        AccountEvent::PreferencesPut { .. } | AccountEvent::Identity { .. } | AccountEvent::Status { .. } => {}
    }
    Ok(())
}

/// The DID of the account with this handle (lowercase), if any.
pub async fn did_by_handle(log: &EventLog, handle: &str) -> Result<Option<String>, ProjectionError> {
    Ok(fetch_text(log.read_pool(), "SELECT did FROM accounts WHERE handle = ?", &[handle.to_ascii_lowercase().into()])
        .await?)
}

/// The DID of the account with this email (compared lowercase), if any.
pub async fn did_by_email(log: &EventLog, email: &str) -> Result<Option<String>, ProjectionError> {
    Ok(fetch_text(log.read_pool(), "SELECT did FROM accounts WHERE email = ?", &[email.to_lowercase().into()]).await?)
}

/// Whether an account row exists for `did`.
pub async fn exists(log: &EventLog, did: &str) -> Result<bool, ProjectionError> {
    Ok(fetch_text(log.read_pool(), "SELECT did FROM accounts WHERE did = ?", &[did.into()]).await?.is_some())
}

/// Whether `e` is the accounts table's unique constraint on `column` (`handle` or `email`).
pub fn is_unique_violation_on(e: &sqlx::Error, column: &str) -> bool {
    match e.as_database_error() {
        Some(db) if db.is_unique_violation() => {
            db.constraint().is_some_and(|c| c.contains(column)) || db.message().contains(&format!("accounts.{column}"))
        }
        _ => false,
    }
}

type AccountRowT = (
    String,
    String,
    Option<i64>,
    String,
    Vec<u8>,
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    i64,
);

/// token_hash, family, app_password_name, expires_at, successor.
type TokenRowT = (String, String, Option<String>, i64, Option<String>);

macro_rules! fetch {
    ($log:expr, $kind:ident, $sql:expr, $($arg:expr),*) => {
        match $log.read_pool() {
            eventlog::ReadPool::Sqlite(p) => sqlx::query_as($sql)$(.bind($arg))*.$kind(p).await?,
            eventlog::ReadPool::Postgres(p) => sqlx::query_as(&crate::sql::numbered($sql))$(.bind($arg))*.$kind(p).await?,
        }
    };
}

/// The account of `did` as its rows describe it: the same [`domain::account::Account`] that
/// folding `account/<did>` gives (the projector applies the fold's rules), read with three indexed
/// lookups instead of a fold of the whole stream — so the cost of loading an account does not
/// grow with the number of sessions it ever had. `None` when there is no row (never created, or
/// deleted).
///
/// The three reads are separate statements: a caller that decides on the result must read the
/// stream version *before* calling this and append at that version, so a change committed in
/// between makes the append conflict instead of being overwritten.
pub async fn snapshot(log: &EventLog, did: &str) -> Result<Option<domain::account::Account>, ProjectionError> {
    read_account(log, did, true).await
}

/// The account of `did` without its credentials: app passwords, refresh tokens and emailed
/// tokens are left empty. One primary-key lookup, for reads that show or use the account
/// (`getSession`, the signing key) and never decide on its sessions.
pub async fn profile(log: &EventLog, did: &str) -> Result<Option<domain::account::Account>, ProjectionError> {
    read_account(log, did, false).await
}

async fn read_account(
    log: &EventLog,
    did: &str,
    credentials: bool,
) -> Result<Option<domain::account::Account>, ProjectionError> {
    let bad = |what: &str| ProjectionError::Apply { projector: NAME, position: 0, message: format!("{did}: stored {what} is invalid") };
    let row: Option<AccountRowT> = fetch!(
        log,
        fetch_optional,
        "SELECT handle, email, email_confirmed_at, password_hash, signing_key_encrypted, signing_did_key, \
         plc_genesis, invite_code, created_at, deactivated_at, delete_after, takedown_ref, taken_down_at, \
         email_auth_factor FROM accounts WHERE did = ?",
        did
    );
    let Some(r) = row else { return Ok(None) };
    if !credentials {
        return account_from(did, r, vec![], vec![], Default::default()).map(Some);
    }
    let apps: Vec<(String, String, i64, i64)> = fetch!(
        log,
        fetch_all,
        "SELECT name, password_hash, privileged, created_at FROM account_app_passwords WHERE did = ?",
        did
    );
    let tokens: Vec<TokenRowT> = fetch!(
        log,
        fetch_all,
        "SELECT token_hash, family, app_password_name, expires_at, successor FROM account_refresh_tokens WHERE did = ?",
        did
    );
    let email_tokens: Vec<(String, String, i64)> = fetch!(
        log,
        fetch_all,
        "SELECT purpose, token_hash, expires_at FROM account_email_tokens WHERE did = ?",
        did
    );
    let email_tokens = email_tokens
        .into_iter()
        .map(|(purpose, token_hash, expires_at)| {
            let purpose = domain::account::EmailTokenPurpose::parse(&purpose).ok_or_else(|| bad("email token purpose"))?;
            Ok((purpose, domain::account::EmailToken { token_hash, expires_at }))
        })
        .collect::<Result<_, ProjectionError>>()?;
    account_from(did, r, apps, tokens, email_tokens).map(Some)
}

fn account_from(
    did: &str,
    r: AccountRowT,
    apps: Vec<(String, String, i64, i64)>,
    tokens: Vec<TokenRowT>,
    email_tokens: std::collections::BTreeMap<domain::account::EmailTokenPurpose, domain::account::EmailToken>,
) -> Result<domain::account::Account, ProjectionError> {
    use domain::account::{Account, AppPassword, Deactivation, RefreshToken, Takedown};
    let bad = |what: &str| ProjectionError::Apply { projector: NAME, position: 0, message: format!("{did}: stored {what} is invalid") };
    let plc_genesis = match r.6 {
        Some(s) => Some(domain::cbor::Cid::try_from(s.as_str()).map_err(|_| bad("plc_genesis"))?),
        None => None,
    };
    Ok(Account {
        did: domain::syntax::Did::parse(did).map_err(|_| bad("did"))?,
        handle: domain::syntax::Handle::parse(&r.0).map_err(|_| bad("handle"))?,
        email: r.1,
        email_confirmed_at: r.2,
        email_auth_factor: r.13 != 0,
        password_hash: r.3,
        signing_key_encrypted: r.4,
        signing_did_key: r.5,
        plc_genesis,
        invite_code: r.7,
        created_at: r.8,
        deactivation: r.9.map(|at| Deactivation { at, delete_after: r.10 }),
        takedown: r.12.map(|at| Takedown { reference: r.11, at }),
        app_passwords: apps
            .into_iter()
            .map(|(name, password_hash, privileged, created_at)| {
                (name, AppPassword { password_hash, privileged: privileged != 0, created_at })
            })
            .collect(),
        refresh_tokens: tokens
            .into_iter()
            .map(|(hash, family, app_password_name, expires_at, successor)| {
                (hash, RefreshToken { family, app_password_name, expires_at, successor })
            })
            .collect(),
        email_tokens,
    })
}

/// Whether the refresh token `token_hash` of `did` is still held (not revoked, not pruned): the
/// one-row check that ends a session's access tokens when its refresh token is revoked.
pub async fn refresh_token_held(log: &EventLog, did: &str, token_hash: &str) -> Result<bool, ProjectionError> {
    Ok(fetch_text(
        log.read_pool(),
        "SELECT did FROM account_refresh_tokens WHERE token_hash = ? AND did = ?",
        &[token_hash.into(), did.into()],
    )
    .await?
    .is_some())
}

/// The DID whose live token of `purpose` has this hash (`resetPassword` knows only the token).
pub async fn did_by_email_token(log: &EventLog, purpose: &str, token_hash: &str) -> Result<Option<String>, ProjectionError> {
    Ok(fetch_text(
        log.read_pool(),
        "SELECT did FROM account_email_tokens WHERE token_hash = ? AND purpose = ?",
        &[token_hash.into(), purpose.into()],
    )
    .await?)
}
