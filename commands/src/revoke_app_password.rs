//! `com.atproto.server.revokeAppPassword`: `account.app_password_revoked`, which also ends every
//! session logged in with that app password (its refresh tokens are forgotten by `evolve` and the
//! accounts read model, so they can no longer be refreshed). An unknown name is no error and
//! appends nothing, as the reference.

use domain::account;
use domain::syntax::Did;
use eventlog::{AppendError, ExpectedVersion};

use crate::{account_append, account_error, load_account, now, CommandError, Ctx};

const ATTEMPTS: usize = 3;

pub async fn revoke_app_password(ctx: &Ctx, did: &str, name: &str) -> Result<(), CommandError> {
    let parsed = Did::parse(did).map_err(|_| CommandError::AccountNotFound)?;
    for _ in 0..ATTEMPTS {
        let (state, version) = load_account(ctx.log(), did).await?;
        let (now_micros, _) = now();
        let events = account::decide_revoke_app_password(&state, name, now_micros).map_err(account_error)?;
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
