//! DAG-CBOR (atproto's DRISL profile) and CIDs.
//!
//! The data-model value type is `ipld_core::ipld::Ipld`; links are `cid::Cid`.
//! `encode` is canonical (length-first map key order, shortest ints, definite lengths, CID tag 42,
//! no floats); `decode` is strict. Never panics on any input.

pub use cid::Cid;
pub use ipld_core::ipld::Ipld;
use sha2::{Digest, Sha256};

/// Multicodec for DAG-CBOR blocks (records, MST nodes, commits).
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec for raw blocks (blobs).
pub const RAW: u64 = 0x55;
const SHA2_256: u64 = 0x12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CborError {
    #[error("invalid DAG-CBOR: {0}")]
    Invalid(String),
    #[error("floats are not allowed in the atproto data model")]
    Float,
}

/// Canonical DAG-CBOR bytes of a value.
pub fn encode(value: &Ipld) -> Result<Vec<u8>, CborError> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| CborError::Invalid(e.to_string()))
}

/// Strictly decodes one DAG-CBOR value occupying all of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Ipld, CborError> {
    serde_ipld_dagcbor::from_slice(bytes).map_err(|e| CborError::Invalid(e.to_string()))
}

/// CIDv1, sha2-256, with the given codec.
pub fn cid_for(codec: u64, bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    // A 32-byte digest always fits the 64-byte multihash.
    let mh = cid::multihash::Multihash::<64>::wrap(SHA2_256, &digest)
        .unwrap_or_else(|_| unreachable!("sha256 digest fits"));
    Cid::new_v1(codec, mh)
}

/// CID of a DAG-CBOR block.
pub fn cid_cbor(bytes: &[u8]) -> Cid {
    cid_for(DAG_CBOR, bytes)
}

/// Encodes a value and returns its CID with the bytes.
pub fn encode_with_cid(value: &Ipld) -> Result<(Cid, Vec<u8>), CborError> {
    let bytes = encode(value)?;
    Ok((cid_cbor(&bytes), bytes))
}
