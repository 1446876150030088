//! Admin `com.atproto.admin.updateAccountPassword`: a new argon2id hash
//! (`account.password_changed`, private); the fold drops every refresh token, so all sessions end.

use domain::account;
use domain::syntax::Did;
use eventlog::{AppendError, ExpectedVersion};
use zeroize::Zeroizing;

use crate::{account_append, account_error, blocking, load_account, now, CommandError, Ctx};

const ATTEMPTS: usize = 3;

pub async fn admin_update_account_password(ctx: &Ctx, did: &str, password: String) -> Result<(), CommandError> {
    let parsed = Did::parse(did).map_err(|_| CommandError::AccountNotFound)?;
    if password.is_empty() {
        return Err(CommandError::InvalidRequest("password must not be empty".into()));
    }
    let (state, _) = load_account(ctx.log(), did).await?;
    if state.live().is_none() {
        return Err(CommandError::AccountNotFound);
    }
    let password = Zeroizing::new(password);
    let hash = blocking(move || domain::password::hash_password(&password))
        .await?
        .map_err(|e| CommandError::Internal(e.to_string()))?;
    for _ in 0..ATTEMPTS {
        let (state, version) = load_account(ctx.log(), did).await?;
        let (now_micros, _) = now();
        let events = account::decide_change_password(&state, hash.clone(), now_micros).map_err(account_error)?;
        match ctx.appender.append(vec![account_append(&parsed, ExpectedVersion::Exact(version), &events)]).await {
            Ok(_) => return Ok(()),
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(CommandError::Internal(e.to_string())),
        }
    }
    Err(CommandError::Conflict(format!("account/{did}")))
}
