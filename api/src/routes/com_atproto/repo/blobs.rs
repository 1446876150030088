//! `com.atproto.repo.uploadBlob` (access token; the body streamed to the blob store,
//! `BlobTooLarge` past `PDS_BLOB_UPLOAD_LIMIT`) and `com.atproto.repo.listMissingBlobs`.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use commands::CommandError;
use serde_json::{json, Value};

use crate::xrpc::prelude::*;

pub async fn list_missing_blobs(
    State(state): State<AppState>,
    auth: AccessAuth,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
    let limit = limit_param(&p)?;
    let rows = projections::blobs::list_missing(&state.log, &auth.did, p.get("cursor").map(String::as_str), limit)
        .await
        .map_err(|e| XrpcError::internal(&e))?;
    let blobs: Vec<Value> =
        rows.iter().map(|(cid, path)| json!({ "cid": cid, "recordUri": format!("at://{}/{path}", auth.did) })).collect();
    let mut out = json!({ "blobs": blobs });
    if let Some((last, _)) = rows.last() {
        out["cursor"] = json!(last);
    }
    Ok(Json(out))
}

pub async fn upload_blob(State(state): State<AppState>, auth: AccessAuth, headers: HeaderMap, body: Body) -> Result<Json<Value>, XrpcError> {
    let limit = state.config.blob_upload_limit;
    let declared = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|l| l > limit) {
        return Err(command_error(CommandError::BlobTooLarge(format!(
            "This file is too large. The maximum size is {limit} bytes."
        ))));
    }
    let ctx = ctx(&state)?;
    let stream = body.into_data_stream();
    let b = commands::upload_blob::upload_blob(&ctx, &auth.did, declared.as_deref(), stream, limit)
        .await
        .map_err(command_error)?;
    Ok(Json(json!({
        "blob": { "$type": "blob", "ref": { "$link": b.cid }, "mimeType": b.mime_type, "size": b.size }
    })))
}

fn bad(m: impl Into<String>) -> XrpcError {
    XrpcError::invalid_request(m)
}

/// `limit` in 1..=1000, default 500 (listBlobs / listMissingBlobs).
fn limit_param(p: &HashMap<String, String>) -> Result<i64, XrpcError> {
    match p.get("limit") {
        None => Ok(500),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(bad("Error: limit must be an integer between 1 and 1000")),
        },
    }
}
