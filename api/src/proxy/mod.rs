//! The proxy (reference `pipethrough.ts` `proxyHandler`): every XRPC method this server does not
//! serve is forwarded to another service — the AppView, a labeler, a chat service, any DID with a
//! service entry — on behalf of the signed-in account, with a short service-auth JWT signed by
//! the account's repo key in place of our credentials.
//!
//! One request, in the reference's order:
//! 1. The NSID from the path; a method the embedded lexicons know must come with its HTTP method
//!    ("Incorrect HTTP method (POST) expected GET"); else `GET`/`HEAD`/`POST` only;
//!    `PROTECTED_METHODS` refused (`InvalidToken` "Bad token method").
//! 2. The target (`target.rs`): the `atproto-proxy: <did>#<serviceId>` header, resolved through
//!    the DID document (cached), or the configured service for the NSID.
//! 3. The caller (`service_auth.rs`): a legacy access token or an OAuth DPoP token holding
//!    `rpc:<nsid>?aud=<did>#<serviceId>`; `PRIVILEGED_METHODS` need full access or a privileged
//!    app password; then the service JWT (`aud` the bare DID, `lxm` the NSID, 60 s).
//! 4. The exchange (`stream.rs`): request body and response body streamed, the reference's
//!    header lists (`headers.rs`), its time and size limits, its error mapping; endpoints found
//!    in DID documents must be public HTTPS (`ssrf.rs`) unless SSRF protection is off.
//!
//! Never forwards our own credentials (`Authorization`, `DPoP`, cookies): only the headers on the
//! lists leave. Never buffers a body it streams (error bodies of at most the response limit are
//! read to pass their `{error, message}` on).

mod headers;
mod service_auth;
mod ssrf;
mod stream;
mod target;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::ProxyConfig;
use crate::server::AppState;
use crate::xrpc::XrpcError;

pub use service_auth::{PRIVILEGED_METHODS, PROTECTED_METHODS};

/// The proxy's process state: its two HTTP clients and the service DID document cache.
pub struct Proxy {
    config: ProxyConfig,
    /// Built once; a failure (no TLS backend) is reported on each proxied call.
    clients: Result<ssrf::Clients, String>,
    dids: target::DidCache,
}

impl Proxy {
    pub fn new(config: &crate::config::Config) -> Proxy {
        let clients = ssrf::Clients::new();
        if let Err(e) = &clients {
            tracing::error!(error = %e, "proxy: cannot build the HTTP clients; proxied calls will fail");
        }
        Proxy { config: config.proxy.clone(), clients, dids: target::DidCache::default() }
    }
}

/// The kernel's fallback for every `/xrpc/<nsid>` not in the method table (`xrpc::router`, after
/// its OAuth check with `Permission::Proxied`): forward it, or answer the XRPC error that says
/// why not.
pub async fn handle(State(state): State<AppState>, req: Request) -> Response {
    match forward(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn forward(state: &AppState, req: Request) -> Result<Response, XrpcError> {
    forward_as(state, req, None).await
}

/// What the service JWT of a forwarded call names when it is not the target and the called
/// NSID: `app.bsky.feed.getFeed` goes to the AppView with a token for the feed generator
/// (`aud` its DID, `lxm` `app.bsky.feed.getFeedSkeleton`), as the reference's `getFeed`.
#[derive(Debug, Clone)]
pub struct JwtFor {
    pub aud: String,
    pub lxm: String,
}

/// [`handle`]'s forwarding, with the service JWT's `aud`/`lxm` given by the caller.
pub async fn forward_as(state: &AppState, req: Request, jwt_for: Option<JwtFor>) -> Result<Response, XrpcError> {
    let nsid = req.uri().path().trim_start_matches("/xrpc/").to_owned();
    if !domain::syntax::is_valid_nsid(&nsid) {
        return Err(XrpcError::invalid_request("invalid xrpc path"));
    }
    let method = req.method().clone();
    check_lexicon_method(&nsid, &method)?;
    if method != Method::GET && method != Method::HEAD && method != Method::POST {
        return Err(XrpcError::invalid_request("XRPC requests only supports GET and POST"));
    }
    if service_auth::is_protected(&nsid) {
        return Err(service_auth::bad_token_method());
    }
    let proxy = &state.proxy;
    let target = target::resolve(state, &proxy.config, &proxy.dids, req.headers(), &nsid).await?;
    let (mut parts, body) = req.into_parts();
    let caller = service_auth::authenticate(state, &mut parts, &nsid, &target.scope_aud()).await?;
    let (aud, lxm) = jwt_for.as_ref().map_or((target.did.as_str(), nsid.as_str()), |j| (j.aud.as_str(), j.lxm.as_str()));
    let jwt = service_auth::service_jwt(state, &caller, aud, lxm).await?;
    let outbound = headers::request_headers(&parts.headers, method == Method::POST, &jwt)?;
    let clients = proxy.clients.as_ref().map_err(|e| XrpcError::internal(e))?;
    let client = clients.for_target(&proxy.config, &target)?;
    let url = target.url_for(&parts.uri)?;
    let body = (method == Method::POST).then_some(body);
    stream::exchange(client, &proxy.config, method, url, outbound, body).await
}

/// A method the embedded lexicons know is called with its HTTP method (the kernel's rule for
/// local methods, the reference `xrpc-server` catch-all's before its proxy handler).
fn check_lexicon_method(nsid: &str, method: &Method) -> Result<(), XrpcError> {
    if let Some(expected) = crate::xrpc::methods::http_method(nsid) {
        if *method != expected && !(*method == Method::HEAD && expected == Method::GET) {
            return Err(XrpcError::invalid_request(format!("Incorrect HTTP method ({method}) expected {expected}")));
        }
    }
    Ok(())
}

/// Errors of the exchange, as the reference names them.
pub(crate) fn upstream_failure(message: impl Into<String>) -> XrpcError {
    XrpcError::new(StatusCode::BAD_GATEWAY, "UpstreamFailure", message)
}

pub(crate) fn upstream_timeout(message: impl Into<String>) -> XrpcError {
    XrpcError::new(StatusCode::GATEWAY_TIMEOUT, "UpstreamTimeout", message)
}

/// Shared handle, for `AppState`.
pub type SharedProxy = Arc<Proxy>;
