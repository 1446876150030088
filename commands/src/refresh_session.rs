//! `com.atproto.server.refreshSession`: rotation with reuse detection (`domain::account`). The
//! successor's token id is derived from the presented one (`successor_jti`), so a retry within
//! the grace period gets the very same successor although the log only holds hashes; a reuse after
//! the grace period revokes the whole family.
//!
//! Never records a token, only hashes.

use domain::account::{self, RefreshDecision, RefreshSession};
use domain::session_jwt::{self, TokenType};
use domain::syntax::Did;
use eventlog::ExpectedVersion;

use crate::{
    account_append, account_error, account_view, append_error, jwt_error, load_account, now, refresh_expiry_micros,
    tokens, CommandError, Ctx, Session,
};

const ATTEMPTS: usize = 3;

pub async fn refresh_session(ctx: &Ctx, refresh_jwt: &str) -> Result<Session, CommandError> {
    let (_, now_secs) = now();
    let claims = session_jwt::verify(&ctx.jwt, refresh_jwt, TokenType::Refresh, &ctx.service_did, now_secs)
        .map_err(jwt_error)?;
    let jti = claims.jti.unwrap_or_default();
    let did = Did::parse(&claims.sub).map_err(|_| CommandError::InvalidToken("Token could not be verified".into()))?;
    let successor = account::successor_jti(&ctx.jwt_secret, &jti);

    for _ in 0..ATTEMPTS {
        let (state, version) = load_account(ctx.log(), did.as_str()).await?;
        let (now_micros, now_secs) = now();
        let decision = account::decide_refresh_session(
            &state,
            RefreshSession {
                token_hash: session_jwt::refresh_token_hash(&jti),
                successor_hash: session_jwt::refresh_token_hash(&successor),
                successor_expires_at: refresh_expiry_micros(now_secs),
            },
            now_micros,
        )
        .map_err(account_error)?;
        let Some(account) = state.live() else { return Err(CommandError::AccountNotFound) };
        if !decision.events().is_empty() {
            let batch = vec![account_append(&did, ExpectedVersion::Exact(version), decision.events())];
            match ctx.appender.append(batch).await {
                Ok(_) => {}
                Err(eventlog::AppendError::Conflict { .. }) => continue,
                Err(e) => return Err(append_error(e, account.handle.as_str(), &account.email)),
            }
        }
        let grant = match decision {
            RefreshDecision::Rotate { grant, .. } | RefreshDecision::Reissue { grant } => grant,
            RefreshDecision::RevokeFamily { .. } => {
                return Err(CommandError::InvalidToken("Token has been revoked".into()))
            }
        };
        let scope = account.session_scope(grant.app_password_name.as_deref());
        let (access_jwt, refresh_jwt) = tokens(ctx, did.as_str(), scope, &successor, now_secs);
        return Ok(Session { account: account_view(ctx, account), access_jwt, refresh_jwt });
    }
    Err(CommandError::Conflict(format!("account/{}", did.as_str())))
}
