//! `app.bsky.notification.registerPush` / `unregisterPush` answered here (reference
//! `api/app/bsky/notification/{register,unregister}Push.ts`): the body names the notification
//! service (`serviceDid`); the call is made for the account with a service JWT (`aud` that DID,
//! `lxm` the method) to the configured AppView when it is that DID, else to the `#bsky_notif`
//! endpoint of its DID document. OAuth callers need `rpc:<method>?aud=<serviceDid>#bsky_notif`.
//! `registerPush` also accepts a signup-queue session, as the reference.
//!
//! An endpoint taken from a DID document must be public HTTPS (`PDS_DISABLE_SSRF_PROTECTION`
//! lifts that, as for the proxy); the connection goes to the address that was checked.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::session_jwt::Scope;
use serde_json::Value;

use crate::xrpc::prelude::*;

const REGISTER: &str = "app.bsky.notification.registerPush";
const UNREGISTER: &str = "app.bsky.notification.unregisterPush";

pub async fn register_push(State(state): State<AppState>, req: Request) -> Response {
    push(&state, req, REGISTER).await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn unregister_push(State(state): State<AppState>, req: Request) -> Response {
    push(&state, req, UNREGISTER).await.unwrap_or_else(IntoResponse::into_response)
}

async fn push(state: &AppState, req: Request, nsid: &str) -> Result<Response, XrpcError> {
    let (mut parts, body) = req.into_parts();
    let auth = AccessAuth::from_request_parts(&mut parts, state).await?;
    let allowed = auth.scope.is_standard_access() || (nsid == REGISTER && auth.scope == Scope::SignupQueued);
    if !allowed {
        return Err(XrpcError::new(StatusCode::BAD_REQUEST, "InvalidToken", "Bad token scope"));
    }
    let bytes = axum::body::to_bytes(body, JSON_LIMIT)
        .await
        .map_err(|_| XrpcError::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", "request entity too large"))?;
    let input: Value =
        serde_json::from_slice(&bytes).map_err(|e| XrpcError::invalid_request(format!("Invalid request body: {e}")))?;
    commands::validate_input(nsid, &input).map_err(command_error)?;
    let service_did = input.get("serviceDid").and_then(Value::as_str).unwrap_or_default().to_owned();
    super::check_rpc(&parts.headers, parts.extensions.get(), nsid, &format!("{service_did}#bsky_notif"))?;

    let ctx = ctx(state)?;
    let jwt = commands::get_service_auth::get_service_auth(&ctx, &auth.did, auth.scope, &service_did, None, Some(nsid))
        .await
        .map_err(command_error)?;
    let (endpoint, client) = match &state.config.proxy.bsky_app_view {
        Some(app_view) if app_view.did == service_did => (app_view.url.clone(), crate::appview::client().clone()),
        _ => notif_endpoint(state, &ctx, &service_did).await?,
    };
    let url = format!("{}/xrpc/{nsid}", endpoint.trim_end_matches('/'));
    let resp = client
        .post(url)
        .bearer_auth(jwt)
        .header("content-type", "application/json")
        .body(bytes.to_vec())
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, nsid, "push: notification service unreachable");
            crate::proxy::upstream_failure("Upstream service unreachable")
        })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(StatusCode::OK.into_response());
    }
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let status = if status == StatusCode::INTERNAL_SERVER_ERROR || !status.is_client_error() {
        StatusCode::BAD_GATEWAY
    } else {
        status
    };
    Err(XrpcError::new(
        status,
        text("error").unwrap_or_else(|| "UpstreamFailure".into()),
        text("message").unwrap_or_else(|| "Upstream Failure".into()),
    ))
}

/// The `#bsky_notif` endpoint of `did`'s document, and a client pinned to its checked address.
async fn notif_endpoint(state: &AppState, ctx: &commands::Ctx, did: &str) -> Result<(String, reqwest::Client), XrpcError> {
    let invalid = || XrpcError::invalid_request(format!("invalid notification service details in did document: {did}"));
    let doc = commands::resolve_did::resolve_did_document(ctx, did)
        .await
        .map_err(|_| XrpcError::invalid_request(format!("could not resolve did document: {did}")))?
        .ok_or_else(|| XrpcError::invalid_request(format!("could not resolve did document: {did}")))?;
    let services = doc.get("service").and_then(Value::as_array).ok_or_else(invalid)?;
    let endpoint = services
        .iter()
        .find(|s| {
            let id = s.get("id").and_then(Value::as_str).unwrap_or_default();
            (id == "#bsky_notif" || id == format!("{did}#bsky_notif"))
                && s.get("type").and_then(Value::as_str) == Some("BskyNotificationService")
        })
        .and_then(|s| s.get("serviceEndpoint"))
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    let url = url::Url::parse(endpoint).map_err(|_| invalid())?;
    let host = url.host_str().ok_or_else(invalid)?.to_owned();
    let mut builder = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none());
    if !state.config.proxy.disable_ssrf_protection {
        if url.scheme() != "https" {
            return Err(invalid());
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs = crate::oauth_runtime::public_addresses(&host, port).await.map_err(|e| {
            tracing::warn!(error = %e, did, "push: notification endpoint refused");
            invalid()
        })?;
        builder = builder.resolve_to_addrs(&host, &addrs);
    } else if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid());
    }
    let client = builder.build().map_err(|e| XrpcError::internal(&e))?;
    Ok((endpoint.to_owned(), client))
}
