//! The routes outside any namespace: `/` (banner), `/robots.txt`, `/xrpc/_health`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::server::{AppState, VERSION};

/// How long `_health` waits for the database before answering 503.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

pub async fn banner() -> &'static str {
    "This is an AT Protocol Personal Data Server (PDS)\n\nMost API routes are under /xrpc/\n"
}

pub async fn robots() -> &'static str {
    "# Hello!\n\n# Crawling the public API is allowed\nUser-agent: *\nAllow: /\n"
}

/// `{version}`; 503 when the database does not answer (as the reference does).
pub async fn health(State(state): State<AppState>) -> Response {
    let head = tokio::time::timeout(HEALTH_TIMEOUT, state.log.head()).await;
    match head {
        Ok(Ok(_)) => Json(json!({ "version": VERSION })).into_response(),
        failed => {
            let cause = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no answer within {HEALTH_TIMEOUT:?}"),
            };
            tracing::error!(%cause, "health check: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "version": VERSION, "error": "Service Unavailable" })))
                .into_response()
        }
    }
}
