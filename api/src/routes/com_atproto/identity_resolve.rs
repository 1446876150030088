//! `com.atproto.identity.{resolveDid, resolveIdentity, refreshIdentity}` over `commands::identity`
//! (local accounts first for handles; the DID/handle cache; `refreshIdentity` skips it), and
//! [`resolve_handle_remote`], `resolveHandle`'s path for handles that are not ours.
//!
//! A handle is "verified" only both ways: it names the DID, and the DID document names it;
//! otherwise `handle.invalid` (the lexicon's rule). Never answers 500 for someone else's broken
//! identity: their failures are `HandleNotFound` / `DidNotFound` / 502 `UpstreamFailure`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use commands::identity::IdentityError;
use serde_json::{json, Value};

use crate::xrpc::prelude::*;

fn identity_error(e: IdentityError) -> XrpcError {
    let bad = |name: &str, m: String| XrpcError::new(StatusCode::BAD_REQUEST, name, m);
    match e {
        IdentityError::InvalidHandle(m) | IdentityError::InvalidDid(m) => bad("InvalidRequest", m),
        IdentityError::HandleNotFound(m) => bad("HandleNotFound", m),
        IdentityError::DidNotFound(m) | IdentityError::BadDidDocument(m) => bad("DidNotFound", m),
        IdentityError::Unavailable(m) => XrpcError::new(StatusCode::BAD_GATEWAY, "UpstreamFailure", m),
    }
}

fn param(q: Result<Query<HashMap<String, String>>, QueryRejection>, name: &str) -> Result<String, XrpcError> {
    let Query(m) = q.map_err(|e| XrpcError::invalid_request(format!("invalid query string: {e}")))?;
    m.get(name).cloned().ok_or_else(|| XrpcError::invalid_request(format!("Error: Params must have the property \"{name}\"")))
}

/// A handle that is not one of our accounts: local handle domains are authoritative (not found
/// there = `HandleNotFound`), anything else through the resolver.
pub async fn resolve_handle_remote(state: &AppState, handle: &str, force: bool) -> Result<String, XrpcError> {
    let handle = commands::identity::normalize_handle(handle).map_err(identity_error)?;
    if let Some(did) = projections::accounts::did_by_handle(&state.log, &handle).await.map_err(|e| XrpcError::internal(&e))? {
        return Ok(did);
    }
    if domain::handle_rules::service_domain_of(&handle, &state.config.service_handle_domains).is_some() {
        return Err(XrpcError::new(StatusCode::BAD_REQUEST, "HandleNotFound", "Unable to resolve handle"));
    }
    state.identity.resolve_handle(&handle, force).await.map_err(identity_error)
}

pub async fn resolve_did(
    State(state): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    let did = param(q, "did")?;
    if !domain::syntax::is_valid_did(&did) {
        return Err(XrpcError::invalid_request("did must be a valid DID"));
    }
    let doc = state.identity.resolve_did(&did, false).await.map_err(identity_error)?;
    Ok(Json(json!({ "didDoc": doc })))
}

/// `{did, handle, didDoc}` with the handle checked both ways.
async fn identity_info(state: &AppState, identifier: &str, force: bool) -> Result<Json<Value>, XrpcError> {
    let identifier = identifier.trim();
    let (did, asked_handle) = if identifier.starts_with("did:") {
        if !domain::syntax::is_valid_did(identifier) {
            return Err(XrpcError::invalid_request("identifier must be a handle or a DID"));
        }
        (identifier.to_owned(), None)
    } else {
        let did = resolve_handle_remote(state, identifier, force).await?;
        (did, Some(identifier.to_ascii_lowercase()))
    };
    let doc = state.identity.resolve_did(&did, force).await.map_err(identity_error)?;
    let claimed = domain::did_doc::handle(&doc).map(str::to_ascii_lowercase);
    let handle = match (&asked_handle, &claimed) {
        // Asked by handle: it resolved to the DID; the document must name it too.
        (Some(asked), Some(claimed)) if asked == claimed => asked.clone(),
        (Some(_), _) => "handle.invalid".to_owned(),
        // Asked by DID: the document's handle must resolve back to the DID.
        (None, Some(claimed)) => match resolve_handle_remote(state, claimed, force).await {
            Ok(back) if back == did => claimed.clone(),
            _ => "handle.invalid".to_owned(),
        },
        (None, None) => "handle.invalid".to_owned(),
    };
    Ok(Json(json!({ "did": did, "handle": handle, "didDoc": doc })))
}

pub async fn resolve_identity(
    State(state): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    let identifier = param(q, "identifier")?;
    identity_info(&state, &identifier, false).await
}

/// As `resolveIdentity`, but never from the cache (and the cache is updated).
pub async fn refresh_identity(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, XrpcError> {
    let v: Value = serde_json::from_slice(&body).map_err(|e| XrpcError::invalid_request(format!("Invalid request body: {e}")))?;
    let identifier = v
        .get("identifier")
        .and_then(|i| i.as_str())
        .ok_or_else(|| XrpcError::invalid_request("Input must have the property \"identifier\""))?;
    identity_info(&state, identifier, true).await
}
