//! Admin `com.atproto.admin.getAccountInfo(s)` / `getSubjectStatus`: the account as the
//! `accounts` read model holds it (one primary-key lookup).

use domain::account::AccountState;

use crate::{CommandError, Ctx};

/// What an operator sees of an account.
#[derive(Debug, Clone)]
pub struct AdminAccountInfo {
    pub did: String,
    pub handle: String,
    pub email: String,
    /// Unix microseconds.
    pub indexed_at: i64,
    pub email_confirmed_at: Option<i64>,
    pub deactivated_at: Option<i64>,
    pub invite_code: Option<String>,
    /// `disableAccountInvites` is in force.
    pub invites_disabled: bool,
    /// `Some(reference)` when taken down (the reference may be absent: `Some(None)`).
    pub takedown: Option<Option<String>>,
}

/// The account of `did`, or `None` when there is none (never created, or deleted).
pub async fn admin_account_info(ctx: &Ctx, did: &str) -> Result<Option<AdminAccountInfo>, CommandError> {
    let state = crate::load_account_profile(ctx.log(), did).await?;
    let AccountState::Live(a) = state else {
        return Ok(None);
    };
    Ok(Some(AdminAccountInfo {
        did: a.did.as_str().to_owned(),
        handle: a.handle.as_str().to_owned(),
        email: a.email.clone(),
        indexed_at: a.created_at,
        email_confirmed_at: a.email_confirmed_at,
        deactivated_at: a.deactivation.as_ref().map(|d| d.at),
        invite_code: a.invite_code.clone(),
        invites_disabled: a.invites_disabled,
        takedown: a.takedown.as_ref().map(|t| t.reference.clone()),
    }))
}
