//! `com.atproto.sync.subscribeRepos` frames: `dagcbor(header) ‖ dagcbor(body)`.
//!
//! A message header is `{op: 1, t: "#commit" | "#sync" | "#identity" | "#account" | "#info"}`; an
//! error header is `{op: -1}` with body `{error, message?}`. Bodies never carry `$type`. A
//! `#commit` is a `repo.committed` event plus `seq` and `time` — no block lookups. Knows nothing of
//! WebSockets: the caller sends the bytes (and closes with 1008 after an error frame).

use std::collections::BTreeMap;

use crate::cbor::{self, CborError, Ipld};

use super::events::{Committed, RepoEvent, Synced};

/// Error names a stream may end with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// The cursor is ahead of the stream's head.
    FutureCursor,
    /// The consumer fell too far behind.
    ConsumerTooSlow,
}

impl StreamError {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamError::FutureCursor => "FutureCursor",
            StreamError::ConsumerTooSlow => "ConsumerTooSlow",
        }
    }
}

/// The `#commit` frame of a `repo.committed` event. `time` is the event's datetime string.
/// `blobs` is always `[]` (deprecated; the spec asks producers to send it empty).
pub fn commit_frame(ev: &Committed, seq: i64, time: &str) -> Result<Vec<u8>, CborError> {
    let mut b = BTreeMap::new();
    put(&mut b, "seq", Ipld::Integer(i128::from(seq)));
    put(&mut b, "rebase", Ipld::Bool(false));
    put(&mut b, "tooBig", Ipld::Bool(false));
    put(&mut b, "repo", Ipld::String(ev.did.to_string()));
    put(&mut b, "commit", Ipld::Link(ev.commit));
    put(&mut b, "rev", Ipld::String(ev.rev.to_string()));
    put(
        &mut b,
        "since",
        ev.since.map_or(Ipld::Null, |s| Ipld::String(s.to_string())),
    );
    put(&mut b, "blocks", Ipld::Bytes(ev.blocks.clone()));
    let ops = ev
        .ops
        .iter()
        .map(|op| {
            let mut m = BTreeMap::new();
            put(
                &mut m,
                "action",
                Ipld::String(op.action.as_str().to_string()),
            );
            put(&mut m, "path", Ipld::String(op.path.clone()));
            put(&mut m, "cid", op.cid.map_or(Ipld::Null, Ipld::Link));
            if let Some(prev) = op.prev {
                put(&mut m, "prev", Ipld::Link(prev));
            }
            Ipld::Map(m)
        })
        .collect();
    put(&mut b, "ops", Ipld::List(ops));
    put(&mut b, "blobs", Ipld::List(Vec::new()));
    put(&mut b, "time", Ipld::String(time.to_string()));
    if let Some(prev_data) = ev.prev_data {
        put(&mut b, "prevData", Ipld::Link(prev_data));
    }
    message("#commit", b)
}

/// The `#sync` frame of a `repo.synced` event.
pub fn sync_frame(ev: &Synced, seq: i64, time: &str) -> Result<Vec<u8>, CborError> {
    let mut b = BTreeMap::new();
    put(&mut b, "seq", Ipld::Integer(i128::from(seq)));
    put(&mut b, "did", Ipld::String(ev.did.to_string()));
    put(&mut b, "blocks", Ipld::Bytes(ev.blocks.clone()));
    put(&mut b, "rev", Ipld::String(ev.rev.to_string()));
    put(&mut b, "time", Ipld::String(time.to_string()));
    message("#sync", b)
}

/// The frame of any public repo event (the import events are private: they have no frame).
pub fn repo_event_frame(ev: &RepoEvent, seq: i64, time: &str) -> Result<Vec<u8>, CborError> {
    match ev {
        RepoEvent::Committed(c) => commit_frame(c, seq, time),
        RepoEvent::Synced(s) => sync_frame(s, seq, time),
        RepoEvent::ImportStarted(_) | RepoEvent::ImportChunk(_) | RepoEvent::Imported(_) => Err(CborError::Invalid(
            format!("{} is a private event: it has no firehose frame", ev.event_type()),
        )),
    }
}

/// `#identity {seq, did, time, handle?}`.
pub fn identity_frame(
    did: &str,
    handle: Option<&str>,
    seq: i64,
    time: &str,
) -> Result<Vec<u8>, CborError> {
    let mut b = BTreeMap::new();
    put(&mut b, "seq", Ipld::Integer(i128::from(seq)));
    put(&mut b, "did", Ipld::String(did.to_string()));
    put(&mut b, "time", Ipld::String(time.to_string()));
    if let Some(h) = handle {
        put(&mut b, "handle", Ipld::String(h.to_string()));
    }
    message("#identity", b)
}

/// `#account {seq, did, time, active, status?}` (the reference sends `status` only when inactive).
pub fn account_frame(
    did: &str,
    active: bool,
    status: Option<&str>,
    seq: i64,
    time: &str,
) -> Result<Vec<u8>, CborError> {
    let mut b = BTreeMap::new();
    put(&mut b, "seq", Ipld::Integer(i128::from(seq)));
    put(&mut b, "did", Ipld::String(did.to_string()));
    put(&mut b, "time", Ipld::String(time.to_string()));
    put(&mut b, "active", Ipld::Bool(active));
    if let Some(s) = status {
        put(&mut b, "status", Ipld::String(s.to_string()));
    }
    message("#account", b)
}

/// `#info {name, message?}` (e.g. `OutdatedCursor`).
pub fn info_frame(name: &str, msg: Option<&str>) -> Result<Vec<u8>, CborError> {
    let mut b = BTreeMap::new();
    put(&mut b, "name", Ipld::String(name.to_string()));
    if let Some(m) = msg {
        put(&mut b, "message", Ipld::String(m.to_string()));
    }
    message("#info", b)
}

/// Error frame: header `{op: -1}`, body `{error, message?}`.
pub fn error_frame(error: StreamError, msg: Option<&str>) -> Result<Vec<u8>, CborError> {
    let mut h = BTreeMap::new();
    put(&mut h, "op", Ipld::Integer(-1));
    let mut b = BTreeMap::new();
    put(&mut b, "error", Ipld::String(error.as_str().to_string()));
    if let Some(m) = msg {
        put(&mut b, "message", Ipld::String(m.to_string()));
    }
    frame(h, b)
}

fn put(m: &mut BTreeMap<String, Ipld>, k: &str, v: Ipld) {
    m.insert(k.to_string(), v);
}

fn message(t: &str, body: BTreeMap<String, Ipld>) -> Result<Vec<u8>, CborError> {
    let mut h = BTreeMap::new();
    put(&mut h, "op", Ipld::Integer(1));
    put(&mut h, "t", Ipld::String(t.to_string()));
    frame(h, body)
}

fn frame(
    header: BTreeMap<String, Ipld>,
    body: BTreeMap<String, Ipld>,
) -> Result<Vec<u8>, CborError> {
    let mut out = cbor::encode(&Ipld::Map(header))?;
    cbor::encode_into(&Ipld::Map(body), &mut out)?;
    Ok(out)
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `op: 1`; `t` is the message type (`#commit`, …).
    Message {
        t: String,
        body: BTreeMap<String, Ipld>,
    },
    /// `op: -1`.
    Error {
        error: String,
        message: Option<String>,
    },
}

/// Why bytes are not a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame is not DAG-CBOR: {0}")]
    Cbor(#[from] CborError),
    #[error("frame header is malformed: {0}")]
    Header(&'static str),
    #[error("frame body is malformed: {0}")]
    Body(&'static str),
}

/// Reads a frame (header, then body; nothing may follow).
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, FrameError> {
    let (header, used) = cbor::decode_prefix(bytes)?;
    let rest = bytes.get(used..).ok_or(FrameError::Header("truncated"))?;
    let Ipld::Map(header) = header else {
        return Err(FrameError::Header("not a map"));
    };
    let Ipld::Map(mut body) = cbor::decode(rest)? else {
        return Err(FrameError::Body("not a map"));
    };
    match header.get("op") {
        Some(Ipld::Integer(1)) => {
            if header.len() != 2 {
                return Err(FrameError::Header(
                    "a message header has exactly `op` and `t`",
                ));
            }
            let Some(Ipld::String(t)) = header.get("t") else {
                return Err(FrameError::Header("`t` must be a string"));
            };
            Ok(Frame::Message { t: t.clone(), body })
        }
        Some(Ipld::Integer(-1)) => {
            if header.len() != 1 {
                return Err(FrameError::Header("an error header has only `op`"));
            }
            let Some(Ipld::String(error)) = body.remove("error") else {
                return Err(FrameError::Body("`error` must be a string"));
            };
            let message = match body.remove("message") {
                None => None,
                Some(Ipld::String(m)) => Some(m),
                Some(_) => return Err(FrameError::Body("`message` must be a string")),
            };
            if !body.is_empty() {
                return Err(FrameError::Body("unexpected field in an error body"));
            }
            Ok(Frame::Error { error, message })
        }
        _ => Err(FrameError::Header("`op` must be 1 or -1")),
    }
}
