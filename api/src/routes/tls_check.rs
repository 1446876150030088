//! `GET /tls-check?domain=…`: the reverse proxy's question before it asks for a certificate on
//! demand (Caddy `on_demand_tls { ask … }`), answered as the reference PDS distribution does:
//! 200 `{success: true}` for our hostname or the handle of an account hosted here; 400
//! `InvalidRequest` for a missing domain or one outside `PDS_SERVICE_HANDLE_DOMAINS`; 404
//! `NotFound` for an unknown handle. So no certificate is requested for names nobody uses.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/tls-check", get(tls_check))
}

fn refuse(status: StatusCode, error: &str, message: &str) -> Response {
    (status, Json(json!({ "error": error, "message": message }))).into_response()
}

async fn tls_check(
    State(state): State<AppState>,
    q: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let domain = q.ok().and_then(|Query(p)| p.get("domain").cloned()).unwrap_or_default();
    let domain = domain.trim().to_ascii_lowercase();
    if domain.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "InvalidRequest", "bad or missing domain query param");
    }
    if domain == state.config.hostname.to_ascii_lowercase() {
        return Json(json!({ "success": true })).into_response();
    }
    // A handle under one of our domains: `<label>.<domain>` (".pds.example.com" style suffixes).
    let hosted = state.config.service_handle_domains.iter().any(|d| {
        let suffix = d.to_ascii_lowercase();
        let suffix = if suffix.starts_with('.') { suffix } else { format!(".{suffix}") };
        domain.len() > suffix.len() && domain.ends_with(&suffix)
    });
    if !hosted {
        return refuse(StatusCode::BAD_REQUEST, "InvalidRequest", "handles are not provided on this domain");
    }
    match projections::accounts::did_by_handle(&state.log, &domain).await {
        Ok(Some(_)) => Json(json!({ "success": true })).into_response(),
        Ok(None) => refuse(StatusCode::NOT_FOUND, "NotFound", "handle not found for this domain"),
        Err(e) => {
            tracing::error!(error = %e, "tls-check: account lookup failed");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "Internal Server Error")
        }
    }
}
