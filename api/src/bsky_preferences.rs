//! `app.bsky.actor.getPreferences` / `putPreferences`, answered by this server (reference
//! `api/app/bsky/actor/{get,put}Preferences.ts`): the caller's own `app.bsky` preferences.
//! Auth as the reference: a password or app-password login (or OAuth); `getPreferences` also
//! takes a taken-down account's session. Full access (a password login — not an app password,
//! not OAuth) is what sees and sets `#personalDetailsPref`. JSON body limit 150 KiB.
//!
//! Parses, calls `commands`, renders; the rules are `domain::account::preferences`.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::session_jwt::Scope;
use serde_json::{json, Value};

use crate::auth::AccessAuth;
use crate::server::AppState;
use crate::server_accounts::{command_error, ctx, JSON_LIMIT};
use crate::xrpc::XrpcError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/xrpc/app.bsky.actor.getPreferences", get(get_preferences))
        .route("/xrpc/app.bsky.actor.putPreferences", post(put_preferences))
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
}

fn bad_scope() -> XrpcError {
    XrpcError::new(StatusCode::BAD_REQUEST, "InvalidToken", "Bad token scope")
}

/// The reference's `hasAccessFull`: a legacy access token of a password login. OAuth tokens
/// (`Authorization: DPoP`) never have it, whatever their scopes.
fn full_access(auth: &AccessAuth, headers: &HeaderMap) -> bool {
    auth.scope == Scope::Access && !crate::oauth_resource::is_dpop(headers)
}

async fn get_preferences(
    State(state): State<AppState>,
    auth: AccessAuth,
    headers: HeaderMap,
) -> Result<Json<Value>, XrpcError> {
    if !(auth.scope.is_standard_access() || auth.scope == Scope::Takendown) {
        return Err(bad_scope());
    }
    let ctx = ctx(&state)?;
    let preferences =
        commands::get_preferences(&ctx, &auth.did, full_access(&auth, &headers)).await.map_err(command_error)?;
    Ok(Json(json!({ "preferences": preferences })))
}

async fn put_preferences(
    State(state): State<AppState>,
    auth: AccessAuth,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<StatusCode, XrpcError> {
    if !auth.scope.is_standard_access() {
        return Err(bad_scope());
    }
    if bytes.is_empty() {
        return Err(XrpcError::invalid_request("A request body is expected but none was provided"));
    }
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|e| XrpcError::invalid_request(format!("Invalid request body: {e}")))?;
    let prefs = commands::parse_put_body(&body).map_err(command_error)?;
    let ctx = ctx(&state)?;
    commands::put_preferences(&ctx, &auth.did, prefs, full_access(&auth, &headers)).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}
