//! Admin mail XRPC (the table's `Admin` auth): `com.atproto.admin.sendEmail`
//! (`{recipientDid, content, subject?, senderDid, comment?}` → `{sent: true}` once queued in the
//! outbox; sent through `PDS_MODERATION_EMAIL_SMTP_URL` when set) and
//! `com.atproto.admin.updateAccountEmail` (`{account, email}`: DID or handle, the new address
//! unconfirmed). Parses, calls `commands`, renders.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::xrpc::prelude::*;

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

pub async fn send_email(State(state): State<AppState>, bytes: Bytes) -> Result<Json<Value>, XrpcError> {
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

pub async fn update_account_email(State(state): State<AppState>, bytes: Bytes) -> Result<StatusCode, XrpcError> {
    let b: UpdateEmailBody = body(&bytes)?;
    if !domain::syntax::is_valid_did(&b.account) && !domain::syntax::is_valid_handle(&b.account) {
        return Err(XrpcError::invalid_request("account must be a valid did or a handle"));
    }
    let ctx = ctx(&state)?;
    commands::admin_update_account_email(&ctx, &b.account, &b.email).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}

