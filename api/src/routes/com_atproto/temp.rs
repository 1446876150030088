//! `com.atproto.temp.*`: `checkSignupQueue` — this server has no signup queue (no entryway), so
//! every signed-in account is `activated`, as the reference answers without an entryway.

use axum::Json;
use serde_json::{json, Value};

use crate::xrpc::prelude::*;

pub async fn check_signup_queue(_auth: AccessAuth) -> Json<Value> {
    Json(json!({ "activated": true }))
}
