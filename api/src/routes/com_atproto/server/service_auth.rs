//! `com.atproto.server.getServiceAuth`: a service-auth JWT signed with the account's key
//! (standard access, or a taken-down session minting a `createAccount` token to migrate away).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use domain::session_jwt::Scope;
use serde_json::{json, Value};

use crate::xrpc::prelude::*;

pub async fn get_service_auth(
    State(state): State<AppState>,
    auth: AccessAuth,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    if auth.scope != Scope::Takendown {
        require_standard_access(&auth)?;
    }
    let p = params(q)?;
    let aud = p
        .get("aud")
        .ok_or_else(|| XrpcError::invalid_request("Error: Params must have the property \"aud\""))?;
    let exp = match p.get("exp") {
        Some(v) => Some(v.parse::<i64>().map_err(|_| XrpcError::invalid_request("exp must be an integer"))?),
        None => None,
    };
    let ctx = ctx(&state)?;
    let token = commands::get_service_auth(&ctx, &auth.did, auth.scope, aud, exp, p.get("lxm").map(String::as_str))
        .await
        .map_err(command_error)?;
    Ok(Json(json!({ "token": token })))
}

