//! Repository commit objects (repo v3): `{did, version: 3, data, rev, prev, sig}`.
//!
//! The signature is ECDSA over SHA-256 of the DAG-CBOR of the *unsigned* commit (the same map
//! without `sig`); the commit's CID is that of the *signed* block. `prev` is always present and,
//! when we write it, always `null`. Legacy v2 commits are readable when they carry `rev` and
//! `prev` (which every v2 commit written since `rev` was introduced does).
//!
//! Pure: signing keys and clock readings are passed in.

use std::collections::BTreeMap;

use crate::cbor::{self, CborError, Cid, Ipld, DAG_CBOR};
use crate::crypto::{CryptoError, Keypair, PublicKey};
use crate::syntax::{Did, SyntaxError};
use crate::tid::{Tid, TidClock};

/// The repo format version this PDS writes.
pub const COMMIT_VERSION: u8 = 3;

const SHA2_256: u64 = 0x12;

/// What is wrong with a commit block or a commit chain.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommitError {
    #[error("commit is not valid DAG-CBOR: {0}")]
    Cbor(CborError),
    #[error("commit is not a map")]
    NotAMap,
    #[error("commit is missing field `{0}`")]
    MissingField(&'static str),
    #[error("commit has unexpected field `{0}`")]
    UnexpectedField(String),
    #[error("commit field `{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("unsupported commit version {0} (expected 3, or legacy 2)")]
    UnsupportedVersion(i128),
    #[error("commit did: {0}")]
    InvalidDid(SyntaxError),
    #[error("commit rev: {0}")]
    InvalidRev(SyntaxError),
    #[error("commit `{0}` link is not CIDv1 dag-cbor sha2-256")]
    NonBlessedLink(&'static str),
    #[error("commit signature: {0}")]
    Signature(CryptoError),
    #[error("rev {rev} is not after the previous commit's rev {prev}")]
    RevNotIncreasing { prev: Tid, rev: Tid },
}

/// A commit before signing (version 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsignedCommit {
    pub did: Did,
    /// Root CID of the repo's MST.
    pub data: Cid,
    pub rev: Tid,
    /// Always `None` for commits we write (kept for v2 compatibility).
    pub prev: Option<Cid>,
}

/// A signed commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub did: Did,
    /// 3, or 2 for a legacy commit read from elsewhere.
    pub version: u8,
    pub data: Cid,
    pub rev: Tid,
    pub prev: Option<Cid>,
    pub sig: Vec<u8>,
}

/// The `rev` for a new commit: `max(now, prev + 1)` as a TID, so it is strictly greater than the
/// previous commit's rev even if the wall clock went backwards.
pub fn next_rev(clock: &mut TidClock, now_micros: u64, prev_rev: Option<&Tid>) -> Tid {
    clock.next_after(now_micros, prev_rev)
}

/// Checks that `rev` strictly follows the previous commit's rev.
pub fn check_rev_follows(prev_rev: Option<&Tid>, rev: &Tid) -> Result<(), CommitError> {
    match prev_rev {
        Some(prev) if rev <= prev => Err(CommitError::RevNotIncreasing {
            prev: *prev,
            rev: *rev,
        }),
        _ => Ok(()),
    }
}

fn is_blessed(cid: &Cid) -> bool {
    cid.version() == cid::Version::V1
        && cid.codec() == DAG_CBOR
        && cid.hash().code() == SHA2_256
        && cid.hash().size() == 32
}

fn unsigned_map(
    did: &Did,
    version: u8,
    data: &Cid,
    rev: &Tid,
    prev: &Option<Cid>,
) -> BTreeMap<String, Ipld> {
    let mut m = BTreeMap::new();
    m.insert("did".to_string(), Ipld::String(did.as_str().to_string()));
    m.insert("version".to_string(), Ipld::Integer(i128::from(version)));
    m.insert("data".to_string(), Ipld::Link(*data));
    m.insert("rev".to_string(), Ipld::String(rev.to_string()));
    m.insert("prev".to_string(), prev.map_or(Ipld::Null, Ipld::Link));
    m
}

impl UnsignedCommit {
    /// A v3 commit of `data` at `rev`, with `prev: null`.
    pub fn new(did: Did, data: Cid, rev: Tid) -> UnsignedCommit {
        UnsignedCommit {
            did,
            data,
            rev,
            prev: None,
        }
    }

    /// The bytes that get signed: DAG-CBOR of the commit without `sig`.
    pub fn bytes(&self) -> Result<Vec<u8>, CommitError> {
        let map = unsigned_map(&self.did, COMMIT_VERSION, &self.data, &self.rev, &self.prev);
        cbor::encode(&Ipld::Map(map)).map_err(CommitError::Cbor)
    }

    /// Signs with the account's signing key.
    pub fn sign(self, key: &Keypair) -> Result<Commit, CommitError> {
        let sig = key.sign(&self.bytes()?).to_vec();
        Ok(Commit {
            did: self.did,
            version: COMMIT_VERSION,
            data: self.data,
            rev: self.rev,
            prev: self.prev,
            sig,
        })
    }
}

impl Commit {
    /// The unsigned commit these fields came from (for signing again, e.g. after key rotation).
    pub fn unsigned(&self) -> UnsignedCommit {
        UnsignedCommit {
            did: self.did.clone(),
            data: self.data,
            rev: self.rev,
            prev: self.prev,
        }
    }

    /// The bytes the signature covers.
    pub fn unsigned_bytes(&self) -> Result<Vec<u8>, CommitError> {
        let map = unsigned_map(&self.did, self.version, &self.data, &self.rev, &self.prev);
        cbor::encode(&Ipld::Map(map)).map_err(CommitError::Cbor)
    }

    /// Checks the signature against the account's current signing key.
    pub fn verify(&self, key: &PublicKey) -> Result<(), CommitError> {
        key.verify(&self.unsigned_bytes()?, &self.sig)
            .map_err(CommitError::Signature)
    }

    /// The signed block (canonical key order `did, rev, sig, data, prev, version`).
    pub fn encode(&self) -> Result<Vec<u8>, CommitError> {
        let mut map = unsigned_map(&self.did, self.version, &self.data, &self.rev, &self.prev);
        map.insert("sig".to_string(), Ipld::Bytes(self.sig.clone()));
        cbor::encode(&Ipld::Map(map)).map_err(CommitError::Cbor)
    }

    /// The signed block and its CID (the repo head).
    pub fn encode_with_cid(&self) -> Result<(Cid, Vec<u8>), CommitError> {
        let bytes = self.encode()?;
        Ok((cbor::cid_cbor(&bytes), bytes))
    }

    /// Strictly decodes a commit block: exactly the six fields, `version` 3 (or legacy 2),
    /// a valid DID, a valid TID `rev`, blessed `data`/`prev` links, `sig` as bytes.
    pub fn decode(bytes: &[u8]) -> Result<Commit, CommitError> {
        let Ipld::Map(mut m) = cbor::decode(bytes).map_err(CommitError::Cbor)? else {
            return Err(CommitError::NotAMap);
        };
        let mut take =
            |field: &'static str| m.remove(field).ok_or(CommitError::MissingField(field));
        let version = match take("version")? {
            Ipld::Integer(v @ (2 | 3)) => v as u8,
            Ipld::Integer(v) => return Err(CommitError::UnsupportedVersion(v)),
            _ => {
                return Err(CommitError::WrongType {
                    field: "version",
                    expected: "an integer",
                })
            }
        };
        let did = match take("did")? {
            Ipld::String(s) => Did::parse(&s).map_err(CommitError::InvalidDid)?,
            _ => {
                return Err(CommitError::WrongType {
                    field: "did",
                    expected: "a string",
                })
            }
        };
        let rev = match take("rev")? {
            Ipld::String(s) => Tid::parse(&s).map_err(CommitError::InvalidRev)?,
            _ => {
                return Err(CommitError::WrongType {
                    field: "rev",
                    expected: "a TID string",
                })
            }
        };
        let data = match take("data")? {
            Ipld::Link(c) if is_blessed(&c) => c,
            Ipld::Link(_) => return Err(CommitError::NonBlessedLink("data")),
            _ => {
                return Err(CommitError::WrongType {
                    field: "data",
                    expected: "a link",
                })
            }
        };
        let prev = match take("prev")? {
            Ipld::Null => None,
            Ipld::Link(c) if is_blessed(&c) => Some(c),
            Ipld::Link(_) => return Err(CommitError::NonBlessedLink("prev")),
            _ => {
                return Err(CommitError::WrongType {
                    field: "prev",
                    expected: "a link or null",
                })
            }
        };
        let sig = match take("sig")? {
            Ipld::Bytes(b) => b,
            _ => {
                return Err(CommitError::WrongType {
                    field: "sig",
                    expected: "bytes",
                })
            }
        };
        if let Some(extra) = m.keys().next() {
            return Err(CommitError::UnexpectedField(extra.clone()));
        }
        Ok(Commit {
            did,
            version,
            data,
            rev,
            prev,
            sig,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::crypto::KeyType;

    const EMPTY_MST: &str = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";

    fn unsigned(rev: &str) -> UnsignedCommit {
        UnsignedCommit::new(
            Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap(),
            Cid::from_str(EMPTY_MST).unwrap(),
            Tid::parse(rev).unwrap(),
        )
    }

    #[track_caller]
    fn check_round_trip(kt: KeyType) {
        let key = Keypair::generate(kt);
        let commit = unsigned("3jzfcijpj2z2a").sign(&key).unwrap();
        commit.verify(&key.public_key()).unwrap();
        let (cid, bytes) = commit.encode_with_cid().unwrap();
        assert_eq!(cid, cbor::cid_cbor(&bytes));
        let back = Commit::decode(&bytes).unwrap();
        assert_eq!(back, commit);
        back.verify(&key.public_key()).unwrap();
        // Another key does not verify it.
        let other = Keypair::generate(kt);
        assert!(matches!(
            commit.verify(&other.public_key()),
            Err(CommitError::Signature(_))
        ));
    }

    #[test]
    fn sign_verify_round_trip() {
        let kinds = [KeyType::K256, KeyType::P256];
        for kt in kinds {
            check_round_trip(kt);
        }
        assert_eq!(kinds.len(), 2);
    }

    #[test]
    fn tampered_commit_fails_verification() {
        let key = Keypair::generate(KeyType::K256);
        let commit = unsigned("3jzfcijpj2z2a").sign(&key).unwrap();
        let pk = key.public_key();
        let mut cases = 0;
        let mut tampered = Vec::new();
        let mut c = commit.clone();
        c.data = cbor::cid_cbor(b"other tree");
        tampered.push(c);
        let mut c = commit.clone();
        c.rev = Tid::parse("3jzfcijpj2z2b").unwrap();
        tampered.push(c);
        let mut c = commit.clone();
        c.did = Did::parse("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
        tampered.push(c);
        let mut c = commit.clone();
        c.sig[10] ^= 1;
        tampered.push(c);
        for c in &tampered {
            assert!(c.verify(&pk).is_err(), "{c:?}");
            // Also after an encode/decode trip.
            let back = Commit::decode(&c.encode().unwrap()).unwrap();
            assert!(back.verify(&pk).is_err());
            cases += 1;
        }
        assert_eq!(cases, 4);
    }

    #[test]
    fn canonical_key_order() {
        let key = Keypair::generate(KeyType::K256);
        let bytes = unsigned("3jzfcijpj2z2a")
            .sign(&key)
            .unwrap()
            .encode()
            .unwrap();
        // Text-string map keys in the order they appear in the block.
        let keys = ["did", "rev", "sig", "data", "prev", "version"];
        let mut pos = 0;
        for k in keys {
            let mut needle = vec![0x60 | k.len() as u8];
            needle.extend_from_slice(k.as_bytes());
            let at = bytes[pos..]
                .windows(needle.len())
                .position(|w| w == needle.as_slice());
            let at = at.unwrap_or_else(|| panic!("key {k} not found after offset {pos}"));
            pos += at + needle.len();
        }
        assert_eq!(bytes[0], 0xa6, "a map of six entries");
        assert_eq!(keys.len(), 6);
    }

    fn map_of(commit: &Commit) -> BTreeMap<String, Ipld> {
        let Ipld::Map(m) = cbor::decode(&commit.encode().unwrap()).unwrap() else {
            panic!("not a map")
        };
        m
    }

    #[track_caller]
    fn check_rejected(m: &BTreeMap<String, Ipld>, expected: CommitError) {
        let bytes = cbor::encode(&Ipld::Map(m.clone())).unwrap();
        assert_eq!(Commit::decode(&bytes), Err(expected));
    }

    #[test]
    fn strict_decoding() {
        let key = Keypair::generate(KeyType::K256);
        let good = map_of(&unsigned("3jzfcijpj2z2a").sign(&key).unwrap());
        let with = |k: &str, v: Ipld| {
            let mut m = good.clone();
            m.insert(k.to_string(), v);
            m
        };
        let without = |k: &str| {
            let mut m = good.clone();
            m.remove(k);
            m
        };
        let raw_link = Cid::new_v1(0x55, *Cid::from_str(EMPTY_MST).unwrap().hash());
        let cases: Vec<(BTreeMap<String, Ipld>, CommitError)> = vec![
            (
                with("version", Ipld::Integer(4)),
                CommitError::UnsupportedVersion(4),
            ),
            (
                with("version", Ipld::Integer(1)),
                CommitError::UnsupportedVersion(1),
            ),
            (
                with("version", Ipld::String("3".into())),
                CommitError::WrongType {
                    field: "version",
                    expected: "an integer",
                },
            ),
            (without("prev"), CommitError::MissingField("prev")),
            (without("sig"), CommitError::MissingField("sig")),
            (without("rev"), CommitError::MissingField("rev")),
            (without("did"), CommitError::MissingField("did")),
            (without("data"), CommitError::MissingField("data")),
            (
                with("extra", Ipld::Null),
                CommitError::UnexpectedField("extra".into()),
            ),
            (
                with("data", Ipld::Link(raw_link)),
                CommitError::NonBlessedLink("data"),
            ),
            (
                with("data", Ipld::Null),
                CommitError::WrongType {
                    field: "data",
                    expected: "a link",
                },
            ),
            (
                with("sig", Ipld::String("x".into())),
                CommitError::WrongType {
                    field: "sig",
                    expected: "bytes",
                },
            ),
        ];
        let n = cases.len();
        for (m, e) in cases {
            check_rejected(&m, e);
        }
        assert_eq!(n, 12);
        // Bad did / rev: the syntax error is passed on.
        let bad_did = with("did", Ipld::String("did:PLC:x".into()));
        let bytes = cbor::encode(&Ipld::Map(bad_did)).unwrap();
        assert!(matches!(
            Commit::decode(&bytes),
            Err(CommitError::InvalidDid(_))
        ));
        let bad_rev = with("rev", Ipld::String("1111111111111".into()));
        let bytes = cbor::encode(&Ipld::Map(bad_rev)).unwrap();
        assert!(matches!(
            Commit::decode(&bytes),
            Err(CommitError::InvalidRev(_))
        ));
        assert!(matches!(
            Commit::decode(&[0xa0]),
            Err(CommitError::MissingField(_))
        ));
        assert!(matches!(Commit::decode(&[0x80]), Err(CommitError::NotAMap)));
        assert!(matches!(
            Commit::decode(&[0xff, 0x00]),
            Err(CommitError::Cbor(_))
        ));
    }

    #[test]
    fn legacy_v2_is_readable_and_verifiable() {
        let key = Keypair::generate(KeyType::K256);
        let mut v2 = unsigned("3jzfcijpj2z2a").sign(&key).unwrap();
        v2.version = 2;
        v2.prev = Some(cbor::cid_cbor(b"previous commit"));
        v2.sig = key.sign(&v2.unsigned_bytes().unwrap()).to_vec();
        let back = Commit::decode(&v2.encode().unwrap()).unwrap();
        assert_eq!(back.version, 2);
        back.verify(&key.public_key()).unwrap();
    }

    #[test]
    fn rev_strictly_increases() {
        let mut clock = TidClock::new(7);
        let first = next_rev(&mut clock, 1_700_000_000_000_000, None);
        // The wall clock went backwards: still after `first`.
        let second = next_rev(&mut clock, 1_600_000_000_000_000, Some(&first));
        assert!(second > first);
        check_rev_follows(Some(&first), &second).unwrap();
        assert_eq!(
            check_rev_follows(Some(&second), &first),
            Err(CommitError::RevNotIncreasing {
                prev: second,
                rev: first
            })
        );
        assert!(check_rev_follows(Some(&first), &first).is_err());
        check_rev_follows(None, &first).unwrap();
        // A previous rev written by a clock far ahead of ours.
        let future = Tid::parse("7zzzzzzzzzzzz").unwrap();
        assert!(next_rev(&mut clock, 1_700_000_000_000_000, Some(&future)) > future);
    }
}
