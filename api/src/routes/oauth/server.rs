//! The OAuth authorization server's JSON endpoints: `/.well-known/oauth-protected-resource`,
//! `/.well-known/oauth-authorization-server` (issuer = the exact public origin), `/oauth/jwks`,
//! `/oauth/par` (201 + `request_uri`), `/oauth/token` (`authorization_code`, `refresh_token`),
//! `/oauth/revoke` (always 200). DPoP proofs are checked here (nonce before `jti` replay; every
//! nonce problem is 400 `use_dpop_nonce`); clients are authenticated (`none`, or
//! `private_key_jwt` verified against the client's JWKS with `jti` replay protection); PAR,
//! token and revoke are rate-limited per IP. [`nonce_layer`] puts `DPoP-Nonce` (and CORS
//! headers) on every OAuth response and on every response to a DPoP request.
//!
//! Only this file and `oauth_authorize_page.rs` / `oauth_resource.rs` know OAuth's wire format.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use commands::oauth_flow::{OAuthCommandError, TokenResponse};
use domain::oauth::client::ClientMetadata;
use domain::oauth::dpop::{DpopError, Proof};
use domain::oauth::client_assertion;
use serde_json::{json, Value};

use crate::xrpc::dpop::{check_dpop, client_ip, now_ms};
use crate::xrpc::prelude::*;

pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const MAX_BODY: usize = 64 * 1024;

/// An OAuth error response: `{"error","error_description"}`.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

pub fn err(error: &'static str, description: impl Into<String>) -> OAuthError {
    let status = match error {
        "invalid_client" => StatusCode::UNAUTHORIZED,
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    OAuthError { status, error, description: description.into() }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({"error": self.error, "error_description": self.description}))).into_response();
        no_store(r.headers_mut());
        r
    }
}

impl From<OAuthCommandError> for OAuthError {
    fn from(e: OAuthCommandError) -> Self {
        match e {
            OAuthCommandError::OAuth { error, description } => err(error, description),
            OAuthCommandError::Command(c) => {
                tracing::error!(cause = %c, "oauth command failed");
                err("server_error", "Internal server error")
            }
        }
    }
}

fn no_store(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}


/// `DPoP-Nonce` on every OAuth response and every response to a request that carried a DPoP
/// proof; CORS for the metadata and OAuth endpoints.
pub async fn nonce_layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let oauth = path.starts_with("/oauth/") || path.starts_with("/.well-known/oauth-");
    let dpop = req.headers().contains_key("dpop");
    let mut resp = next.run(req).await;
    if oauth || dpop {
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&state.oauth.nonces.issue(now_ms())) {
            h.insert("dpop-nonce", v);
        }
        h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        h.insert("access-control-allow-headers", HeaderValue::from_static("Content-Type,Authorization,DPoP"));
        h.insert("access-control-expose-headers", HeaderValue::from_static("DPoP-Nonce,WWW-Authenticate"));
    }
    resp
}

pub async fn protected_resource(State(state): State<AppState>) -> Response {
    let url = &state.config.public_url;
    let mut r = Json(json!({
        "resource": url,
        "authorization_servers": [url],
        "scopes_supported": [],
        "bearer_methods_supported": ["header"],
        "resource_documentation": "https://atproto.com",
    }))
    .into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    r
}

pub async fn authorization_server(State(state): State<AppState>) -> Response {
    let u = &state.config.public_url;
    let mut r = Json(json!({
        "issuer": u,
        "scopes_supported": ["atproto", "transition:email", "transition:generic", "transition:chat.bsky"],
        "subject_types_supported": ["public"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "ui_locales_supported": ["en-US"],
        "display_values_supported": ["page", "popup", "touch"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": true,
        "request_object_signing_alg_values_supported": ["none"],
        "request_object_encryption_alg_values_supported": [],
        "request_object_encryption_enc_values_supported": [],
        "request_parameter_supported": false,
        "request_uri_parameter_supported": true,
        "require_request_uri_registration": true,
        "jwks_uri": format!("{u}/oauth/jwks"),
        "authorization_endpoint": format!("{u}/oauth/authorize"),
        "token_endpoint": format!("{u}/oauth/token"),
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "revocation_endpoint": format!("{u}/oauth/revoke"),
        "pushed_authorization_request_endpoint": format!("{u}/oauth/par"),
        "require_pushed_authorization_requests": true,
        "dpop_signing_alg_values_supported": ["ES256"],
        "protected_resources": [u],
        "client_id_metadata_document_supported": true,
    }))
    .into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    r
}

/// Access tokens are HS256 and checked statefully (the reference PDS's mode): no public keys.
pub async fn jwks() -> Json<Value> {
    Json(json!({"keys": []}))
}

/// Form-urlencoded or JSON body → single-valued parameters (a repeated one is an error).
pub(crate) async fn params(req: Request) -> Result<HashMap<String, String>, OAuthError> {
    let json_body = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| err("invalid_request", "Request body too large or unreadable"))?;
    let mut out = HashMap::new();
    if json_body {
        let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&bytes) else {
            return Err(err("invalid_request", "Body must be a JSON object"));
        };
        for (k, v) in m {
            let v = match v {
                Value::String(s) => s,
                Value::Null => continue,
                other => other.to_string(),
            };
            out.insert(k, v);
        }
    } else {
        for (k, v) in url::form_urlencoded::parse(&bytes) {
            if out.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(err("invalid_request", format!("Parameter {k} is repeated")));
            }
        }
    }
    Ok(out)
}


fn dpop_error(e: DpopError) -> OAuthError {
    match e {
        DpopError::UseNonce(m) => err("use_dpop_nonce", m),
        DpopError::Invalid(m) => err("invalid_dpop_proof", m),
    }
}

/// Authenticates the client of a PAR or token request: its metadata and the method used.
async fn authenticate_client(
    state: &AppState,
    p: &HashMap<String, String>,
    proof: Option<&Proof>,
    endpoint: &str,
) -> Result<(ClientMetadata, String), OAuthError> {
    let client_id = p.get("client_id").ok_or_else(|| err("invalid_request", "client_id is required"))?;
    let meta = state.oauth.client(client_id).await.map_err(|e| match e {
        domain::oauth::client::ClientError::InvalidClientId(m) => err("invalid_client", m),
        domain::oauth::client::ClientError::InvalidMetadata(m) => err("invalid_client_metadata", m),
    })?;
    match (meta.token_endpoint_auth_method.as_str(), p.get("client_assertion_type"), p.get("client_assertion")) {
        ("none", None, None) => Ok((meta, "none".to_owned())),
        ("none", _, _) => Err(err("invalid_client", "This client uses token_endpoint_auth_method none")),
        ("private_key_jwt", Some(t), Some(a)) if t == CLIENT_ASSERTION_TYPE => {
            verify_client_assertion(state, &meta, a, proof, endpoint).await?;
            Ok((meta, "private_key_jwt".to_owned()))
        }
        _ => Err(err("invalid_client", "private_key_jwt client assertion required")),
    }
}

/// A `private_key_jwt` assertion (`domain::oauth::client_assertion`) against the client's keys
/// (inline `jwks` or `jwks_uri`, fetched like metadata); its `jti` is single-use (replay store) and
/// its key must not be the DPoP key.
async fn verify_client_assertion(
    state: &AppState,
    meta: &ClientMetadata,
    assertion: &str,
    proof: Option<&Proof>,
    endpoint: &str,
) -> Result<(), OAuthError> {
    let bad = |m: &str| err("invalid_client", format!("Invalid client assertion: {m}"));
    let jwks = match (&meta.jwks, &meta.jwks_uri) {
        (Some(j), _) => j.clone(),
        (None, Some(uri)) => {
            let u = url::Url::parse(uri).map_err(|_| bad("jwks_uri is not a URL"))?;
            crate::oauth_runtime::fetch_json(&u).await.map_err(|e| bad(&e))?
        }
        (None, None) => return Err(bad("the client has no keys")),
    };
    let issuer = state.config.public_url.as_str();
    let endpoint_url = format!("{issuer}{endpoint}");
    let now = now_ms() / 1000;
    let a = client_assertion::verify(assertion, &jwks, &meta.client_id, &[issuer, &endpoint_url], now)
        .map_err(|e| err("invalid_client", e.to_string()))?;
    if proof.is_some_and(|pr| pr.jkt == a.key_jkt) {
        return Err(bad("the DPoP key must not be the client authentication key"));
    }
    let ttl = Duration::from_secs(u64::try_from(a.replay_ttl_secs(now)).unwrap_or(66));
    let fresh = state.oauth.replay.unique(&format!("Auth@{}", meta.client_id), &a.jti, ttl).await.map_err(|e| {
        tracing::error!(cause = %e, "replay store unavailable");
        err("server_error", "Internal server error")
    })?;
    if !fresh {
        return Err(bad("jti replayed"));
    }
    Ok(())
}

fn rate_limited(state: &AppState, bucket: &'static str, ip: IpAddr) -> Result<(), OAuthError> {
    if state.oauth.limits.allow(bucket, ip) {
        Ok(())
    } else {
        Err(err("rate_limited", "Too many requests; try again later"))
    }
}

pub async fn par(State(state): State<AppState>, req: Request) -> Result<Response, OAuthError> {
    rate_limited(&state, "par", client_ip(&req))?;
    let headers = req.headers().clone();
    let proof = check_dpop(&state, &headers, &Method::POST, "/oauth/par", None, false).await.map_err(dpop_error)?;
    let p = params(req).await?;
    let (client, method) = authenticate_client(&state, &p, proof.as_ref(), "/oauth/par").await?;
    let ctx = ctx(&state).map_err(|e| err("server_error", e.message))?;
    let get = |k: &str| p.get(k).cloned();
    let push = commands::oauth_push_request::PushRequest {
        response_type: get("response_type"),
        redirect_uri: get("redirect_uri"),
        scope: get("scope"),
        state: get("state"),
        code_challenge: get("code_challenge"),
        code_challenge_method: get("code_challenge_method"),
        login_hint: get("login_hint"),
        response_mode: get("response_mode"),
        dpop_jkt: get("dpop_jkt"),
        oidc_params: ["nonce", "claims", "id_token_hint"].iter().any(|k| p.contains_key(*k)) || p.get("scope").is_some_and(|s| s.split(' ').any(|t| t == "openid")),
    };
    let (request_uri, expires_in) =
        commands::oauth_push_request::oauth_push_request(&ctx, &client, &method, proof.as_ref().map(|p| p.jkt.as_str()), push).await?;
    let mut r = (StatusCode::CREATED, Json(json!({"request_uri": request_uri, "expires_in": expires_in}))).into_response();
    no_store(r.headers_mut());
    Ok(r)
}

fn token_json(t: TokenResponse) -> Response {
    let mut r = Json(json!({
        "access_token": t.access_token,
        "token_type": "DPoP",
        "refresh_token": t.refresh_token,
        "scope": t.scope,
        "expires_in": t.expires_in,
        "sub": t.sub,
    }))
    .into_response();
    no_store(r.headers_mut());
    r
}

pub async fn token(State(state): State<AppState>, req: Request) -> Result<Response, OAuthError> {
    rate_limited(&state, "token", client_ip(&req))?;
    let headers = req.headers().clone();
    let proof = check_dpop(&state, &headers, &Method::POST, "/oauth/token", None, true).await.map_err(dpop_error)?;
    let Some(proof) = proof else { return Err(err("invalid_dpop_proof", "DPoP proof required")) };
    let p = params(req).await?;
    let (client, _method) = authenticate_client(&state, &p, Some(&proof), "/oauth/token").await?;
    let ctx = ctx(&state).map_err(|e| err("server_error", e.message))?;
    match p.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = p.get("code").ok_or_else(|| err("invalid_request", "code is required"))?;
            let t = commands::oauth_exchange_code::oauth_exchange_code(
                &ctx,
                commands::oauth_exchange_code::ExchangeCode {
                    code,
                    client_id: &client.client_id,
                    redirect_uri: p.get("redirect_uri").map(String::as_str),
                    code_verifier: p.get("code_verifier").map(String::as_str),
                    dpop_jkt: &proof.jkt,
                },
            )
            .await?;
            Ok(token_json(t))
        }
        Some("refresh_token") => {
            let refresh = p.get("refresh_token").ok_or_else(|| err("invalid_request", "refresh_token is required"))?;
            let t = commands::oauth_refresh_token::oauth_refresh_token(&ctx, refresh, &client.client_id, &proof.jkt).await?;
            Ok(token_json(t))
        }
        Some(other) => Err(err("unsupported_grant_type", format!("Unsupported grant_type {other:?}"))),
        None => Err(err("invalid_request", "grant_type is required")),
    }
}

pub async fn revoke(State(state): State<AppState>, req: Request) -> Result<Response, OAuthError> {
    rate_limited(&state, "revoke", client_ip(&req))?;
    let headers = req.headers().clone();
    check_dpop(&state, &headers, &Method::POST, "/oauth/revoke", None, false).await.map_err(dpop_error)?;
    let p = params(req).await?;
    let token = p.get("token").ok_or_else(|| err("invalid_request", "token is required"))?;
    let ctx = ctx(&state).map_err(|e| err("server_error", e.message))?;
    commands::oauth_revoke::oauth_revoke(&ctx, token).await?;
    let mut r = Json(json!({})).into_response();
    no_store(r.headers_mut());
    Ok(r)
}
