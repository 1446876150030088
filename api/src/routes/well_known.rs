//! `/.well-known/…` routes of this server (the OAuth metadata documents are in `oauth/`).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::xrpc::prelude::*;

/// `GET /.well-known/atproto-did` on a handle's host: the DID as text, if the host is one of this
/// server's handles.
pub async fn well_known_atproto_did(State(state): State<AppState>, headers: HeaderMap) -> Response {
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
