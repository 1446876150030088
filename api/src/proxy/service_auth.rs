//! Who is calling, and the token that speaks for them upstream (reference `proxyHandler`'s
//! `performAuth`, `PROTECTED_METHODS`, `PRIVILEGED_METHODS`, `ctx.serviceAuthJwt`).
//!
//! The caller must be signed in here: a legacy access token (`Bearer`, standard access — not a
//! refresh, takendown or signup-queue token) or an OAuth DPoP token (verified by
//! `xrpc::oauth::authenticate`) whose scopes hold `rpc:<nsid>?aud=<did>#<serviceId>`. No credentials
//! → 401 `AuthMissing`. Privileged methods (chat, `createAccount`) need a legacy token of full
//! access or a privileged app password (`InvalidToken` "Bad token method").
//!
//! The upstream gets a service JWT from `commands::get_service_auth` (the account's ES256K repo
//! key; `iss` the account, `aud` the bare service DID, `lxm` the NSID, `exp` now + 60 s, `jti`).

use axum::http::request::Parts;
use axum::http::StatusCode;
use domain::session_jwt::Scope;

use crate::xrpc::AccessAuth;
use crate::xrpc::oauth::OAuthAuth;
use crate::server::AppState;
use crate::xrpc::XrpcError;

pub use commands::get_service_auth::{PRIVILEGED_METHODS, PROTECTED_METHODS};

/// A signed-in caller: the account, and the legacy scope (OAuth callers count as full access,
/// their permissions having been checked against the `rpc:` scope).
#[derive(Debug, Clone)]
pub struct Caller {
    pub did: String,
    pub scope: Scope,
}

/// NSIDs are matched case-insensitively, as the reference's `LxmSet`.
pub fn is_protected(nsid: &str) -> bool {
    PROTECTED_METHODS.iter().any(|m| m.eq_ignore_ascii_case(nsid))
}

pub fn is_privileged(nsid: &str) -> bool {
    PRIVILEGED_METHODS.iter().any(|m| m.eq_ignore_ascii_case(nsid))
}

pub fn bad_token_method() -> XrpcError {
    XrpcError::new(StatusCode::BAD_REQUEST, "InvalidToken", "Bad token method")
}

/// The caller of a proxied `nsid` bound for `scope_aud` (`<did>#<serviceId>`).
pub async fn authenticate(state: &AppState, parts: &mut Parts, nsid: &str, scope_aud: &str) -> Result<Caller, XrpcError> {
    if crate::xrpc::oauth::is_dpop(&parts.headers) {
        let Some(oauth) = parts.extensions.get::<OAuthAuth>() else {
            return Err(XrpcError::new(StatusCode::UNAUTHORIZED, "invalid_token", "DPoP credentials were not verified"));
        };
        if !oauth.scopes.allows_rpc(nsid, scope_aud) {
            return Err(XrpcError::new(
                StatusCode::FORBIDDEN,
                "ScopeMissingError",
                format!("Missing required scope \"rpc:{nsid}?aud={scope_aud}\""),
            ));
        }
        return Ok(Caller { did: oauth.did.clone(), scope: Scope::Access });
    }
    let auth = <AccessAuth as axum::extract::FromRequestParts<AppState>>::from_request_parts(parts, state).await?;
    if !auth.scope.is_standard_access() {
        return Err(XrpcError::new(StatusCode::BAD_REQUEST, "InvalidToken", "Bad token scope"));
    }
    if is_privileged(nsid) && !matches!(auth.scope, Scope::Access | Scope::AppPassPrivileged) {
        return Err(bad_token_method());
    }
    Ok(Caller { did: auth.did, scope: auth.scope })
}

/// `Bearer` value for the upstream: a fresh service JWT of the caller for `aud`, method `nsid`.
pub async fn service_jwt(state: &AppState, caller: &Caller, aud: &str, nsid: &str) -> Result<String, XrpcError> {
    let ctx = crate::xrpc::ctx(state)?;
    commands::get_service_auth::get_service_auth(&ctx, &caller.did, caller.scope, aud, None, Some(nsid))
        .await
        .map_err(crate::xrpc::command_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_lists_ignore_case() {
        assert!(is_protected("com.atproto.server.getSession"));
        assert!(is_protected("com.atproto.server.GETSESSION"));
        assert!(!is_protected("app.bsky.feed.getTimeline"));
        assert!(is_privileged("chat.bsky.convo.sendMessage"));
        assert!(is_privileged("Chat.Bsky.Convo.SendMessage"));
        assert!(is_privileged("com.atproto.server.createAccount"));
        assert!(!is_privileged("chat.bsky.actor.declaration"));
    }
}
