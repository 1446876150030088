//! Accounts, sessions and identity over XRPC: `com.atproto.server.{createAccount, createSession,
//! getSession, refreshSession, deleteSession}`, `com.atproto.identity.resolveHandle` (local
//! handles), `com.atproto.repo.describeRepo`, `GET /.well-known/atproto-did`. Parses, calls
//! `commands`, renders; [`command_error`] is the one mapping of command failures to the lexicon's
//! error names and the reference's statuses.
//!
//! Never decides a rule itself; never answers 500 for bad input (bodies are parsed here, a
//! malformed one is `InvalidRequest`); JSON bodies are limited to 150 KiB (the reference's default).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use commands::{AccountView, CommandError, Ctx, Session};

use crate::auth::{bearer_token, AccessAuth};
use crate::server::AppState;
use crate::xrpc::XrpcError;

/// The reference's default JSON body limit.
pub const JSON_LIMIT: usize = 150 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/xrpc/com.atproto.server.createAccount", post(create_account))
        .route("/xrpc/com.atproto.server.createSession", post(create_session))
        .route("/xrpc/com.atproto.server.getSession", get(get_session))
        .route("/xrpc/com.atproto.server.refreshSession", post(refresh_session))
        .route("/xrpc/com.atproto.server.deleteSession", post(delete_session))
        .route("/xrpc/com.atproto.identity.resolveHandle", get(resolve_handle))
        .route("/xrpc/com.atproto.repo.describeRepo", get(describe_repo))
        .route("/.well-known/atproto-did", get(well_known_atproto_did))
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
}

/// Every command failure as the lexicon names it, with the reference's status.
pub fn command_error(e: CommandError) -> XrpcError {
    let bad = |name: &str, m: String| XrpcError::new(StatusCode::BAD_REQUEST, name, m);
    match e {
        CommandError::InvalidHandle(m) => bad("InvalidHandle", m),
        CommandError::UnsupportedDomain(m) => bad("UnsupportedDomain", m),
        CommandError::HandleNotAvailable(m) => bad("HandleNotAvailable", m),
        e @ CommandError::EmailTaken(_) => bad("InvalidRequest", e.to_string()),
        CommandError::InvalidRequest(m) => bad("InvalidRequest", m),
        CommandError::InvalidInviteCode(m) => bad("InvalidInviteCode", m),
        e @ CommandError::AuthenticationRequired => {
            XrpcError::new(StatusCode::UNAUTHORIZED, "AuthenticationRequired", e.to_string())
        }
        e @ CommandError::AccountTakedown => XrpcError::new(StatusCode::UNAUTHORIZED, "AccountTakedown", e.to_string()),
        CommandError::ExpiredToken(m) => bad("ExpiredToken", m),
        CommandError::InvalidToken(m) => bad("InvalidToken", m),
        e @ CommandError::AccountNotFound => bad("AccountNotFound", e.to_string()),
        CommandError::InvalidSwap(m) => bad("InvalidSwap", m),
        CommandError::RecordNotFound(m) => bad("RecordNotFound", m),
        CommandError::RepoNotFound(m) => bad("RepoNotFound", m),
        CommandError::ServiceAuth { name, message } => XrpcError::new(StatusCode::UNAUTHORIZED, name, message),
        CommandError::BadExpiration(m) => bad("BadExpiration", m),
        CommandError::Named { name, message } => bad(name, message),
        e @ CommandError::AuthFactorTokenRequired(_) => {
            XrpcError::new(StatusCode::UNAUTHORIZED, "AuthFactorTokenRequired", e.to_string())
        }
        CommandError::BlobNotFound(m) => bad("BlobNotFound", m),
        CommandError::BlobTooLarge(m) => XrpcError::new(StatusCode::PAYLOAD_TOO_LARGE, "BlobTooLarge", m),
        CommandError::PayloadTooLarge(m) => XrpcError::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", m),
        CommandError::InvalidMimeType(m) => bad("InvalidMimeType", m),
        CommandError::InvalidBlob(m) => bad("InvalidBlob", m),
        e @ (CommandError::Plc(_) | CommandError::Conflict(_) | CommandError::Internal(_)) => XrpcError::internal(&e),
    }
}

pub(crate) fn ctx(state: &AppState) -> Result<Ctx, XrpcError> {
    let c = &state.config;
    Ctx::new(
        state.appender.clone(),
        commands::Settings {
            jwt_secret: &c.secrets.jwt_secret,
            service_did: &c.service_did,
            public_url: &c.public_url,
            handle_domains: &c.service_handle_domains,
            invite_required: c.invite_required,
            plc_url: &c.did_plc_url,
            plc_rotation_key_hex: &c.secrets.plc_rotation_key_hex,
            key_encryption_key_hex: &c.secrets.key_encryption_key_hex,
        },
    )
    .map(|c| c.with_blobstore(state.blobstore.clone()))
    .map_err(command_error)
}

/// A JSON body; anything malformed is `InvalidRequest`.
pub(crate) fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, XrpcError> {
    serde_json::from_slice(bytes).map_err(|e| XrpcError::invalid_request(format!("Invalid request body: {e}")))
}

pub(crate) fn params(q: Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<HashMap<String, String>, XrpcError> {
    q.map(|Query(m)| m).map_err(|e| XrpcError::invalid_request(format!("invalid query string: {e}")))
}

fn required<'a>(p: &'a HashMap<String, String>, name: &str) -> Result<&'a str, XrpcError> {
    p.get(name)
        .map(String::as_str)
        .ok_or_else(|| XrpcError::invalid_request(format!("Error: Params must have the property \"{name}\"")))
}

fn account_json(a: &AccountView) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("handle".into(), json!(a.handle));
    m.insert("did".into(), json!(a.did));
    m.insert("didDoc".into(), a.did_doc.clone());
    m.insert("email".into(), json!(a.email));
    m.insert("emailConfirmed".into(), json!(a.email_confirmed));
    m.insert("emailAuthFactor".into(), json!(a.email_auth_factor));
    m.insert("active".into(), json!(a.active));
    if let Some(s) = a.status {
        m.insert("status".into(), json!(s));
    }
    m
}

fn session_json(s: &Session) -> Json<Value> {
    let mut m = account_json(&s.account);
    m.insert("accessJwt".into(), json!(s.access_jwt));
    m.insert("refreshJwt".into(), json!(s.refresh_jwt));
    Json(Value::Object(m))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateAccountBody {
    handle: String,
    email: Option<String>,
    password: Option<String>,
    invite_code: Option<String>,
    did: Option<String>,
    plc_op: Option<Value>,
}

async fn create_account(State(state): State<AppState>, headers: HeaderMap, bytes: Bytes) -> Result<Json<Value>, XrpcError> {
    let b: CreateAccountBody = body(&bytes)?;
    if b.plc_op.is_some() {
        return Err(XrpcError::invalid_request("Unsupported input: \"plcOp\""));
    }
    // A bearer token is a service-auth JWT (from the brought DID); the command verifies it.
    let is_bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    let service_auth = if is_bearer { Some(bearer_token(&headers)?.to_owned()) } else { None };
    let ctx = ctx(&state)?;
    let s = commands::create_account(
        &ctx,
        commands::CreateAccountInput {
            handle: b.handle,
            email: b.email,
            password: b.password,
            invite_code: b.invite_code,
            did: b.did,
            service_auth,
        },
    )
    .await
    .map_err(command_error)?;
    Ok(Json(json!({
        "handle": s.account.handle,
        "did": s.account.did,
        "didDoc": s.account.did_doc,
        "accessJwt": s.access_jwt,
        "refreshJwt": s.refresh_jwt,
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateSessionBody {
    identifier: String,
    password: String,
    #[serde(default)]
    allow_takendown: bool,
    auth_factor_token: Option<String>,
}

async fn create_session(State(state): State<AppState>, bytes: Bytes) -> Result<Json<Value>, XrpcError> {
    let b: CreateSessionBody = body(&bytes)?;
    let ctx = ctx(&state)?;
    let s = match commands::create_session(&ctx, &b.identifier, b.password, b.allow_takendown, b.auth_factor_token.as_deref()).await {
        Ok(s) => s,
        Err(CommandError::AuthFactorTokenRequired(mail)) => {
            crate::mail::deliver(&state.config, &mail).map_err(|e| XrpcError::internal(&e))?;
            return Err(command_error(CommandError::AuthFactorTokenRequired(mail)));
        }
        Err(e) => return Err(command_error(e)),
    };
    Ok(session_json(&s))
}

async fn get_session(State(state): State<AppState>, auth: AccessAuth) -> Result<Json<Value>, XrpcError> {
    let ctx = ctx(&state)?;
    let view = commands::get_session(&ctx, &auth.did).await.map_err(command_error)?;
    Ok(Json(Value::Object(account_json(&view))))
}

async fn refresh_session(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, XrpcError> {
    let token = bearer_token(&headers)?;
    let ctx = ctx(&state)?;
    let s = commands::refresh_session(&ctx, token).await.map_err(command_error)?;
    Ok(session_json(&s))
}

async fn delete_session(State(state): State<AppState>, headers: HeaderMap) -> Result<StatusCode, XrpcError> {
    let token = bearer_token(&headers)?;
    let ctx = ctx(&state)?;
    commands::delete_session(&ctx, token).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}

async fn resolve_handle(
    State(state): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
    let handle = required(&p, "handle")?.to_ascii_lowercase();
    if !domain::syntax::is_valid_handle(&handle) {
        return Err(XrpcError::invalid_request("handle must be a valid handle"));
    }
    match projections::accounts::did_by_handle(&state.log, &handle).await {
        Ok(Some(did)) => Ok(Json(json!({ "did": did }))),
        Ok(None) => Err(XrpcError::new(StatusCode::BAD_REQUEST, "HandleNotFound", "Unable to resolve handle")),
        Err(e) => Err(XrpcError::internal(&e)),
    }
}

async fn describe_repo(
    State(state): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
    let repo = required(&p, "repo")?;
    if !domain::syntax::is_valid_at_identifier(repo) {
        return Err(XrpcError::invalid_request("repo must be a handle or a DID"));
    }
    let not_found = || XrpcError::invalid_request(format!("Could not find user: {repo}"));
    let did = if repo.starts_with("did:") {
        repo.to_owned()
    } else {
        projections::accounts::did_by_handle(&state.log, repo)
            .await
            .map_err(|e| XrpcError::internal(&e))?
            .ok_or_else(not_found)?
    };
    let ctx = ctx(&state)?;
    let account = commands::load_account_profile(&state.log, &did).await.map_err(command_error)?;
    let account = account.live().ok_or_else(not_found)?;
    let view = commands::account_view(&ctx, account);
    let collections = projections::records::collections(&state.log, &did).await.map_err(|e| XrpcError::internal(&e))?;
    Ok(Json(json!({
        "handle": view.handle,
        "did": view.did,
        "didDoc": view.did_doc,
        "collections": collections,
        "handleIsCorrect": true,
    })))
}

/// `GET /.well-known/atproto-did` on a handle's host: the DID as text, if the host is one of this
/// server's handles.
async fn well_known_atproto_did(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "User not found").into_response();
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return not_found() };
    let host = host.rsplit_once(':').map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host });
    let host = host.to_ascii_lowercase();
    let ours = state.config.service_handle_domains.iter().any(|d| {
        let d = d.to_ascii_lowercase();
        host.ends_with(&d) || d.strip_prefix('.') == Some(host.as_str())
    });
    if !ours {
        return not_found();
    }
    match projections::accounts::did_by_handle(&state.log, &host).await {
        Ok(Some(did)) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], did).into_response(),
        Ok(None) => not_found(),
        Err(e) => XrpcError::internal(&e).into_response(),
    }
}
