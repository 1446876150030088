//! commands: the write side. One file per command; each loads what it needs (the aggregate's
//! stream folded by `domain`, lookups in read models), lets a `domain::*::decide_*` function
//! decide, and appends the events through `projections::Appender` (inline read models in the same
//! transaction). The only crate that appends events.
//!
//! Never knows HTTP: it returns [`CommandError`], which `api` maps to XRPC error names.

pub mod activate_account;
pub mod admin_account_info;
pub mod admin_delete_account;
pub mod admin_update_account_handle;
pub mod admin_update_account_password;
pub mod admin_update_subject_status;
pub mod check_account_status;
pub mod apply_writes;
pub mod create_account;
pub mod create_app_password;
pub mod create_invite_codes;
pub mod create_session;
pub mod deactivate_account;
pub mod delete_session;
mod lexicon_docs;
pub mod plc_client;
pub mod refresh_session;
pub mod repo_tree;
pub mod revoke_app_password;

use domain::account::{self, Account, AccountEvent, AccountState};
use domain::crypto::{KeyType, Keypair};
use domain::plc::DocumentData;
use domain::session_jwt::{self, JwtKey, Scope};
use domain::syntax::Did;
use eventlog::{AppendError, EventLog, ExpectedVersion, NewEvent, StreamAppend};
use projections::Appender;
use zeroize::Zeroizing;

pub use apply_writes::{apply_writes, get_record, list_records, AppliedWrites, StoredRecord, ValidationStatus};
pub use create_account::{create_account, CreateAccountInput};
pub use activate_account::activate_account;
pub use admin_account_info::{admin_account_info, AdminAccountInfo};
pub use admin_delete_account::admin_delete_account;
pub use admin_update_account_handle::admin_update_account_handle;
pub use admin_update_account_password::admin_update_account_password;
pub use admin_update_subject_status::admin_update_takedown;
pub use check_account_status::{check_account_status, AccountStatusView};
pub use deactivate_account::deactivate_account;
pub use create_app_password::{create_app_password, list_app_passwords, AppPasswordView, NewAppPassword};
pub use create_invite_codes::{create_invite_codes, get_account_invite_codes, AccountCodes, InviteView};
pub use create_session::{create_session, get_session};
pub use delete_session::delete_session;
pub use refresh_session::refresh_session;
pub use revoke_app_password::revoke_app_password;

/// What every command needs: the appender (and through it the log) and the server's settings and
/// secrets.
pub struct Ctx {
    pub appender: Appender,
    /// `PDS_JWT_SECRET`, as bytes.
    pub jwt_secret: Vec<u8>,
    pub jwt: JwtKey,
    pub service_did: String,
    pub public_url: String,
    pub handle_domains: Vec<String>,
    pub invite_required: bool,
    /// `PDS_DID_PLC_URL`, no trailing slash.
    pub plc_url: String,
    /// `PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX`.
    pub rotation_key: Keypair,
    /// `PDS_KEY_ENCRYPTION_KEY`.
    pub kek: Zeroizing<[u8; 32]>,
}

/// The settings [`Ctx::new`] reads.
pub struct Settings<'a> {
    pub jwt_secret: &'a str,
    pub service_did: &'a str,
    pub public_url: &'a str,
    pub handle_domains: &'a [String],
    pub invite_required: bool,
    pub plc_url: &'a str,
    pub plc_rotation_key_hex: &'a str,
    pub key_encryption_key_hex: &'a str,
}

impl Ctx {
    pub fn new(appender: Appender, s: Settings<'_>) -> Result<Ctx, CommandError> {
        let bad = |what: &str| CommandError::Internal(format!("invalid server secret: {what}"));
        let rotation = domain::key_encryption::parse_kek_hex(s.plc_rotation_key_hex)
            .map_err(|_| bad("PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX is not 64 hex digits"))?;
        let rotation_key = Keypair::from_private_bytes(KeyType::K256, rotation.as_ref())
            .map_err(|_| bad("PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX is not a secp256k1 key"))?;
        let kek = domain::key_encryption::parse_kek_hex(s.key_encryption_key_hex)
            .map_err(|_| bad("PDS_KEY_ENCRYPTION_KEY is not 64 hex digits"))?;
        let jwt = JwtKey::new(s.jwt_secret.as_bytes()).map_err(|_| bad("PDS_JWT_SECRET is empty"))?;
        Ok(Ctx {
            appender,
            jwt_secret: s.jwt_secret.as_bytes().to_vec(),
            jwt,
            service_did: s.service_did.to_owned(),
            public_url: s.public_url.to_owned(),
            handle_domains: s.handle_domains.to_vec(),
            invite_required: s.invite_required,
            plc_url: s.plc_url.trim_end_matches('/').to_owned(),
            rotation_key,
            kek,
        })
    }

    pub fn log(&self) -> &EventLog {
        self.appender.log()
    }
}

/// Why a command did not happen. Messages are safe to show to the client, except `Plc`,
/// `Conflict` and `Internal`, which `api` logs and answers generically.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    InvalidHandle(String),
    #[error("{0}")]
    UnsupportedDomain(String),
    #[error("{0}")]
    HandleNotAvailable(String),
    #[error("Email already taken: {0}")]
    EmailTaken(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidInviteCode(String),
    /// Unknown identifier or wrong password (indistinguishable on purpose).
    #[error("Invalid identifier or password")]
    AuthenticationRequired,
    #[error("Account has been taken down")]
    AccountTakedown,
    #[error("{0}")]
    ExpiredToken(String),
    #[error("{0}")]
    InvalidToken(String),
    #[error("Account not found")]
    AccountNotFound,
    #[error("{0}")]
    InvalidSwap(String),
    #[error("{0}")]
    RecordNotFound(String),
    #[error("{0}")]
    RepoNotFound(String),
    #[error("PLC directory: {0}")]
    Plc(String),
    #[error("concurrent change to {0}; try again")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl From<projections::ProjectionError> for CommandError {
    fn from(e: projections::ProjectionError) -> Self {
        CommandError::Internal(e.to_string())
    }
}

impl From<eventlog::LogError> for CommandError {
    fn from(e: eventlog::LogError) -> Self {
        CommandError::Internal(e.to_string())
    }
}

/// A failed append: a version conflict, a unique constraint of the accounts read model (the
/// handle or email race), or an internal failure.
pub(crate) fn append_error(e: AppendError, handle: &str, email: &str) -> CommandError {
    match e {
        AppendError::Conflict { stream, .. } => CommandError::Conflict(stream),
        AppendError::Inline(inner) => {
            let db = match inner.downcast_ref::<projections::ProjectionError>() {
                Some(projections::ProjectionError::Database(db)) => Some(db),
                _ => None,
            };
            match db {
                Some(db) if projections::accounts::is_unique_violation_on(db, "email") => {
                    CommandError::EmailTaken(email.to_owned())
                }
                Some(db) if db.as_database_error().is_some_and(|d| d.is_unique_violation()) => {
                    CommandError::HandleNotAvailable(format!("Handle already taken: {handle}"))
                }
                _ => CommandError::Internal(inner.to_string()),
            }
        }
        AppendError::Log(e) => CommandError::Internal(e.to_string()),
    }
}

/// Unix microseconds and seconds now.
pub(crate) fn now() -> (i64, i64) {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    (micros, micros / 1_000_000)
}

/// The account aggregate of `did`, folded from its stream, and the stream's version.
pub async fn load_account(log: &EventLog, did: &str) -> Result<(AccountState, i64), CommandError> {
    let Ok(parsed) = Did::parse(did) else {
        return Ok((AccountState::Absent, 0));
    };
    let envelopes = log.read_stream(&account::stream_name(&parsed)).await?;
    let mut state = AccountState::Absent;
    let mut version = 0;
    for e in &envelopes {
        let event = AccountEvent::from_payload(&e.event_type, e.event_version, &e.payload)
            .map_err(|err| CommandError::Internal(format!("{} v{}: {err}", e.stream, e.stream_version)))?;
        state = account::evolve(state, &event);
        version = e.stream_version;
    }
    Ok((state, version))
}

/// The account events as log events (public ones get a seq).
pub(crate) fn account_append(did: &Did, expected: ExpectedVersion, events: &[AccountEvent]) -> StreamAppend {
    let events = events
        .iter()
        .map(|e| {
            let ev = NewEvent::new(e.event_type(), e.event_version(), e.to_payload());
            if e.is_public() {
                ev.public()
            } else {
                ev
            }
        })
        .collect();
    StreamAppend::new(account::stream_name(did), expected, events)
}

/// What `getSession` and the session-issuing commands tell the client about the account.
#[derive(Debug, Clone)]
pub struct AccountView {
    pub did: String,
    pub handle: String,
    pub email: String,
    pub email_confirmed: bool,
    pub active: bool,
    pub status: Option<&'static str>,
    pub did_doc: serde_json::Value,
}

/// A new or refreshed session: the account and its two tokens.
#[derive(Debug, Clone)]
pub struct Session {
    pub account: AccountView,
    pub access_jwt: String,
    pub refresh_jwt: String,
}

/// The DID document this server published for the account (its handle, its signing key, this
/// PDS), rendered as a PLC directory renders it.
pub fn did_doc(ctx: &Ctx, a: &Account) -> serde_json::Value {
    let data = DocumentData {
        rotation_keys: vec![ctx.rotation_key.public_key().to_did_key()],
        verification_methods: [(domain::plc::ATPROTO_KEY.to_owned(), a.signing_did_key.clone())].into(),
        also_known_as: vec![format!("at://{}", a.handle.as_str())],
        services: [(
            domain::plc::ATPROTO_PDS_SERVICE.to_owned(),
            domain::plc::Service { kind: domain::plc::ATPROTO_PDS_TYPE.to_owned(), endpoint: ctx.public_url.clone() },
        )]
        .into(),
    };
    data.to_did_document(a.did.as_str()).to_json()
}

pub fn account_view(ctx: &Ctx, a: &Account) -> AccountView {
    let status = a.status();
    AccountView {
        did: a.did.as_str().to_owned(),
        handle: a.handle.as_str().to_owned(),
        email: a.email.clone(),
        email_confirmed: a.email_confirmed_at.is_some(),
        active: status.is_none(),
        status: status.map(|s| s.as_str()),
        did_doc: did_doc(ctx, a),
    }
}

/// An access token of `scope` and a refresh token with id `jti`, both from `now_secs`.
pub(crate) fn tokens(ctx: &Ctx, did: &str, scope: Scope, jti: &str, now_secs: i64) -> (String, String) {
    (
        session_jwt::create_access_token(&ctx.jwt, did, &ctx.service_did, scope, now_secs),
        session_jwt::create_refresh_token(&ctx.jwt, did, &ctx.service_did, jti, now_secs),
    )
}

/// Microseconds at which a refresh token issued at `now_secs` expires.
pub(crate) fn refresh_expiry_micros(now_secs: i64) -> i64 {
    now_secs.saturating_add(session_jwt::REFRESH_LIFETIME_SECS).saturating_mul(1_000_000)
}

/// Verifies an access token for this service: the DID and scope it grants.
pub fn verify_access(ctx_jwt: &JwtKey, service_did: &str, token: &str) -> Result<(String, Scope), CommandError> {
    let (_, now_secs) = now();
    session_jwt::verify(ctx_jwt, token, session_jwt::TokenType::Access, service_did, now_secs)
        .map(|c| (c.sub, c.scope))
        .map_err(jwt_error)
}

pub(crate) fn jwt_error(e: session_jwt::JwtError) -> CommandError {
    match e {
        session_jwt::JwtError::ExpiredToken => CommandError::ExpiredToken("Token has expired".into()),
        session_jwt::JwtError::InvalidToken(_) => CommandError::InvalidToken("Token could not be verified".into()),
        session_jwt::JwtError::EmptySecret => CommandError::Internal("the JWT secret is empty".into()),
    }
}

/// Maps the account aggregate's refusals.
pub(crate) fn account_error(e: account::AccountError) -> CommandError {
    use account::AccountError as E;
    match e {
        E::AccountAlreadyExists => CommandError::InvalidRequest("User already exists".into()),
        E::AccountNotFound => CommandError::AccountNotFound,
        E::AccountTakedown => CommandError::AccountTakedown,
        E::InvalidPassword => CommandError::AuthenticationRequired,
        E::InvalidToken => CommandError::InvalidToken("Token could not be verified".into()),
        E::ExpiredToken => CommandError::ExpiredToken("Token has expired".into()),
        E::TokenRevoked => CommandError::ExpiredToken("Token has been revoked".into()),
        E::DuplicateAppPassword(_) | E::InvalidAppPasswordName | E::InvalidEmail => {
            CommandError::InvalidRequest(e.to_string())
        }
        E::InvalidCommand(_) | E::SecretNotProtected(_) => CommandError::Internal(e.to_string()),
    }
}

/// Runs CPU-heavy work (argon2) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, CommandError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| CommandError::Internal(format!("worker failed: {e}")))
}
