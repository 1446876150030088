//! `com.atproto.server.describeServer`: the server's DID, handle domains, invite rule, links.

use axum::extract::State;
use axum::Json;
use serde_json::json;

use crate::xrpc::prelude::*;

pub async fn describe_server(State(state): State<AppState>) -> Json<serde_json::Value> {
    let c = &state.config;
    let mut links = serde_json::Map::new();
    if let Some(u) = &c.privacy_policy_url {
        links.insert("privacyPolicy".into(), json!(u));
    }
    if let Some(u) = &c.terms_of_service_url {
        links.insert("termsOfService".into(), json!(u));
    }
    let mut contact = serde_json::Map::new();
    if let Some(e) = &c.contact_email_address {
        contact.insert("email".into(), json!(e));
    }
    Json(json!({
        "did": c.service_did,
        "availableUserDomains": c.service_handle_domains,
        "inviteCodeRequired": c.invite_required,
        "phoneVerificationRequired": false,
        "links": links,
        "contact": contact,
    }))
}
