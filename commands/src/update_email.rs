//! `com.atproto.server.updateEmail`: a supported address (as createAccount), not another
//! account's; a confirmed current address needs the `update_email` token (`TokenRequired`,
//! then `InvalidToken` / `ExpiredToken`). The new address starts unconfirmed. A race for the
//! address is settled by the read model's UNIQUE index. `emailAuthFactor` switches email
//! two-factor login (same token rules; the same address again changes only that).

use domain::account;

use crate::create_account::is_valid_email;
use crate::{decide_on_account, email_token_error, CommandError, Ctx};

pub async fn update_email(
    ctx: &Ctx,
    did: &str,
    email: &str,
    token: Option<&str>,
    email_auth_factor: Option<bool>,
) -> Result<(), CommandError> {
    let email = email.trim().to_lowercase();
    if !is_valid_email(&email) {
        return Err(CommandError::InvalidRequest(
            "This email address is not supported, please use a different email.".into(),
        ));
    }
    match projections::accounts::did_by_email(ctx.log(), &email).await? {
        Some(owner) if owner != did => {
            return Err(CommandError::InvalidRequest(
                "This email address is already in use, please use a different email.".into(),
            ))
        }
        _ => {}
    }
    let hash = token.map(|t| domain::email_token::hash(&ctx.jwt_secret, t));
    decide_on_account(ctx, did, &email, |state, now| {
        account::decide_update_email_with_token(state, &email, hash.as_deref(), email_auth_factor, now).map_err(email_token_error)
    })
    .await
}
