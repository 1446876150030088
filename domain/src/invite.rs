//! The invite-code aggregate (stream `invite/<code>`): a code is created by an operator with a
//! number of uses and the account it is for, and each account creation that presents it records
//! one use **in the same append** as the account (expected stream version = the version the use
//! was decided on), so two signups racing for the last use cannot both commit.
//!
//! Events (DAG-CBOR payloads, never public): `invite.created {code, available, forAccount,
//! createdBy, at}`, `invite.used {code, usedBy, at}`. Pure: the caller passes the time in; the
//! only outside contact is the OS random generator in [`generate_code`].

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;
use rand::rngs::OsRng;
use rand::RngCore;

use crate::cbor;

pub const CREATED: &str = "invite.created";
pub const USED: &str = "invite.used";
pub const DISABLED: &str = "invite.disabled";
pub const EVENT_TYPES: [&str; 3] = [CREATED, USED, DISABLED];
pub const EVENT_VERSION: i32 = 1;
/// Most uses one code may grant (the lexicon sets no limit; this keeps the integers sane).
pub const MAX_USE_COUNT: i64 = 1_000_000;
/// Longest code accepted anywhere (generated ones are far shorter).
pub const MAX_CODE_LEN: usize = 256;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The stream of the invite code `code`.
pub fn stream_name(code: &str) -> String {
    format!("invite/{code}")
}

/// A fresh code in the reference's format: the hostname with dots as dashes, then two groups of
/// five lowercase base32 characters (`pds-example-com-abcde-fgh23`).
pub fn generate_code(hostname: &str) -> String {
    let mut bytes = [0u8; 10];
    OsRng.fill_bytes(&mut bytes);
    let mut out = hostname.replace('.', "-");
    for (i, b) in bytes.iter().enumerate() {
        if i % 5 == 0 {
            out.push('-');
        }
        // 32 divides 256: the low five bits are unbiased.
        out.push(char::from(ALPHABET[usize::from(b & 31)]));
    }
    out
}

/// Whether `code` could name a stream: non-empty, at most [`MAX_CODE_LEN`], printable ASCII
/// without spaces or slashes.
pub fn is_valid_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= MAX_CODE_LEN && code.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteEvent {
    Created { code: String, available: i64, for_account: String, created_by: String, at: i64 },
    Used { code: String, used_by: String, at: i64 },
    /// The operator disabled the code (`com.atproto.admin.disableInviteCodes`): no more uses.
    Disabled { code: String, at: i64 },
}

/// One use of a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteUse {
    pub used_by: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub code: String,
    pub available: i64,
    pub for_account: String,
    pub created_by: String,
    pub created_at: i64,
    pub uses: Vec<InviteUse>,
    pub disabled: bool,
}

impl Invite {
    pub fn remaining(&self) -> i64 {
        self.available.saturating_sub(i64::try_from(self.uses.len()).unwrap_or(i64::MAX))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum InviteState {
    #[default]
    Absent,
    Live(Invite),
}

impl InviteState {
    pub fn live(&self) -> Option<&Invite> {
        match self {
            InviteState::Live(i) => Some(i),
            InviteState::Absent => None,
        }
    }
}

/// Applies one event; events that do not fit (never produced by the decide functions) are ignored.
pub fn evolve(state: InviteState, event: &InviteEvent) -> InviteState {
    match (state, event) {
        (InviteState::Absent, InviteEvent::Created { code, available, for_account, created_by, at }) => {
            InviteState::Live(Invite {
                code: code.clone(),
                available: *available,
                for_account: for_account.clone(),
                created_by: created_by.clone(),
                created_at: *at,
                uses: vec![],
                disabled: false,
            })
        }
        (InviteState::Live(mut i), InviteEvent::Disabled { .. }) => {
            i.disabled = true;
            InviteState::Live(i)
        }
        (InviteState::Live(mut i), InviteEvent::Used { used_by, at, .. }) => {
            i.uses.push(InviteUse { used_by: used_by.clone(), at: *at });
            InviteState::Live(i)
        }
        (s, _) => s,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("invite code already exists")]
    AlreadyExists,
    #[error("invalid invite code")]
    InvalidCode,
    #[error("useCount must be between 1 and {MAX_USE_COUNT}")]
    InvalidUseCount,
    /// Unknown or used up (one answer, as the reference: "Provided invite code not available").
    #[error("Provided invite code not available")]
    Unavailable,
    #[error("this account already used this invite code")]
    AlreadyUsedBy,
}

/// `createInviteCode(s)`: a new code with `use_count` uses for `for_account` (a DID or `admin`).
pub fn decide_create(
    state: &InviteState,
    code: &str,
    use_count: i64,
    for_account: &str,
    created_by: &str,
    now: i64,
) -> Result<Vec<InviteEvent>, InviteError> {
    if state.live().is_some() {
        return Err(InviteError::AlreadyExists);
    }
    if !is_valid_code(code) {
        return Err(InviteError::InvalidCode);
    }
    if !(1..=MAX_USE_COUNT).contains(&use_count) {
        return Err(InviteError::InvalidUseCount);
    }
    Ok(vec![InviteEvent::Created {
        code: code.to_owned(),
        available: use_count,
        for_account: for_account.to_owned(),
        created_by: created_by.to_owned(),
        at: now,
    }])
}

/// One use by the account `used_by` being created: refused when the code is unknown or has no
/// use left.
pub fn decide_use(state: &InviteState, used_by: &str, now: i64) -> Result<Vec<InviteEvent>, InviteError> {
    let invite = state.live().ok_or(InviteError::Unavailable)?;
    if invite.disabled || invite.remaining() <= 0 {
        return Err(InviteError::Unavailable);
    }
    if invite.uses.iter().any(|u| u.used_by == used_by) {
        return Err(InviteError::AlreadyUsedBy);
    }
    Ok(vec![InviteEvent::Used { code: invite.code.clone(), used_by: used_by.to_owned(), at: now }])
}

/// `disableInviteCodes`: disables a live code once (an unknown or already disabled code: no
/// event).
pub fn decide_disable(state: &InviteState, now: i64) -> Vec<InviteEvent> {
    match state.live() {
        Some(i) if !i.disabled => vec![InviteEvent::Disabled { code: i.code.clone(), at: now }],
        _ => vec![],
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InviteDecodeError {
    #[error("unknown invite event type {0}")]
    UnknownType(String),
    #[error("unknown version {0}")]
    UnknownVersion(i32),
    #[error(transparent)]
    Cbor(#[from] cbor::CborError),
    #[error("payload: {0}")]
    Field(&'static str),
}

impl InviteEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            InviteEvent::Created { .. } => CREATED,
            InviteEvent::Used { .. } => USED,
            InviteEvent::Disabled { .. } => DISABLED,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            InviteEvent::Created { code, .. } | InviteEvent::Used { code, .. } | InviteEvent::Disabled { code, .. } => code,
        }
    }

    /// The canonical DAG-CBOR payload.
    pub fn to_payload(&self) -> Vec<u8> {
        let s = |v: &str| Ipld::String(v.to_owned());
        let mut m = BTreeMap::new();
        match self {
            InviteEvent::Created { code, available, for_account, created_by, at } => {
                m.insert("code".to_owned(), s(code));
                m.insert("available".to_owned(), Ipld::Integer(i128::from(*available)));
                m.insert("forAccount".to_owned(), s(for_account));
                m.insert("createdBy".to_owned(), s(created_by));
                m.insert("at".to_owned(), Ipld::Integer(i128::from(*at)));
            }
            InviteEvent::Used { code, used_by, at } => {
                m.insert("code".to_owned(), s(code));
                m.insert("usedBy".to_owned(), s(used_by));
                m.insert("at".to_owned(), Ipld::Integer(i128::from(*at)));
            }
            InviteEvent::Disabled { code, at } => {
                m.insert("code".to_owned(), s(code));
                m.insert("at".to_owned(), Ipld::Integer(i128::from(*at)));
            }
        }
        // Strings and integers only: the encoder cannot fail on these.
        cbor::encode(&Ipld::Map(m)).unwrap_or_default()
    }

    pub fn from_payload(event_type: &str, version: i32, payload: &[u8]) -> Result<InviteEvent, InviteDecodeError> {
        if !EVENT_TYPES.contains(&event_type) {
            return Err(InviteDecodeError::UnknownType(event_type.to_owned()));
        }
        if version != EVENT_VERSION {
            return Err(InviteDecodeError::UnknownVersion(version));
        }
        let Ipld::Map(m) = cbor::decode(payload)? else { return Err(InviteDecodeError::Field("not a map")) };
        let text = |k: &'static str| match m.get(k) {
            Some(Ipld::String(v)) => Ok(v.clone()),
            _ => Err(InviteDecodeError::Field(k)),
        };
        let int = |k: &'static str| match m.get(k) {
            Some(Ipld::Integer(v)) => i64::try_from(*v).map_err(|_| InviteDecodeError::Field(k)),
            _ => Err(InviteDecodeError::Field(k)),
        };
        let expected = match event_type {
            CREATED => 5,
            USED => 3,
            _ => 2,
        };
        if m.len() != expected {
            return Err(InviteDecodeError::Field("unexpected fields"));
        }
        Ok(if event_type == CREATED {
            InviteEvent::Created {
                code: text("code")?,
                available: int("available")?,
                for_account: text("forAccount")?,
                created_by: text("createdBy")?,
                at: int("at")?,
            }
        } else if event_type == USED {
            InviteEvent::Used { code: text("code")?, used_by: text("usedBy")?, at: int("at")? }
        } else {
            InviteEvent::Disabled { code: text("code")?, at: int("at")? }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fold(events: &[InviteEvent]) -> InviteState {
        events.iter().fold(InviteState::Absent, evolve)
    }

    #[test]
    fn code_format_is_the_references() {
        let c = generate_code("pds.example.com");
        let rest = c.strip_prefix("pds-example-com-").unwrap();
        let (a, b) = rest.split_once('-').unwrap();
        assert_eq!((a.len(), b.len()), (5, 5), "{c}");
        assert!(rest.bytes().all(|x| x == b'-' || ALPHABET.contains(&x)), "{c}");
        assert!(is_valid_code(&c));
        assert_ne!(generate_code("h"), generate_code("h"));
    }

    #[test]
    fn uses_run_out() {
        let created = decide_create(&InviteState::Absent, "h-aaaaa-bbbbb", 2, "admin", "admin", 1).unwrap();
        let s = fold(&created);
        assert_eq!(decide_create(&s, "h-aaaaa-bbbbb", 1, "admin", "admin", 2), Err(InviteError::AlreadyExists));
        let u1 = decide_use(&s, "did:plc:a", 3).unwrap();
        let s = fold(&[created.clone(), u1.clone()].concat());
        assert_eq!(decide_use(&s, "did:plc:a", 4), Err(InviteError::AlreadyUsedBy));
        let u2 = decide_use(&s, "did:plc:b", 4).unwrap();
        let s = fold(&[created, u1, u2].concat());
        assert_eq!(s.live().unwrap().remaining(), 0);
        assert_eq!(decide_use(&s, "did:plc:c", 5), Err(InviteError::Unavailable));
        assert_eq!(decide_use(&InviteState::Absent, "did:plc:c", 5), Err(InviteError::Unavailable));
        // A disabled code is unavailable; disabling twice appends nothing.
        let fresh = evolve(InviteState::Absent, &decide_create(&InviteState::Absent, "x-aaaaa-bbbbb", 5, "admin", "admin", 1).unwrap()[0]);
        let off = decide_disable(&fresh, 2);
        assert_eq!(off, vec![InviteEvent::Disabled { code: "x-aaaaa-bbbbb".into(), at: 2 }]);
        let fresh = evolve(fresh, &off[0]);
        assert_eq!(decide_use(&fresh, "did:plc:c", 5), Err(InviteError::Unavailable));
        assert_eq!(decide_disable(&fresh, 3), vec![]);
        assert_eq!(decide_disable(&InviteState::Absent, 3), vec![]);
    }

    #[test]
    fn refuses_bad_counts_and_codes() {
        let a = InviteState::Absent;
        assert_eq!(decide_create(&a, "c", 0, "admin", "admin", 1), Err(InviteError::InvalidUseCount));
        assert_eq!(decide_create(&a, "c", -1, "admin", "admin", 1), Err(InviteError::InvalidUseCount));
        assert_eq!(decide_create(&a, "a/b", 1, "admin", "admin", 1), Err(InviteError::InvalidCode));
        assert_eq!(decide_create(&a, "", 1, "admin", "admin", 1), Err(InviteError::InvalidCode));
    }

    #[test]
    fn payloads_round_trip() {
        let events = [
            InviteEvent::Created {
                code: "x-aaaaa-bbbbb".into(),
                available: 3,
                for_account: "did:plc:x".into(),
                created_by: "admin".into(),
                at: 7,
            },
            InviteEvent::Used { code: "x-aaaaa-bbbbb".into(), used_by: "did:plc:y".into(), at: 8 },
            InviteEvent::Disabled { code: "x-aaaaa-bbbbb".into(), at: 9 },
        ];
        for e in events {
            let back = InviteEvent::from_payload(e.event_type(), EVENT_VERSION, &e.to_payload()).unwrap();
            assert_eq!(back, e);
        }
        assert!(InviteEvent::from_payload(USED, 2, &[]).is_err());
        assert!(InviteEvent::from_payload("invite.nope", 1, &[]).is_err());
        assert!(InviteEvent::from_payload(USED, 1, &[0xff]).is_err());
    }
}
