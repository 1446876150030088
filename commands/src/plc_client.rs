//! The PLC directory the server's DIDs live in: submitting signed operations, reading a DID's
//! last operation and its document. Either the remote directory at `PDS_DID_PLC_URL` over
//! HTTP(S) (rustls with the bundled webpki roots; one shared client with a timeout), or — on a
//! local hostname with `PDS_DID_PLC_URL` unset — the embedded directory in this database, called
//! in process (`plc_directory.rs`, the `plc_operations` read model).
//!
//! A directory that cannot be reached or does not answer in time is
//! [`CommandError::PlcUnreachable`]; one that answers with a refusal is
//! [`CommandError::PlcRefused`]; both name the directory. Never signs anything (`domain::plc`
//! does) and never decides what to submit.

use std::sync::OnceLock;
use std::time::Duration;

use domain::plc::SignedOp;

use crate::{CommandError, Ctx};

/// Longest wait for the directory to accept an operation.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn client() -> Result<&'static reqwest::Client, CommandError> {
    static CLIENT: OnceLock<Option<reqwest::Client>> = OnceLock::new();
    CLIENT
        .get_or_init(|| reqwest::Client::builder().timeout(TIMEOUT).build().ok())
        .as_ref()
        .ok_or_else(|| CommandError::Internal("cannot build the HTTP client".into()))
}

/// How the directory is named in errors and logs.
pub fn directory_name(ctx: &Ctx) -> String {
    if ctx.plc_embedded {
        format!("embedded PLC directory ({})", ctx.plc_url)
    } else {
        ctx.plc_url.clone()
    }
}

/// A request that got no answer: unreachable, or no answer within [`TIMEOUT`].
pub(crate) fn unreachable(ctx: &Ctx, request: &str, e: &reqwest::Error) -> CommandError {
    // The cause chain without the URL reqwest repeats: "connection refused", "dns error", …
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    let detail = if e.is_timeout() {
        format!("{request}: no answer within {} s", TIMEOUT.as_secs())
    } else if cause.is_empty() {
        format!("{request}: {e}")
    } else {
        format!("{request}: {cause}")
    };
    CommandError::PlcUnreachable { directory: directory_name(ctx), detail, timeout: e.is_timeout() }
}

/// An answer that is not a 2xx: the directory's `message` (or body), cut to 300 characters.
async fn refused(ctx: &Ctx, response: reqwest::Response) -> CommandError {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or(body);
    CommandError::PlcRefused { directory: directory_name(ctx), status, message: message.chars().take(300).collect() }
}

/// `POST {directory}/{did}` with the signed operation's JSON.
pub async fn submit_operation(ctx: &Ctx, did: &str, op: &serde_json::Value) -> Result<(), CommandError> {
    if ctx.plc_embedded {
        return crate::plc_directory::submit_operation(&ctx.appender, did, op).await.map_err(|e| match e {
            crate::plc_directory::SubmitError::Internal(m) => CommandError::Internal(format!("embedded PLC directory: {m}")),
            refusal => CommandError::PlcRefused {
                directory: directory_name(ctx),
                status: refusal.status(),
                message: refusal.to_string(),
            },
        });
    }
    let url = format!("{}/{did}", ctx.plc_url);
    let response = client()?.post(&url).json(op).send().await.map_err(|e| unreachable(ctx, "POST", &e))?;
    if response.status().is_success() {
        return Ok(());
    }
    Err(refused(ctx, response).await)
}

/// `GET {directory}/{did}/log/last`: the DID's latest operation.
pub async fn last_operation(ctx: &Ctx, did: &str) -> Result<SignedOp, CommandError> {
    if ctx.plc_embedded {
        return projections::plc_operations::last_operation(ctx.log(), did).await?.map(|o| o.op).ok_or_else(|| {
            CommandError::PlcRefused {
                directory: directory_name(ctx),
                status: 404,
                message: format!("DID not registered: {did}"),
            }
        });
    }
    let url = format!("{}/{did}/log/last", ctx.plc_url);
    let response = client()?.get(&url).send().await.map_err(|e| unreachable(ctx, "GET", &e))?;
    if !response.status().is_success() {
        return Err(refused(ctx, response).await);
    }
    let malformed = |e: String| CommandError::Plc(format!("GET {url}: {e}"));
    let last: serde_json::Value = response.json().await.map_err(|e| malformed(e.to_string()))?;
    SignedOp::from_json(&last).map_err(|e| malformed(e.to_string()))
}

/// `GET {directory}/{did}`: the DID document; `None` when the directory has none (404, 410,
/// tombstoned).
pub async fn document(ctx: &Ctx, did: &str) -> Result<Option<serde_json::Value>, CommandError> {
    if ctx.plc_embedded {
        let last = projections::plc_operations::last_operation(ctx.log(), did).await?;
        return Ok(last.and_then(|o| o.op.did_document(did)).map(|d| d.to_json()));
    }
    let url = format!("{}/{did}", ctx.plc_url);
    let response = client()?.get(&url).send().await.map_err(|e| unreachable(ctx, "GET", &e))?;
    if matches!(response.status().as_u16(), 404 | 410) {
        return Ok(None);
    }
    if !response.status().is_success() {
        return Err(refused(ctx, response).await);
    }
    let doc = response.json().await.map_err(|e| CommandError::Plc(format!("GET {url}: {e}")))?;
    Ok(Some(doc))
}
