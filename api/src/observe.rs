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
//!
//! Behind a reverse proxy the client address is taken from `X-Forwarded-For` as the reference PDS
//! does (express `trust proxy` = loopback, link-local and unique-local/private peers): from the
//! right, the first address that is not itself such a proxy ([`forwarded_client`]).

use std::net::IpAddr;
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

/// Whether `ip` is an address a trusted proxy may have (loopback, link-local, private/unique-local).
fn trusted_proxy(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return trusted_proxy(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn forwarded_client(peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
    if !trusted_proxy(peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    for hop in hops.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted_proxy(ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

pub async fn layer(req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let ip = peer.map(|p| forwarded_client(p, req.headers()).to_string()).unwrap_or_else(|| "-".into());
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
            tracing::error!(%method, %path, status = status.as_u16(), ms, %ip, "request failed");
        } else {
            tracing::info!(%method, %path, status = status.as_u16(), ms, %ip, "request");
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

#[cfg(test)]
mod tests {
    use super::forwarded_client;

    #[test]
    fn forwarded_for_is_trusted_only_from_proxies() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap_or_else(|e| panic!("{s}: {e}"));
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("203.0.113.9", Some("198.51.100.1"), "203.0.113.9"), // a public peer is the client
            ("127.0.0.1", None, "127.0.0.1"),
            ("127.0.0.1", Some("198.51.100.1"), "198.51.100.1"),
            ("127.0.0.1", Some("6.6.6.6, 198.51.100.1, 10.0.0.2"), "198.51.100.1"), // spoofed left part ignored
            ("10.1.2.3", Some("garbage"), "10.1.2.3"),
            ("::1", Some("2001:db8::7"), "2001:db8::7"),
        ];
        for (peer, xff, want) in cases {
            let mut h = axum::http::HeaderMap::new();
            if let Some(x) = xff {
                h.insert("x-forwarded-for", x.parse().unwrap_or_else(|_| panic!("{x}")));
            }
            assert_eq!(forwarded_client(ip(peer), &h), ip(want), "{peer} {xff:?}");
        }
    }
}
