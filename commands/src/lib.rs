//! commands: the write side. One file per command; each loads what it needs (the aggregate's
//! stream folded by `domain`, lookups in read models), lets a `domain::*::decide_*` function
//! decide, and appends the events through `projections::Appender` (inline read models in the same
//! transaction). The only crate that appends events.
//!
//! Never knows HTTP: it returns [`CommandError`], which `api` maps to XRPC error names.

pub mod activate_account;
pub mod admin_account_info;
pub mod admin_delete_account;
pub mod admin_send_email;
pub mod admin_update_account_email;
pub mod admin_update_account_handle;
pub mod admin_update_account_password;
pub mod admin_update_subject_status;
pub mod check_account_status;
pub mod apply_writes;
pub mod blob_refs;
pub mod breaker;
pub mod clean_temp_blobs;
pub mod get_blob;
pub mod import_repo;
pub mod update_blob_takedown;
pub mod upload_blob;
pub mod create_account;
pub mod create_app_password;
pub mod create_invite_codes;
pub mod create_session;
pub mod deactivate_account;
pub mod delete_session;
mod lexicon_docs;
pub mod disable_invite_codes;
pub mod get_invite_codes;
pub mod set_account_invites;
pub use lexicon_docs::catalog as lexicon_catalog;
pub mod oauth_authorize;
pub mod oauth_exchange_code;
pub mod oauth_flow;
pub mod oauth_push_request;
pub mod oauth_refresh_token;
pub mod oauth_revoke;
pub mod plc_client;
pub mod plc_directory;
pub mod put_preferences;
pub mod refresh_session;
pub mod reserve_signing_key;
pub mod resolve_did;
pub mod identity;
pub mod external_handle;
pub mod safe_fetch;
pub mod scratch;
pub mod repo_tree;
pub mod revoke_app_password;
pub mod get_service_auth;
pub mod update_handle;
pub mod request_email_token;
pub mod queue_notification;
pub mod notification_prefs;
pub mod confirm_email;
pub mod update_email;
pub mod reset_password;
pub mod delete_account;
pub mod sign_plc_operation;
pub mod submit_plc_operation;

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
pub use admin_send_email::admin_send_email;
pub use admin_update_account_email::admin_update_account_email;
pub use admin_update_account_handle::admin_update_account_handle;
pub use admin_update_account_password::admin_update_account_password;
pub use admin_update_subject_status::{admin_update_deactivated, admin_update_takedown};
pub use check_account_status::{check_account_status, AccountStatusView};
pub use deactivate_account::deactivate_account;
pub use create_app_password::{create_app_password, list_app_passwords, AppPasswordView, NewAppPassword};
pub use create_invite_codes::{create_invite_codes, get_account_invite_codes, invite_code_view, AccountCodes, InviteView};
pub use create_session::{create_session, get_session};
pub use delete_session::delete_session;
pub use refresh_session::refresh_session;
pub use revoke_app_password::revoke_app_password;
pub use get_service_auth::{get_recommended_did_credentials, get_service_auth, DidCredentials};
pub use update_handle::update_handle;
pub use request_email_token::{request_email_token, request_password_reset};
pub use queue_notification::{
    claim_notification, load_notification, notification_append, queue_notification, record_notification_outcome, Claim,
    Message,
};
pub use confirm_email::confirm_email;
pub use update_email::update_email;
pub use reset_password::reset_password;
pub use delete_account::delete_account;
pub use sign_plc_operation::{sign_plc_operation, PlcOperationFields};
pub use submit_plc_operation::submit_plc_operation;
pub use put_preferences::{get_preferences, parse_put_body, put_preferences};

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
    /// `PDS_DID_PLC_URL`, no trailing slash; with the embedded directory, this server's public URL.
    pub plc_url: String,
    /// The DIDs live in the embedded PLC directory (this database), called in process.
    pub plc_embedded: bool,
    /// `PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX`.
    pub rotation_key: Keypair,
    /// `PDS_KEY_ENCRYPTION_KEY`.
    pub kek: Zeroizing<[u8; 32]>,
    /// Where blob bytes live (`upload_blob.rs`, `get_blob.rs`, …); `None` until [`Ctx::with_blobstore`].
    pub blobstore: Option<std::sync::Arc<dyn blobstore::BlobStore>>,
    /// Handle and DID resolution with the shared cache; `None` until [`Ctx::with_identity`]
    /// (then `resolve_did` asks the network directly, uncached).
    pub identity: Option<identity::Identity>,
}

/// The settings [`Ctx::new`] reads.
pub struct Settings<'a> {
    pub jwt_secret: &'a str,
    pub service_did: &'a str,
    pub public_url: &'a str,
    pub handle_domains: &'a [String],
    pub invite_required: bool,
    pub plc_url: &'a str,
    pub plc_embedded: bool,
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
            plc_embedded: s.plc_embedded,
            rotation_key,
            kek,
            blobstore: None,
            identity: None,
        })
    }

    pub fn with_identity(mut self, identity: identity::Identity) -> Ctx {
        self.identity = Some(identity);
        self
    }

    pub fn with_blobstore(mut self, store: std::sync::Arc<dyn blobstore::BlobStore>) -> Ctx {
        self.blobstore = Some(store);
        self
    }

    pub fn log(&self) -> &EventLog {
        self.appender.log()
    }
}

/// Why a command did not happen. Messages are safe to show to the client, except `Conflict` and
/// `Internal`, which `api` logs and answers generically.
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
    #[error("{0}")]
    BlobNotFound(String),
    #[error("{0}")]
    BlobTooLarge(String),
    /// A request body over its limit (413 `PayloadTooLarge`).
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    InvalidMimeType(String),
    #[error("{0}")]
    InvalidBlob(String),
    /// A 401 with a lexicon error name of its own: a refused service-auth JWT (reference
    /// `verifyJwt`: `BadJwt`, `JwtExpired`, `BadJwtAudience`, `BadJwtLexiconMethod`,
    /// `BadJwtSignature`, `AuthRequired`), or `deleteAccount`'s `AuthenticationRequired`.
    #[error("{message}")]
    ServiceAuth { name: &'static str, message: String },
    /// A password login that needs the emailed sign-in code: `api` sends the mail, then answers
    /// 401 `AuthFactorTokenRequired`.
    #[error("A sign in code has been sent to your email address")]
    AuthFactorTokenRequired,
    /// `getServiceAuth` with an `exp` it may not grant.
    #[error("{0}")]
    BadExpiration(String),
    /// A 400 with a lexicon error name of its own (`TokenRequired`, `InvalidEmail`, …).
    #[error("{message}")]
    Named { name: &'static str, message: String },
    /// The PLC directory answered something unusable.
    #[error("PLC directory: {0}")]
    Plc(String),
    /// An outbound service whose circuit breaker is open (`breaker.rs`): fails fast, 503.
    #[error("{0}")]
    Unavailable(String),
    /// The PLC directory could not be reached or did not answer in time; nothing was changed.
    #[error("PLC directory {directory} is unreachable ({detail}); nothing was changed, try again later")]
    PlcUnreachable { directory: String, detail: String, timeout: bool },
    /// The PLC directory answered with a refusal; nothing was changed.
    #[error("PLC directory {directory} refused the request (HTTP {status}): {message}")]
    PlcRefused { directory: String, status: u16, message: String },
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
        AppendError::Aborted(m) => CommandError::Internal(m),
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

/// The account aggregate of `did` and its stream's version, from the `accounts` read model
/// (`projections::accounts::snapshot`: three indexed lookups, whatever the stream's length). The
/// version is read first, so rows newer than it make the caller's append at that version conflict
/// (and retry) rather than overwrite. A stream with events but no row is a deleted account.
pub async fn load_account(log: &EventLog, did: &str) -> Result<(AccountState, i64), CommandError> {
    let Ok(parsed) = Did::parse(did) else {
        return Ok((AccountState::Absent, 0));
    };
    let version = log.stream_version(&account::stream_name(&parsed)).await?;
    if version == 0 {
        return Ok((AccountState::Absent, 0));
    }
    Ok(match projections::accounts::snapshot(log, did).await? {
        Some(a) => (AccountState::Live(Box::new(a)), version),
        None => (AccountState::Deleted, version),
    })
}

/// The account of `did` for reading (`getSession`, views, its signing key): one primary-key
/// lookup; its credentials (app passwords, sessions, emailed tokens) are left out, so nothing may
/// decide on them. `Absent` also for a deleted account.
pub async fn load_account_profile(log: &EventLog, did: &str) -> Result<AccountState, CommandError> {
    Ok(match projections::accounts::profile(log, did).await? {
        Some(a) => AccountState::Live(Box::new(a)),
        None => AccountState::Absent,
    })
}

/// The account aggregate of `did` folded from its whole stream (O(stream length)), and the
/// stream's version: the definition [`load_account`]'s snapshot must agree with.
pub async fn fold_account(log: &EventLog, did: &str) -> Result<(AccountState, i64), CommandError> {
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
    pub email_auth_factor: bool,
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
        email_auth_factor: a.email_auth_factor,
        active: status.is_none(),
        status: status.map(|s| s.as_str()),
        did_doc: did_doc(ctx, a),
    }
}

/// An access token of `scope` and a refresh token with id `jti`, both from `now_secs`.
pub(crate) fn tokens(ctx: &Ctx, did: &str, scope: Scope, jti: &str, now_secs: i64) -> (String, String) {
    (
        if scope == Scope::Takendown {
            // `allowTakendown` logins store no refresh token: nothing to name.
            session_jwt::create_access_token(&ctx.jwt, did, &ctx.service_did, scope, now_secs)
        } else {
            session_jwt::create_session_access_token(
                &ctx.jwt,
                did,
                &ctx.service_did,
                scope,
                &session_jwt::refresh_token_hash(jti),
                now_secs,
            )
        },
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

/// Verifies an access token for this service: its claims.
pub fn verify_access_claims(ctx_jwt: &JwtKey, service_did: &str, token: &str) -> Result<session_jwt::Claims, CommandError> {
    let (_, now_secs) = now();
    session_jwt::verify(ctx_jwt, token, session_jwt::TokenType::Access, service_did, now_secs).map_err(jwt_error)
}

/// An access token naming its session (`jti`, see `session_jwt::create_session_access_token`) is
/// good only while that session's refresh token is held: revoking it (logout, reuse detection,
/// app-password revocation, password change, takedown, deletion) ends its access tokens at once.
/// One primary-key lookup in the `accounts` read model. Tokens without a `jti` (a takendown
/// account's `allowTakendown` login, whose refresh token is never stored) are not looked up.
pub async fn check_access_session(log: &EventLog, claims: &session_jwt::Claims) -> Result<(), CommandError> {
    let Some(session) = claims.jti.as_deref() else { return Ok(()) };
    if projections::accounts::refresh_token_held(log, &claims.sub, session).await? {
        Ok(())
    } else {
        Err(CommandError::ExpiredToken("Token has been revoked".into()))
    }
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
        E::InvalidEmail => CommandError::Named { name: "InvalidEmail", message: "invalid email".into() },
        E::AuthFactorTokenRequired => CommandError::ServiceAuth {
            name: "AuthFactorTokenRequired",
            message: "A sign in code has been sent to your email address".into(),
        },
        E::TokenRequired => CommandError::Named { name: "TokenRequired", message: "confirmation token required".into() },
        E::DuplicateAppPassword(_) | E::InvalidAppPasswordName => {
            CommandError::InvalidRequest(e.to_string())
        }
        E::InvalidCommand(_) | E::SecretNotProtected(_) => CommandError::Internal(e.to_string()),
    }
}

/// Runs CPU-heavy work (argon2) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, CommandError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| CommandError::Internal(format!("worker failed: {e}")))
}

/// Decides on `account/<did>` and appends, retrying on a concurrent change (the common loop of
/// the account commands). `email` names the address an append may race for (`EmailTaken`).
pub(crate) async fn decide_on_account(
    ctx: &Ctx,
    did: &str,
    email: &str,
    decide: impl Fn(&AccountState, i64) -> Result<Vec<AccountEvent>, CommandError>,
) -> Result<(), CommandError> {
    decide_on_account_with(ctx, did, email, vec![], decide).await
}

/// [`decide_on_account`] with more streams in the same append (a queued notification): they
/// commit with the account's events or not at all (and not when the decision is "nothing").
pub(crate) async fn decide_on_account_with(
    ctx: &Ctx,
    did: &str,
    email: &str,
    extra: Vec<StreamAppend>,
    decide: impl Fn(&AccountState, i64) -> Result<Vec<AccountEvent>, CommandError>,
) -> Result<(), CommandError> {
    let parsed = Did::parse(did).map_err(|_| CommandError::AccountNotFound)?;
    for _ in 0..3 {
        let (state, version) = load_account(ctx.log(), did).await?;
        let (now_micros, _) = now();
        let events = decide(&state, now_micros)?;
        if events.is_empty() {
            return Ok(());
        }
        let mut batch = vec![account_append(&parsed, ExpectedVersion::Exact(version), &events)];
        batch.extend(extra.iter().cloned());
        match ctx.appender.append(batch).await {
            Ok(_) => return Ok(()),
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(append_error(e, "", email)),
        }
    }
    Err(CommandError::Conflict(format!("account/{did}")))
}

/// The account aggregate's refusals in the emailed-token flows, with the reference's messages
/// ("Token is invalid", "Token is expired").
pub(crate) fn email_token_error(e: account::AccountError) -> CommandError {
    match e {
        account::AccountError::InvalidToken => CommandError::InvalidToken("Token is invalid".into()),
        account::AccountError::ExpiredToken => CommandError::ExpiredToken("Token is expired".into()),
        e => account_error(e),
    }
}

/// A procedure's JSON input checked against its lexicon (the embedded catalog): anything else is
/// `InvalidRequest` naming where (`Input/preferences/1 …`).
pub fn validate_input(nsid: &str, body: &serde_json::Value) -> Result<(), CommandError> {
    let data = domain::json::json_to_ipld(body).map_err(|e| CommandError::InvalidRequest(format!("Input: {e}")))?;
    lexicon_docs::catalog().validate_input(nsid, &data).map_err(|e| CommandError::InvalidRequest(e.to_string()))
}
