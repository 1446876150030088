//! The method table's row type and the one generic checker around every local method.
//!
//! A [`Method`] declares a local XRPC method once: its NSID, its handler, the [`Auth`] it needs,
//! its OAuth [`Permission`] and its [`BodyLimit`]. [`router`] mounts every row at
//! `/xrpc/<nsid>` behind [`guard`], which runs, in the reference's order (`@atproto/xrpc-server`
//! `createHandlerInternal`): the HTTP method the lexicon declares (`query` → GET, `procedure` →
//! POST, else 400 `InvalidRequest` "Incorrect HTTP method (…) expected …"), the params
//! (`lexicon.rs`), then the OAuth resource-server check for `Authorization: DPoP` (the row's
//! permission), the row's auth kind, the rate limits (`rate_limit::check`), the input body (`lexicon.rs`), the handler, and in debug
//! builds the output (`lexicon.rs`). Every other `/xrpc/<nsid>` goes to the one fallback handler given to
//! [`router`] (today `MethodNotImplemented`; the proxy's entry point).
//!
//! Never holds a namespace's logic; never answers an empty-bodied error on `/xrpc/`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::Method as HttpMethod;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Router;
use domain::lexicon::Def;

use super::auth::{bearer_token, require_admin, require_full_access, require_standard_access, AccessAuth};
use super::input::JSON_LIMIT;
use super::oauth::{self, Permission};
use super::XrpcError;
use crate::server::AppState;

/// Who may call a method (checked by the kernel before the handler runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone.
    Public,
    /// Anyone; an `Authorization: Bearer` service-auth JWT is optional and the handler's to
    /// verify (`createAccount` with a brought DID).
    OptionalServiceAuth,
    /// A valid access token of any scope (including a taken-down account's).
    Access,
    /// `ACCESS_STANDARD`: a password or app-password session (or OAuth).
    AccessStandard,
    /// `ACCESS_FULL`: a password session (or OAuth).
    AccessFull,
    /// `Authorization: Bearer <refresh JWT>`; the handler's command verifies the token.
    Refresh,
    /// HTTP Basic `admin:<PDS_ADMIN_PASSWORD>`.
    Admin,
}

/// The largest request body a method reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// The reference's JSON default, 150 KiB ([`JSON_LIMIT`]).
    Json,
    /// A fixed number of bytes.
    Bytes(usize),
    /// `PDS_BLOB_UPLOAD_LIMIT`, enforced by the handler while it streams the body.
    Blob,
    /// `PDS_MAX_REPO_IMPORT_SIZE`, enforced by the handler while it streams the body.
    RepoImport,
}

/// One row of the method table.
pub struct Method {
    pub nsid: &'static str,
    pub auth: Auth,
    pub permission: Permission,
    pub limit: BodyLimit,
    pub handler: MethodRouter<AppState>,
}

impl Method {
    /// A row whose handler answers both GET and POST; the kernel lets through only the HTTP
    /// method the method's lexicon declares.
    pub fn new<H, T>(nsid: &'static str, auth: Auth, permission: Permission, limit: BodyLimit, handler: H) -> Method
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        Method { nsid, auth, permission, limit, handler: axum::routing::get(handler.clone()).post(handler) }
    }

    /// A row with a ready-made route (the WebSocket subscriptions, whose handlers carry state).
    pub fn with_route(nsid: &'static str, auth: Auth, permission: Permission, handler: MethodRouter<AppState>) -> Method {
        Method { nsid, auth, permission, limit: BodyLimit::Json, handler }
    }
}

/// What [`guard`] knows about the row it stands before.
struct Row {
    nsid: &'static str,
    auth: Auth,
    permission: Permission,
    /// GET or POST by the lexicon's `query`/`procedure`/`subscription`; `None` = no lexicon.
    http: Option<HttpMethod>,
    /// A WebSocket subscription: its handler checks its own params (errors as the stream's).
    subscription: bool,
    /// The body limit for the kernel's JSON input check (`None`: streamed by the handler).
    limit: Option<usize>,
}

/// The HTTP method a lexicon declares for `nsid` (`None` when the catalog has no such method).
pub fn http_method(nsid: &str) -> Option<HttpMethod> {
    match commands::lexicon_catalog().get(nsid)?.main()? {
        Def::Query(_) | Def::Subscription(_) => Some(HttpMethod::GET),
        Def::Procedure(_) => Some(HttpMethod::POST),
        _ => None,
    }
}

/// Mounts the table: each row at `/xrpc/<nsid>` behind [`guard`] and its body limit; every other
/// `/xrpc/{nsid}` to `fallback`, behind the OAuth check with [`Permission::Proxied`].
pub fn router<H, T>(state: &AppState, methods: Vec<Method>, fallback: H) -> Router<AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let mut router = Router::new();
    for m in methods {
        let bytes = match m.limit {
            BodyLimit::Json => Some(JSON_LIMIT),
            BodyLimit::Bytes(n) => Some(n),
            BodyLimit::Blob | BodyLimit::RepoImport => None,
        };
        let subscription = matches!(
            commands::lexicon_catalog().get(m.nsid).and_then(|d| d.main()),
            Some(Def::Subscription(_))
        );
        let row = Arc::new(Row {
            nsid: m.nsid,
            auth: m.auth,
            permission: m.permission,
            http: http_method(m.nsid),
            subscription,
            limit: bytes,
        });
        let limit = bytes.map_or_else(DefaultBodyLimit::disable, DefaultBodyLimit::max);
        let route = m.handler.layer(limit).layer(axum::middleware::from_fn_with_state((state.clone(), row), guard));
        router = router.route(&format!("/xrpc/{}", m.nsid), route);
    }
    router.route(
        "/xrpc/{nsid}",
        axum::routing::any(fallback).layer(axum::middleware::from_fn_with_state(state.clone(), oauth_for_fallback)),
    )
}

/// The checks every local method gets before its handler.
async fn guard(State((state, row)): State<(AppState, Arc<Row>)>, req: Request, next: Next) -> Response {
    // A row without a lexicon still never answers axum's empty 405.
    if row.http.is_none() && ![HttpMethod::GET, HttpMethod::HEAD, HttpMethod::POST].contains(req.method()) {
        return XrpcError::invalid_request(format!("Incorrect HTTP method ({})", req.method())).into_response();
    }
    if let Some(expected) = &row.http {
        if req.method() != expected && !(req.method() == HttpMethod::HEAD && expected == HttpMethod::GET) {
            return XrpcError::invalid_request(format!("Incorrect HTTP method ({}) expected {expected}", req.method()))
                .into_response();
        }
    }
    // Rows that pipe through to an AppView (`Permission::Proxied`, `routes/app_bsky/`) keep their
    // own checks for now: only the HTTP method is the kernel's there.
    let lexicon = row.http.is_some() && row.permission != Permission::Proxied;
    let mut req = req;
    if lexicon && !row.subscription {
        match super::lexicon::check_params(row.nsid, req.uri().query().unwrap_or("")) {
            Ok(p) => {
                req.extensions_mut().insert(p);
            }
            Err(e) => return e.into_response(),
        }
    }
    let (req, after) = match oauth::authenticate(&state, row.nsid, &row.permission, req).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let req = match authorize(&state, row.auth, req).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (req, limit) = match crate::rate_limit::check(&state, row.nsid, req).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let mut res = if !lexicon || row.subscription {
        after.finish(next.run(req).await).await
    } else {
        let req = match super::lexicon::check_input(row.nsid, req, row.limit).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let resp = super::lexicon::check_output(row.nsid, next.run(req).await).await;
        after.finish(resp).await
    };
    if let Some(status) = limit {
        crate::rate_limit::set_headers(res.headers_mut(), &status);
    }
    res
}

/// The row's auth kind; a verified access token is left in the request's extensions for the
/// handler's [`AccessAuth`] extractor.
async fn authorize(state: &AppState, auth: Auth, req: Request) -> Result<Request, XrpcError> {
    match auth {
        Auth::Public | Auth::OptionalServiceAuth => Ok(req),
        Auth::Admin => {
            require_admin(state, req.headers())?;
            Ok(req)
        }
        Auth::Refresh => {
            bearer_token(req.headers())?;
            Ok(req)
        }
        Auth::Access | Auth::AccessStandard | Auth::AccessFull => {
            let (mut parts, body) = req.into_parts();
            let a = AccessAuth::from_request_parts(&mut parts, state).await?;
            match auth {
                Auth::AccessStandard => require_standard_access(&a)?,
                Auth::AccessFull => require_full_access(&a)?,
                _ => {}
            }
            parts.extensions.insert(a);
            Ok(Request::from_parts(parts, body))
        }
    }
}

/// Methods this server does not serve: a DPoP caller is verified before the fallback (the proxy)
/// sees the request, which then checks the `rpc:<nsid>?aud=…` scope against its target.
async fn oauth_for_fallback(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let nsid = req.uri().path().trim_start_matches("/xrpc/").to_owned();
    if !domain::syntax::is_valid_nsid(&nsid) {
        return next.run(req).await;
    }
    match oauth::authenticate(&state, &nsid, &Permission::Proxied, req).await {
        Ok((req, after)) => after.finish(next.run(req).await).await,
        Err(resp) => resp,
    }
}
