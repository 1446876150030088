//! `com.atproto.server.deleteSession`: revokes the presented refresh token's whole family (an
//! expired but authentic token is accepted, as the reference's `refreshExpired` does). An unknown
//! token is already gone: nothing is appended.

use domain::account;
use domain::session_jwt::{self, TokenType};
use domain::syntax::Did;
use eventlog::ExpectedVersion;

use crate::{account_append, account_error, append_error, jwt_error, load_account, now, CommandError, Ctx};

const ATTEMPTS: usize = 3;

pub async fn delete_session(ctx: &Ctx, refresh_jwt: &str) -> Result<(), CommandError> {
    // `exp` is not checked: verifying "at time 0" accepts any authentic token however old.
    let claims =
        session_jwt::verify(&ctx.jwt, refresh_jwt, TokenType::Refresh, &ctx.service_did, 0).map_err(jwt_error)?;
    let jti = claims.jti.unwrap_or_default();
    let did = Did::parse(&claims.sub).map_err(|_| CommandError::InvalidToken("Token could not be verified".into()))?;
    for _ in 0..ATTEMPTS {
        let (state, version) = load_account(ctx.log(), did.as_str()).await?;
        let Some(account) = state.live() else { return Ok(()) };
        let (now_micros, _) = now();
        let events = account::decide_delete_session(&state, &session_jwt::refresh_token_hash(&jti), now_micros)
            .map_err(account_error)?;
        if events.is_empty() {
            return Ok(());
        }
        let batch = vec![account_append(&did, ExpectedVersion::Exact(version), &events)];
        match ctx.appender.append(batch).await {
            Ok(_) => return Ok(()),
            Err(eventlog::AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(append_error(e, account.handle.as_str(), &account.email)),
        }
    }
    Err(CommandError::Conflict(format!("account/{}", did.as_str())))
}
