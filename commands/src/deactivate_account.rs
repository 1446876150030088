//! `com.atproto.server.deactivateAccount`: `account.deactivated` and `#account` of the new state
//! (`deactivated`, or `takendown` if also taken down), the reference's one firehose event.
//! `delete_after` (Unix microseconds) is recorded as given; nothing deletes accounts yet.

use domain::account;
use domain::syntax::Did;
use eventlog::{AppendError, ExpectedVersion};

use crate::{account_append, account_error, load_account, now, CommandError, Ctx};

const ATTEMPTS: usize = 3;

pub async fn deactivate_account(ctx: &Ctx, did: &str, delete_after: Option<i64>) -> Result<(), CommandError> {
    let parsed = Did::parse(did).map_err(|_| CommandError::AccountNotFound)?;
    for _ in 0..ATTEMPTS {
        let (state, version) = load_account(ctx.log(), did).await?;
        let (now_micros, _) = now();
        let events = account::decide_deactivate(&state, delete_after, now_micros).map_err(account_error)?;
        match ctx.appender.append(vec![account_append(&parsed, ExpectedVersion::Exact(version), &events)]).await {
            Ok(_) => return Ok(()),
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(CommandError::Internal(e.to_string())),
        }
    }
    Err(CommandError::Conflict(format!("account/{did}")))
}
