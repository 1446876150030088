//! Auth extractors. [`AccessAuth`]: `Authorization: Bearer <access JWT>` (HS256 under
//! `PDS_JWT_SECRET`, `typ at+jwt`, audience = this service's DID), answering as the reference's
//! auth verifier does: no credentials → 401 `AuthMissing`; another scheme → 400 `InvalidToken`;
//! an expired token → 400 `ExpiredToken`; anything else wrong → 400 `InvalidToken`.
//!
//! The one account lookup: a token naming its session (`jti`) must still have that session's
//! refresh token held (`commands::check_access_session`, one primary-key read), so a revoked
//! app password or session stops its access tokens at once (400 `ExpiredToken` "Token has been
//! revoked"). Everything else about the account is the handler's job. Never logs a token.
//!
//! Also the scope levels of the reference (`ACCESS_FULL`, `ACCESS_STANDARD`) and the admin
//! HTTP Basic check. The method table (`xrpc/methods.rs`) names which one each method needs;
//! the kernel runs it before the handler and leaves the verified [`AccessAuth`] in the request's
//! extensions, where the extractor finds it again without a second lookup.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine as _;
use domain::session_jwt::{JwtKey, Scope};
use sha2::{Digest, Sha256};

use super::{command_error, XrpcError};
use crate::server::AppState;

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
        if let Some(done) = parts.extensions.get::<AccessAuth>() {
            return Ok(done.clone());
        }
        // OAuth (`Authorization: DPoP …`): verified by `xrpc::oauth::layer` before the handler.
        if let Some(oauth) = super::oauth::access_auth(parts) {
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

fn bad_scope() -> XrpcError {
    XrpcError::new(StatusCode::BAD_REQUEST, "InvalidToken", "Bad token scope")
}

/// `ACCESS_FULL`: a password login's token.
pub fn require_full_access(auth: &AccessAuth) -> Result<(), XrpcError> {
    if auth.scope == Scope::Access {
        Ok(())
    } else {
        Err(bad_scope())
    }
}

/// `ACCESS_STANDARD`: a password or app-password login's token.
pub fn require_standard_access(auth: &AccessAuth) -> Result<(), XrpcError> {
    if auth.scope.is_standard_access() {
        Ok(())
    } else {
        Err(bad_scope())
    }
}

/// Checks `Authorization: Basic admin:<password>`, comparing in constant time.
pub fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), XrpcError> {
    let unauthorized = |m: &str| XrpcError::new(StatusCode::UNAUTHORIZED, "AuthRequired", m);
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Err(unauthorized("Authentication Required"));
    };
    let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
        return Err(unauthorized("Unexpected authorization type"));
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| unauthorized("Invalid authorization header"))?;
    let expected = format!("admin:{}", state.config.secrets.admin_password);
    if constant_time_eq(&decoded, expected.as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized("Invalid admin credentials"))
    }
}

/// Equal digests of both sides, compared without an early exit: timing says nothing about the
/// password, not even its length.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    da.iter().zip(db.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
