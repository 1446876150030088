//! `com.atproto.server.confirmEmail`: the `confirm_email` token (`InvalidToken` /
//! `ExpiredToken`), then the address must be the account's (`InvalidEmail`):
//! `account.email_confirmed` + `account.email_token_used`.

use domain::account;

use crate::{decide_on_account, email_token_error, CommandError, Ctx};

pub async fn confirm_email(ctx: &Ctx, did: &str, email: &str, token: &str) -> Result<(), CommandError> {
    let hash = domain::email_token::hash(&ctx.jwt_secret, token);
    decide_on_account(ctx, did, "", |state, now| {
        account::decide_confirm_email_with_token(state, email, &hash, now).map_err(email_token_error)
    })
    .await
}
