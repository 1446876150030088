//! Admin mail XRPC (HTTP Basic `admin:<PDS_ADMIN_PASSWORD>`): `com.atproto.admin.sendEmail`
//! (`{recipientDid, content, subject?, senderDid, comment?}` → `{sent: true}` once queued in the
//! outbox), `com.atproto.admin.updateAccountEmail` (`{account, email}`), and ours,
//! `org.eventpds.admin.listNotifications?status=&limit=` (the outbox: each message's channel,
//! recipient, template, status, attempts, next attempt and last error — what `pds admin
//! notifications` prints). Parses, calls `commands`, renders.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::admin::require_admin;
use crate::event_json::rfc3339;
use crate::server::AppState;
use crate::server_accounts::{body, command_error, ctx, JSON_LIMIT};
use crate::xrpc::XrpcError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/xrpc/com.atproto.admin.sendEmail", post(send_email))
        .route("/xrpc/com.atproto.admin.updateAccountEmail", post(update_account_email))
        .route("/xrpc/org.eventpds.admin.listNotifications", get(list_notifications))
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendEmailBody {
    recipient_did: String,
    content: String,
    subject: Option<String>,
    sender_did: String,
    #[allow(dead_code)]
    comment: Option<String>,
}

async fn send_email(State(state): State<AppState>, headers: HeaderMap, bytes: Bytes) -> Result<Json<Value>, XrpcError> {
    require_admin(&state, &headers)?;
    let b: SendEmailBody = body(&bytes)?;
    for (name, did) in [("recipientDid", &b.recipient_did), ("senderDid", &b.sender_did)] {
        if !domain::syntax::is_valid_did(did) {
            return Err(XrpcError::invalid_request(format!("{name} must be a valid did")));
        }
    }
    let ctx = ctx(&state)?;
    commands::admin_send_email(&ctx, &b.recipient_did, b.subject.as_deref(), &b.content).await.map_err(command_error)?;
    Ok(Json(json!({ "sent": true })))
}

#[derive(Deserialize)]
struct UpdateEmailBody {
    account: String,
    email: String,
}

async fn update_account_email(State(state): State<AppState>, headers: HeaderMap, bytes: Bytes) -> Result<StatusCode, XrpcError> {
    require_admin(&state, &headers)?;
    let b: UpdateEmailBody = body(&bytes)?;
    if !domain::syntax::is_valid_did(&b.account) && !domain::syntax::is_valid_handle(&b.account) {
        return Err(XrpcError::invalid_request("account must be a valid did or a handle"));
    }
    let ctx = ctx(&state)?;
    commands::admin_update_account_email(&ctx, &b.account, &b.email).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}

/// One outbox row as JSON (shared with the account's own history, `notification_routes.rs`).
pub(crate) fn notification_json(r: &projections::notifications::Row, with_account: bool) -> Value {
    let mut o = json!({
        "id": r.id,
        "channel": r.channel,
        "recipient": r.recipient,
        "template": r.template,
        "status": r.status,
        "attempts": r.attempts,
        "queuedAt": rfc3339(r.queued_at),
        "updatedAt": rfc3339(r.updated_at),
    });
    if r.status == "queued" {
        o["nextAttemptAt"] = rfc3339(r.next_at);
    }
    if let Some(e) = &r.last_error {
        o["lastError"] = json!(e);
    }
    if with_account {
        o["did"] = json!(r.did);
    }
    o
}

async fn list_notifications(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<HashMap<String, String>>,
) -> Result<Json<Value>, XrpcError> {
    require_admin(&state, &headers)?;
    let status = p.get("status").map(String::as_str);
    if let Some(s) = status {
        if !["queued", "sending", "sent", "failed"].contains(&s) {
            return Err(XrpcError::invalid_request("status must be queued, sending, sent or failed"));
        }
    }
    let limit = match p.get("limit") {
        None => 50,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(XrpcError::invalid_request("limit must be an integer from 1 to 1000")),
        },
    };
    let rows = projections::notifications::list(&state.log, status, limit).await.map_err(|e| XrpcError::internal(&e))?;
    Ok(Json(json!({ "notifications": rows.iter().map(|r| notification_json(r, true)).collect::<Vec<_>>() })))
}
