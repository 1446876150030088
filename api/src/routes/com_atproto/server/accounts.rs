//! Accounts and sessions: `com.atproto.server.{createAccount, createSession, getSession,
//! refreshSession, deleteSession}`. Parses, calls `commands`, renders; never decides a rule
//! itself; a malformed body is `InvalidRequest`, never a 500.


use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use commands::{AccountView, CommandError, Session};

use crate::xrpc::prelude::*;





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

pub async fn create_account(State(state): State<AppState>, headers: HeaderMap, bytes: Bytes) -> Result<Json<Value>, XrpcError> {
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

pub async fn create_session(State(state): State<AppState>, bytes: Bytes) -> Result<Json<Value>, XrpcError> {
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

pub async fn get_session(State(state): State<AppState>, auth: AccessAuth) -> Result<Json<Value>, XrpcError> {
    let ctx = ctx(&state)?;
    let view = commands::get_session(&ctx, &auth.did).await.map_err(command_error)?;
    Ok(Json(Value::Object(account_json(&view))))
}

pub async fn refresh_session(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, XrpcError> {
    let token = bearer_token(&headers)?;
    let ctx = ctx(&state)?;
    let s = commands::refresh_session(&ctx, token).await.map_err(command_error)?;
    Ok(session_json(&s))
}

pub async fn delete_session(State(state): State<AppState>, headers: HeaderMap) -> Result<StatusCode, XrpcError> {
    let token = bearer_token(&headers)?;
    let ctx = ctx(&state)?;
    commands::delete_session(&ctx, token).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}



