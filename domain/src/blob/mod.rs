//! Blobs: the pure rules. Their CIDs (CIDv1, raw codec, sha2-256 of the stored bytes), MIME
//! sniffing (`sniff`), metadata stripping of images (`strip`), the blob refs a record holds
//! (`refs`), the check of a ref against the stored blob (`check_ref`) and the blob stream's
//! events (`events`). No I/O: the bytes are read and stored by `commands` through `blobstore`.

pub mod events;
pub mod sniff;
pub mod strip;

use crate::cbor::{Cid, Ipld, RAW};
use crate::json::{blob_ref_from_ipld, BlobRef};

pub use events::{BlobEvent, BlobEventError, BLOB_EXPIRED, BLOB_TAKEDOWN_UPDATED, BLOB_UPLOADED};

/// The CID of a blob whose bytes have sha2-256 `digest`.
pub fn raw_cid(digest: &[u8; 32]) -> Cid {
    // A 32-byte digest always fits the 64-byte multihash.
    let mh = cid::multihash::Multihash::<64>::wrap(0x12, digest).unwrap_or_else(|_| unreachable!("sha256 digest fits"));
    Cid::new_v1(RAW, mh)
}

/// Every blob ref in a record, at any depth, typed or legacy, each CID once, in document order.
pub fn refs(record: &Ipld) -> Vec<BlobRef> {
    fn walk(v: &Ipld, out: &mut Vec<BlobRef>) {
        match v {
            Ipld::Map(m) => {
                if let Some(r) = blob_ref_from_ipld(v) {
                    if !out.iter().any(|o| o.cid() == r.cid()) {
                        out.push(r);
                    }
                    return;
                }
                m.values().for_each(|x| walk(x, out));
            }
            Ipld::List(l) => l.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(record, &mut out);
    out
}

/// What the server knows of a stored blob, for [`check_ref`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub mime_type: String,
    pub size: u64,
    pub taken_down: bool,
}

/// Why a record may not reference a blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobRefError {
    /// No such blob of this account (never uploaded, expired, deleted or taken down).
    #[error("Could not find blob: {0}")]
    NotFound(Cid),
    #[error("Referenced Mimetype does not match stored blob. Expected: {stored}, Got: {referenced}")]
    MimeMismatch { stored: String, referenced: String },
    #[error("Referenced size does not match stored blob. Expected: {stored}, Got: {referenced}")]
    SizeMismatch { stored: u64, referenced: u64 },
}

/// A record's ref against the stored blob. The lexicon's `accept` / `maxSize` are checked on the
/// ref by record validation; requiring the ref to match the stored MIME type and size makes those
/// checks hold for the stored bytes too.
pub fn check_ref(r: &BlobRef, stored: Option<&StoredBlob>) -> Result<(), BlobRefError> {
    let stored = match stored {
        Some(s) if !s.taken_down => s,
        _ => return Err(BlobRefError::NotFound(*r.cid())),
    };
    if r.mime_type() != stored.mime_type {
        return Err(BlobRefError::MimeMismatch { stored: stored.mime_type.clone(), referenced: r.mime_type().to_owned() });
    }
    if let BlobRef::Typed { size, .. } = r {
        if *size != stored.size {
            return Err(BlobRefError::SizeMismatch { stored: stored.size, referenced: *size });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn blob(cid: Cid, mime: &str, size: i128) -> Ipld {
        Ipld::Map(BTreeMap::from([
            ("$type".to_owned(), Ipld::String("blob".into())),
            ("ref".to_owned(), Ipld::Link(cid)),
            ("mimeType".to_owned(), Ipld::String(mime.into())),
            ("size".to_owned(), Ipld::Integer(size)),
        ]))
    }

    #[test]
    fn raw_cid_is_the_reference_form() {
        let cid = raw_cid(&[0; 32]);
        assert_eq!(cid.codec(), 0x55);
        assert!(cid.to_string().starts_with("bafkrei"));
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(b"hello").into();
        assert_eq!(raw_cid(&digest), crate::cbor::cid_for(RAW, b"hello"));
    }

    #[test]
    fn refs_are_found_at_any_depth_once_each() {
        let a = raw_cid(&[1; 32]);
        let b = raw_cid(&[2; 32]);
        let record = Ipld::Map(BTreeMap::from([
            ("text".to_owned(), Ipld::String("hi".into())),
            (
                "embed".to_owned(),
                Ipld::Map(BTreeMap::from([(
                    "images".to_owned(),
                    Ipld::List(vec![
                        Ipld::Map(BTreeMap::from([("image".to_owned(), blob(a, "image/png", 3))])),
                        Ipld::Map(BTreeMap::from([("image".to_owned(), blob(b, "image/jpeg", 4))])),
                        Ipld::Map(BTreeMap::from([("image".to_owned(), blob(a, "image/png", 3))])),
                    ]),
                )])),
            ),
        ]));
        let found: Vec<Cid> = refs(&record).iter().map(|r| *r.cid()).collect();
        assert_eq!(found, vec![a, b]);
        assert!(refs(&Ipld::String("x".into())).is_empty());
    }

    #[test]
    fn given_a_stored_blob_when_a_ref_differs_then_it_is_refused() {
        let cid = raw_cid(&[3; 32]);
        let stored = StoredBlob { mime_type: "image/png".into(), size: 10, taken_down: false };
        let typed = |mime: &str, size| BlobRef::Typed { cid, mime_type: mime.into(), size };
        let cases: Vec<(BlobRef, Option<StoredBlob>, Result<(), BlobRefError>)> = vec![
            (typed("image/png", 10), Some(stored.clone()), Ok(())),
            (typed("image/png", 10), None, Err(BlobRefError::NotFound(cid))),
            (typed("image/png", 10), Some(StoredBlob { taken_down: true, ..stored.clone() }), Err(BlobRefError::NotFound(cid))),
            (
                typed("image/jpeg", 10),
                Some(stored.clone()),
                Err(BlobRefError::MimeMismatch { stored: "image/png".into(), referenced: "image/jpeg".into() }),
            ),
            (typed("image/png", 11), Some(stored.clone()), Err(BlobRefError::SizeMismatch { stored: 10, referenced: 11 })),
        ];
        for (r, s, want) in cases {
            assert_eq!(check_ref(&r, s.as_ref()), want, "{r:?} {s:?}");
        }
    }
}
