//! Read-after-write (reference `read-after-write/util.ts` `pipethroughReadAfterWrite` and
//! `getPostThread`'s NotFound path): `app.bsky.actor.getProfile(s)`, `app.bsky.feed.getTimeline`,
//! `getAuthorFeed`, `getActorLikes`, `getPostThread` go through the proxy as any other call;
//! then, if the upstream said how far it has read the caller's repo (`atproto-repo-rev`), the
//! caller's records written after that rev (at most 10) are merged into its answer (`views.rs`)
//! and `atproto-upstream-lag` says how old the oldest of them is (ms).
//!
//! The proxy stays the one place that picks the target and signs the service JWT; this only
//! looks at what it answers. No `atproto-repo-rev`, no newer local record, a body that is not
//! JSON or not the method's shape → the upstream's answer unchanged. Never a 500 for what an
//! upstream sends: a body that cannot be read whole is a 502 `UpstreamFailure`.

pub mod views;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use self::views::{Descript, Local, Merge};
use crate::server::AppState;
use crate::xrpc::XrpcError;

/// Local records merged at most (the reference's `getRecordsSinceRev` limit).
const LOCAL_LIMIT: i64 = 10;
/// Largest upstream error body read for the `getPostThread` NotFound path.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Proxies `req` for the signed-in `requester` (the kernel verified it) and merges its newest
/// records into the answer as `merge` says.
pub async fn pipethrough(state: &AppState, requester: &str, merge: Merge, mut req: Request) -> Response {
    let query = req.uri().query().unwrap_or_default().to_owned();
    // The body is read here when it has to be merged: ask for it uncompressed.
    req.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    let resp = crate::proxy::handle(State(state.clone()), req).await;
    let Some(rev) = resp.headers().get("atproto-repo-rev").and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return resp;
    };
    if resp.status() == StatusCode::OK {
        merge_answer(state, merge, requester, &rev, resp).await
    } else if merge == Merge::GetPostThread && resp.status() == StatusCode::BAD_REQUEST {
        thread_not_found(state, requester, &rev, &query, resp).await
    } else {
        resp
    }
}

fn is_json(resp: &Response) -> bool {
    let plain = resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let json = match resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(ct) => {
            let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
        }
    };
    plain && json
}

async fn merge_answer(state: &AppState, merge: Merge, did: &str, rev: &str, resp: Response) -> Response {
    if !is_json(&resp) {
        return resp;
    }
    let since = match projections::records::since_rev(&state.log, did, rev, LOCAL_LIMIT).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "read-after-write: local records unreadable; upstream answer passed on");
            return resp;
        }
    };
    if since.is_empty() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let limit = usize::try_from(state.config.proxy.max_response_size).unwrap_or(usize::MAX);
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "read-after-write: upstream body unreadable");
            return crate::proxy::upstream_failure("Upstream response could not be read").into_response();
        }
    };
    let original = || Response::from_parts(parts.clone(), Body::from(bytes.clone()));
    let Ok(upstream) = serde_json::from_slice::<Value>(&bytes) else { return original() };
    let local = match local_view(state, did, merge, since).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = ?e, "read-after-write: local view failed; upstream answer passed on");
            return original();
        }
    };
    match merge.apply(&local, &upstream) {
        Some(merged) => merged_response(&merged, &local),
        None => original(),
    }
}

/// `getPostThread` of the caller's own post the AppView has not indexed yet: NotFound upstream,
/// the thread from local records here (with its parents from the AppView when it has them).
async fn thread_not_found(state: &AppState, did: &str, rev: &str, query: &str, resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, ERROR_BODY_LIMIT).await else {
        return crate::proxy::upstream_failure("Upstream response could not be read").into_response();
    };
    let original = || Response::from_parts(parts.clone(), Body::from(bytes.clone()));
    let not_found = serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| v["error"] == "NotFound");
    if !not_found {
        return original();
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(uri) = param("uri").and_then(|u| domain::syntax::AtUri::parse(&u).ok()) else { return original() };
    let authority = uri.authority().to_owned();
    let owner = if authority.starts_with("did:") {
        Some(authority.clone())
    } else {
        projections::accounts::did_by_handle(&state.log, &authority).await.ok().flatten()
    };
    if owner.as_deref() != Some(did) {
        return original();
    }
    let resolved = uri.to_string().replacen(&format!("at://{authority}"), &format!("at://{did}"), 1);
    let Ok(since) = projections::records::since_rev(&state.log, did, rev, LOCAL_LIMIT).await else { return original() };
    let Ok(local) = local_view(state, did, Merge::GetPostThread, since).await else { return original() };
    let Some(mut thread) = views::thread_from_local(&local, &resolved) else { return original() };
    if let Some(parent_uri) = views::highest_parent(&thread) {
        let mut q = vec![("uri", parent_uri), ("depth", "0".to_owned())];
        if let Some(h) = param("parentHeight") {
            q.push(("parentHeight", h));
        }
        if let Some(parent) = crate::appview::get(state, did, "app.bsky.feed.getPostThread", &q).await {
            if let (Some(p), Some(t)) = (parent.get("thread"), thread.as_object_mut()) {
                t.insert("parent".into(), p.clone());
            }
        }
    }
    merged_response(&json!({ "thread": thread }), &local)
}

fn merged_response(body: &Value, local: &Local) -> Response {
    let mut resp = (StatusCode::OK, axum::Json(body)).into_response();
    let now_ms = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0),
    )
    .unwrap_or(i64::MAX);
    if let Some(lag) = local.lag_ms(now_ms) {
        if let Ok(v) = HeaderValue::from_str(&lag.to_string()) {
            resp.headers_mut().insert("atproto-upstream-lag", v);
        }
    }
    resp
}

/// What the merges need: the caller's records since the rev as views' input, its handle and
/// current profile, and the AppView's views of records its new posts quote.
async fn local_view(
    state: &AppState,
    did: &str,
    merge: Merge,
    since: Vec<projections::records::RecordSince>,
) -> Result<Local, XrpcError> {
    let mut local = Local {
        did: did.to_owned(),
        cdn_url_pattern: state.config.bsky_cdn_url_pattern.clone(),
        public_url: state.config.public_url.clone(),
        ..Local::default()
    };
    for r in since {
        local.count += 1;
        let is_profile = r.collection == views::PROFILE && r.rkey == "self";
        if !is_profile && r.collection != views::POST {
            continue;
        }
        let micros = domain::tid::Tid::parse(&r.rev).map(|t| t.timestamp_micros()).unwrap_or(0);
        let d = Descript {
            uri: format!("at://{did}/{}/{}", r.collection, r.rkey),
            cid: r.cid,
            indexed_at: views::iso_millis(i64::try_from(micros).unwrap_or(0)),
            record: record_json(&r.bytes)?,
        };
        if is_profile {
            local.profile = Some(d);
        } else {
            local.posts.push(d);
        }
    }
    if let Some(account) = commands::load_account_profile(&state.log, did).await.map_err(crate::xrpc::command_error)?.live() {
        local.handle = Some(account.handle.as_str().to_owned());
    }
    let current = projections::records::get(&state.log, did, views::PROFILE, "self").await.map_err(|e| XrpcError::internal(&e))?;
    local.current_profile = match current {
        Some(row) => Some(record_json(&row.bytes)?),
        None => None,
    };
    if matches!(merge, Merge::GetTimeline | Merge::GetAuthorFeed | Merge::GetPostThread) {
        let quoted: Vec<String> = local.posts.iter().filter_map(|p| quoted_uri(&p.record)).collect();
        for uri in quoted {
            if let Some(view) = crate::appview::embedded_record_view(state, did, &uri).await {
                local.embedded.insert(uri, view);
            }
        }
    }
    Ok(local)
}

fn quoted_uri(record: &Value) -> Option<String> {
    let embed = record.get("embed")?;
    let rec = match embed.get("$type")?.as_str()? {
        "app.bsky.embed.record" => embed.get("record")?,
        "app.bsky.embed.recordWithMedia" => embed.get("record")?.get("record")?,
        _ => return None,
    };
    Some(rec.get("uri")?.as_str()?.to_owned())
}

fn record_json(bytes: &[u8]) -> Result<Value, XrpcError> {
    let ipld = domain::cbor::decode(bytes).map_err(|e| XrpcError::internal(&format!("stored record: {e}")))?;
    Ok(domain::json::ipld_to_json(&ipld))
}
