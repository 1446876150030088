//! Blobs over XRPC: `com.atproto.repo.uploadBlob` (access token; the body streamed to the blob
//! store, `BlobTooLarge` past `PDS_BLOB_UPLOAD_LIMIT`), `com.atproto.repo.listMissingBlobs`
//! (access token), the public `com.atproto.sync.getBlob` (the reference's headers, single-range
//! `Range` requests → 206/416) and `com.atproto.sync.listBlobs` (`since`, cursor = last CID), the
//! admin `#repoBlobRef` subject of `getSubjectStatus` / `updateSubjectStatus` (called from
//! `admin_accounts.rs`), and the periodic temporary-blob cleaner.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::TryStreamExt;
use serde_json::{json, Value};

use commands::get_blob::{BlobReply, ByteRange};
use commands::CommandError;

use crate::auth::AccessAuth;
use crate::config::Config;
use crate::server::AppState;
use crate::server_accounts::{command_error, ctx, params};
use crate::xrpc::XrpcError;

pub const BLOB_REF: &str = "com.atproto.admin.defs#repoBlobRef";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/xrpc/com.atproto.repo.uploadBlob", post(upload_blob))
        .route("/xrpc/com.atproto.repo.listMissingBlobs", get(list_missing_blobs))
        .route("/xrpc/com.atproto.sync.getBlob", get(get_blob))
        .route("/xrpc/com.atproto.sync.listBlobs", get(list_blobs))
}

fn bad(m: impl Into<String>) -> XrpcError {
    XrpcError::invalid_request(m)
}

fn required<'a>(p: &'a HashMap<String, String>, name: &str) -> Result<&'a str, XrpcError> {
    p.get(name).map(String::as_str).ok_or_else(|| bad(format!("Error: Params must have the property \"{name}\"")))
}

fn did_param(p: &HashMap<String, String>) -> Result<&str, XrpcError> {
    let did = required(p, "did")?;
    if !domain::syntax::is_valid_did(did) {
        return Err(bad("Error: did must be a valid did"));
    }
    Ok(did)
}

fn cid_param<'a>(p: &'a HashMap<String, String>, name: &str) -> Result<&'a str, XrpcError> {
    let cid = required(p, name)?;
    if !domain::syntax::is_valid_cid(cid) {
        return Err(bad(format!("Error: {name} must be a cid string")));
    }
    Ok(cid)
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

async fn upload_blob(State(state): State<AppState>, auth: AccessAuth, headers: HeaderMap, body: Body) -> Result<Json<Value>, XrpcError> {
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

/// A single `bytes=` range resolved against `size`: `Ok(None)` = serve everything (absent,
/// multi-range or unparsable headers are ignored, as HTTP allows), `Err(())` = unsatisfiable.
fn resolve_range(header: Option<&str>, size: u64) -> Result<Option<ByteRange>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else { return Ok(None) };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // Suffix: the last b bytes.
        let Ok(n) = b.parse::<u64>() else { return Ok(None) };
        if n == 0 || size == 0 {
            return Err(());
        }
        ByteRange { start: size.saturating_sub(n), end: size - 1 }
    } else {
        let Ok(start) = a.parse::<u64>() else { return Ok(None) };
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(e) if e >= start => e.min(size.saturating_sub(1)),
                _ => return Ok(None),
            }
        };
        if start >= size {
            return Err(());
        }
        ByteRange { start, end }
    };
    Ok(Some(range))
}

async fn get_blob(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, XrpcError> {
    let p = params(q)?;
    let did = did_param(&p)?;
    let cid = cid_param(&p, "cid")?;
    crate::sync_routes::available(&state, did).await?;
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let resolve = move |size: u64| resolve_range(range_header.as_deref(), size);
    let ctx = ctx(&state)?;
    let blob = match commands::get_blob::get_blob(&ctx, did, cid, &resolve).await.map_err(command_error)? {
        BlobReply::Body(b) => b,
        BlobReply::Unsatisfiable { size } => {
            let range = [(header::CONTENT_RANGE, format!("bytes */{size}"))];
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, range).into_response());
        }
    };
    let (status, length) = match blob.range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start + 1),
        None => (StatusCode::OK, blob.size),
    };
    let mut resp = Response::new(Body::from_stream(blob.stream.map_err(axum::Error::new)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    let value = |s: String| HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, value(blob.mime_type.clone()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_DISPOSITION, value(format!("attachment; filename=\"{cid}\"")));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    if let Some(r) = blob.range {
        h.insert(header::CONTENT_RANGE, value(format!("bytes {}-{}/{}", r.start, r.end, blob.size)));
    }
    Ok(resp)
}

async fn list_blobs(
    State(state): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
    let did = did_param(&p)?;
    let limit = limit_param(&p)?;
    let since = p.get("since").map(String::as_str);
    if since.is_some_and(|s| !domain::syntax::is_valid_tid(s)) {
        return Err(bad("Error: since must be a valid tid"));
    }
    crate::sync_routes::available(&state, did).await?;
    let cids = projections::blobs::list(&state.log, did, since, p.get("cursor").map(String::as_str), limit)
        .await
        .map_err(|e| XrpcError::internal(&e))?;
    let mut out = json!({ "cids": cids });
    if let Some(last) = cids.last() {
        out["cursor"] = json!(last);
    }
    Ok(Json(out))
}

async fn list_missing_blobs(
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

fn takedown_json(reference: &Option<String>) -> Value {
    match reference {
        Some(r) => json!({ "applied": true, "ref": r }),
        None => json!({ "applied": false }),
    }
}

/// `getSubjectStatus?did=…&blob=…` (admin auth already checked).
pub(crate) async fn blob_subject_status(state: &AppState, p: &HashMap<String, String>) -> Result<Json<Value>, XrpcError> {
    let cid = cid_param(p, "blob")?;
    let Some(did) = p.get("did") else {
        return Err(bad("Must provide a did to request blob state"));
    };
    let ctx = ctx(state)?;
    let status = commands::update_blob_takedown::blob_takedown_status(&ctx, did, cid).await.map_err(command_error)?;
    let Some(reference) = status else {
        return Err(XrpcError::new(StatusCode::BAD_REQUEST, "NotFound", "Subject not found"));
    };
    Ok(Json(json!({
        "subject": { "$type": BLOB_REF, "did": did, "cid": cid },
        "takedown": takedown_json(&reference),
    })))
}

/// `updateSubjectStatus` with a `#repoBlobRef` subject (admin auth already checked).
pub(crate) async fn update_blob_subject_status(state: &AppState, body: &Value) -> Result<Json<Value>, XrpcError> {
    let subject = body.get("subject").cloned().unwrap_or(Value::Null);
    let did = subject.get("did").and_then(Value::as_str).filter(|d| domain::syntax::is_valid_did(d));
    let Some(did) = did else { return Err(bad("subject.did must be a valid did")) };
    let cid = subject.get("cid").and_then(Value::as_str).filter(|c| domain::syntax::is_valid_cid(c));
    let Some(cid) = cid else { return Err(bad("subject.cid must be a cid string")) };
    let ctx = ctx(state)?;
    let mut out = json!({ "subject": subject });
    if let Some(t) = body.get("takedown").filter(|t| !t.is_null()) {
        let Some(applied) = t.get("applied").and_then(Value::as_bool) else {
            return Err(bad("takedown.applied must be a boolean"));
        };
        let reference = t.get("ref").and_then(Value::as_str).map(str::to_owned);
        commands::update_blob_takedown::update_blob_takedown(&ctx, did, cid, applied, reference)
            .await
            .map_err(command_error)?;
        let now = commands::update_blob_takedown::blob_takedown_status(&ctx, did, cid).await.map_err(command_error)?;
        out["takedown"] = takedown_json(&now.flatten());
    }
    Ok(Json(out))
}

/// Runs `clean_temp_blobs` every `min(grace / 2, 60 s)` (at least every second) for the life of
/// the process.
pub fn spawn_temp_blob_cleaner(
    config: &Config,
    log: &eventlog::EventLog,
    store: Arc<dyn blobstore::BlobStore>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let grace = config.blob_temp_grace;
    let every = (grace / 2).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(60));
    let state = AppState {
        config: Arc::new(config.clone()),
        log: log.clone(),
        appender: projections::Appender::new(log.clone()),
        oauth: Arc::new(crate::oauth_runtime::OAuthRuntime::new(config, None)),
        blobstore: store,
        limits: Arc::new(crate::rate_limit::RateLimiter::new(config.rate_limits.clone(), None)),
        identity: crate::server::open_identity(config, None)?,
    };
    let ctx = ctx(&state).map_err(|e| anyhow::anyhow!("{}: {}", e.error, e.message))?;
    Ok(tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match commands::clean_temp_blobs::clean_temp_blobs(&ctx, grace).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "temporary blobs past their grace period removed"),
                Err(e) => tracing::warn!(error = %e, "temporary blob cleaning failed"),
            }
        }
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |start, end| Ok(Some(ByteRange { start, end }));
        type Case<'a> = (Option<&'a str>, u64, Result<Option<ByteRange>, ()>);
        let cases: &[Case] = &[
            (None, 10, Ok(None)),
            (Some("bytes=0-3"), 10, r(0, 3)),
            (Some("bytes=5-"), 10, r(5, 9)),
            (Some("bytes=-3"), 10, r(7, 9)),
            (Some("bytes=8-100"), 10, r(8, 9)),
            (Some("bytes=-100"), 10, r(0, 9)),
            (Some("bytes=10-"), 10, Err(())),
            (Some("bytes=-0"), 10, Err(())),
            (Some("bytes=0-1,3-4"), 10, Ok(None)),
            (Some("bytes=4-2"), 10, Ok(None)),
            (Some("items=0-1"), 10, Ok(None)),
        ];
        for (h, size, want) in cases {
            assert_eq!(&resolve_range(*h, *size), want, "{h:?}");
        }
    }
}
