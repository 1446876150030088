//! `com.atproto.server.reserveSigningKey` (no auth, as the reference): `{did?}` → `{signingKey}`
//! (a did:key), from `commands::reserve_signing_key`.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::xrpc::prelude::*;

#[derive(Deserialize)]
struct ReserveBody {
    did: Option<String>,
}

pub async fn reserve_signing_key(State(state): State<AppState>, bytes: Bytes) -> Result<Json<Value>, XrpcError> {
    let b: ReserveBody = if bytes.is_empty() { ReserveBody { did: None } } else { body(&bytes)? };
    let ctx = ctx(&state)?;
    let key = commands::reserve_signing_key::reserve_signing_key(&ctx, b.did.as_deref()).await.map_err(command_error)?;
    Ok(Json(json!({ "signingKey": key })))
}
