//! The `request*` half of the emailed-token flows (reference `requestEmailConfirmation`,
//! `requestEmailUpdate`, `requestPasswordReset`, `requestAccountDelete`): a fresh token
//! (`domain::email_token`, `XXXXX-XXXXX`, 15 minutes), its keyed hash appended as
//! `account.email_token_issued` (replacing an earlier one of that purpose), and the [`Mail`] to
//! send to the account's address. `api` delivers it (SMTP or the dev mail sink).
//!
//! Never records the token itself; never tells an unauthenticated caller whether an address has
//! an account (`request_password_reset` answers the same either way).

use domain::account::{self, EmailTokenPurpose};

use crate::{account_error, decide_on_account, load_account, CommandError, Ctx};

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub purpose: EmailTokenPurpose,
}

/// Issues a token of `purpose` for `did` and returns the mail carrying it. For `UpdateEmail`
/// on an unconfirmed address no token is needed: `None` (the reference's `tokenRequired: false`).
pub async fn request_email_token(
    ctx: &Ctx,
    did: &str,
    purpose: EmailTokenPurpose,
) -> Result<Option<Mail>, CommandError> {
    let (state, _) = load_account(ctx.log(), did).await?;
    let account = state.live().ok_or(CommandError::AccountNotFound)?;
    if purpose == EmailTokenPurpose::UpdateEmail && account.email_confirmed_at.is_none() {
        return Ok(None);
    }
    let (to, handle) = (account.email.clone(), account.handle.as_str().to_owned());
    let token = domain::email_token::generate();
    let hash = domain::email_token::hash(&ctx.jwt_secret, &token);
    decide_on_account(ctx, did, &to, |state, now| {
        account::decide_issue_email_token(state, purpose, hash.clone(), now).map_err(account_error)
    })
    .await?;
    Ok(Some(mail(purpose, to, &handle, &token)))
}

/// `requestPasswordReset`: the account with this address (any status) gets a token; an unknown
/// address gets nothing, and the caller cannot tell.
pub async fn request_password_reset(ctx: &Ctx, email: &str) -> Result<Option<Mail>, CommandError> {
    let Some(did) = projections::accounts::did_by_email(ctx.log(), email.trim()).await? else {
        return Ok(None);
    };
    request_email_token(ctx, &did, EmailTokenPurpose::ResetPassword).await
}

pub(crate) fn mail(purpose: EmailTokenPurpose, to: String, handle: &str, token: &str) -> Mail {
    let (subject, what) = match purpose {
        EmailTokenPurpose::ConfirmEmail => ("Confirm your email", "confirm this email address"),
        EmailTokenPurpose::UpdateEmail => ("Update your email", "change your account's email address"),
        EmailTokenPurpose::ResetPassword => ("Password reset requested", "reset your password"),
        EmailTokenPurpose::DeleteAccount => ("Account deletion request", "delete your account"),
        EmailTokenPurpose::SignIn => ("Sign in code", "sign in"),
        EmailTokenPurpose::PlcOperation => ("PLC update requested", "sign an update of your DID document"),
    };
    let text = format!(
        "Hi {handle},\n\nUse this code to {what}. It expires in 15 minutes.\n\nToken: {token}\n\n\
         If you did not ask for this, ignore this message.\n"
    );
    Mail { to, subject: subject.to_owned(), text, purpose }
}
