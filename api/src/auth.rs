//! Auth extractors. [`AccessAuth`]: `Authorization: Bearer <access JWT>` (HS256 under
//! `PDS_JWT_SECRET`, `typ at+jwt`, audience = this service's DID), answering as the reference's
//! auth verifier does: no credentials → 401 `AuthMissing`; another scheme → 400 `InvalidToken`;
//! an expired token → 400 `ExpiredToken`; anything else wrong → 400 `InvalidToken`.
//!
//! The one account lookup: a token naming its session (`jti`) must still have that session's
//! refresh token held (`commands::check_access_session`, one primary-key read), so a revoked
//! app password or session stops its access tokens at once (400 `ExpiredToken` "Token has been
//! revoked"). Everything else about the account is the handler's job. Never logs a token.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use domain::session_jwt::{JwtKey, Scope};

use crate::server::AppState;
use crate::server_accounts::command_error;
use crate::xrpc::XrpcError;

/// A verified access token: who, and with which scope.
#[derive(Debug, Clone)]
pub struct AccessAuth {
    pub did: String,
    pub scope: Scope,
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, XrpcError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(XrpcError::new(StatusCode::UNAUTHORIZED, "AuthMissing", "Authentication Required"));
    };
    let value = value
        .to_str()
        .map_err(|_| XrpcError::new(StatusCode::BAD_REQUEST, "InvalidToken", "Malformed authorization header"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(XrpcError::new(StatusCode::BAD_REQUEST, "InvalidToken", "Unexpected authorization type")),
    }
}

impl FromRequestParts<AppState> for AccessAuth {
    type Rejection = XrpcError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // OAuth (`Authorization: DPoP …`): verified by `oauth_resource::layer` before the handler.
        if let Some(oauth) = crate::oauth_resource::access_auth(parts) {
            return oauth;
        }
        let token = bearer_token(&parts.headers)?;
        let key = JwtKey::new(state.config.secrets.jwt_secret.as_bytes()).map_err(|e| XrpcError::internal(&e))?;
        let claims =
            commands::verify_access_claims(&key, &state.config.service_did, token).map_err(command_error)?;
        commands::check_access_session(&state.log, &claims).await.map_err(command_error)?;
        Ok(AccessAuth { did: claims.sub, scope: claims.scope })
    }
}
