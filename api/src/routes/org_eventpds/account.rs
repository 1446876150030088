//! `org.eventpds.account.*` (lexicons in `commands/lexicons/org/eventpds/account/`): an account's
//! notification channels. `getNotificationPrefs` and `listNotificationHistory` need standard
//! access; changing where codes go (`updateNotificationPrefs`, `startChannelVerification`,
//! `confirmChannelVerification`) needs full access (not an app password) — both in the table. A channel this server
//! has no credentials for (`PDS_TELEGRAM_BOT_TOKEN`, `PDS_SIGNAL_SENDER_NUMBER`) is refused with
//! `ChannelUnavailable`. Parses, calls `commands`, renders.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use domain::notification::Channel;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::event_json::rfc3339;
use crate::xrpc::prelude::*;

fn channel(s: &str, chat_only: bool) -> Result<Channel, XrpcError> {
    match Channel::parse(s) {
        Some(Channel::Email) if chat_only => Err(XrpcError::invalid_request("email is confirmed with com.atproto.server.confirmEmail")),
        Some(c) => Ok(c),
        None => Err(XrpcError::invalid_request("channel must be one of email, discord, telegram, signal")),
    }
}

fn available(state: &AppState, c: Channel) -> Result<(), XrpcError> {
    if state.config.outbox.available(c) {
        Ok(())
    } else {
        Err(XrpcError::new(StatusCode::BAD_REQUEST, "ChannelUnavailable", format!("this server does not send {} messages", c.as_str())))
    }
}

pub async fn get_prefs(State(state): State<AppState>, auth: AccessAuth) -> Result<Json<Value>, XrpcError> {
    let ctx = ctx(&state)?;
    let account = projections::accounts::snapshot(&state.log, &auth.did).await.map_err(|e| XrpcError::internal(&e))?;
    let email = account.map(|a| a.email).unwrap_or_default();
    let prefs = commands::notification_prefs::notification_prefs(&ctx, &auth.did).await.map_err(command_error)?;
    let channels: Vec<Value> = prefs
        .channels
        .iter()
        .map(|(name, e)| {
            let mut v = json!({ "channel": name, "address": e.address, "verified": e.verified_at.is_some() });
            if let Some(at) = e.verified_at {
                v["verifiedAt"] = rfc3339(at);
            }
            v
        })
        .collect();
    let available: Vec<&str> =
        Channel::ALL.into_iter().filter(|c| state.config.outbox.available(*c)).map(Channel::as_str).collect();
    Ok(Json(json!({
        "preferredChannel": prefs.preferred.as_str(),
        "email": email,
        "channels": channels,
        "availableChannels": available,
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateBody {
    preferred_channel: String,
}

pub async fn update_prefs(State(state): State<AppState>, auth: AccessAuth, bytes: Bytes) -> Result<StatusCode, XrpcError> {
    let b: UpdateBody = body(&bytes)?;
    let c = channel(&b.preferred_channel, false)?;
    available(&state, c)?;
    let ctx = ctx(&state)?;
    commands::notification_prefs::set_preferred_channel(&ctx, &auth.did, c).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct StartBody {
    channel: String,
    address: String,
}

pub async fn start_verification(State(state): State<AppState>, auth: AccessAuth, bytes: Bytes) -> Result<StatusCode, XrpcError> {
    let b: StartBody = body(&bytes)?;
    let c = channel(&b.channel, true)?;
    available(&state, c)?;
    let ctx = ctx(&state)?;
    commands::notification_prefs::start_channel_verification(&ctx, &auth.did, c, b.address.trim()).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct ConfirmBody {
    channel: String,
    code: String,
}

pub async fn confirm_verification(State(state): State<AppState>, auth: AccessAuth, bytes: Bytes) -> Result<StatusCode, XrpcError> {
    let b: ConfirmBody = body(&bytes)?;
    let c = channel(&b.channel, true)?;
    let ctx = ctx(&state)?;
    commands::notification_prefs::confirm_channel_verification(&ctx, &auth.did, c, &b.code).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}

pub async fn history(State(state): State<AppState>, auth: AccessAuth, q: Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
    let limit = match p.get("limit") {
        None => 50,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => return Err(XrpcError::invalid_request("limit must be an integer from 1 to 100")),
        },
    };
    // The cursor is the last row's queuedAt in unix microseconds.
    let before = match p.get("cursor") {
        None => i64::MAX,
        Some(c) => c.parse::<i64>().map_err(|_| XrpcError::invalid_request("malformed cursor"))?,
    };
    let rows = projections::notifications::history(&state.log, &auth.did, before, limit).await.map_err(|e| XrpcError::internal(&e))?;
    let mut out = json!({ "notifications": rows.iter().map(|r| super::notifications::notification_json(r, false)).collect::<Vec<_>>() });
    if rows.len() == usize::try_from(limit).unwrap_or(usize::MAX) {
        if let Some(last) = rows.last() {
            out["cursor"] = json!(last.queued_at.to_string());
        }
    }
    Ok(Json(out))
}
