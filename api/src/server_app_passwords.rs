//! App passwords over XRPC: `com.atproto.server.createAppPassword` (full access only: a session
//! logged in with an app password cannot make another, as the reference's `ACCESS_FULL`),
//! `listAppPasswords`, `revokeAppPassword` (standard access). Parses, calls `commands`,
//! renders; the password is in the create response and nowhere else.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::session_jwt::Scope;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::AccessAuth;
use crate::event_json::rfc3339;
use crate::server::AppState;
use crate::server_accounts::{body, command_error, ctx, JSON_LIMIT};
use crate::xrpc::XrpcError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/xrpc/com.atproto.server.createAppPassword", post(create_app_password))
        .route("/xrpc/com.atproto.server.listAppPasswords", get(list_app_passwords))
        .route("/xrpc/com.atproto.server.revokeAppPassword", post(revoke_app_password))
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
}

/// The reference's answer to a token whose scope the method does not accept.
fn bad_scope() -> XrpcError {
    XrpcError::new(StatusCode::BAD_REQUEST, "InvalidToken", "Bad token scope")
}

/// `ACCESS_FULL`: a password login's token.
pub(crate) fn require_full_access(auth: &AccessAuth) -> Result<(), XrpcError> {
    if auth.scope == Scope::Access {
        Ok(())
    } else {
        Err(bad_scope())
    }
}

/// `ACCESS_STANDARD`: a password or app-password login's token.
pub(crate) fn require_standard_access(auth: &AccessAuth) -> Result<(), XrpcError> {
    if auth.scope.is_standard_access() {
        Ok(())
    } else {
        Err(bad_scope())
    }
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    #[serde(default)]
    privileged: bool,
}

async fn create_app_password(
    State(state): State<AppState>,
    auth: AccessAuth,
    bytes: Bytes,
) -> Result<Json<Value>, XrpcError> {
    require_full_access(&auth)?;
    let b: CreateBody = body(&bytes)?;
    let ctx = ctx(&state)?;
    let made = commands::create_app_password(&ctx, &auth.did, &b.name, b.privileged).await.map_err(command_error)?;
    Ok(Json(json!({
        "name": made.name,
        "password": made.password,
        "createdAt": rfc3339(made.created_at),
        "privileged": made.privileged,
    })))
}

async fn list_app_passwords(State(state): State<AppState>, auth: AccessAuth) -> Result<Json<Value>, XrpcError> {
    require_standard_access(&auth)?;
    let ctx = ctx(&state)?;
    let list = commands::list_app_passwords(&ctx, &auth.did).await.map_err(command_error)?;
    let passwords: Vec<Value> = list
        .iter()
        .map(|p| json!({ "name": p.name, "createdAt": rfc3339(p.created_at), "privileged": p.privileged }))
        .collect();
    Ok(Json(json!({ "passwords": passwords })))
}

#[derive(Deserialize)]
struct RevokeBody {
    name: String,
}

async fn revoke_app_password(
    State(state): State<AppState>,
    auth: AccessAuth,
    bytes: Bytes,
) -> Result<StatusCode, XrpcError> {
    require_standard_access(&auth)?;
    let b: RevokeBody = body(&bytes)?;
    let ctx = ctx(&state)?;
    commands::revoke_app_password(&ctx, &auth.did, &b.name).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}
