//! `com.atproto.server.createSession` (login by handle, DID or email, with the account password or
//! an app password) and `getSession`. An unknown identifier costs one dummy password verification,
//! so response times don't tell which accounts exist; it answers exactly as a wrong password does.
//!
//! Email two-factor (`account.email_auth_factor`): a password login (not an app password) without
//! `authFactorToken` gets a fresh sign-in code mailed (queued in the append that
//! issues it; `CommandError::AuthFactorTokenRequired`) and no session; with it, the code is checked and used in the session's append.
//!
//! Never records the refresh token, only its hash (in `account.session_created`).

use domain::account::{self, AccountEvent, CreateSession, EmailTokenPurpose, PasswordCheck};
use domain::password;
use domain::session_jwt::{self, Scope};
use domain::syntax::Did;
use eventlog::ExpectedVersion;

use crate::{
    account_append, account_error, account_view, append_error, blocking, load_account, now, refresh_expiry_micros,
    tokens, AccountView, CommandError, Ctx, Session,
};

/// Attempts when a concurrent change to the account moves its stream version.
const ATTEMPTS: usize = 3;

/// The DID an identifier names, if an account has it: an email (contains `@`), a DID, or a handle.
pub async fn resolve_identifier(ctx: &Ctx, identifier: &str) -> Result<Option<String>, CommandError> {
    let id = identifier.trim();
    let log = ctx.log();
    Ok(if id.contains('@') {
        projections::accounts::did_by_email(log, id).await?
    } else if id.starts_with("did:") {
        projections::accounts::exists(log, id).await?.then(|| id.to_owned())
    } else {
        projections::accounts::did_by_handle(log, id).await?
    })
}

pub async fn create_session(
    ctx: &Ctx,
    identifier: &str,
    password: String,
    allow_takendown: bool,
    auth_factor_token: Option<&str>,
) -> Result<Session, CommandError> {
    if password::check_login_password(&password).is_err() {
        return Err(CommandError::AuthenticationRequired);
    }
    let Some(did) = resolve_identifier(ctx, identifier).await? else {
        blocking(move || password::dummy_verify(&password)).await?;
        return Err(CommandError::AuthenticationRequired);
    };
    let (state, _) = load_account(ctx.log(), &did).await?;
    let Some(account) = state.live() else {
        blocking(move || password::dummy_verify(&password)).await?;
        return Err(CommandError::AuthenticationRequired);
    };
    let phc = account.password_hash.clone();
    let did_for_hash = did.clone();
    let check = blocking(move || {
        let account_password_ok = password::verify_password(&password, &phc);
        let app_password_hash = (!account_password_ok && password::is_app_password_format(&password))
            .then(|| password::hash_app_password(&did_for_hash, &password).ok())
            .flatten();
        PasswordCheck { account_password_ok, app_password_hash }
    })
    .await?;
    let parsed = Did::parse(&did).map_err(|e| CommandError::Internal(e.to_string()))?;

    for _ in 0..ATTEMPTS {
        let (state, version) = load_account(ctx.log(), &did).await?;
        let (now_micros, now_secs) = now();
        let jti = session_jwt::generate_jti();
        let mut events = account::decide_create_session(
            &state,
            CreateSession {
                password: check.clone(),
                allow_takendown,
                token_hash: session_jwt::refresh_token_hash(&jti),
                expires_at: refresh_expiry_micros(now_secs),
            },
            now_micros,
        )
        .map_err(account_error)?;
        let Some(account) = state.live() else { return Err(CommandError::AuthenticationRequired) };
        let factor_hash = auth_factor_token.map(|t| domain::email_token::hash(&ctx.jwt_secret, t));
        match account::decide_sign_in_factor(account, check.account_password_ok, factor_hash.as_deref(), now_micros) {
            Ok(used) => events.extend(used),
            Err(account::AccountError::AuthFactorTokenRequired) => {
                let token = domain::email_token::generate();
                let hash = domain::email_token::hash(&ctx.jwt_secret, &token);
                let issued = account::decide_issue_email_token(&state, EmailTokenPurpose::SignIn, hash, now_micros)
                    .map_err(account_error)?;
                let message = crate::request_email_token::token_message(
                    ctx,
                    &did,
                    &account.email,
                    account.handle.as_str(),
                    EmailTokenPurpose::SignIn,
                    &token,
                )
                .await?;
                let queued = crate::queue_notification::notification_append(ctx, &message)?;
                let batch = vec![account_append(&parsed, ExpectedVersion::Exact(version), &issued), queued];
                match ctx.appender.append(batch).await {
                    Ok(_) => {}
                    Err(eventlog::AppendError::Conflict { .. }) => continue,
                    Err(e) => return Err(append_error(e, account.handle.as_str(), &account.email)),
                }
                return Err(CommandError::AuthFactorTokenRequired);
            }
            Err(e) => return Err(crate::email_token_error(e)),
        }
        let scope = match events.first() {
            Some(AccountEvent::SessionCreated { app_password_name, .. }) => {
                account.session_scope(app_password_name.as_deref())
            }
            // A takendown account logging in with `allowTakendown`: nothing is stored.
            _ => Scope::Takendown,
        };
        if !events.is_empty() {
            let batch = vec![account_append(&parsed, ExpectedVersion::Exact(version), &events)];
            match ctx.appender.append(batch).await {
                Ok(_) => {}
                Err(eventlog::AppendError::Conflict { .. }) => continue,
                Err(e) => return Err(append_error(e, account.handle.as_str(), &account.email)),
            }
        }
        let (access_jwt, refresh_jwt) = tokens(ctx, &did, scope, &jti, now_secs);
        return Ok(Session { account: account_view(ctx, account), access_jwt, refresh_jwt });
    }
    Err(CommandError::Conflict(format!("account/{did}")))
}

/// `com.atproto.server.getSession`: the account behind a verified access token.
pub async fn get_session(ctx: &Ctx, did: &str) -> Result<AccountView, CommandError> {
    let state = crate::load_account_profile(ctx.log(), did).await?;
    let account = state.live().ok_or(CommandError::AccountNotFound)?;
    Ok(account_view(ctx, account))
}
