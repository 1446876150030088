//! App passwords over XRPC: `com.atproto.server.createAppPassword` (full access only: a session
//! logged in with an app password cannot make another, as the reference's `ACCESS_FULL`),
//! `listAppPasswords`, `revokeAppPassword` (standard access). Parses, calls `commands`,
//! renders; the password is in the create response and nowhere else.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::xrpc::prelude::*;
use crate::event_json::rfc3339;

/// The reference's answer to a token whose scope the method does not accept.

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    #[serde(default)]
    privileged: bool,
}

pub async fn create_app_password(
    State(state): State<AppState>,
    auth: AccessAuth,
    bytes: Bytes,
) -> Result<Json<Value>, XrpcError> {
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

pub async fn list_app_passwords(State(state): State<AppState>, auth: AccessAuth) -> Result<Json<Value>, XrpcError> {
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

pub async fn revoke_app_password(
    State(state): State<AppState>,
    auth: AccessAuth,
    bytes: Bytes,
) -> Result<StatusCode, XrpcError> {
    let b: RevokeBody = body(&bytes)?;
    let ctx = ctx(&state)?;
    commands::revoke_app_password(&ctx, &auth.did, &b.name).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}
