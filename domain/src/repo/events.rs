//! The repo stream's events and their stored payloads (DAG-CBOR, built by hand).
//!
//! A payload is the event's own schema, versioned by `(event_type, event_version)`; it is neither
//! the domain structs (which may change freely) nor the firehose wire format (`firehose.rs`, which
//! adds `seq` and `time`). Decoding is strict: a known type with an unknown version, a missing or
//! mistyped field, or an unexpected field is an error, never a guess.

use std::collections::BTreeMap;

use crate::cbor::{self, CborError, Cid, Ipld};
use crate::mst::{OpAction, RecordOp};
use crate::syntax::Did;
use crate::tid::Tid;

/// Event type of [`RepoEvent::Committed`] (public: becomes a `#commit`).
pub const REPO_COMMITTED: &str = "repo.committed";
/// Event type of [`RepoEvent::Synced`] (public: becomes a `#sync`).
pub const REPO_SYNCED: &str = "repo.synced";
/// Event type of [`RepoEvent::ImportStarted`] (private).
pub const REPO_IMPORT_STARTED: &str = "repo.import_started";
/// Event type of [`RepoEvent::ImportChunk`] (private).
pub const REPO_IMPORT_CHUNK: &str = "repo.import_chunk";
/// Event type of [`RepoEvent::Imported`] (private).
pub const REPO_IMPORTED: &str = "repo.imported";

/// An event of a `repo/<did>` stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoEvent {
    Committed(Committed),
    Synced(Synced),
    ImportStarted(ImportStarted),
    ImportChunk(ImportChunk),
    Imported(Imported),
}

/// `importRepo` begins: the repo's records are about to be replaced by the tree of `commit`
/// (read models drop the DID's record index and blob references here). Always followed, in the
/// same transaction, by the import's chunks and its [`Imported`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportStarted {
    pub did: Did,
    pub commit: Cid,
    pub rev: Tid,
}

/// One bounded piece of an imported repo: blocks (MST nodes and records, as a CAR with root =
/// the import's commit) and the records (path → CID) whose blocks are in this piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportChunk {
    pub did: Did,
    pub commit: Cid,
    pub rev: Tid,
    /// 0, 1, 2, … within the import.
    pub part: u64,
    pub records: Vec<(String, Cid)>,
    pub blocks: Vec<u8>,
}

/// `importRepo` done: `commit` (signed elsewhere, checked here) is the repo head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    pub did: Did,
    pub commit: Cid,
    pub rev: Tid,
    pub data: Cid,
    /// How many chunks and records the import carried.
    pub parts: u64,
    pub records: u64,
    /// CAR holding only the commit block, root = `commit`.
    pub blocks: Vec<u8>,
}

/// A signed commit: everything a `#commit` frame needs, so the firehose never looks up blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub did: Did,
    /// CID of the signed commit block (the new repo head).
    pub commit: Cid,
    pub rev: Tid,
    /// The previous commit's rev (`None` for the genesis commit).
    pub since: Option<Tid>,
    /// MST root of this commit (the commit's `data`).
    pub data: Cid,
    /// MST root of the previous commit (`None` for the genesis commit).
    pub prev_data: Option<Cid>,
    /// Net record changes, one per path, in the order the writes first touched them.
    pub ops: Vec<RepoOp>,
    /// CAR slice, root = `commit`: the commit block, the MST nodes new in this rev, the created or
    /// updated record blocks, and the covering-proof nodes for every op (Sync v1.1).
    pub blocks: Vec<u8>,
    /// Blobs referenced by the created/updated records (for blob bookkeeping; the wire sends `[]`).
    pub blobs: Vec<Cid>,
}

/// An assertion of the repo's current commit: a `#sync` frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    pub did: Did,
    pub commit: Cid,
    pub rev: Tid,
    /// MST root of `commit` (so the state can be folded without opening `blocks`).
    pub data: Cid,
    /// CAR holding only the signed commit block, root = `commit`.
    pub blocks: Vec<u8>,
}

/// One record operation of a commit (the firehose `repoOp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoOp {
    pub action: OpAction,
    /// `<collection>/<rkey>`.
    pub path: String,
    /// New record CID (`None` for a delete).
    pub cid: Option<Cid>,
    /// Previous record CID (`None` for a create).
    pub prev: Option<Cid>,
}

impl RepoOp {
    /// From an MST-level change; `None` when it changes nothing.
    pub fn from_record_op(op: &RecordOp) -> Option<RepoOp> {
        let action = op.action()?;
        if op.old == op.new {
            return None;
        }
        Some(RepoOp {
            action,
            path: op.path.clone(),
            cid: op.new,
            prev: op.old,
        })
    }

    /// The MST-level change, for inversion.
    pub fn to_record_op(&self) -> RecordOp {
        RecordOp {
            path: self.path.clone(),
            old: self.prev,
            new: self.cid,
        }
    }
}

/// A payload that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("unknown repo event {event_type} v{version}")]
    Unknown { event_type: String, version: u32 },
    #[error("{event_type} payload is not valid DAG-CBOR: {source}")]
    Cbor {
        event_type: &'static str,
        source: CborError,
    },
    #[error("{event_type} payload: field `{field}` {problem}")]
    Field {
        event_type: &'static str,
        field: String,
        problem: &'static str,
    },
}

impl RepoEvent {
    /// Stable event type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            RepoEvent::Committed(_) => REPO_COMMITTED,
            RepoEvent::Synced(_) => REPO_SYNCED,
            RepoEvent::ImportStarted(_) => REPO_IMPORT_STARTED,
            RepoEvent::ImportChunk(_) => REPO_IMPORT_CHUNK,
            RepoEvent::Imported(_) => REPO_IMPORTED,
        }
    }

    /// Schema version of the payload [`RepoEvent::to_payload`] writes.
    pub fn event_version(&self) -> u32 {
        1
    }

    /// Whether the event is sequenced on the firehose (gets a `seq`).
    pub fn is_public(&self) -> bool {
        match self {
            RepoEvent::Committed(_) | RepoEvent::Synced(_) => true,
            RepoEvent::ImportStarted(_) | RepoEvent::ImportChunk(_) | RepoEvent::Imported(_) => false,
        }
    }

    pub fn did(&self) -> &Did {
        match self {
            RepoEvent::Committed(c) => &c.did,
            RepoEvent::Synced(s) => &s.did,
            RepoEvent::ImportStarted(i) => &i.did,
            RepoEvent::ImportChunk(i) => &i.did,
            RepoEvent::Imported(i) => &i.did,
        }
    }

    /// The stored payload.
    pub fn to_payload(&self) -> Result<Vec<u8>, CborError> {
        let mut m = BTreeMap::new();
        match self {
            RepoEvent::Committed(c) => {
                put(&mut m, "did", Ipld::String(c.did.to_string()));
                put(&mut m, "commit", Ipld::Link(c.commit));
                put(&mut m, "rev", Ipld::String(c.rev.to_string()));
                put(&mut m, "since", opt_str(c.since.map(|t| t.to_string())));
                put(&mut m, "data", Ipld::Link(c.data));
                put(&mut m, "prevData", opt_link(c.prev_data));
                let ops = c.ops.iter().map(op_to_ipld).collect();
                put(&mut m, "ops", Ipld::List(ops));
                put(&mut m, "blocks", Ipld::Bytes(c.blocks.clone()));
                let blobs = c.blobs.iter().map(|b| Ipld::Link(*b)).collect();
                put(&mut m, "blobs", Ipld::List(blobs));
            }
            RepoEvent::Synced(s) => {
                put(&mut m, "did", Ipld::String(s.did.to_string()));
                put(&mut m, "commit", Ipld::Link(s.commit));
                put(&mut m, "rev", Ipld::String(s.rev.to_string()));
                put(&mut m, "data", Ipld::Link(s.data));
                put(&mut m, "blocks", Ipld::Bytes(s.blocks.clone()));
            }
            RepoEvent::ImportStarted(i) => {
                put(&mut m, "did", Ipld::String(i.did.to_string()));
                put(&mut m, "commit", Ipld::Link(i.commit));
                put(&mut m, "rev", Ipld::String(i.rev.to_string()));
            }
            RepoEvent::ImportChunk(i) => {
                put(&mut m, "did", Ipld::String(i.did.to_string()));
                put(&mut m, "commit", Ipld::Link(i.commit));
                put(&mut m, "rev", Ipld::String(i.rev.to_string()));
                put(&mut m, "part", Ipld::Integer(i128::from(i.part)));
                let records = i
                    .records
                    .iter()
                    .map(|(path, cid)| Ipld::List(vec![Ipld::String(path.clone()), Ipld::Link(*cid)]))
                    .collect();
                put(&mut m, "records", Ipld::List(records));
                put(&mut m, "blocks", Ipld::Bytes(i.blocks.clone()));
            }
            RepoEvent::Imported(i) => {
                put(&mut m, "did", Ipld::String(i.did.to_string()));
                put(&mut m, "commit", Ipld::Link(i.commit));
                put(&mut m, "rev", Ipld::String(i.rev.to_string()));
                put(&mut m, "data", Ipld::Link(i.data));
                put(&mut m, "parts", Ipld::Integer(i128::from(i.parts)));
                put(&mut m, "records", Ipld::Integer(i128::from(i.records)));
                put(&mut m, "blocks", Ipld::Bytes(i.blocks.clone()));
            }
        }
        cbor::encode(&Ipld::Map(m))
    }

    /// Reads a stored payload of `(event_type, version)`.
    pub fn from_payload(
        event_type: &str,
        version: u32,
        bytes: &[u8],
    ) -> Result<RepoEvent, EventError> {
        match (event_type, version) {
            (REPO_COMMITTED, 1) => {
                let mut r = Reader::open(REPO_COMMITTED, bytes)?;
                let ev = Committed {
                    did: r.did("did")?,
                    commit: r.link("commit")?,
                    rev: r.tid("rev")?,
                    since: r.opt_tid("since")?,
                    data: r.link("data")?,
                    prev_data: r.opt_link("prevData")?,
                    ops: r.ops("ops")?,
                    blocks: r.bytes("blocks")?,
                    blobs: r.links("blobs")?,
                };
                r.finish()?;
                Ok(RepoEvent::Committed(ev))
            }
            (REPO_SYNCED, 1) => {
                let mut r = Reader::open(REPO_SYNCED, bytes)?;
                let ev = Synced {
                    did: r.did("did")?,
                    commit: r.link("commit")?,
                    rev: r.tid("rev")?,
                    data: r.link("data")?,
                    blocks: r.bytes("blocks")?,
                };
                r.finish()?;
                Ok(RepoEvent::Synced(ev))
            }
            (REPO_IMPORT_STARTED, 1) => {
                let mut r = Reader::open(REPO_IMPORT_STARTED, bytes)?;
                let ev = ImportStarted { did: r.did("did")?, commit: r.link("commit")?, rev: r.tid("rev")? };
                r.finish()?;
                Ok(RepoEvent::ImportStarted(ev))
            }
            (REPO_IMPORT_CHUNK, 1) => {
                let mut r = Reader::open(REPO_IMPORT_CHUNK, bytes)?;
                let ev = ImportChunk {
                    did: r.did("did")?,
                    commit: r.link("commit")?,
                    rev: r.tid("rev")?,
                    part: r.uint("part")?,
                    records: r.records("records")?,
                    blocks: r.bytes("blocks")?,
                };
                r.finish()?;
                Ok(RepoEvent::ImportChunk(ev))
            }
            (REPO_IMPORTED, 1) => {
                let mut r = Reader::open(REPO_IMPORTED, bytes)?;
                let ev = Imported {
                    did: r.did("did")?,
                    commit: r.link("commit")?,
                    rev: r.tid("rev")?,
                    data: r.link("data")?,
                    parts: r.uint("parts")?,
                    records: r.uint("records")?,
                    blocks: r.bytes("blocks")?,
                };
                r.finish()?;
                Ok(RepoEvent::Imported(ev))
            }
            _ => Err(EventError::Unknown {
                event_type: event_type.to_string(),
                version,
            }),
        }
    }
}

fn put(m: &mut BTreeMap<String, Ipld>, k: &str, v: Ipld) {
    m.insert(k.to_string(), v);
}

fn opt_str(s: Option<String>) -> Ipld {
    s.map_or(Ipld::Null, Ipld::String)
}

fn opt_link(c: Option<Cid>) -> Ipld {
    c.map_or(Ipld::Null, Ipld::Link)
}

fn op_to_ipld(op: &RepoOp) -> Ipld {
    let mut m = BTreeMap::new();
    put(
        &mut m,
        "action",
        Ipld::String(op.action.as_str().to_string()),
    );
    put(&mut m, "path", Ipld::String(op.path.clone()));
    put(&mut m, "cid", opt_link(op.cid));
    put(&mut m, "prev", opt_link(op.prev));
    Ipld::Map(m)
}

/// Takes typed fields out of a payload map, then insists nothing is left.
struct Reader {
    event_type: &'static str,
    map: BTreeMap<String, Ipld>,
}

impl Reader {
    fn open(event_type: &'static str, bytes: &[u8]) -> Result<Reader, EventError> {
        match cbor::decode(bytes) {
            Ok(Ipld::Map(map)) => Ok(Reader { event_type, map }),
            Ok(_) => Err(EventError::Field {
                event_type,
                field: String::new(),
                problem: "payload is not a map",
            }),
            Err(source) => Err(EventError::Cbor { event_type, source }),
        }
    }

    fn err(&self, field: &str, problem: &'static str) -> EventError {
        EventError::Field {
            event_type: self.event_type,
            field: field.to_string(),
            problem,
        }
    }

    fn take(&mut self, field: &str) -> Result<Ipld, EventError> {
        self.map
            .remove(field)
            .ok_or_else(|| self.err(field, "is missing"))
    }

    fn string(&mut self, field: &str) -> Result<String, EventError> {
        match self.take(field)? {
            Ipld::String(s) => Ok(s),
            _ => Err(self.err(field, "must be a string")),
        }
    }

    fn did(&mut self, field: &str) -> Result<Did, EventError> {
        let s = self.string(field)?;
        Did::parse(&s).map_err(|_| self.err(field, "must be a DID"))
    }

    fn tid(&mut self, field: &str) -> Result<Tid, EventError> {
        let s = self.string(field)?;
        Tid::parse(&s).map_err(|_| self.err(field, "must be a TID"))
    }

    fn opt_tid(&mut self, field: &str) -> Result<Option<Tid>, EventError> {
        match self.take(field)? {
            Ipld::Null => Ok(None),
            Ipld::String(s) => Tid::parse(&s)
                .map(Some)
                .map_err(|_| self.err(field, "must be a TID or null")),
            _ => Err(self.err(field, "must be a TID or null")),
        }
    }

    fn link(&mut self, field: &str) -> Result<Cid, EventError> {
        match self.take(field)? {
            Ipld::Link(c) => Ok(c),
            _ => Err(self.err(field, "must be a CID link")),
        }
    }

    fn opt_link(&mut self, field: &str) -> Result<Option<Cid>, EventError> {
        match self.take(field)? {
            Ipld::Null => Ok(None),
            Ipld::Link(c) => Ok(Some(c)),
            _ => Err(self.err(field, "must be a CID link or null")),
        }
    }

    fn bytes(&mut self, field: &str) -> Result<Vec<u8>, EventError> {
        match self.take(field)? {
            Ipld::Bytes(b) => Ok(b),
            _ => Err(self.err(field, "must be bytes")),
        }
    }

    fn uint(&mut self, field: &str) -> Result<u64, EventError> {
        match self.take(field)? {
            Ipld::Integer(n) => u64::try_from(n).map_err(|_| self.err(field, "must be a non-negative integer")),
            _ => Err(self.err(field, "must be an integer")),
        }
    }

    fn records(&mut self, field: &str) -> Result<Vec<(String, Cid)>, EventError> {
        let Ipld::List(items) = self.take(field)? else {
            return Err(self.err(field, "must be a list of [path, cid] pairs"));
        };
        items
            .into_iter()
            .map(|i| match i {
                Ipld::List(pair) => match <[Ipld; 2]>::try_from(pair) {
                    Ok([Ipld::String(p), Ipld::Link(c)]) => Ok((p, c)),
                    _ => Err(self.err(field, "must be a list of [path, cid] pairs")),
                },
                _ => Err(self.err(field, "must be a list of [path, cid] pairs")),
            })
            .collect()
    }

    fn links(&mut self, field: &str) -> Result<Vec<Cid>, EventError> {
        let Ipld::List(items) = self.take(field)? else {
            return Err(self.err(field, "must be a list of CID links"));
        };
        items
            .into_iter()
            .map(|i| match i {
                Ipld::Link(c) => Ok(c),
                _ => Err(self.err(field, "must be a list of CID links")),
            })
            .collect()
    }

    fn ops(&mut self, field: &str) -> Result<Vec<RepoOp>, EventError> {
        let Ipld::List(items) = self.take(field)? else {
            return Err(self.err(field, "must be a list of ops"));
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let Ipld::Map(map) = item else {
                return Err(self.err(field, "must be a list of op maps"));
            };
            let mut r = Reader {
                event_type: self.event_type,
                map,
            };
            let action = match r.string("action")?.as_str() {
                "create" => OpAction::Create,
                "update" => OpAction::Update,
                "delete" => OpAction::Delete,
                _ => return Err(r.err("action", "must be create, update or delete")),
            };
            let op = RepoOp {
                action,
                path: r.string("path")?,
                cid: r.opt_link("cid")?,
                prev: r.opt_link("prev")?,
            };
            r.finish()?;
            let consistent = match action {
                OpAction::Create => op.cid.is_some() && op.prev.is_none(),
                OpAction::Update => op.cid.is_some() && op.prev.is_some(),
                OpAction::Delete => op.cid.is_none() && op.prev.is_some(),
            };
            if !consistent {
                return Err(self.err(field, "has an op whose cid/prev do not fit its action"));
            }
            out.push(op);
        }
        Ok(out)
    }

    fn finish(self) -> Result<(), EventError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(EventError::Field {
                event_type: self.event_type,
                field: k.clone(),
                problem: "is not part of this event version",
            }),
        }
    }
}
