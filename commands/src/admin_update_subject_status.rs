//! Admin `com.atproto.admin.updateSubjectStatus` for an account (`#repoRef`): a takedown
//! (`account.takedown_updated` + `#account{takendown}`; every session revoked by the fold) or
//! lifting it (`#account` of the new status). Unchanged → nothing appended. And
//! [`admin_update_deactivated`]: `deactivated: {applied}` as the reference (deactivate with no
//! `deleteAfter`, or lift the deactivation), each followed by `#account` of the new status.

use domain::account;
use domain::syntax::Did;
use eventlog::{AppendError, ExpectedVersion};

use crate::{account_append, account_error, load_account, now, CommandError, Ctx};

const ATTEMPTS: usize = 3;

pub async fn admin_update_takedown(
    ctx: &Ctx,
    did: &str,
    applied: bool,
    reference: Option<String>,
) -> Result<(), CommandError> {
    let parsed = Did::parse(did).map_err(|_| CommandError::AccountNotFound)?;
    for _ in 0..ATTEMPTS {
        let (state, version) = load_account(ctx.log(), did).await?;
        let (now_micros, _) = now();
        let events =
            account::decide_update_takedown(&state, applied, reference.clone(), now_micros).map_err(account_error)?;
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

/// `deactivated.applied` → `account.deactivated` + `#account`; not applied →
/// `account.activated` + `#account` (see `decide_lift_deactivation`).
pub async fn admin_update_deactivated(ctx: &Ctx, did: &str, applied: bool) -> Result<(), CommandError> {
    let parsed = Did::parse(did).map_err(|_| CommandError::AccountNotFound)?;
    for _ in 0..ATTEMPTS {
        let (state, version) = load_account(ctx.log(), did).await?;
        let (now_micros, _) = now();
        let events = if applied {
            account::decide_deactivate(&state, None, now_micros)
        } else {
            account::decide_lift_deactivation(&state, now_micros)
        }
        .map_err(account_error)?;
        match ctx.appender.append(vec![account_append(&parsed, ExpectedVersion::Exact(version), &events)]).await {
            Ok(_) => return Ok(()),
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(CommandError::Internal(e.to_string())),
        }
    }
    Err(CommandError::Conflict(format!("account/{did}")))
}
