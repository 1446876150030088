//! Reserved signing keys (`com.atproto.server.reserveSigningKey`): a key made before its account,
//! so a DID document can name it first. Stream `reserved_key/<subject>` (the DID it is reserved
//! for, or the key's own did:key when none is given); one private event, `signing_key.reserved`,
//! holding the public did:key and the private key sealed with the key-encryption key (the subject
//! as associated data) — never the key in the clear. A subject's first reservation is its
//! reservation: asking again gives the same key.

use std::collections::BTreeMap;

use crate::cbor::{self, CborError, Ipld};

/// Event type of the one event of a `reserved_key/<subject>` stream.
pub const SIGNING_KEY_RESERVED: &str = "signing_key.reserved";

/// The stream of `subject`.
pub fn stream_name(subject: &str) -> String {
    format!("reserved_key/{subject}")
}

/// A reserved key: its did:key and its sealed private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub key_did: String,
    pub sealed: Vec<u8>,
}

/// Why a stored reservation cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReservedError {
    #[error("unknown event {0} v{1}")]
    Unknown(String, u32),
    #[error("signing_key.reserved payload: {0}")]
    Payload(String),
}

impl Reserved {
    pub fn to_payload(&self) -> Result<Vec<u8>, CborError> {
        let mut m = BTreeMap::new();
        m.insert("keyDid".to_string(), Ipld::String(self.key_did.clone()));
        m.insert("sealed".to_string(), Ipld::Bytes(self.sealed.clone()));
        cbor::encode(&Ipld::Map(m))
    }

    pub fn from_payload(event_type: &str, version: u32, bytes: &[u8]) -> Result<Reserved, ReservedError> {
        if (event_type, version) != (SIGNING_KEY_RESERVED, 1) {
            return Err(ReservedError::Unknown(event_type.to_string(), version));
        }
        let bad = |m: &str| ReservedError::Payload(m.to_string());
        let Ok(Ipld::Map(mut m)) = cbor::decode(bytes) else { return Err(bad("not a DAG-CBOR map")) };
        let key_did = match m.remove("keyDid") {
            Some(Ipld::String(s)) => s,
            _ => return Err(bad("keyDid must be a string")),
        };
        let sealed = match m.remove("sealed") {
            Some(Ipld::Bytes(b)) => b,
            _ => return Err(bad("sealed must be bytes")),
        };
        if !m.is_empty() {
            return Err(bad("unexpected field"));
        }
        Ok(Reserved { key_did, sealed })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_and_strictness() {
        let r = Reserved { key_did: "did:key:zQ3sh".into(), sealed: vec![1, 2, 3] };
        let p = r.to_payload().unwrap();
        assert_eq!(Reserved::from_payload(SIGNING_KEY_RESERVED, 1, &p).unwrap(), r);
        assert!(Reserved::from_payload(SIGNING_KEY_RESERVED, 2, &p).is_err());
        assert!(Reserved::from_payload("other", 1, &p).is_err());
        assert!(Reserved::from_payload(SIGNING_KEY_RESERVED, 1, &[0xa0]).is_err());
    }
}
