//! Admin-only XRPC routes of our namespace (`org.eventpds.admin.*`), behind HTTP Basic
//! `admin:<PDS_ADMIN_PASSWORD>`: the event log for operators and analytics (`listEvents`, and the
//! `subscribeEvents` WebSocket that backfills then follows) and the operator read models
//! (`getEventStats`, `listStreams`). Never answers 500 for bad input.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::event_json::{envelope_json, rfc3339};
use crate::xrpc::prelude::*;

pub const NAMESPACE: &str = "org.eventpds.admin";
const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 100;


type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

fn params(q: Params) -> Result<HashMap<String, String>, XrpcError> {
    q.map(|Query(m)| m).map_err(|e| XrpcError::invalid_request(format!("invalid query string: {e}")))
}

fn limit(p: &HashMap<String, String>) -> Result<u32, XrpcError> {
    match p.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(XrpcError::invalid_request(format!("limit must be an integer from 1 to {MAX_LIMIT}"))),
        },
    }
}

fn position_cursor(p: &HashMap<String, String>) -> Result<Option<i64>, XrpcError> {
    match p.get("cursor") {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(XrpcError::invalid_request("cursor must be a non-negative integer (a log position)")),
        },
    }
}

/// `GET org.eventpds.admin.listEvents?cursor=<position>&limit=`: events after `cursor`.
pub async fn list_events(State(state): State<AppState>, q: Params) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
    let (after, limit) = (position_cursor(&p)?.unwrap_or(0), limit(&p)?);
    let events = state.log.read_all(after, limit).await.map_err(|e| XrpcError::internal(&e))?;
    let mut body = json!({ "events": events.iter().map(envelope_json).collect::<Vec<_>>() });
    if let Some(last) = events.last() {
        body["cursor"] = json!(last.position.to_string());
    }
    Ok(Json(body))
}

/// `GET org.eventpds.admin.subscribeEvents?cursor=` (WebSocket): one JSON text message per event
/// after `cursor` (backfill, then live); without a cursor, only events appended from now on.
pub async fn subscribe_events(
    State(state): State<AppState>,
    q: Params,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let checked = async {
        let p = params(q)?;
        let head = state.log.head().await.map_err(|e| XrpcError::internal(&e))?.position;
        let after = match position_cursor(&p)? {
            Some(c) if c > head => {
                return Err(XrpcError::new(StatusCode::BAD_REQUEST, "FutureCursor", "Cursor in the future."))
            }
            Some(c) => c,
            None => head,
        };
        let ws = ws.map_err(|e| XrpcError::invalid_request(format!("expected a WebSocket upgrade: {e}")))?;
        Ok((ws, after))
    };
    match checked.await {
        Ok((ws, after)) => {
            let log = state.log.clone();
            ws.on_upgrade(move |socket| follow(socket, log, after)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn follow(mut socket: WebSocket, log: eventlog::EventLog, after: i64) {
    let mut tail = Box::pin(log.tail(after));
    loop {
        tokio::select! {
            next = tail.next() => match next {
                Some(Ok(e)) => {
                    if socket.send(Message::Text(envelope_json(&e).to_string().into())).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "subscribeEvents: reading the log failed");
                    let frame = CloseFrame { code: 1011, reason: "internal error reading the log".into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return;
                }
                None => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// `GET org.eventpds.admin.getEventStats`: the `event_stats` read model, its checkpoint and the
/// log head (the difference is the catch-up lag).
pub async fn get_event_stats(State(state): State<AppState>, _headers: HeaderMap) -> Result<Json<Value>, XrpcError> {
    // Checkpoint first: rows and checkpoint commit together, so rows read afterwards cover at
    // least the checkpoint (read the other way round, a runner commit in between made the reply
    // claim a checkpoint its rows did not yet show).
    let checkpoint = projections::checkpoints::get(&state.log, projections::event_stats::NAME)
        .await
        .map_err(|e| XrpcError::internal(&e))?;
    let stats = projections::event_stats::list(&state.log).await.map_err(|e| XrpcError::internal(&e))?;
    let head = state.log.head().await.map_err(|e| XrpcError::internal(&e))?;
    let types: Vec<Value> = stats
        .iter()
        .map(|s| {
            json!({
                "type": s.event_type,
                "count": s.count,
                "firstPosition": s.first_position,
                "lastPosition": s.last_position,
                "lastRecordedAt": rfc3339(s.last_recorded_at),
            })
        })
        .collect();
    Ok(Json(json!({ "eventTypes": types, "checkpoint": checkpoint, "head": head.position })))
}

/// `GET org.eventpds.admin.listStreams?kind=&cursor=&limit=`: aggregates in name order.
pub async fn list_streams(State(state): State<AppState>, q: Params) -> Result<Json<Value>, XrpcError> {
    let p = params(q)?;
    let limit = limit(&p)?;
    let kind = p.get("kind").map(String::as_str).filter(|k| !k.is_empty());
    let cursor = p.get("cursor").map(String::as_str).filter(|c| !c.is_empty());
    let streams = projections::stream_index::list(&state.log, kind, cursor, limit)
        .await
        .map_err(|e| XrpcError::internal(&e))?;
    let mut body = json!({
        "streams": streams
            .iter()
            .map(|s| json!({ "stream": s.stream, "kind": s.kind, "version": s.version, "lastPosition": s.last_position }))
            .collect::<Vec<_>>()
    });
    if streams.len() == limit as usize {
        if let Some(last) = streams.last() {
            body["cursor"] = json!(last.stream);
        }
    }
    Ok(Json(body))
}
