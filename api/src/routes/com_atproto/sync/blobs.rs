//! `com.atproto.sync.getBlob` (public; the reference's headers, single-range `Range` requests →
//! 206/416) and `com.atproto.sync.listBlobs` (`since`, cursor = last CID).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::TryStreamExt;
use serde_json::{json, Value};

use commands::get_blob::{BlobReply, ByteRange};

use crate::xrpc::prelude::*;


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

pub async fn get_blob(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, XrpcError> {
    let p = params(q)?;
    let did = did_param(&p)?;
    let cid = cid_param(&p, "cid")?;
    crate::xrpc::availability::available(&state, did).await?;
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

pub async fn list_blobs(
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
    crate::xrpc::availability::available(&state, did).await?;
    let cids = projections::blobs::list(&state.log, did, since, p.get("cursor").map(String::as_str), limit)
        .await
        .map_err(|e| XrpcError::internal(&e))?;
    let mut out = json!({ "cids": cids });
    if let Some(last) = cids.last() {
        out["cursor"] = json!(last);
    }
    Ok(Json(out))
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
