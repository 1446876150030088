//! The events of the account aggregate (stream `account/<did>`) and their stored form.
//!
//! Each event has a stable `event_type` name, a schema version and a hand-built DAG-CBOR payload
//! with short, stable field names. The payload is the stored event type, kept apart from the
//! domain value (`AccountEvent`) and from any wire format; decoding is strict: an unknown type or
//! version, a missing or unexpected field, or a field of the wrong kind is an error.
//!
//! Never holds a secret in the clear (design invariant 5): passwords appear only as argon2id PHC
//! strings, refresh tokens only as `refresh_token_hash` (hex SHA-256 of the `jti`), the signing
//! key only as the `key_encryption` blob.
//!
//! Two events are public (firehose frames, they get a `seq`): `account.identity` (`#identity`)
//! and `account.status` (`#account`). Their payloads are the frame bodies without `seq` and
//! `time` (the log supplies both), so the firehose renders them without looking anything up.

use std::collections::BTreeMap;

use crate::cbor::{self, Cid, Ipld};
use crate::syntax::{Did, Handle};

/// The schema version of every account event type written today.
pub const EVENT_VERSION: i32 = 1;

/// `status` of a `#account` frame when `active` is false (lexicon `subscribeRepos#account`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountStatus {
    Takendown,
    Suspended,
    Deleted,
    Deactivated,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Takendown => "takendown",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Deleted => "deleted",
            AccountStatus::Deactivated => "deactivated",
        }
    }

    pub fn parse(s: &str) -> Option<AccountStatus> {
        [
            AccountStatus::Takendown,
            AccountStatus::Suspended,
            AccountStatus::Deleted,
            AccountStatus::Deactivated,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// What an emailed token (`requestEmailConfirmation`, `requestEmailUpdate`,
/// `requestPasswordReset`, `requestAccountDelete`) is for; one live token per purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EmailTokenPurpose {
    ConfirmEmail,
    UpdateEmail,
    ResetPassword,
    DeleteAccount,
    /// The emailed sign-in code of email two-factor login (`authFactorToken`).
    SignIn,
    /// `requestPlcOperationSignature` → `signPlcOperation`.
    PlcOperation,
}

impl EmailTokenPurpose {
    /// The reference's purpose names (its `email_token.purpose`).
    pub fn as_str(self) -> &'static str {
        match self {
            EmailTokenPurpose::ConfirmEmail => "confirm_email",
            EmailTokenPurpose::UpdateEmail => "update_email",
            EmailTokenPurpose::ResetPassword => "reset_password",
            EmailTokenPurpose::DeleteAccount => "delete_account",
            EmailTokenPurpose::SignIn => "2fa_code",
            EmailTokenPurpose::PlcOperation => "plc_operation",
        }
    }

    pub fn parse(s: &str) -> Option<EmailTokenPurpose> {
        [
            EmailTokenPurpose::ConfirmEmail,
            EmailTokenPurpose::UpdateEmail,
            EmailTokenPurpose::ResetPassword,
            EmailTokenPurpose::DeleteAccount,
            EmailTokenPurpose::SignIn,
            EmailTokenPurpose::PlcOperation,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// `account.created`: the account exists. The first event of the stream (or the first after a
/// deletion, when a DID comes back by migration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountCreated {
    pub did: Did,
    pub handle: Handle,
    /// Lowercased.
    pub email: String,
    /// argon2id PHC string (`domain::password::hash_password`).
    pub password_hash: String,
    /// The repo signing key as `domain::key_encryption::encrypt_key` sealed it for this DID.
    pub signing_key_encrypted: Vec<u8>,
    /// The signing key's public `did:key:…`.
    pub signing_did_key: String,
    /// CID of the signed PLC genesis operation when this PDS created the did:plc; `None` for
    /// did:web and for a bring-your-own DID.
    pub plc_genesis: Option<Cid>,
    pub invite_code: Option<String>,
    /// Bring-your-own-DID (migration) accounts start deactivated.
    pub deactivated: bool,
    /// Unix microseconds.
    pub created_at: i64,
}

/// Every event of the account stream. Times are Unix microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    Created(Box<AccountCreated>),
    HandleUpdated {
        handle: Handle,
        at: i64,
    },
    /// Lowercased; clears the confirmation.
    EmailUpdated {
        email: String,
        at: i64,
    },
    /// The address that was confirmed (equal to the current one when decided).
    EmailConfirmed {
        email: String,
        at: i64,
    },
    /// Also revokes every refresh token (reference `updateAccountPassword`).
    PasswordChanged {
        password_hash: String,
        at: i64,
    },
    AppPasswordCreated {
        name: String,
        /// argon2id PHC string (`domain::password::hash_app_password`).
        password_hash: String,
        privileged: bool,
        at: i64,
    },
    /// Also revokes the refresh tokens issued to that app password.
    AppPasswordRevoked {
        name: String,
        at: i64,
    },
    /// A login: a new refresh token, the first of its family (the family id is its hash).
    SessionCreated {
        token_hash: String,
        app_password_name: Option<String>,
        expires_at: i64,
        at: i64,
    },
    /// A rotation: `old_hash` now expires at `grace_expires_at` and names `new_hash` as its
    /// successor; `new_hash` joins the family and expires at `expires_at`.
    SessionRefreshed {
        family: String,
        old_hash: String,
        new_hash: String,
        grace_expires_at: i64,
        expires_at: i64,
        at: i64,
    },
    /// A logout (`deleteSession`): revokes the token's whole family.
    SessionRevoked {
        family: String,
        token_hash: String,
        at: i64,
    },
    /// A rotated token was presented after its grace period: the family is revoked.
    SessionFamilyRevoked {
        family: String,
        reused_hash: String,
        at: i64,
    },
    /// An emailed token was issued: only its keyed hash (`domain::email_token::hash`) is kept;
    /// it replaces any earlier token of that purpose.
    EmailTokenIssued {
        purpose: EmailTokenPurpose,
        token_hash: String,
        expires_at: i64,
        at: i64,
    },
    /// Email two-factor login switched on or off (`updateEmail` with `emailAuthFactor`).
    EmailAuthFactorUpdated {
        enabled: bool,
        at: i64,
    },
    /// The token of `purpose` was used (and is gone).
    EmailTokenUsed {
        purpose: EmailTokenPurpose,
        at: i64,
    },
    Activated {
        at: i64,
    },
    Deactivated {
        delete_after: Option<i64>,
        at: i64,
    },
    /// Applying a takedown also revokes every refresh token (reference `takedownAccount`).
    TakedownUpdated {
        applied: bool,
        reference: Option<String>,
        at: i64,
    },
    Deleted {
        at: i64,
    },
    /// `app.bsky.actor.putPreferences`: the complete new content of `namespace` (`app.bsky`),
    /// each preference as its JSON object text (`$type` included), in order. Never public.
    PreferencesPut {
        namespace: String,
        prefs: Vec<String>,
        at: i64,
    },
    /// Public `#identity` frame body (without `seq`, `time`).
    Identity {
        did: Did,
        handle: Option<Handle>,
    },
    /// Public `#account` frame body (without `seq`, `time`): `status` is `None` iff `active`.
    Status {
        did: Did,
        active: bool,
        status: Option<AccountStatus>,
    },
}

/// Why a stored payload could not be read back as an [`AccountEvent`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventDecodeError {
    #[error("unknown account event type `{0}`")]
    UnknownType(String),
    #[error("unsupported version {version} of `{event_type}`")]
    UnknownVersion { event_type: String, version: i32 },
    #[error("payload is not DAG-CBOR: {0}")]
    Cbor(#[from] cbor::CborError),
    #[error("payload is not a map")]
    NotAMap,
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{0}` has the wrong kind or an invalid value")]
    Invalid(&'static str),
    #[error("unexpected field `{0}`")]
    Unexpected(String),
}

const CREATED: &str = "account.created";
const HANDLE_UPDATED: &str = "account.handle_updated";
const EMAIL_UPDATED: &str = "account.email_updated";
const EMAIL_CONFIRMED: &str = "account.email_confirmed";
const PASSWORD_CHANGED: &str = "account.password_changed";
const APP_PASSWORD_CREATED: &str = "account.app_password_created";
const APP_PASSWORD_REVOKED: &str = "account.app_password_revoked";
const SESSION_CREATED: &str = "account.session_created";
const SESSION_REFRESHED: &str = "account.session_refreshed";
const SESSION_REVOKED: &str = "account.session_revoked";
const SESSION_FAMILY_REVOKED: &str = "account.session_family_revoked";
const EMAIL_TOKEN_ISSUED: &str = "account.email_token_issued";
const EMAIL_TOKEN_USED: &str = "account.email_token_used";
const EMAIL_AUTH_FACTOR_UPDATED: &str = "account.email_auth_factor_updated";
const ACTIVATED: &str = "account.activated";
const DEACTIVATED: &str = "account.deactivated";
const TAKEDOWN_UPDATED: &str = "account.takedown_updated";
const DELETED: &str = "account.deleted";
const PREFERENCES_PUT: &str = "account.preferences_put";
const IDENTITY: &str = "account.identity";
const STATUS: &str = "account.status";

/// Every event type name, in declaration order.
pub const EVENT_TYPES: [&str; 21] = [
    CREATED,
    HANDLE_UPDATED,
    EMAIL_UPDATED,
    EMAIL_CONFIRMED,
    PASSWORD_CHANGED,
    APP_PASSWORD_CREATED,
    APP_PASSWORD_REVOKED,
    SESSION_CREATED,
    SESSION_REFRESHED,
    SESSION_REVOKED,
    SESSION_FAMILY_REVOKED,
    EMAIL_TOKEN_ISSUED,
    EMAIL_TOKEN_USED,
    EMAIL_AUTH_FACTOR_UPDATED,
    ACTIVATED,
    DEACTIVATED,
    TAKEDOWN_UPDATED,
    DELETED,
    IDENTITY,
    STATUS,
    PREFERENCES_PUT,
];

/// The event types that change an account's preferences, or end the account (the preferences
/// projector's `handles`).
pub const PREFERENCE_EVENT_TYPES: [&str; 4] = [CREATED, DELETED, STATUS, PREFERENCES_PUT];

impl AccountEvent {
    /// The stable name stored in the log's `event_type`.
    pub fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Created(_) => CREATED,
            AccountEvent::HandleUpdated { .. } => HANDLE_UPDATED,
            AccountEvent::EmailUpdated { .. } => EMAIL_UPDATED,
            AccountEvent::EmailConfirmed { .. } => EMAIL_CONFIRMED,
            AccountEvent::PasswordChanged { .. } => PASSWORD_CHANGED,
            AccountEvent::AppPasswordCreated { .. } => APP_PASSWORD_CREATED,
            AccountEvent::AppPasswordRevoked { .. } => APP_PASSWORD_REVOKED,
            AccountEvent::SessionCreated { .. } => SESSION_CREATED,
            AccountEvent::SessionRefreshed { .. } => SESSION_REFRESHED,
            AccountEvent::SessionRevoked { .. } => SESSION_REVOKED,
            AccountEvent::SessionFamilyRevoked { .. } => SESSION_FAMILY_REVOKED,
            AccountEvent::EmailTokenIssued { .. } => EMAIL_TOKEN_ISSUED,
            AccountEvent::EmailTokenUsed { .. } => EMAIL_TOKEN_USED,
            AccountEvent::EmailAuthFactorUpdated { .. } => EMAIL_AUTH_FACTOR_UPDATED,
            AccountEvent::Activated { .. } => ACTIVATED,
            AccountEvent::Deactivated { .. } => DEACTIVATED,
            AccountEvent::TakedownUpdated { .. } => TAKEDOWN_UPDATED,
            AccountEvent::Deleted { .. } => DELETED,
            AccountEvent::PreferencesPut { .. } => PREFERENCES_PUT,
            AccountEvent::Identity { .. } => IDENTITY,
            AccountEvent::Status { .. } => STATUS,
        }
    }

    /// The schema version stored in the log's `event_version`.
    pub fn event_version(&self) -> i32 {
        EVENT_VERSION
    }

    /// True for the firehose frames (`#identity`, `#account`): they get a `seq`.
    pub fn is_public(&self) -> bool {
        matches!(
            self,
            AccountEvent::Identity { .. } | AccountEvent::Status { .. }
        )
    }

    /// The canonical DAG-CBOR payload.
    pub fn to_payload(&self) -> Vec<u8> {
        // Only strings, integers, booleans, bytes and links: the encoder cannot fail on these.
        cbor::encode(&self.to_ipld()).unwrap_or_default()
    }

    fn to_ipld(&self) -> Ipld {
        let mut m = MapBuilder::default();
        match self {
            AccountEvent::Created(c) => {
                m.str("did", c.did.as_str())
                    .str("handle", c.handle.as_str())
                    .str("email", &c.email)
                    .str("pwHash", &c.password_hash)
                    .bytes("keyEnc", &c.signing_key_encrypted)
                    .str("didKey", &c.signing_did_key)
                    .opt_link("plcOp", c.plc_genesis.as_ref())
                    .opt_str("invite", c.invite_code.as_deref())
                    .bool("deactivated", c.deactivated)
                    .int("at", c.created_at);
            }
            AccountEvent::HandleUpdated { handle, at } => {
                m.str("handle", handle.as_str()).int("at", *at);
            }
            AccountEvent::EmailUpdated { email, at }
            | AccountEvent::EmailConfirmed { email, at } => {
                m.str("email", email).int("at", *at);
            }
            AccountEvent::PasswordChanged { password_hash, at } => {
                m.str("pwHash", password_hash).int("at", *at);
            }
            AccountEvent::AppPasswordCreated {
                name,
                password_hash,
                privileged,
                at,
            } => {
                m.str("name", name)
                    .str("pwHash", password_hash)
                    .bool("privileged", *privileged)
                    .int("at", *at);
            }
            AccountEvent::AppPasswordRevoked { name, at } => {
                m.str("name", name).int("at", *at);
            }
            AccountEvent::SessionCreated {
                token_hash,
                app_password_name,
                expires_at,
                at,
            } => {
                m.str("token", token_hash)
                    .opt_str("appPw", app_password_name.as_deref())
                    .int("exp", *expires_at)
                    .int("at", *at);
            }
            AccountEvent::SessionRefreshed {
                family,
                old_hash,
                new_hash,
                grace_expires_at,
                expires_at,
                at,
            } => {
                m.str("family", family)
                    .str("old", old_hash)
                    .str("new", new_hash)
                    .int("graceExp", *grace_expires_at)
                    .int("exp", *expires_at)
                    .int("at", *at);
            }
            AccountEvent::SessionRevoked {
                family,
                token_hash,
                at,
            } => {
                m.str("family", family)
                    .str("token", token_hash)
                    .int("at", *at);
            }
            AccountEvent::SessionFamilyRevoked {
                family,
                reused_hash,
                at,
            } => {
                m.str("family", family)
                    .str("reused", reused_hash)
                    .int("at", *at);
            }
            AccountEvent::EmailTokenIssued {
                purpose,
                token_hash,
                expires_at,
                at,
            } => {
                m.str("purpose", purpose.as_str())
                    .str("token", token_hash)
                    .int("exp", *expires_at)
                    .int("at", *at);
            }
            AccountEvent::EmailTokenUsed { purpose, at } => {
                m.str("purpose", purpose.as_str()).int("at", *at);
            }
            AccountEvent::EmailAuthFactorUpdated { enabled, at } => {
                m.bool("enabled", *enabled).int("at", *at);
            }
            AccountEvent::Activated { at } | AccountEvent::Deleted { at } => {
                m.int("at", *at);
            }
            AccountEvent::Deactivated { delete_after, at } => {
                m.opt_int("deleteAfter", *delete_after).int("at", *at);
            }
            AccountEvent::TakedownUpdated {
                applied,
                reference,
                at,
            } => {
                m.bool("applied", *applied)
                    .opt_str("ref", reference.as_deref())
                    .int("at", *at);
            }
            AccountEvent::PreferencesPut { namespace, prefs, at } => {
                m.str("ns", namespace)
                    .put("prefs", Ipld::List(prefs.iter().cloned().map(Ipld::String).collect()))
                    .int("at", *at);
            }
            AccountEvent::Identity { did, handle } => {
                m.str("did", did.as_str())
                    .opt_str("handle", handle.as_ref().map(Handle::as_str));
            }
            AccountEvent::Status {
                did,
                active,
                status,
            } => {
                m.str("did", did.as_str())
                    .bool("active", *active)
                    .opt_str("status", status.map(AccountStatus::as_str));
            }
        }
        Ipld::Map(m.0)
    }

    /// Reads a stored event back. Strict: the type and version must be known, the payload
    /// canonical DAG-CBOR with exactly the fields that type writes.
    pub fn from_payload(
        event_type: &str,
        version: i32,
        payload: &[u8],
    ) -> Result<AccountEvent, EventDecodeError> {
        if !EVENT_TYPES.contains(&event_type) {
            return Err(EventDecodeError::UnknownType(event_type.to_string()));
        }
        if version != EVENT_VERSION {
            return Err(EventDecodeError::UnknownVersion {
                event_type: event_type.to_string(),
                version,
            });
        }
        let Ipld::Map(map) = cbor::decode(payload)? else {
            return Err(EventDecodeError::NotAMap);
        };
        let mut f = Fields(map);
        let event = match event_type {
            CREATED => AccountEvent::Created(Box::new(AccountCreated {
                did: f.did("did")?,
                handle: f.handle("handle")?,
                email: f.str("email")?,
                password_hash: f.str("pwHash")?,
                signing_key_encrypted: f.bytes("keyEnc")?,
                signing_did_key: f.str("didKey")?,
                plc_genesis: f.opt_link("plcOp")?,
                invite_code: f.opt_str("invite")?,
                deactivated: f.bool("deactivated")?,
                created_at: f.int("at")?,
            })),
            HANDLE_UPDATED => AccountEvent::HandleUpdated {
                handle: f.handle("handle")?,
                at: f.int("at")?,
            },
            EMAIL_UPDATED => AccountEvent::EmailUpdated {
                email: f.str("email")?,
                at: f.int("at")?,
            },
            EMAIL_CONFIRMED => AccountEvent::EmailConfirmed {
                email: f.str("email")?,
                at: f.int("at")?,
            },
            PASSWORD_CHANGED => AccountEvent::PasswordChanged {
                password_hash: f.str("pwHash")?,
                at: f.int("at")?,
            },
            APP_PASSWORD_CREATED => AccountEvent::AppPasswordCreated {
                name: f.str("name")?,
                password_hash: f.str("pwHash")?,
                privileged: f.bool("privileged")?,
                at: f.int("at")?,
            },
            APP_PASSWORD_REVOKED => AccountEvent::AppPasswordRevoked {
                name: f.str("name")?,
                at: f.int("at")?,
            },
            SESSION_CREATED => AccountEvent::SessionCreated {
                token_hash: f.str("token")?,
                app_password_name: f.opt_str("appPw")?,
                expires_at: f.int("exp")?,
                at: f.int("at")?,
            },
            SESSION_REFRESHED => AccountEvent::SessionRefreshed {
                family: f.str("family")?,
                old_hash: f.str("old")?,
                new_hash: f.str("new")?,
                grace_expires_at: f.int("graceExp")?,
                expires_at: f.int("exp")?,
                at: f.int("at")?,
            },
            SESSION_REVOKED => AccountEvent::SessionRevoked {
                family: f.str("family")?,
                token_hash: f.str("token")?,
                at: f.int("at")?,
            },
            SESSION_FAMILY_REVOKED => AccountEvent::SessionFamilyRevoked {
                family: f.str("family")?,
                reused_hash: f.str("reused")?,
                at: f.int("at")?,
            },
            EMAIL_TOKEN_ISSUED => AccountEvent::EmailTokenIssued {
                purpose: f.purpose("purpose")?,
                token_hash: f.str("token")?,
                expires_at: f.int("exp")?,
                at: f.int("at")?,
            },
            EMAIL_TOKEN_USED => AccountEvent::EmailTokenUsed {
                purpose: f.purpose("purpose")?,
                at: f.int("at")?,
            },
            EMAIL_AUTH_FACTOR_UPDATED => AccountEvent::EmailAuthFactorUpdated {
                enabled: f.bool("enabled")?,
                at: f.int("at")?,
            },
            ACTIVATED => AccountEvent::Activated { at: f.int("at")? },
            DEACTIVATED => AccountEvent::Deactivated {
                delete_after: f.opt_int("deleteAfter")?,
                at: f.int("at")?,
            },
            TAKEDOWN_UPDATED => AccountEvent::TakedownUpdated {
                applied: f.bool("applied")?,
                reference: f.opt_str("ref")?,
                at: f.int("at")?,
            },
            DELETED => AccountEvent::Deleted { at: f.int("at")? },
            PREFERENCES_PUT => AccountEvent::PreferencesPut {
                namespace: f.str("ns")?,
                prefs: f.strings("prefs")?,
                at: f.int("at")?,
            },
            IDENTITY => AccountEvent::Identity {
                did: f.did("did")?,
                handle: f.opt_handle("handle")?,
            },
            STATUS => {
                let did = f.did("did")?;
                let active = f.bool("active")?;
                let status = match f.opt_str("status")? {
                    None => None,
                    Some(s) => {
                        Some(AccountStatus::parse(&s).ok_or(EventDecodeError::Invalid("status"))?)
                    }
                };
                if active == status.is_some() {
                    return Err(EventDecodeError::Invalid("status"));
                }
                AccountEvent::Status {
                    did,
                    active,
                    status,
                }
            }
            other => return Err(EventDecodeError::UnknownType(other.to_string())),
        };
        f.finish()?;
        Ok(event)
    }
}

#[derive(Default)]
struct MapBuilder(BTreeMap<String, Ipld>);

impl MapBuilder {
    fn put(&mut self, k: &str, v: Ipld) -> &mut Self {
        self.0.insert(k.to_string(), v);
        self
    }
    fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.put(k, Ipld::String(v.to_string()))
    }
    fn opt_str(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.str(k, v),
            None => self,
        }
    }
    fn int(&mut self, k: &str, v: i64) -> &mut Self {
        self.put(k, Ipld::Integer(i128::from(v)))
    }
    fn opt_int(&mut self, k: &str, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => self.int(k, v),
            None => self,
        }
    }
    fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.put(k, Ipld::Bool(v))
    }
    fn bytes(&mut self, k: &str, v: &[u8]) -> &mut Self {
        self.put(k, Ipld::Bytes(v.to_vec()))
    }
    fn opt_link(&mut self, k: &str, v: Option<&Cid>) -> &mut Self {
        match v {
            Some(v) => self.put(k, Ipld::Link(*v)),
            None => self,
        }
    }
}

/// Takes fields out of a decoded map; [`Fields::finish`] rejects whatever is left.
struct Fields(BTreeMap<String, Ipld>);

impl Fields {
    fn opt(&mut self, k: &'static str) -> Option<Ipld> {
        self.0.remove(k)
    }
    fn req(&mut self, k: &'static str) -> Result<Ipld, EventDecodeError> {
        self.opt(k).ok_or(EventDecodeError::Missing(k))
    }
    fn str(&mut self, k: &'static str) -> Result<String, EventDecodeError> {
        match self.req(k)? {
            Ipld::String(s) => Ok(s),
            _ => Err(EventDecodeError::Invalid(k)),
        }
    }
    fn opt_str(&mut self, k: &'static str) -> Result<Option<String>, EventDecodeError> {
        match self.opt(k) {
            None => Ok(None),
            Some(Ipld::String(s)) => Ok(Some(s)),
            Some(_) => Err(EventDecodeError::Invalid(k)),
        }
    }
    fn int(&mut self, k: &'static str) -> Result<i64, EventDecodeError> {
        match self.req(k)? {
            Ipld::Integer(i) => i64::try_from(i).map_err(|_| EventDecodeError::Invalid(k)),
            _ => Err(EventDecodeError::Invalid(k)),
        }
    }
    fn opt_int(&mut self, k: &'static str) -> Result<Option<i64>, EventDecodeError> {
        match self.opt(k) {
            None => Ok(None),
            Some(Ipld::Integer(i)) => i64::try_from(i)
                .map(Some)
                .map_err(|_| EventDecodeError::Invalid(k)),
            Some(_) => Err(EventDecodeError::Invalid(k)),
        }
    }
    fn strings(&mut self, k: &'static str) -> Result<Vec<String>, EventDecodeError> {
        match self.req(k)? {
            Ipld::List(items) => items
                .into_iter()
                .map(|i| match i {
                    Ipld::String(s) => Ok(s),
                    _ => Err(EventDecodeError::Invalid(k)),
                })
                .collect(),
            _ => Err(EventDecodeError::Invalid(k)),
        }
    }
    fn bool(&mut self, k: &'static str) -> Result<bool, EventDecodeError> {
        match self.req(k)? {
            Ipld::Bool(b) => Ok(b),
            _ => Err(EventDecodeError::Invalid(k)),
        }
    }
    fn bytes(&mut self, k: &'static str) -> Result<Vec<u8>, EventDecodeError> {
        match self.req(k)? {
            Ipld::Bytes(b) => Ok(b),
            _ => Err(EventDecodeError::Invalid(k)),
        }
    }
    fn opt_link(&mut self, k: &'static str) -> Result<Option<Cid>, EventDecodeError> {
        match self.opt(k) {
            None => Ok(None),
            Some(Ipld::Link(c)) => Ok(Some(c)),
            Some(_) => Err(EventDecodeError::Invalid(k)),
        }
    }
    fn purpose(&mut self, k: &'static str) -> Result<EmailTokenPurpose, EventDecodeError> {
        EmailTokenPurpose::parse(&self.str(k)?).ok_or(EventDecodeError::Invalid(k))
    }
    fn did(&mut self, k: &'static str) -> Result<Did, EventDecodeError> {
        Did::parse(&self.str(k)?).map_err(|_| EventDecodeError::Invalid(k))
    }
    fn handle(&mut self, k: &'static str) -> Result<Handle, EventDecodeError> {
        let s = self.str(k)?;
        parse_stored_handle(&s).ok_or(EventDecodeError::Invalid(k))
    }
    fn opt_handle(&mut self, k: &'static str) -> Result<Option<Handle>, EventDecodeError> {
        match self.opt_str(k)? {
            None => Ok(None),
            Some(s) => parse_stored_handle(&s)
                .map(Some)
                .ok_or(EventDecodeError::Invalid(k)),
        }
    }
    fn finish(self) -> Result<(), EventDecodeError> {
        match self.0.into_keys().next() {
            None => Ok(()),
            Some(k) => Err(EventDecodeError::Unexpected(k)),
        }
    }
}

/// Handles are stored normalized (lowercase); anything else was not written by this code.
fn parse_stored_handle(s: &str) -> Option<Handle> {
    Handle::parse(s).ok().filter(|h| h.as_str() == s)
}
