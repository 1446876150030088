//! The PLC directory (`PDS_DID_PLC_URL`) over HTTP(S, rustls with the bundled webpki roots):
//! submitting signed operations. One shared client with a timeout; any answer but 2xx is an error. Never signs anything (`domain::plc`
//! does) and never decides what to submit.
//!
//! Every call goes through the directory's circuit breaker ([`breaker`]): 5 consecutive failures
//! (no connection, timeout, 5xx) open it for 60 s, and calls fail fast with
//! `CommandError::Unavailable` until one probe gets through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::breaker::Breaker;
use crate::CommandError;

/// Consecutive failures that open the directory's breaker, and for how long.
pub const BREAKER_THRESHOLD: u32 = 5;
pub const BREAKER_OPEN: Duration = Duration::from_secs(60);

/// The breaker of the directory at `plc_url` (one per directory per process).
pub fn breaker(plc_url: &str) -> Arc<Breaker> {
    static ALL: OnceLock<Mutex<HashMap<String, Arc<Breaker>>>> = OnceLock::new();
    let mut all = ALL.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
    all.entry(plc_url.to_owned())
        .or_insert_with(|| Arc::new(Breaker::new(format!("PLC directory {plc_url}"), BREAKER_THRESHOLD, BREAKER_OPEN)))
        .clone()
}

/// A request to the directory through its breaker; transport errors and 5xx answers count as
/// failures, any other answer as success.
pub(crate) async fn send(plc_url: &str, req: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response, CommandError> {
    let out = breaker(plc_url)
        .call(req.send(), |r| match r {
            Err(e) => Some(e.to_string()),
            Ok(resp) if resp.status().is_server_error() => Some(format!("HTTP {}", resp.status())),
            Ok(_) => None,
        })
        .await
        .map_err(|open| CommandError::Unavailable(open.to_string()))?;
    out.map_err(|e| CommandError::Plc(format!("{what}: {e}")))
}

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
    let response = send(plc_url, client()?.post(&url).json(op), &format!("POST {url}")).await?;
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
    let response = send(plc_url, client()?.get(&url), &format!("GET {url}")).await?;
    if !response.status().is_success() {
        return Err(plc(format!("GET {url}: {}", response.status())));
    }
    let last: serde_json::Value = response.json().await.map_err(|e| plc(format!("GET {url}: {e}")))?;
    domain::plc::SignedOp::from_json(&last).map_err(|e| plc(format!("GET {url}: {e}")))
}
