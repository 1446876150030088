//! Account status over XRPC: `com.atproto.server.activateAccount` / `deactivateAccount` (full
//! access only, as the reference's `ACCESS_FULL`; each emits the reference's firehose events) and
//! `checkAccountStatus` (standard access). Parses, calls `commands`, renders.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::xrpc::prelude::*;

pub async fn activate_account(State(state): State<AppState>, auth: AccessAuth) -> Result<StatusCode, XrpcError> {
    let ctx = ctx(&state)?;
    commands::activate_account(&ctx, &auth.did).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DeactivateBody {
    delete_after: Option<String>,
}

pub async fn deactivate_account(
    State(state): State<AppState>,
    auth: AccessAuth,
    bytes: Bytes,
) -> Result<StatusCode, XrpcError> {
    let b: DeactivateBody = if bytes.iter().all(u8::is_ascii_whitespace) { DeactivateBody::default() } else { body(&bytes)? };
    let delete_after = match b.delete_after {
        None => None,
        Some(s) => Some(
            domain::syntax::Datetime::parse(&s)
                .map_err(|_| XrpcError::invalid_request("deleteAfter must be a valid datetime"))?
                .unix_micros(),
        ),
    };
    let ctx = ctx(&state)?;
    commands::deactivate_account(&ctx, &auth.did, delete_after).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}

pub async fn check_account_status(State(state): State<AppState>, auth: AccessAuth) -> Result<Json<Value>, XrpcError> {
    let ctx = ctx(&state)?;
    let s = commands::check_account_status(&ctx, &auth.did).await.map_err(command_error)?;
    let mut out = json!({
        "activated": s.activated,
        "validDid": s.valid_did,
        "repoBlocks": s.repo_blocks,
        "indexedRecords": s.indexed_records,
        "privateStateValues": s.private_state_values,
        "expectedBlobs": s.expected_blobs,
        "importedBlobs": s.imported_blobs,
    });
    if let (Some(commit), Some(rev)) = (s.repo_commit, s.repo_rev) {
        out["repoCommit"] = json!(commit);
        out["repoRev"] = json!(rev);
    }
    Ok(Json(out))
}
