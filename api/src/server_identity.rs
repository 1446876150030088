//! Identity and inter-service auth over XRPC: `com.atproto.identity.updateHandle` (standard
//! access, not takendown), `com.atproto.identity.getRecommendedDidCredentials`,
//! `com.atproto.server.getServiceAuth` (standard access, or a takendown session minting a
//! createAccount token to migrate away), and the PLC operation trio of a migration:
//! `requestPlcOperationSignature` (full access; mails a `plc_operation` token),
//! `signPlcOperation` (full access + token → an update op signed with the rotation key, not
//! submitted), `submitPlcOperation` (standard access; checked, sent to the directory, then
//! `#identity`). Parses, calls `commands`, renders.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::session_jwt::Scope;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::AccessAuth;
use crate::server::AppState;
use crate::server_accounts::{body, command_error, ctx, params, JSON_LIMIT};
use crate::server_app_passwords::{require_full_access, require_standard_access};
use crate::xrpc::XrpcError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/xrpc/com.atproto.identity.updateHandle", post(update_handle))
        .route("/xrpc/com.atproto.identity.getRecommendedDidCredentials", get(get_recommended_did_credentials))
        .route("/xrpc/com.atproto.server.getServiceAuth", get(get_service_auth))
        .route("/xrpc/com.atproto.identity.requestPlcOperationSignature", post(request_plc_operation_signature))
        .route("/xrpc/com.atproto.identity.signPlcOperation", post(sign_plc_operation))
        .route("/xrpc/com.atproto.identity.submitPlcOperation", post(submit_plc_operation))
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
}

#[derive(Deserialize)]
struct UpdateHandleBody {
    handle: String,
}

async fn update_handle(State(state): State<AppState>, auth: AccessAuth, bytes: Bytes) -> Result<StatusCode, XrpcError> {
    require_standard_access(&auth)?;
    let b: UpdateHandleBody = body(&bytes)?;
    let ctx = ctx(&state)?;
    commands::update_handle(&ctx, &auth.did, &b.handle).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}

async fn get_recommended_did_credentials(State(state): State<AppState>, auth: AccessAuth) -> Result<Json<Value>, XrpcError> {
    require_standard_access(&auth)?;
    let ctx = ctx(&state)?;
    let c = commands::get_recommended_did_credentials(&ctx, &auth.did).await.map_err(command_error)?;
    Ok(Json(json!({
        "rotationKeys": c.rotation_keys,
        "alsoKnownAs": c.also_known_as,
        "verificationMethods": { "atproto": c.signing_did_key },
        "services": { "atproto_pds": { "type": "AtprotoPersonalDataServer", "endpoint": c.pds_endpoint } },
    })))
}

async fn get_service_auth(
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

async fn request_plc_operation_signature(State(state): State<AppState>, auth: AccessAuth) -> Result<StatusCode, XrpcError> {
    require_full_access(&auth)?;
    let ctx = ctx(&state)?;
    commands::request_email_token(&ctx, &auth.did, domain::account::EmailTokenPurpose::PlcOperation)
        .await
        .map_err(command_error)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignPlcBody {
    token: Option<String>,
    rotation_keys: Option<Vec<String>>,
    also_known_as: Option<Vec<String>>,
    verification_methods: Option<std::collections::BTreeMap<String, String>>,
    services: Option<std::collections::BTreeMap<String, ServiceBody>>,
}

#[derive(Deserialize)]
struct ServiceBody {
    #[serde(rename = "type")]
    kind: String,
    endpoint: String,
}

async fn sign_plc_operation(State(state): State<AppState>, auth: AccessAuth, bytes: Bytes) -> Result<Json<Value>, XrpcError> {
    require_full_access(&auth)?;
    let b: SignPlcBody = body(&bytes)?;
    let Some(token) = b.token else {
        return Err(XrpcError::invalid_request("email confirmation token required to sign PLC operations"));
    };
    let ctx = ctx(&state)?;
    let fields = commands::PlcOperationFields {
        rotation_keys: b.rotation_keys,
        also_known_as: b.also_known_as,
        verification_methods: b.verification_methods,
        services: b.services.map(|m| m.into_iter().map(|(k, v)| (k, (v.kind, v.endpoint))).collect()),
    };
    let operation = commands::sign_plc_operation(&ctx, &auth.did, &token, fields).await.map_err(command_error)?;
    Ok(Json(json!({ "operation": operation })))
}

#[derive(Deserialize)]
struct SubmitPlcBody {
    operation: Value,
}

async fn submit_plc_operation(State(state): State<AppState>, auth: AccessAuth, bytes: Bytes) -> Result<StatusCode, XrpcError> {
    require_standard_access(&auth)?;
    let b: SubmitPlcBody = body(&bytes)?;
    let ctx = ctx(&state)?;
    commands::submit_plc_operation(&ctx, &auth.did, &b.operation).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}
