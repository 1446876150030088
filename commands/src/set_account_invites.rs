//! `com.atproto.admin.disableAccountInvites` / `enableAccountInvites` (admin):
//! `account.invites_disabled_updated` on the account's stream when the flag changes (nothing
//! when it already has that value). Unknown account → `AccountNotFound`.
//!
//! Never decides who may call it (the caller checked admin auth).

use domain::account;
use domain::syntax::Did;
use eventlog::{AppendError, ExpectedVersion};

use crate::{account_append, account_error, load_account, now, CommandError, Ctx};

const ATTEMPTS: usize = 3;

pub async fn set_account_invites_disabled(ctx: &Ctx, did: &str, disabled: bool) -> Result<(), CommandError> {
    let parsed = Did::parse(did).map_err(|_| CommandError::AccountNotFound)?;
    for _ in 0..ATTEMPTS {
        let (state, version) = load_account(ctx.log(), did).await?;
        let (now_micros, _) = now();
        let events = account::decide_set_invites_disabled(&state, disabled, now_micros).map_err(account_error)?;
        if events.is_empty() {
            return Ok(());
        }
        match ctx.appender.append(vec![account_append(&parsed, ExpectedVersion::Exact(version), &events)]).await {
            Ok(_) => return Ok(()),
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(CommandError::Internal(e.to_string())),
        }
    }
    Err(CommandError::Conflict(format!("account/{did}")))
}
