//! The one request middleware of operations (`.layer(from_fn(observe::layer))`, outermost):
//! - a request id: the client's `X-Request-Id` when it is short and plain, else a fresh one;
//!   echoed in the response and put on a tracing span, so EVERY log line written while the request
//!   runs carries `request_id` (human and JSON formats alike);
//! - metrics: `pds_http_requests_total{nsid,status}` and `pds_http_request_duration_seconds{nsid}`
//!   (`nsid` = the XRPC method, or the route for non-XRPC paths; bounded, see `metrics.rs`);
//! - one access line per request (method, path without the query, status, duration) and an event
//!   line for sign-up, sign-in and refresh (`createAccount`, `createSession`, `refreshSession`,
//!   `/oauth/token`: who — DID and handle from the reply — and the outcome). Tokens, passwords and
//!   bodies are never logged.

use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Largest reply body read back for an auth event line.
const EVENT_BODY_LIMIT: usize = 1024 * 1024;

/// The caller's request id if it is 1–64 characters of `[A-Za-z0-9._-]`, else a fresh one.
fn request_id(req: &Request) -> String {
    if let Some(v) = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()) {
        if !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return v.to_owned();
        }
    }
    let mut bytes = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The metrics label of a path: the NSID of `/xrpc/<nsid>`, else the path's first segment.
fn route_label(path: &str) -> String {
    if let Some(nsid) = path.strip_prefix("/xrpc/") {
        if domain::syntax::is_valid_nsid(nsid) || nsid == "_health" {
            return crate::metrics::get().nsid_label(nsid);
        }
        return "invalid".into();
    }
    match path {
        "/" | "/robots.txt" | "/metrics" => path.into(),
        p if p.starts_with("/oauth/") => crate::metrics::get().nsid_label(p),
        p if p.starts_with("/.well-known/") => crate::metrics::get().nsid_label(p),
        _ => "other".into(),
    }
}

/// Which sign-in/up/refresh event a path is, if any.
fn auth_event(path: &str) -> Option<&'static str> {
    match path {
        "/xrpc/com.atproto.server.createAccount" => Some("sign-up"),
        "/xrpc/com.atproto.server.createSession" => Some("sign-in"),
        "/xrpc/com.atproto.server.refreshSession" => Some("refresh"),
        "/oauth/token" => Some("oauth-token"),
        _ => None,
    }
}

pub async fn layer(req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let label = route_label(&path);
    let event = auth_event(&path);
    let span = tracing::info_span!("request", request_id = %id);
    let started = Instant::now();
    async move {
        let mut response = next.run(req).await;
        let elapsed = started.elapsed();
        let status = response.status();
        let m = crate::metrics::get();
        m.requests.get_or_create(&crate::metrics::RequestLabels { nsid: label.clone(), status: status.as_u16() }).inc();
        m.request_duration.get_or_create(&crate::metrics::NsidLabel { nsid: label }).observe(elapsed.as_secs_f64());
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID, v);
        }
        let ms = elapsed.as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::error!(%method, %path, status = status.as_u16(), ms, "request failed");
        } else {
            tracing::info!(%method, %path, status = status.as_u16(), ms, "request");
        }
        match event {
            Some(event) => log_auth_event(event, response).await,
            None => response,
        }
    }
    .instrument(span)
    .await
}

/// Logs a sign-up / sign-in / refresh with the account it concerns (from the JSON reply: `did`,
/// `handle`, or OAuth's `sub`), never a token. The reply is passed on unchanged.
async fn log_auth_event(event: &'static str, response: Response) -> Response {
    let status = response.status();
    if !status.is_success() {
        tracing::info!(event, status = status.as_u16(), "auth: {event} refused");
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, EVENT_BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            tracing::info!(event, status = status.as_u16(), "auth: {event}");
            return Response::from_parts(parts, Body::empty());
        }
    };
    let who = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
    let field = |k: &str| who.as_ref().and_then(|v| v.get(k)).and_then(|v| v.as_str()).unwrap_or("-").to_owned();
    let did = match field("did").as_str() {
        "-" => field("sub"),
        d => d.to_owned(),
    };
    tracing::info!(event, did = %did, handle = %field("handle"), "auth: {event}");
    Response::from_parts(parts, Body::from(bytes))
}
