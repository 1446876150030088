//! The resource-server side of OAuth: [`authenticate`] runs before every XRPC handler and, when the
//! request says `Authorization: DPoP <token>`, checks the DPoP proof (`ath`, nonce → 401
//! `WWW-Authenticate: DPoP error="use_dpop_nonce"`, `jti` replay), the token (signature,
//! audience, expiry, still the session's current token, session not revoked, account neither
//! taken down nor deactivated — looked up on every request, so revocation is immediate), the key
//! binding (`cnf.jkt` = the proof's key) and the endpoint's permission (granular scopes;
//! `repo:` checked against the collections and actions in the request body), then hands the
//! handler an [`OAuthAuth`] that `auth.rs` turns into an `AccessAuth`.
//!
//! Never consulted for `Bearer` tokens: those stay with the legacy session verifier.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::oauth::dpop::DpopError;
use domain::oauth::scope::{self, RepoAction, Scopes};
use serde_json::{json, Value};

use super::dpop::{check_dpop, now_ms};
use super::{command_error, ctx, XrpcError};
use crate::server::AppState;

const ALGS: &str = "ES256";
/// The largest body read to find the collections of a repo write (the repo routes' limit).
const REPO_BODY_LIMIT: usize = 1_000_000;

/// A request authenticated by a DPoP-bound OAuth access token.
#[derive(Debug, Clone)]
pub struct OAuthAuth {
    pub did: String,
    pub client_id: String,
    pub scopes: Scopes,
}

/// The `Authorization: DPoP <token>` token, if that is the scheme.
fn dpop_token(req: &Request) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("dpop").then(|| token.trim().to_owned())
}

/// Whether the request uses the DPoP scheme (auth.rs's hook).
pub fn is_dpop(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(s, _)| s.eq_ignore_ascii_case("dpop"))
}

/// 401 with `WWW-Authenticate: DPoP error="…"`.
fn unauthorized(error: &str, description: &str) -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, Json(json!({"error": error, "message": description}))).into_response();
    let www = format!(
        "DPoP algs=\"{ALGS}\", error=\"{error}\", error_description=\"{}\"",
        description.replace(['"', '\\'], "'")
    );
    if let Ok(v) = HeaderValue::from_str(&www) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn forbidden(missing: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({"error": "ScopeMissingError", "message": format!("Missing required scope \"{missing}\"")})),
    )
        .into_response()
}

/// What [`authenticate`] leaves for after the handler.
pub struct After {
    /// `getSession` for a token without `account:email`: drop the email fields from the reply.
    strip_email: bool,
}

impl After {
    pub async fn finish(self, resp: Response) -> Response {
        if self.strip_email {
            without_email(resp).await
        } else {
            resp
        }
    }
}

/// When the request says `Authorization: DPoP`, verifies proof, token and key binding and checks
/// the method's [`Permission`]; the verified [`OAuthAuth`] goes into the request's extensions.
/// Any other request passes untouched. An `Err` is the response to send instead of the handler's.
pub async fn authenticate(
    state: &AppState,
    nsid: &str,
    permission: &Permission,
    req: Request,
) -> Result<(Request, After), Response> {
    let path = req.uri().path().to_owned();
    let Some(token) = dpop_token(&req) else { return Ok((req, After { strip_email: false })) };
    if token.is_empty() {
        return Err(unauthorized("invalid_token", "Missing access token"));
    }
    let method = req.method().clone();
    match check_dpop(state, req.headers(), &method, &path, Some(&token), true).await {
        Ok(Some(proof)) => {
            let ctx = ctx(state).map_err(IntoResponse::into_response)?;
            let access = match commands::oauth_flow::verify_oauth_access(&ctx, &token, now_ms() / 1000).await {
                Ok(a) => a,
                Err(commands::oauth_flow::OAuthCommandError::OAuth { description, .. }) => {
                    return Err(unauthorized("invalid_token", &description))
                }
                Err(commands::oauth_flow::OAuthCommandError::Command(e)) => {
                    return Err(command_error(e).into_response())
                }
            };
            if access.jkt != proof.jkt {
                return Err(unauthorized("invalid_token", "Invalid DPoP key binding"));
            }
            let Ok(scopes) = scope::parse(&access.scope) else {
                return Err(unauthorized("invalid_token", "Token scope is not valid"));
            };
            let mut req = authorize_endpoint(state, nsid, permission, &scopes, req).await?;
            let strip_email = nsid == "com.atproto.server.getSession" && !scopes.allows_account("email", false);
            req.extensions_mut().insert(OAuthAuth { did: access.did, client_id: access.client_id, scopes });
            Ok((req, After { strip_email }))
        }
        Ok(None) => Err(unauthorized("invalid_dpop_proof", "DPoP proof required")),
        Err(DpopError::UseNonce(m)) => Err(unauthorized("use_dpop_nonce", m)),
        Err(DpopError::Invalid(m)) => Err(unauthorized("invalid_dpop_proof", &m)),
    }
}

/// `getSession` for a token without `account:email` (or `transition:email`): the email fields
/// are left out, as the reference does.
async fn without_email(resp: Response) -> Response {
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return XrpcError::internal(&"getSession body unreadable").into_response();
    };
    let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    for k in ["email", "emailConfirmed", "emailAuthFactor"] {
        m.remove(k);
    }
    let out = Value::Object(m).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}

/// What a method needs from an OAuth token beyond `atproto` (a column of the method table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `atproto` alone is enough.
    Nothing,
    /// OAuth credentials are not accepted (app passwords, account deletion…).
    Refused,
    /// `repo:<collection>?action=…` for each write in the body.
    Repo,
    /// `blob:<mime>` for the upload's content type.
    Blob,
    /// `account:<attr>` (`?action=manage` when true).
    Account(&'static str, bool),
    /// `identity:<attr>`.
    Identity(&'static str),
    /// `rpc:<nsid>?aud=<service>` (the default for methods this server does not serve itself).
    Rpc,
    /// A proxied method: the token is verified here, the `rpc:<nsid>?aud=<did>#<serviceId>` check
    /// is the proxy's, which alone knows the target.
    Proxied,
}

/// The repo writes a request body asks for: (collection, action) pairs.
fn repo_writes(nsid: &str, body: &Value) -> Vec<(String, RepoAction)> {
    let coll = |v: &Value| v.get("collection").and_then(Value::as_str).unwrap_or("").to_owned();
    match nsid {
        "com.atproto.repo.createRecord" => vec![(coll(body), RepoAction::Create)],
        "com.atproto.repo.putRecord" => vec![(coll(body), RepoAction::Create), (coll(body), RepoAction::Update)],
        "com.atproto.repo.deleteRecord" => vec![(coll(body), RepoAction::Delete)],
        _ => body
            .get("writes")
            .and_then(Value::as_array)
            .map(|ws| {
                ws.iter()
                    .filter_map(|w| {
                        let action = match w.get("$type").and_then(Value::as_str)? {
                            "com.atproto.repo.applyWrites#create" => RepoAction::Create,
                            "com.atproto.repo.applyWrites#update" => RepoAction::Update,
                            "com.atproto.repo.applyWrites#delete" => RepoAction::Delete,
                            _ => return None,
                        };
                        Some((coll(w), action))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn action_name(a: RepoAction) -> &'static str {
    match a {
        RepoAction::Create => "create",
        RepoAction::Update => "update",
        RepoAction::Delete => "delete",
    }
}

async fn authorize_endpoint(state: &AppState, nsid: &str, permission: &Permission, scopes: &Scopes, req: Request) -> Result<Request, Response> {
    match *permission {
        Permission::Nothing => Ok(req),
        Permission::Refused => Err((
            StatusCode::FORBIDDEN,
            Json(json!({"error": "Forbidden", "message": "OAuth credentials are not supported for this endpoint"})),
        )
            .into_response()),
        Permission::Account(attr, manage) => {
            if scopes.allows_account(attr, manage) {
                Ok(req)
            } else {
                Err(forbidden(&format!("account:{attr}{}", if manage { "?action=manage" } else { "" })))
            }
        }
        Permission::Identity(attr) => {
            if scopes.allows_identity(attr) {
                Ok(req)
            } else {
                Err(forbidden(&format!("identity:{attr}")))
            }
        }
        Permission::Blob => {
            let mime = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("*/*").to_owned();
            if scopes.allows_blob(&mime) {
                Ok(req)
            } else {
                Err(forbidden(&format!("blob:{mime}")))
            }
        }
        // The proxy checks `rpc:` itself once it knows the target (`proxy/service_auth.rs`).
        Permission::Proxied => Ok(req),
        Permission::Rpc => {
            let aud = req
                .headers()
                .get("atproto-proxy")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{}#atproto_pds", state.config.service_did));
            if scopes.allows_rpc(nsid, &aud) {
                Ok(req)
            } else {
                Err(forbidden(&format!("rpc:{nsid}?aud={aud}")))
            }
        }
        Permission::Repo => {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, REPO_BODY_LIMIT).await.map_err(|_| {
                XrpcError::invalid_request("request body too large").into_response()
            })?;
            // A malformed body is the handler's to refuse; it then asks for no write.
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            for (collection, action) in repo_writes(nsid, &value) {
                if !scopes.allows_repo(&collection, action) {
                    return Err(forbidden(&format!("repo:{collection}?action={}", action_name(action))));
                }
            }
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
    }
}

/// `auth.rs`'s hook: `None` unless the request uses the DPoP scheme; then the identity
/// [`authenticate`] verified (full access: endpoint permissions were enforced there), or a refusal if it
/// did not run.
pub fn access_auth(parts: &axum::http::request::Parts) -> Option<Result<super::AccessAuth, XrpcError>> {
    if !is_dpop(&parts.headers) {
        return None;
    }
    Some(match parts.extensions.get::<OAuthAuth>() {
        Some(a) => Ok(super::AccessAuth { did: a.did.clone(), scope: domain::session_jwt::Scope::Access }),
        None => Err(XrpcError::new(StatusCode::UNAUTHORIZED, "invalid_token", "DPoP credentials were not verified")),
    })
}
