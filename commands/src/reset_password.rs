//! `com.atproto.server.resetPassword` (no session: the token names the account): the
//! `reset_password` token (`InvalidToken` / `ExpiredToken`), a new password within the rules
//! of createAccount, then `account.password_changed` (every session revoked by the fold) +
//! `account.email_token_used`.

use domain::account;

use crate::{blocking, decide_on_account, email_token_error, CommandError, Ctx};

pub async fn reset_password(ctx: &Ctx, token: &str, password: String) -> Result<(), CommandError> {
    let hash = domain::email_token::hash(&ctx.jwt_secret, token);
    let Some(did) = projections::accounts::did_by_email_token(ctx.log(), "reset_password", &hash).await? else {
        return Err(CommandError::InvalidToken("Token is invalid".into()));
    };
    domain::password::check_new_password(&password).map_err(|e| CommandError::InvalidRequest(e.to_string()))?;
    let password_hash = blocking(move || domain::password::hash_password(&password))
        .await?
        .map_err(|e| CommandError::Internal(e.to_string()))?;
    decide_on_account(ctx, &did, "", |state, now| {
        account::decide_reset_password(state, &hash, password_hash.clone(), now).map_err(email_token_error)
    })
    .await
}
