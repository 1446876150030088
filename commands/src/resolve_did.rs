//! Resolving a DID document for identity checks that need the DID's *current* state (the signing
//! key of a bring-your-own DID's service-auth token): did:plc from the PLC directory
//! (`plc_client::document`), did:web from `https://{host}/.well-known/did.json` (`http` for
//! `localhost`, the only host that may carry a port). No cache: each call asks again.
//!
//! Never decides what the document means (`domain::did_doc` reads it).

use domain::syntax::Did;

use crate::{plc_client, CommandError, Ctx};

/// The DID document of `did`; `None` when the directory or host has none (404, 410 tombstoned).
pub async fn resolve_did_document(ctx: &Ctx, did: &str) -> Result<Option<serde_json::Value>, CommandError> {
    let parsed = Did::parse(did).map_err(|_| CommandError::InvalidRequest(format!("invalid DID: {did}")))?;
    let url = match parsed.method() {
        "plc" => return plc_client::document(ctx, did).await,
        "web" => {
            let host = did.strip_prefix("did:web:").unwrap_or_default().replace("%3A", ":");
            if host.contains(':') && !host.starts_with("localhost:") {
                return Ok(None);
            }
            let scheme = if host == "localhost" || host.starts_with("localhost:") { "http" } else { "https" };
            format!("{scheme}://{host}/.well-known/did.json")
        }
        _ => return Ok(None),
    };
    let response = plc_client::client()?
        .get(&url)
        .send()
        .await
        .map_err(|e| CommandError::Plc(format!("GET {url}: {e}")))?;
    if matches!(response.status().as_u16(), 404 | 410) {
        return Ok(None);
    }
    if !response.status().is_success() {
        return Err(CommandError::Plc(format!("GET {url}: {}", response.status())));
    }
    let doc = response.json().await.map_err(|e| CommandError::Plc(format!("GET {url}: {e}")))?;
    Ok(Some(doc))
}
