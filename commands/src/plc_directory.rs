//! The embedded PLC directory's one command: accept a did:plc operation (`POST /{did}` of
//! `@did-plc/server`, and what this server's own commands submit when the directory is
//! embedded). Loads the DID's stream `plc/<did>`, lets `domain::plc_directory` check the
//! operation as the reference directory does, and appends `plc.operation` at the stream version
//! it decided on (the `plc_operations` read model follows inline).
//!
//! Never signs anything and never decides what to submit (the account commands do); never talks
//! to another directory.

use domain::plc_directory::{self, DirectoryError, IndexedOp, OperationAccepted};
use eventlog::{AppendError, EventLog, ExpectedVersion, NewEvent, StreamAppend};
use projections::Appender;

use crate::now;

/// Why the directory did not store an operation.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Refused by the directory's rules (the reference answers 400 with this message).
    #[error(transparent)]
    Refused(#[from] DirectoryError),
    /// Another operation for the DID was stored meanwhile (the reference answers 409).
    #[error("Proposed prev does not match the most recent operation")]
    Conflict,
    #[error("{0}")]
    Internal(String),
}

impl SubmitError {
    /// The HTTP status the reference directory answers with.
    pub fn status(&self) -> u16 {
        match self {
            SubmitError::Refused(_) => 400,
            SubmitError::Conflict => 409,
            SubmitError::Internal(_) => 500,
        }
    }
}

/// Every operation held for `did` (nullified ones included), folded from its stream, and the
/// stream's version.
async fn load(log: &EventLog, did: &str) -> Result<(Vec<IndexedOp>, i64), SubmitError> {
    let envelopes = log
        .read_stream(&plc_directory::stream_name(did))
        .await
        .map_err(|e| SubmitError::Internal(e.to_string()))?;
    let mut ops = Vec::new();
    let mut version = 0;
    for e in &envelopes {
        let event = OperationAccepted::from_payload(&e.event_type, e.event_version, &e.payload)
            .map_err(|err| SubmitError::Internal(format!("{} v{}: {err}", e.stream, e.stream_version)))?;
        ops = plc_directory::evolve(ops, &event);
        version = e.stream_version;
    }
    Ok((ops, version))
}

/// Checks `operation` (JSON, as POSTed) for `did` and stores it.
pub async fn submit_operation(appender: &Appender, did: &str, operation: &serde_json::Value) -> Result<(), SubmitError> {
    let proposed = plc_directory::check_incoming(operation)?;
    let (ops, version) = load(appender.log(), did).await?;
    let (now_micros, _) = now();
    let accepted = plc_directory::decide_operation(did, &ops, proposed, now_micros)?;
    let payload = accepted.to_payload().map_err(|e| SubmitError::Internal(e.to_string()))?;
    let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
    let append = StreamAppend::new(
        plc_directory::stream_name(did),
        expected,
        vec![NewEvent::new(accepted.event_type(), plc_directory::EVENT_VERSION, payload)],
    );
    match appender.append(vec![append]).await {
        Ok(_) => Ok(()),
        Err(AppendError::Conflict { .. }) => Err(SubmitError::Conflict),
        Err(e) => Err(SubmitError::Internal(e.to_string())),
    }
}
