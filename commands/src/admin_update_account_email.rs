//! Admin `com.atproto.admin.updateAccountEmail` (reference semantics): the account by DID or
//! handle, in any status (`Account does not exist: <account>` otherwise); the new address is set
//! unconfirmed without a token (`account.email_updated`). Another account's address is refused
//! (the read model's UNIQUE index settles a race).

use domain::account;

use crate::create_account::is_valid_email;
use crate::{account_error, decide_on_account, CommandError, Ctx};

pub async fn admin_update_account_email(ctx: &Ctx, account_id: &str, email: &str) -> Result<(), CommandError> {
    let did = if account_id.starts_with("did:") {
        Some(account_id.to_owned())
    } else {
        projections::accounts::did_by_handle(ctx.log(), &account_id.to_lowercase()).await?
    };
    let missing = || CommandError::InvalidRequest(format!("Account does not exist: {account_id}"));
    let did = did.ok_or_else(missing)?;
    if !projections::accounts::exists(ctx.log(), &did).await? {
        return Err(missing());
    }
    let email = email.trim().to_lowercase();
    if !is_valid_email(&email) {
        return Err(CommandError::InvalidRequest("This email address is not supported, please use a different email.".into()));
    }
    match projections::accounts::did_by_email(ctx.log(), &email).await? {
        Some(owner) if owner != did => {
            return Err(CommandError::InvalidRequest("This email address is already in use, please use a different email.".into()))
        }
        _ => {}
    }
    decide_on_account(ctx, &did, &email, |state, now| {
        match state.live() {
            Some(a) if a.email == email => Ok(vec![]),
            _ => account::decide_update_email(state, &email, now).map_err(account_error),
        }
    })
    .await
}
