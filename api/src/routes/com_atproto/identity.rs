//! `com.atproto.identity.*`: `resolveHandle` (local handles), `updateHandle` (standard access,
//! not takendown), `getRecommendedDidCredentials`, and the PLC operation trio of a migration:
//! `requestPlcOperationSignature` (full access; mails a `plc_operation` token),
//! `signPlcOperation` (full access + token → an update op signed with the rotation key, not
//! submitted), `submitPlcOperation` (standard access; checked, sent to the directory, then
//! `#identity`). Parses, calls `commands`, renders.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::xrpc::prelude::*;

#[derive(Deserialize)]
struct UpdateHandleBody {
    handle: String,
}

pub async fn update_handle(State(state): State<AppState>, auth: AccessAuth, bytes: Bytes) -> Result<StatusCode, XrpcError> {
    let b: UpdateHandleBody = body(&bytes)?;
    let ctx = ctx(&state)?;
    commands::update_handle(&ctx, &auth.did, &b.handle).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}

pub async fn get_recommended_did_credentials(State(state): State<AppState>, auth: AccessAuth) -> Result<Json<Value>, XrpcError> {
    let ctx = ctx(&state)?;
    let c = commands::get_recommended_did_credentials(&ctx, &auth.did).await.map_err(command_error)?;
    Ok(Json(json!({
        "rotationKeys": c.rotation_keys,
        "alsoKnownAs": c.also_known_as,
        "verificationMethods": { "atproto": c.signing_did_key },
        "services": { "atproto_pds": { "type": "AtprotoPersonalDataServer", "endpoint": c.pds_endpoint } },
    })))
}

pub async fn request_plc_operation_signature(State(state): State<AppState>, auth: AccessAuth) -> Result<StatusCode, XrpcError> {
    let ctx = ctx(&state)?;
    let mail = commands::request_email_token(&ctx, &auth.did, domain::account::EmailTokenPurpose::PlcOperation)
        .await
        .map_err(command_error)?;
    if let Some(m) = mail {
        crate::mail::deliver(&state.config, &m).map_err(|e| XrpcError::internal(&e))?;
    }
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

pub async fn sign_plc_operation(State(state): State<AppState>, auth: AccessAuth, bytes: Bytes) -> Result<Json<Value>, XrpcError> {
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

pub async fn submit_plc_operation(State(state): State<AppState>, auth: AccessAuth, bytes: Bytes) -> Result<StatusCode, XrpcError> {
    let b: SubmitPlcBody = body(&bytes)?;
    let ctx = ctx(&state)?;
    commands::submit_plc_operation(&ctx, &auth.did, &b.operation).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}

pub async fn resolve_handle(
    State(state): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
    let handle = required(&p, "handle")?.to_ascii_lowercase();
    if !domain::syntax::is_valid_handle(&handle) {
        return Err(XrpcError::invalid_request("handle must be a valid handle"));
    }
    match projections::accounts::did_by_handle(&state.log, &handle).await {
        Ok(Some(did)) => Ok(Json(json!({ "did": did }))),
        Ok(None) => Err(XrpcError::new(StatusCode::BAD_REQUEST, "HandleNotFound", "Unable to resolve handle")),
        Err(e) => Err(XrpcError::internal(&e)),
    }
}
