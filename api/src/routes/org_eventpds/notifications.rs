//! `org.eventpds.admin.listNotifications?status=&limit=` (the table's `Admin` auth): the outbox —
//! each message's channel, recipient, template, status, attempts, next attempt and last error,
//! newest first; what `pds admin notifications` prints. [`notification_json`] is also the row of
//! an account's own history (`org_eventpds/account.rs`).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};

use crate::event_json::rfc3339;
use crate::xrpc::prelude::*;

/// One outbox row as JSON (shared with the account's own history, `notification_routes.rs`).
pub fn notification_json(r: &projections::notifications::Row, with_account: bool) -> Value {
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

pub async fn list_notifications(State(state): State<AppState>, q: Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
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
