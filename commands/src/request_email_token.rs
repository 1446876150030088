//! The `request*` half of the emailed-token flows (reference `requestEmailConfirmation`,
//! `requestEmailUpdate`, `requestPasswordReset`, `requestAccountDelete`): a fresh token
//! (`domain::email_token`, `XXXXX-XXXXX`, 15 minutes), its keyed hash appended as
//! `account.email_token_issued` (replacing an earlier one of that purpose) in the same append as the
//! `notification.queued` of the message carrying it (the token sealed, `queue_notification.rs`);
//! `api`'s outbox sends it (SMTP or the dev mail sink).
//!
//! Never records the token itself; never tells an unauthenticated caller whether an address has
//! an account (`request_password_reset` answers the same either way).

use domain::account::{self, EmailTokenPurpose};
use domain::notification::{Content, Template};

use crate::queue_notification::{notification_append, Message};
use crate::{account_error, decide_on_account_with, load_account, CommandError, Ctx};

/// Issues a token of `purpose` for `did` and queues the message carrying it, in one append.
/// `false` when nothing was sent: `UpdateEmail` on an unconfirmed address needs no token (the
/// reference's `tokenRequired: false`).
pub async fn request_email_token(ctx: &Ctx, did: &str, purpose: EmailTokenPurpose) -> Result<bool, CommandError> {
    let (state, _) = load_account(ctx.log(), did).await?;
    let account = state.live().ok_or(CommandError::AccountNotFound)?;
    if purpose == EmailTokenPurpose::UpdateEmail && account.email_confirmed_at.is_none() {
        return Ok(false);
    }
    let (to, handle) = (account.email.clone(), account.handle.as_str().to_owned());
    let token = domain::email_token::generate();
    let hash = domain::email_token::hash(&ctx.jwt_secret, &token);
    let queued = notification_append(ctx, &token_message(ctx, did, &to, &handle, purpose, &token).await?)?;
    decide_on_account_with(ctx, did, &to, vec![queued], |state, now| {
        account::decide_issue_email_token(state, purpose, hash.clone(), now).map_err(account_error)
    })
    .await?;
    Ok(true)
}

/// `requestPasswordReset`: the account with this address (any status) gets a token; an unknown
/// address gets nothing, and the caller cannot tell.
pub async fn request_password_reset(ctx: &Ctx, email: &str) -> Result<bool, CommandError> {
    let Some(did) = projections::accounts::did_by_email(ctx.log(), email.trim()).await? else {
        return Ok(false);
    };
    request_email_token(ctx, &did, EmailTokenPurpose::ResetPassword).await
}

/// The template of a token's message.
pub fn template_for(purpose: EmailTokenPurpose) -> Template {
    match purpose {
        EmailTokenPurpose::ConfirmEmail => Template::ConfirmEmail,
        EmailTokenPurpose::UpdateEmail => Template::UpdateEmail,
        EmailTokenPurpose::ResetPassword => Template::ResetPassword,
        EmailTokenPurpose::DeleteAccount => Template::DeleteAccount,
        EmailTokenPurpose::SignIn => Template::SignIn,
        EmailTokenPurpose::PlcOperation => Template::PlcOperation,
    }
}

/// The message carrying `token` to the account: by email, or on the account's preferred verified
/// chat channel (`notification_prefs.rs`) for the tokens that do not prove the email address.
pub(crate) async fn token_message(
    ctx: &Ctx,
    did: &str,
    email: &str,
    handle: &str,
    purpose: EmailTokenPurpose,
    token: &str,
) -> Result<Message, CommandError> {
    let content = Content { token: Some(token.to_owned()), handle: Some(handle.to_owned()), ..Content::default() };
    let template = template_for(purpose);
    let message = Message::email(did, email, template, content);
    if matches!(purpose, EmailTokenPurpose::ConfirmEmail | EmailTokenPurpose::UpdateEmail) {
        return Ok(message);
    }
    crate::notification_prefs::route(ctx, message).await
}
