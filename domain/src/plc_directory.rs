//! The embedded PLC directory's rules: what `@did-plc/server` checks before it stores a did:plc
//! operation (`constraints.ts` `assertValidIncomingOp`, `@did-plc/lib` `assureValidNextOp`), and
//! the one event an accepted operation becomes.
//!
//! Stream `plc/<did>` (never public): `plc.operation {did, operation, cid, createdAt,
//! nullifies}`, where `operation` is the DAG-CBOR of the signed op exactly as accepted, `createdAt`
//! the acceptance time in unix microseconds, and `nullifies` the CIDs of the later operations a
//! recovery operation (signed by a more powerful rotation key within 72 hours) overrides.
//!
//! Checked as the reference checks: the operation's shape and limits (4,000 bytes of DAG-CBOR, at
//! most 10 aliases / rotation keys / services / verification methods, …); for a first operation,
//! the signature by one of its own rotation keys and the DID = hash of the op with `prev` null;
//! for a later one, `prev` names a held operation that is not a tombstone, the signature is by a
//! rotation key of that operation, and forking history (nullifying) needs a key ranked above the
//! one that signed the first nullified op, a later timestamp and the 72-hour window. Stricter
//! than the reference in one way: unknown fields in an operation are refused (they would be
//! signed and hashed but never shown). Not enforced: the reference's per-DID rate limits.
//!
//! Pure: the caller passes the operations held and the time in.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::cbor::{self, Cid, Ipld};
use crate::crypto::PublicKey;
use crate::plc::{SignedOp, UnsignedOp};

pub const OPERATION: &str = "plc.operation";
pub const EVENT_TYPES: [&str; 1] = [OPERATION];
pub const EVENT_VERSION: i32 = 1;

/// Largest operation the reference directory accepts, in bytes of DAG-CBOR.
pub const MAX_OP_BYTES: usize = 4000;
const MAX_AKA_ENTRIES: usize = 10;
/// A handle (253) plus `at://`.
const MAX_AKA_LENGTH: usize = 258;
const MAX_ROTATION_ENTRIES: usize = 10;
const MAX_SERVICE_ENTRIES: usize = 10;
const MAX_SERVICE_TYPE_LENGTH: usize = 256;
const MAX_SERVICE_ENDPOINT_LENGTH: usize = 512;
const MAX_VERIFICATION_METHOD_ENTRIES: usize = 10;
const MAX_ID_LENGTH: usize = 32;
const MAX_DID_KEY_LENGTH: usize = 256;
/// How long a more powerful rotation key may rewrite history (72 hours), in microseconds.
pub const RECOVERY_WINDOW_MICROS: i64 = 72 * 3600 * 1_000_000;

/// The stream of a DID's operations.
pub fn stream_name(did: &str) -> String {
    format!("plc/{did}")
}

/// Why the directory refuses an operation. The messages are the reference's, which answers each
/// with 400 `{message}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("Operation too large ({MAX_OP_BYTES} bytes maximum in cbor encoding)")]
    TooLarge,
    #[error("Not a valid operation: {0}")]
    NotValid(String),
    /// One of the limits of `assertValidIncomingOp` (the message says which).
    #[error("{0}")]
    Limit(String),
    #[error("Operations not correctly ordered")]
    Misordered,
    #[error("Recovery operation occurred outside of the allowed 72 hr recovery window. Time lapsed: {0}")]
    LateRecovery(i64),
    #[error("Hash of genesis operation does not match DID identifier: {0}")]
    GenesisHash(String),
    #[error("Improperly formatted operation, expected null prev on create")]
    PrevOnCreate,
    #[error("Invalid signature on op: {0}")]
    InvalidSignature(String),
}

/// An operation the directory holds for a DID, in acceptance order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedOp {
    pub op: SignedOp,
    pub cid: Cid,
    /// Unix microseconds at which it was accepted.
    pub created_at: i64,
    /// Overridden by a later recovery operation: kept for the audit log, out of the history.
    pub nullified: bool,
}

/// An accepted operation: the event of `plc/<did>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationAccepted {
    pub did: String,
    pub op: SignedOp,
    pub cid: Cid,
    pub created_at: i64,
    /// Held operations this one nullifies (a recovery), oldest first.
    pub nullifies: Vec<Cid>,
}

/// Parses a submitted operation and checks the reference's shape and limits
/// (`assertValidIncomingOp`). Only `plc_operation` and `plc_tombstone` may be submitted.
pub fn check_incoming(v: &Value) -> Result<SignedOp, DirectoryError> {
    let not_valid = |why: String| DirectoryError::NotValid(format!("{why}: {v}"));
    let op = SignedOp::from_json(v).map_err(|e| not_valid(e.to_string()))?;
    if matches!(op.op, UnsignedOp::LegacyCreate { .. }) {
        return Err(not_valid("a legacy `create` operation cannot be submitted".into()));
    }
    let size = op.to_cbor().map_err(|e| not_valid(e.to_string()))?.len();
    if size > MAX_OP_BYTES {
        return Err(DirectoryError::TooLarge);
    }
    let UnsignedOp::Operation { data, .. } = &op.op else {
        return Ok(op);
    };
    let limit = |m: String| Err(DirectoryError::Limit(m));
    if data.also_known_as.len() > MAX_AKA_ENTRIES {
        return limit(format!("To many alsoKnownAs entries (max {MAX_AKA_ENTRIES})"));
    }
    let mut seen = BTreeSet::new();
    for aka in &data.also_known_as {
        if aka.len() > MAX_AKA_LENGTH {
            return limit(format!("alsoKnownAs entry too long (max {MAX_AKA_LENGTH}): {aka}"));
        }
        if !seen.insert(aka.as_str()) {
            return limit(format!("duplicate alsoKnownAs entry: {aka}"));
        }
    }
    if data.rotation_keys.len() > MAX_ROTATION_ENTRIES {
        return limit(format!("Too many rotationKey entries (max {MAX_ROTATION_ENTRIES})"));
    }
    for key in &data.rotation_keys {
        if PublicKey::from_did_key(key).is_err() {
            return limit(format!("Invalid rotationKey: {key}"));
        }
    }
    if data.services.len() > MAX_SERVICE_ENTRIES {
        return limit(format!("To many service entries (max {MAX_SERVICE_ENTRIES})"));
    }
    for (id, service) in &data.services {
        if id.len() > MAX_ID_LENGTH {
            return limit(format!("Service id too long (max {MAX_ID_LENGTH}): {id}"));
        }
        if service.kind.len() > MAX_SERVICE_TYPE_LENGTH {
            return limit(format!("Service type too long (max {MAX_SERVICE_TYPE_LENGTH})"));
        }
        if service.endpoint.len() > MAX_SERVICE_ENDPOINT_LENGTH {
            return limit(format!("Service endpoint too long (max {MAX_SERVICE_ENDPOINT_LENGTH})"));
        }
    }
    if data.verification_methods.len() > MAX_VERIFICATION_METHOD_ENTRIES {
        return limit(format!(
            "Too many Verification Method entries (max {MAX_VERIFICATION_METHOD_ENTRIES})"
        ));
    }
    for (id, key) in &data.verification_methods {
        if id.len() > MAX_ID_LENGTH {
            return limit(format!("Verification Method id too long (max {MAX_ID_LENGTH}): {id}"));
        }
        if key.len() > MAX_DID_KEY_LENGTH {
            return limit(format!("Verification Method key too long (max {MAX_DID_KEY_LENGTH}): {key}"));
        }
        let syntactic = key
            .strip_prefix("did:key:z")
            .is_some_and(|b58| bs58::decode(b58).into_vec().is_ok_and(|b| !b.is_empty()));
        if !syntactic {
            return limit(format!("Invalid verificationMethod key: {key}"));
        }
    }
    Ok(op)
}

/// The rotation key of `keys` that signed `op` (reference `assureValidSig`).
fn signer<'k>(keys: &'k [String], op: &SignedOp) -> Result<&'k str, DirectoryError> {
    let invalid = || DirectoryError::InvalidSignature(op.to_json().to_string());
    let index = op.verify(keys).map_err(|_| invalid())?;
    keys.get(index).map(String::as_str).ok_or_else(invalid)
}

/// Decides whether `proposed` may follow the operations held for `did` (`ops`: every operation
/// accepted for it, nullified ones included, in acceptance order) at `now` (unix microseconds):
/// the reference's `assureValidNextOp`. The result is the event to append.
pub fn decide_operation(
    did: &str,
    ops: &[IndexedOp],
    proposed: SignedOp,
    now: i64,
) -> Result<OperationAccepted, DirectoryError> {
    let cid = proposed.cid().map_err(|e| DirectoryError::NotValid(e.to_string()))?;
    let accepted = |nullifies: Vec<Cid>, op: SignedOp| OperationAccepted {
        did: did.to_owned(),
        op,
        cid,
        created_at: now,
        nullifies,
    };
    let history: Vec<&IndexedOp> = ops.iter().filter(|o| !o.nullified).collect();
    if history.is_empty() {
        // A first operation (`assureValidCreationOp`).
        let Some(data) = proposed.op.data() else {
            return Err(DirectoryError::Misordered);
        };
        signer(&data.rotation_keys, &proposed)?;
        let expected = proposed.hash_did().map_err(|e| DirectoryError::NotValid(e.to_string()))?;
        if expected != did {
            return Err(DirectoryError::GenesisHash(expected));
        }
        if proposed.op.prev().is_some() {
            return Err(DirectoryError::PrevOnCreate);
        }
        return Ok(accepted(vec![], proposed));
    }
    let prev = proposed.op.prev().ok_or(DirectoryError::Misordered)?;
    let index_of_prev = history.iter().position(|o| &o.cid == prev).ok_or(DirectoryError::Misordered)?;
    let (kept, nullified) = history.split_at(index_of_prev + 1);
    let last = kept.last().ok_or(DirectoryError::Misordered)?;
    let last_data = last.op.op.data().ok_or(DirectoryError::Misordered)?;
    let Some(first_nullified) = nullified.first() else {
        signer(&last_data.rotation_keys, &proposed)?;
        return Ok(accepted(vec![], proposed));
    };
    // Forking history: only a key ranked above the one that signed the first nullified op.
    let disputed = signer(&last_data.rotation_keys, &first_nullified.op)?;
    let rank = last_data.rotation_keys.iter().position(|k| k == disputed).unwrap_or(0);
    let stronger = &last_data.rotation_keys[..rank];
    signer(stronger, &proposed)?;
    if history.last().is_some_and(|o| now <= o.created_at) {
        return Err(DirectoryError::Misordered);
    }
    let lapsed = now - first_nullified.created_at;
    if lapsed > RECOVERY_WINDOW_MICROS {
        return Err(DirectoryError::LateRecovery(lapsed / 1000));
    }
    Ok(accepted(nullified.iter().map(|o| o.cid).collect(), proposed))
}

/// Applies an accepted operation to the operations held for its DID.
pub fn evolve(mut ops: Vec<IndexedOp>, e: &OperationAccepted) -> Vec<IndexedOp> {
    for o in ops.iter_mut() {
        if e.nullifies.contains(&o.cid) {
            o.nullified = true;
        }
    }
    ops.push(IndexedOp { op: e.op.clone(), cid: e.cid, created_at: e.created_at, nullified: false });
    ops
}

/// `GET /{did}/data` (reference `opToData`): the DID's state after `op`, or `None` for a
/// tombstone.
pub fn data_json(did: &str, op: &SignedOp) -> Option<Value> {
    let data = op.op.data()?;
    Some(json!({
        "did": did,
        "verificationMethods": data.verification_methods,
        "rotationKeys": data.rotation_keys,
        "alsoKnownAs": data.also_known_as,
        "services": data.services.iter().map(|(id, s)| (id.clone(), json!({"type": s.kind, "endpoint": s.endpoint}))).collect::<BTreeMap<_, _>>(),
    }))
}

/// One entry of `GET /{did}/log/audit`: `{did, operation, cid, nullified, createdAt}`
/// (`createdAt` ISO 8601 with milliseconds, as the reference's `toISOString`).
pub fn audit_entry_json(did: &str, op: &IndexedOp) -> Value {
    let created_at = crate::syntax::Datetime::from_unix_micros(op.created_at).map(|d| d.as_str().to_owned());
    json!({
        "did": did,
        "operation": op.op.to_json(),
        "cid": op.cid.to_string(),
        "nullified": op.nullified,
        "createdAt": created_at,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum PlcEventError {
    #[error("unknown PLC directory event {0} v{1}")]
    Unknown(String, i32),
    #[error(transparent)]
    Cbor(#[from] cbor::CborError),
    #[error("payload field `{0}` missing or malformed")]
    Field(&'static str),
}

impl OperationAccepted {
    pub fn event_type(&self) -> &'static str {
        OPERATION
    }

    /// The canonical DAG-CBOR payload.
    pub fn to_payload(&self) -> Result<Vec<u8>, PlcEventError> {
        let mut m = BTreeMap::new();
        m.insert("did".to_owned(), Ipld::String(self.did.clone()));
        m.insert("operation".to_owned(), Ipld::Bytes(self.op.to_cbor().map_err(|_| PlcEventError::Field("operation"))?));
        m.insert("cid".to_owned(), Ipld::String(self.cid.to_string()));
        m.insert("createdAt".to_owned(), Ipld::Integer(i128::from(self.created_at)));
        m.insert(
            "nullifies".to_owned(),
            Ipld::List(self.nullifies.iter().map(|c| Ipld::String(c.to_string())).collect()),
        );
        Ok(cbor::encode(&Ipld::Map(m))?)
    }

    pub fn from_payload(event_type: &str, version: i32, payload: &[u8]) -> Result<OperationAccepted, PlcEventError> {
        if event_type != OPERATION || version != EVENT_VERSION {
            return Err(PlcEventError::Unknown(event_type.to_owned(), version));
        }
        let Ipld::Map(m) = cbor::decode(payload)? else { return Err(PlcEventError::Field("payload")) };
        if m.len() != 5 {
            return Err(PlcEventError::Field("payload"));
        }
        let cid = |v: Option<&Ipld>, k: &'static str| match v {
            Some(Ipld::String(s)) => Cid::try_from(s.as_str()).map_err(|_| PlcEventError::Field(k)),
            _ => Err(PlcEventError::Field(k)),
        };
        let did = match m.get("did") {
            Some(Ipld::String(s)) => s.clone(),
            _ => return Err(PlcEventError::Field("did")),
        };
        let op = match m.get("operation") {
            Some(Ipld::Bytes(b)) => SignedOp::from_cbor(b).map_err(|_| PlcEventError::Field("operation"))?,
            _ => return Err(PlcEventError::Field("operation")),
        };
        let created_at = match m.get("createdAt") {
            Some(Ipld::Integer(i)) => i64::try_from(*i).map_err(|_| PlcEventError::Field("createdAt"))?,
            _ => return Err(PlcEventError::Field("createdAt")),
        };
        let nullifies = match m.get("nullifies") {
            Some(Ipld::List(l)) => l.iter().map(|c| cid(Some(c), "nullifies")).collect::<Result<_, _>>()?,
            _ => return Err(PlcEventError::Field("nullifies")),
        };
        Ok(OperationAccepted { did, op, cid: cid(m.get("cid"), "cid")?, created_at, nullifies })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::crypto::{KeyType, Keypair};
    use crate::plc::DocumentData;

    const HOUR: i64 = 3600 * 1_000_000;

    fn data(rotation: &[&Keypair], handle: &str) -> DocumentData {
        let signing = Keypair::generate(KeyType::K256);
        DocumentData::atproto(
            rotation.iter().map(|k| k.public_key().to_did_key()).collect(),
            &signing.public_key(),
            handle,
            "https://pds.example",
        )
    }

    /// Accepts `op` at `now` and returns the new list of held operations.
    fn accept(did: &str, ops: Vec<IndexedOp>, op: SignedOp, now: i64) -> Vec<IndexedOp> {
        let e = decide_operation(did, &ops, op, now).unwrap();
        evolve(ops, &e)
    }

    #[test]
    fn genesis_needs_its_own_key_and_its_hash() {
        let (rot, other) = (Keypair::generate(KeyType::K256), Keypair::generate(KeyType::P256));
        let genesis = UnsignedOp::genesis(data(&[&rot], "alice.test")).sign(&rot).unwrap();
        let did = genesis.did().unwrap().into_string();
        assert_eq!(decide_operation(&did, &[], genesis.clone(), 1).unwrap().nullifies, vec![]);
        // Another DID than the op's hash.
        let wrong = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
        assert_eq!(decide_operation(wrong, &[], genesis.clone(), 1), Err(DirectoryError::GenesisHash(did.clone())));
        // Signed by a key that is not one of its rotation keys.
        let forged = UnsignedOp::genesis(data(&[&rot], "alice.test")).sign(&other).unwrap();
        let forged_did = forged.did().unwrap().into_string();
        assert!(matches!(decide_operation(&forged_did, &[], forged, 1), Err(DirectoryError::InvalidSignature(_))));
        // A tombstone or an update cannot come first.
        let tomb = UnsignedOp::tombstone(genesis.cid().unwrap()).sign(&rot).unwrap();
        assert_eq!(decide_operation(&did, &[], tomb, 1), Err(DirectoryError::Misordered));
        let update = UnsignedOp::update(data(&[&rot], "x.test"), genesis.cid().unwrap()).sign(&rot).unwrap();
        let update_did = update.hash_did().unwrap();
        assert_eq!(decide_operation(&update_did, &[], update, 1), Err(DirectoryError::PrevOnCreate));
    }

    #[test]
    fn updates_chain_on_prev_and_the_keys_in_force() {
        let (rot, intruder) = (Keypair::generate(KeyType::K256), Keypair::generate(KeyType::K256));
        let genesis = UnsignedOp::genesis(data(&[&rot], "alice.test")).sign(&rot).unwrap();
        let did = genesis.did().unwrap().into_string();
        let ops = accept(&did, vec![], genesis.clone(), 1);
        let update = UnsignedOp::update(data(&[&rot], "alice2.test"), genesis.cid().unwrap()).sign(&rot).unwrap();
        // Wrong key, unknown prev, no prev.
        let forged = UnsignedOp::update(data(&[&rot], "evil.test"), genesis.cid().unwrap()).sign(&intruder).unwrap();
        assert!(matches!(decide_operation(&did, &ops, forged, 2), Err(DirectoryError::InvalidSignature(_))));
        let dangling = UnsignedOp::update(data(&[&rot], "x.test"), update.cid().unwrap()).sign(&rot).unwrap();
        assert_eq!(decide_operation(&did, &ops, dangling, 2), Err(DirectoryError::Misordered));
        let ops = accept(&did, ops, update.clone(), 2);
        assert_eq!(ops.len(), 2);
        // After a tombstone, nothing.
        let tomb = UnsignedOp::tombstone(update.cid().unwrap()).sign(&rot).unwrap();
        let ops = accept(&did, ops, tomb.clone(), 3);
        let after = UnsignedOp::update(data(&[&rot], "y.test"), tomb.cid().unwrap()).sign(&rot).unwrap();
        assert_eq!(decide_operation(&did, &ops, after, 4), Err(DirectoryError::Misordered));
        assert_eq!(data_json(&did, &tomb), None);
    }

    #[test]
    fn recovery_needs_a_stronger_key_within_72_hours() {
        let (recovery, pds) = (Keypair::generate(KeyType::K256), Keypair::generate(KeyType::K256));
        let genesis = UnsignedOp::genesis(data(&[&recovery, &pds], "alice.test")).sign(&pds).unwrap();
        let did = genesis.did().unwrap().into_string();
        let ops = accept(&did, vec![], genesis.clone(), HOUR);
        // The PDS key (rank 1) moves the account; the recovery key (rank 0) overrides it.
        let hijack = UnsignedOp::update(data(&[&pds], "evil.test"), genesis.cid().unwrap()).sign(&pds).unwrap();
        let ops = accept(&did, ops, hijack.clone(), 2 * HOUR);
        let same_rank = UnsignedOp::update(data(&[&pds], "x.test"), genesis.cid().unwrap()).sign(&pds).unwrap();
        assert!(matches!(decide_operation(&did, &ops, same_rank, 3 * HOUR), Err(DirectoryError::InvalidSignature(_))));
        let fix = UnsignedOp::update(data(&[&recovery], "alice.test"), genesis.cid().unwrap()).sign(&recovery).unwrap();
        let late = decide_operation(&did, &ops, fix.clone(), 2 * HOUR + RECOVERY_WINDOW_MICROS + 1);
        assert!(matches!(late, Err(DirectoryError::LateRecovery(_))), "{late:?}");
        let e = decide_operation(&did, &ops, fix, 3 * HOUR).unwrap();
        assert_eq!(e.nullifies, vec![hijack.cid().unwrap()]);
        let ops = evolve(ops, &e);
        assert_eq!(ops.iter().map(|o| o.nullified).collect::<Vec<_>>(), vec![false, true, false]);
        // The event round-trips.
        let back = OperationAccepted::from_payload(OPERATION, EVENT_VERSION, &e.to_payload().unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn incoming_limits_are_the_references() {
        let rot = Keypair::generate(KeyType::K256);
        let op = |d: DocumentData| UnsignedOp::genesis(d).sign(&rot).unwrap().to_json();
        assert!(check_incoming(&op(data(&[&rot], "alice.test"))).is_ok());
        let mut d = data(&[&rot], "alice.test");
        d.also_known_as.push("at://alice.test".into());
        assert_eq!(
            check_incoming(&op(d)),
            Err(DirectoryError::Limit("duplicate alsoKnownAs entry: at://alice.test".into()))
        );
        let mut d = data(&[&rot], "alice.test");
        d.verification_methods.insert("x".repeat(33), d.signing_key().unwrap().to_owned());
        assert!(matches!(check_incoming(&op(d)), Err(DirectoryError::Limit(m)) if m.starts_with("Verification Method id too long")));
        let mut d = data(&[&rot], "alice.test");
        d.services.get_mut("atproto_pds").unwrap().endpoint = format!("https://{}", "a".repeat(600));
        assert!(matches!(check_incoming(&op(d)), Err(DirectoryError::Limit(m)) if m.starts_with("Service endpoint too long")));
        let mut big = op(data(&[&rot], "alice.test"));
        big["alsoKnownAs"] = json!((0..16).map(|i| format!("at://{i:02}{}", "a".repeat(250))).collect::<Vec<_>>());
        assert_eq!(check_incoming(&big), Err(DirectoryError::TooLarge));
        let mut extra = op(data(&[&rot], "alice.test"));
        extra["extra"] = json!(1);
        assert!(matches!(check_incoming(&extra), Err(DirectoryError::NotValid(_))));
        assert!(matches!(check_incoming(&json!({"type": "plc_operation"})), Err(DirectoryError::NotValid(_))));
    }
}
