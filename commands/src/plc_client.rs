//! The PLC directory (`PDS_DID_PLC_URL`) over HTTP(S, rustls with the bundled webpki roots):
//! submitting signed operations. One shared client with a timeout; any answer but 2xx is an error. Never signs anything (`domain::plc`
//! does) and never decides what to submit.

use std::sync::OnceLock;
use std::time::Duration;

use crate::CommandError;

/// Longest wait for the directory to accept an operation.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn client() -> Result<&'static reqwest::Client, CommandError> {
    static CLIENT: OnceLock<Option<reqwest::Client>> = OnceLock::new();
    CLIENT
        .get_or_init(|| reqwest::Client::builder().timeout(TIMEOUT).build().ok())
        .as_ref()
        .ok_or_else(|| CommandError::Internal("cannot build the HTTP client".into()))
}

/// `POST {plc_url}/{did}` with the signed operation's JSON.
pub async fn submit_operation(plc_url: &str, did: &str, op: &serde_json::Value) -> Result<(), CommandError> {
    let url = format!("{plc_url}/{did}");
    let response = client()?
        .post(&url)
        .json(op)
        .send()
        .await
        .map_err(|e| CommandError::Plc(format!("POST {url}: {e}")))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(500).collect();
    Err(CommandError::Plc(format!("POST {url}: {status}: {body}")))
}

/// `GET {plc_url}/{did}/log/last`: the DID's latest operation.
pub async fn last_operation(plc_url: &str, did: &str) -> Result<domain::plc::SignedOp, CommandError> {
    let url = format!("{plc_url}/{did}/log/last");
    let plc = |m: String| CommandError::Plc(m);
    let response = client()?.get(&url).send().await.map_err(|e| plc(format!("GET {url}: {e}")))?;
    if !response.status().is_success() {
        return Err(plc(format!("GET {url}: {}", response.status())));
    }
    let last: serde_json::Value = response.json().await.map_err(|e| plc(format!("GET {url}: {e}")))?;
    domain::plc::SignedOp::from_json(&last).map_err(|e| plc(format!("GET {url}: {e}")))
}
