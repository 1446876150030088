//! The blob stream's events (`blob/<did>`, never public) and their stored payloads (DAG-CBOR).
//!
//! The blob bytes live in the blob store; the log records that they were stored (`blob.uploaded`),
//! that an unreferenced upload outlived its grace period and was removed (`blob.expired`), and
//! moderation (`blob.takedown_updated`). Whether a blob is referenced is not an event of its own:
//! it follows from the `repo.committed` events (the records' blob refs).

use std::collections::BTreeMap;

use crate::cbor::{self, CborError, Cid, Ipld};
use crate::syntax::Did;

pub const BLOB_UPLOADED: &str = "blob.uploaded";
pub const BLOB_EXPIRED: &str = "blob.expired";
pub const BLOB_TAKEDOWN_UPDATED: &str = "blob.takedown_updated";

/// The stream of `did`'s blobs.
pub fn stream(did: &str) -> String {
    format!("blob/{did}")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobEvent {
    /// The bytes (after metadata stripping) are in the store under `<did>/<cid>`.
    Uploaded { did: Did, cid: Cid, mime_type: String, size: u64 },
    /// A blob no record referenced was removed after the grace period.
    Expired { did: Did, cid: Cid },
    /// Takedown applied (`Some(ref)`) or lifted (`None`).
    TakedownUpdated { did: Did, cid: Cid, takedown_ref: Option<String> },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlobEventError {
    #[error("unknown blob event {event_type} v{version}")]
    Unknown { event_type: String, version: u32 },
    #[error("blob event payload is not valid DAG-CBOR: {0}")]
    Cbor(#[from] CborError),
    #[error("{event_type} payload: field `{field}` missing, mistyped or unexpected")]
    Field { event_type: &'static str, field: String },
}

impl BlobEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            BlobEvent::Uploaded { .. } => BLOB_UPLOADED,
            BlobEvent::Expired { .. } => BLOB_EXPIRED,
            BlobEvent::TakedownUpdated { .. } => BLOB_TAKEDOWN_UPDATED,
        }
    }

    pub fn event_version(&self) -> u32 {
        1
    }

    pub fn did(&self) -> &Did {
        match self {
            BlobEvent::Uploaded { did, .. } | BlobEvent::Expired { did, .. } | BlobEvent::TakedownUpdated { did, .. } => did,
        }
    }

    pub fn cid(&self) -> &Cid {
        match self {
            BlobEvent::Uploaded { cid, .. } | BlobEvent::Expired { cid, .. } | BlobEvent::TakedownUpdated { cid, .. } => cid,
        }
    }

    pub fn to_payload(&self) -> Result<Vec<u8>, CborError> {
        let mut m = BTreeMap::new();
        m.insert("did".to_owned(), Ipld::String(self.did().to_string()));
        m.insert("cid".to_owned(), Ipld::Link(*self.cid()));
        match self {
            BlobEvent::Uploaded { mime_type, size, .. } => {
                m.insert("mimeType".to_owned(), Ipld::String(mime_type.clone()));
                m.insert("size".to_owned(), Ipld::Integer(i128::from(*size)));
            }
            BlobEvent::Expired { .. } => {}
            BlobEvent::TakedownUpdated { takedown_ref, .. } => {
                let r = takedown_ref.clone().map_or(Ipld::Null, Ipld::String);
                m.insert("takedownRef".to_owned(), r);
            }
        }
        cbor::encode(&Ipld::Map(m))
    }

    pub fn from_payload(event_type: &str, version: u32, bytes: &[u8]) -> Result<BlobEvent, BlobEventError> {
        let (kind, fields): (&'static str, &[&str]) = match (event_type, version) {
            (BLOB_UPLOADED, 1) => (BLOB_UPLOADED, &["cid", "did", "mimeType", "size"]),
            (BLOB_EXPIRED, 1) => (BLOB_EXPIRED, &["cid", "did"]),
            (BLOB_TAKEDOWN_UPDATED, 1) => (BLOB_TAKEDOWN_UPDATED, &["cid", "did", "takedownRef"]),
            _ => return Err(BlobEventError::Unknown { event_type: event_type.to_owned(), version }),
        };
        let field = |f: &str| BlobEventError::Field { event_type: kind, field: f.to_owned() };
        let Ipld::Map(m) = cbor::decode(bytes)? else { return Err(field("(root)")) };
        if let Some(extra) = m.keys().find(|k| !fields.contains(&k.as_str())) {
            return Err(field(extra));
        }
        let did = match m.get("did") {
            Some(Ipld::String(s)) => Did::parse(s).map_err(|_| field("did"))?,
            _ => return Err(field("did")),
        };
        let cid = match m.get("cid") {
            Some(Ipld::Link(c)) => *c,
            _ => return Err(field("cid")),
        };
        Ok(match kind {
            BLOB_UPLOADED => BlobEvent::Uploaded {
                did,
                cid,
                mime_type: match m.get("mimeType") {
                    Some(Ipld::String(s)) => s.clone(),
                    _ => return Err(field("mimeType")),
                },
                size: match m.get("size") {
                    Some(Ipld::Integer(i)) => u64::try_from(*i).map_err(|_| field("size"))?,
                    _ => return Err(field("size")),
                },
            },
            BLOB_EXPIRED => BlobEvent::Expired { did, cid },
            _ => BlobEvent::TakedownUpdated {
                did,
                cid,
                takedown_ref: match m.get("takedownRef") {
                    Some(Ipld::String(s)) => Some(s.clone()),
                    Some(Ipld::Null) => None,
                    _ => return Err(field("takedownRef")),
                },
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_strictly() {
        let did = Did::parse("did:plc:abcdefghijklmnopqrstuvwx").unwrap();
        let cid = super::super::raw_cid(&[7; 32]);
        let events = [
            BlobEvent::Uploaded { did: did.clone(), cid, mime_type: "image/png".into(), size: 42 },
            BlobEvent::Expired { did: did.clone(), cid },
            BlobEvent::TakedownUpdated { did: did.clone(), cid, takedown_ref: Some("mod-1".into()) },
            BlobEvent::TakedownUpdated { did, cid, takedown_ref: None },
        ];
        for e in events {
            let p = e.to_payload().unwrap();
            assert_eq!(BlobEvent::from_payload(e.event_type(), 1, &p).unwrap(), e);
            assert!(BlobEvent::from_payload(e.event_type(), 2, &p).is_err());
        }
        let expired = BlobEvent::Expired { did: Did::parse("did:plc:abcdefghijklmnopqrstuvwx").unwrap(), cid }.to_payload().unwrap();
        assert!(BlobEvent::from_payload(BLOB_UPLOADED, 1, &expired).is_err(), "missing fields are errors");
    }
}
