//! The embedded PLC directory over HTTP, at the server root, as `@did-plc/server` answers:
//! `POST /{did}` (submit an operation), `GET /{did}` (the DID document,
//! `application/did+ld+json`), `/{did}/data`, `/{did}/log`, `/{did}/log/audit`,
//! `/{did}/log/last`. Errors are the reference's `{"message"}` bodies: 400 for a refused
//! operation, 409 for a lost race, 404 `DID not registered: …` / `DID not available: …`
//! (tombstoned).
//!
//! Mounted only when the directory is embedded (`Config::embedded_plc`: a private hostname and no
//! `PDS_DID_PLC_URL`). The checks are `commands::plc_directory` / `domain::plc_directory`'s; the
//! reads are the `plc_operations` read model's.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use domain::plc_directory;
use projections::plc_operations;

use crate::config::Config;
use crate::server::AppState;

/// express.json's default body limit, which the reference directory runs with.
const BODY_LIMIT: usize = 100 * 1024;

/// The directory's routes when it is embedded; no route otherwise.
pub fn routes(config: &Config) -> Router<AppState> {
    if !config.embedded_plc {
        return Router::new();
    }
    Router::new()
        .route("/{did}", get(document).post(submit))
        .route("/{did}/data", get(data))
        .route("/{did}/log", get(op_log))
        .route("/{did}/log/audit", get(audit))
        .route("/{did}/log/last", get(last))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

fn message(status: StatusCode, m: impl Into<String>) -> Response {
    (status, Json(json!({ "message": m.into() }))).into_response()
}

fn not_registered(did: &str) -> Response {
    message(StatusCode::NOT_FOUND, format!("DID not registered: {did}"))
}

fn internal(cause: &dyn std::fmt::Display) -> Response {
    tracing::error!(%cause, "embedded PLC directory");
    message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}

/// The DID's operations (nullified ones with `audit`), or the response to send instead.
async fn operations(state: &AppState, did: &str, audit: bool) -> Result<Vec<plc_directory::IndexedOp>, Response> {
    match plc_operations::operations(&state.log, did, audit).await {
        Ok(ops) if ops.is_empty() => Err(not_registered(did)),
        Ok(ops) => Ok(ops),
        Err(e) => Err(internal(&e)),
    }
}

/// The latest operation's state, or 404 (unknown, or tombstoned: "DID not available").
async fn current(state: &AppState, did: &str) -> Result<plc_directory::IndexedOp, Response> {
    let last = operations(state, did, false).await?.pop().ok_or_else(|| not_registered(did))?;
    if last.op.op.data().is_none() {
        return Err(message(StatusCode::NOT_FOUND, format!("DID not available: {did}")));
    }
    Ok(last)
}

async fn document(State(state): State<AppState>, Path(did): Path<String>) -> Response {
    match current(&state, &did).await {
        Ok(last) => match last.op.did_document(&did) {
            Some(doc) => ([(header::CONTENT_TYPE, "application/did+ld+json")], doc.to_json().to_string()).into_response(),
            None => message(StatusCode::NOT_FOUND, format!("DID not available: {did}")),
        },
        Err(r) => r,
    }
}

async fn data(State(state): State<AppState>, Path(did): Path<String>) -> Response {
    match current(&state, &did).await {
        Ok(last) => Json(plc_directory::data_json(&did, &last.op)).into_response(),
        Err(r) => r,
    }
}

async fn op_log(State(state): State<AppState>, Path(did): Path<String>) -> Response {
    match operations(&state, &did, false).await {
        Ok(ops) => Json(ops.iter().map(|o| o.op.to_json()).collect::<Vec<Value>>()).into_response(),
        Err(r) => r,
    }
}

async fn audit(State(state): State<AppState>, Path(did): Path<String>) -> Response {
    match operations(&state, &did, true).await {
        Ok(ops) => Json(ops.iter().map(|o| plc_directory::audit_entry_json(&did, o)).collect::<Vec<Value>>()).into_response(),
        Err(r) => r,
    }
}

async fn last(State(state): State<AppState>, Path(did): Path<String>) -> Response {
    match operations(&state, &did, false).await {
        Ok(mut ops) => match ops.pop() {
            Some(o) => Json(o.op.to_json()).into_response(),
            None => not_registered(&did),
        },
        Err(r) => r,
    }
}

async fn submit(State(state): State<AppState>, Path(did): Path<String>, body: Bytes) -> Response {
    let op: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return message(StatusCode::BAD_REQUEST, format!("Not a valid operation: {e}")),
    };
    match commands::plc_directory::submit_operation(&state.appender, &did, &op).await {
        Ok(()) => (StatusCode::OK, "OK").into_response(),
        Err(commands::plc_directory::SubmitError::Internal(cause)) => internal(&cause),
        Err(e) => message(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST), e.to_string()),
    }
}
