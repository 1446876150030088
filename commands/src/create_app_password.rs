//! `com.atproto.server.createAppPassword`: a fresh `xxxx-xxxx-xxxx-xxxx` password, hashed with
//! the DID-derived salt (so a login finds it by hash), recorded as `account.app_password_created`
//! and returned once. Only the hash enters the log.
//!
//! Never decides who may call it (the api requires a full-access token, as the reference).

use domain::account::{self, CreateAppPassword};
use domain::password;
use domain::syntax::Did;
use eventlog::{AppendError, ExpectedVersion};

use crate::{account_append, account_error, blocking, load_account, now, CommandError, Ctx};

const ATTEMPTS: usize = 3;

/// The new app password: shown to its owner once.
#[derive(Debug, Clone)]
pub struct NewAppPassword {
    pub name: String,
    pub password: String,
    pub privileged: bool,
    /// Unix microseconds.
    pub created_at: i64,
}

pub async fn create_app_password(
    ctx: &Ctx,
    did: &str,
    name: &str,
    privileged: bool,
) -> Result<NewAppPassword, CommandError> {
    let parsed = Did::parse(did).map_err(|_| CommandError::AccountNotFound)?;
    let secret = password::generate_app_password();
    let (for_hash, did_owned) = (secret.clone(), did.to_owned());
    let password_hash = blocking(move || password::hash_app_password(&did_owned, &for_hash))
        .await?
        .map_err(|e| CommandError::Internal(e.to_string()))?;
    for _ in 0..ATTEMPTS {
        let (state, version) = load_account(ctx.log(), did).await?;
        let (now_micros, _) = now();
        let events = account::decide_create_app_password(
            &state,
            CreateAppPassword { name: name.to_owned(), password_hash: password_hash.clone(), privileged },
            now_micros,
        )
        .map_err(account_error)?;
        match ctx.appender.append(vec![account_append(&parsed, ExpectedVersion::Exact(version), &events)]).await {
            Ok(_) => {
                return Ok(NewAppPassword {
                    name: name.to_owned(),
                    password: secret,
                    privileged,
                    created_at: now_micros,
                })
            }
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(CommandError::Internal(e.to_string())),
        }
    }
    Err(CommandError::Conflict(format!("account/{did}")))
}

/// One entry of `listAppPasswords` (never the password).
#[derive(Debug, Clone)]
pub struct AppPasswordView {
    pub name: String,
    pub privileged: bool,
    pub created_at: i64,
}

/// `com.atproto.server.listAppPasswords`: the account's app passwords by name.
pub async fn list_app_passwords(ctx: &Ctx, did: &str) -> Result<Vec<AppPasswordView>, CommandError> {
    let (state, _) = load_account(ctx.log(), did).await?;
    let account = state.live().ok_or(CommandError::AccountNotFound)?;
    Ok(account
        .app_passwords
        .iter()
        .map(|(name, p)| AppPasswordView { name: name.clone(), privileged: p.privileged, created_at: p.created_at })
        .collect())
}
