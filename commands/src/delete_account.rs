//! `com.atproto.server.deleteAccount` (no session: DID, password and the emailed
//! `delete_account` token): an unknown DID → `AccountNotFound`-style `InvalidRequest`
//! ("account not found", as the reference); a wrong password → `AuthenticationRequired`; the
//! token checked (`InvalidToken` / `ExpiredToken`); then the same erasure as the admin's
//! `deleteAccount` (tombstone `#account{deleted}`, purge, read models rebuilt).

use domain::account::{self, EmailTokenPurpose};

use crate::{admin_delete_account, blocking, email_token_error, load_account, now, CommandError, Ctx};

pub async fn delete_account(ctx: &Ctx, did: &str, password: String, token: &str) -> Result<(), CommandError> {
    let (state, _) = load_account(ctx.log(), did).await?;
    let Some(acc) = state.live() else {
        return Err(CommandError::InvalidRequest("account not found".into()));
    };
    let phc = acc.password_hash.clone();
    if !blocking(move || domain::password::verify_password(&password, &phc)).await? {
        return Err(CommandError::ServiceAuth { name: "AuthenticationRequired", message: "Invalid did or password".into() });
    }
    let hash = domain::email_token::hash(&ctx.jwt_secret, token);
    let (now_micros, _) = now();
    account::check_email_token(acc, EmailTokenPurpose::DeleteAccount, &hash, now_micros).map_err(email_token_error)?;
    admin_delete_account(ctx, did).await.map(|_| ())
}
