//! One `decide_*` function per command of the account aggregate: state and command in, events
//! out. Pure: the caller has already done everything that needs I/O, a clock or a secret
//! (validated and normalized the handle, checked it and the email are free, hashed the password,
//! generated and encrypted the signing key, verified the offered password, verified the refresh
//! JWT and hashed its `jti`), and appends the events it gets back.
//!
//! **Uniqueness across accounts is not decided here.** A handle or email belongs to one account
//! only; this aggregate sees one account, so the caller checks the accounts projection first and
//! the projection's unique constraints catch the race (the append and the inline projection
//! commit in one transaction; a violation becomes `HandleNotAvailable` / `EmailNotAvailable`).

use crate::key_encryption;
use crate::syntax::{Did, Handle};

use super::events::{AccountCreated, AccountEvent, AccountStatus, EmailTokenPurpose};
use super::state::{Account, AccountState};

/// The reference's refresh-token grace period after a rotation: 2 hours.
pub const REFRESH_GRACE_MICROS: i64 = 2 * 3600 * 1_000_000;
/// Longest app-password name accepted (the lexicon sets none; names are labels for people).
pub const APP_PASSWORD_NAME_MAX: usize = 100;

/// Why a command was refused.
///
/// XRPC mapping (done in `api`; error name, HTTP status):
/// - `AccountAlreadyExists` → `InvalidRequest` 400 ("User already exists", as the reference)
/// - `AccountNotFound` → `AccountNotFound` 400 (for `createSession`: `AuthenticationRequired`
///   401 "Invalid identifier or password", indistinguishable from a wrong password)
/// - `AccountTakedown` → `AccountTakedown` 401
/// - `InvalidPassword` → `AuthenticationRequired` 401 "Invalid identifier or password"
/// - `InvalidToken` → `InvalidToken` 400
/// - `ExpiredToken` → `ExpiredToken` 400
/// - `TokenRevoked` → `ExpiredToken` 400 "Token has been revoked" (the reference's answer for a
///   refresh token it no longer holds)
/// - `DuplicateAppPassword`, `InvalidAppPasswordName` → `InvalidRequest` 400
/// - `InvalidEmail` → `InvalidEmail` 400
/// - `InvalidCommand`, `SecretNotProtected` → `InternalServerError` 500 (a caller bug; log it)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("an account already exists for this DID")]
    AccountAlreadyExists,
    #[error("account not found")]
    AccountNotFound,
    #[error("account has been taken down")]
    AccountTakedown,
    #[error("invalid identifier or password")]
    InvalidPassword,
    #[error("invalid token")]
    InvalidToken,
    #[error("token has expired")]
    ExpiredToken,
    #[error("token has been revoked")]
    TokenRevoked,
    #[error("an app password named `{0}` already exists")]
    DuplicateAppPassword(String),
    #[error("app password name must be 1-{APP_PASSWORD_NAME_MAX} characters, not blank")]
    InvalidAppPasswordName,
    #[error("email does not match the account's address")]
    InvalidEmail,
    /// A password login of an account with email two-factor, without the emailed code.
    #[error("A sign in code has been sent to your email address")]
    AuthFactorTokenRequired,
    /// `updateEmail` on a confirmed address without the emailed token (`TokenRequired`).
    #[error("confirmation token required")]
    TokenRequired,
    #[error("invalid command: {0}")]
    InvalidCommand(&'static str),
    /// Design invariant 5: only hashes and encrypted bytes may enter the log.
    #[error("refusing to record an unprotected secret: {0}")]
    SecretNotProtected(&'static str),
}

fn live(state: &AccountState) -> Result<&Account, AccountError> {
    state.live().ok_or(AccountError::AccountNotFound)
}

// ---- guards for invariant 5 ------------------------------------------------------------------

fn check_password_hash(h: &str) -> Result<(), AccountError> {
    if h.starts_with("$argon2id$") {
        Ok(())
    } else {
        Err(AccountError::SecretNotProtected(
            "password hash is not an argon2id PHC string",
        ))
    }
}

/// `refresh_token_hash` output: 64 lowercase hex digits.
fn check_token_hash(h: &str) -> Result<(), AccountError> {
    if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(AccountError::SecretNotProtected(
            "refresh token hash is not 64 lowercase hex digits",
        ))
    }
}

/// A 32-byte private key (secp256k1 or P-256) sealed by `key_encryption`: version || 12-byte
/// nonce || 32-byte ciphertext || 16-byte tag. A raw key (32 bytes) can never pass.
fn check_encrypted_key(k: &[u8]) -> Result<(), AccountError> {
    if k.first() == Some(&key_encryption::VERSION_1) && k.len() == 1 + 12 + 32 + 16 {
        Ok(())
    } else {
        Err(AccountError::SecretNotProtected(
            "signing key is not a key_encryption v1 blob",
        ))
    }
}

// ---- create_account --------------------------------------------------------------------------

/// `com.atproto.server.createAccount`, inputs already validated and normalized by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateAccount {
    pub did: Did,
    pub handle: Handle,
    pub email: String,
    pub password_hash: String,
    pub signing_key_encrypted: Vec<u8>,
    pub signing_did_key: String,
    pub plc_genesis: Option<crate::cbor::Cid>,
    pub invite_code: Option<String>,
    /// Bring-your-own DID (migration): the account starts deactivated.
    pub deactivated: bool,
}

/// Emits `account.created`, then — for a new, active account — `#identity{handle}` and
/// `#account{active}`. The repo aggregate decides the genesis `#commit` and `#sync`; the caller
/// appends both streams in one transaction so the firehose sees `#identity, #account, #commit,
/// #sync` (reference `createAccount`).
///
/// A bring-your-own-DID account starts deactivated and, as in the reference (notes §3.6), emits
/// no public event: the DID document still names the old PDS, so `activate` announces it later.
/// A deleted account's DID may be created again (a migration back).
pub fn decide_create_account(
    state: &AccountState,
    cmd: CreateAccount,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    if state.live().is_some() {
        return Err(AccountError::AccountAlreadyExists);
    }
    check_password_hash(&cmd.password_hash)?;
    check_encrypted_key(&cmd.signing_key_encrypted)?;
    if cmd.plc_genesis.is_some() && cmd.did.method() != "plc" {
        return Err(AccountError::InvalidCommand(
            "a PLC genesis operation needs a did:plc",
        ));
    }
    if !cmd.email.contains('@') {
        return Err(AccountError::InvalidCommand("email without `@`"));
    }
    let did = cmd.did;
    let handle = cmd.handle;
    let deactivated = cmd.deactivated;
    let mut events = vec![AccountEvent::Created(Box::new(AccountCreated {
        did: did.clone(),
        handle: handle.clone(),
        email: cmd.email.to_lowercase(),
        password_hash: cmd.password_hash,
        signing_key_encrypted: cmd.signing_key_encrypted,
        signing_did_key: cmd.signing_did_key,
        plc_genesis: cmd.plc_genesis,
        invite_code: cmd.invite_code,
        deactivated,
        created_at: now,
    }))];
    if !deactivated {
        events.push(AccountEvent::Identity {
            did: did.clone(),
            handle: Some(handle),
        });
        events.push(AccountEvent::Status {
            did,
            active: true,
            status: None,
        });
    }
    Ok(events)
}

// ---- sessions --------------------------------------------------------------------------------

/// The caller's verification of the offered password, done outside (argon2 is slow and the
/// comparison must be constant-time): whether it is the account password, and if it has the
/// app-password shape, its `hash_app_password(did, …)` to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordCheck {
    pub account_password_ok: bool,
    pub app_password_hash: Option<String>,
}

/// `com.atproto.server.createSession` for an account the identifier resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSession {
    pub password: PasswordCheck,
    pub allow_takendown: bool,
    /// `refresh_token_hash` of the new refresh JWT's `jti`.
    pub token_hash: String,
    /// The refresh JWT's `exp`, in microseconds.
    pub expires_at: i64,
}

/// Reference `login` + `createSession`: the password is checked first (so a takedown is not
/// revealed to someone without it); a takendown account may not use an app password, and logs
/// in only with `allow_takendown`, getting a session whose refresh token is **not** stored (so it
/// cannot be rotated): no event. A deactivated account logs in normally.
/// The token scope is [`Account::session_scope`] of the app password the event names.
pub fn decide_create_session(
    state: &AccountState,
    cmd: CreateSession,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    let takendown = account.takedown.is_some();
    let app_password_name = if cmd.password.account_password_ok {
        None
    } else {
        let found = cmd
            .password
            .app_password_hash
            .as_deref()
            .and_then(|h| account.app_password_by_hash(h));
        match found {
            Some((name, _)) if !takendown => Some(name.to_string()),
            _ => return Err(AccountError::InvalidPassword),
        }
    };
    if takendown {
        return if cmd.allow_takendown {
            Ok(vec![])
        } else {
            Err(AccountError::AccountTakedown)
        };
    }
    check_token_hash(&cmd.token_hash)?;
    if account.refresh_tokens.contains_key(&cmd.token_hash) {
        return Err(AccountError::InvalidCommand(
            "refresh token hash already in use",
        ));
    }
    Ok(vec![AccountEvent::SessionCreated {
        token_hash: cmd.token_hash,
        app_password_name,
        expires_at: cmd.expires_at,
        at: now,
    }])
}

/// `com.atproto.server.refreshSession`, after the refresh JWT verified (signature, audience,
/// `exp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshSession {
    /// `refresh_token_hash` of the presented token's `jti`.
    pub token_hash: String,
    /// `refresh_token_hash(successor_jti(secret, presented jti))`: the successor is derived,
    /// not random, so a reuse within the grace period re-mints the very same successor although
    /// the log holds only hashes (see [`super::successor_jti`]).
    pub successor_hash: String,
    /// The successor JWT's `exp`, in microseconds.
    pub successor_expires_at: i64,
}

/// The token to hand out after a refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionGrant {
    pub token_hash: String,
    pub expires_at: i64,
    /// Scope: [`Account::session_scope`] of this name.
    pub app_password_name: Option<String>,
}

/// What `decide_refresh_session` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshDecision {
    /// First use: append `events`, then issue the successor.
    Rotate {
        events: Vec<AccountEvent>,
        grant: SessionGrant,
    },
    /// Reuse within the grace period (a client retrying): append nothing, issue the same
    /// successor again.
    Reissue { grant: SessionGrant },
    /// Reuse after the grace period (a stolen token, or a client's): append `events` (the family
    /// is revoked), then answer [`AccountError::InvalidToken`].
    RevokeFamily { events: Vec<AccountEvent> },
}

impl RefreshDecision {
    pub fn events(&self) -> &[AccountEvent] {
        match self {
            RefreshDecision::Rotate { events, .. } | RefreshDecision::RevokeFamily { events } => {
                events
            }
            RefreshDecision::Reissue { .. } => &[],
        }
    }
}

/// Rotation with reuse detection. An unknown or revoked token → `TokenRevoked`; an expired one →
/// `ExpiredToken`; a takendown account → `AccountTakedown` (its tokens are revoked anyway).
/// First use rotates: the old token's expiry shrinks to `min(expiry, now + 2 h)` (reference
/// `rotateRefreshToken`). Reuse within that grace returns the recorded successor; reuse after it
/// revokes the whole family (stricter than the reference, which just forgets the token).
pub fn decide_refresh_session(
    state: &AccountState,
    cmd: RefreshSession,
    now: i64,
) -> Result<RefreshDecision, AccountError> {
    let account = live(state)?;
    if account.takedown.is_some() {
        return Err(AccountError::AccountTakedown);
    }
    let token = account
        .refresh_tokens
        .get(&cmd.token_hash)
        .ok_or(AccountError::TokenRevoked)?;
    match &token.successor {
        None => {
            if token.expires_at <= now {
                return Err(AccountError::ExpiredToken);
            }
            check_token_hash(&cmd.successor_hash)?;
            if account.refresh_tokens.contains_key(&cmd.successor_hash) {
                return Err(AccountError::InvalidCommand(
                    "successor hash already in use",
                ));
            }
            let grace_expires_at = token
                .expires_at
                .min(now.saturating_add(REFRESH_GRACE_MICROS));
            Ok(RefreshDecision::Rotate {
                events: vec![AccountEvent::SessionRefreshed {
                    family: token.family.clone(),
                    old_hash: cmd.token_hash,
                    new_hash: cmd.successor_hash.clone(),
                    grace_expires_at,
                    expires_at: cmd.successor_expires_at,
                    at: now,
                }],
                grant: SessionGrant {
                    token_hash: cmd.successor_hash,
                    expires_at: cmd.successor_expires_at,
                    app_password_name: token.app_password_name.clone(),
                },
            })
        }
        Some(successor) if now < token.expires_at => {
            if *successor != cmd.successor_hash {
                // The derivation secret changed since the rotation: the successor we could
                // mint now would not be the recorded one.
                return Err(AccountError::InvalidToken);
            }
            let next = account
                .refresh_tokens
                .get(successor)
                .ok_or(AccountError::TokenRevoked)?;
            Ok(RefreshDecision::Reissue {
                grant: SessionGrant {
                    token_hash: successor.clone(),
                    expires_at: next.expires_at,
                    app_password_name: next.app_password_name.clone(),
                },
            })
        }
        Some(_) => Ok(RefreshDecision::RevokeFamily {
            events: vec![AccountEvent::SessionFamilyRevoked {
                family: token.family.clone(),
                reused_hash: cmd.token_hash,
                at: now,
            }],
        }),
    }
}

/// `com.atproto.server.deleteSession` (the refresh token may be expired): revokes the token's
/// whole family, so an ancestor still in its grace period cannot bring the session back. An
/// unknown token is already gone: no event.
pub fn decide_delete_session(
    state: &AccountState,
    token_hash: &str,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    Ok(match account.refresh_tokens.get(token_hash) {
        Some(t) => vec![AccountEvent::SessionRevoked {
            family: t.family.clone(),
            token_hash: token_hash.to_string(),
            at: now,
        }],
        None => vec![],
    })
}

// ---- app passwords ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateAppPassword {
    pub name: String,
    /// `hash_app_password(did, password)`.
    pub password_hash: String,
    pub privileged: bool,
}

/// `com.atproto.server.createAppPassword`: names are unique per account and 1-100 characters;
/// a takendown account is refused (lexicon error `AccountTakedown`).
pub fn decide_create_app_password(
    state: &AccountState,
    cmd: CreateAppPassword,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    if account.takedown.is_some() {
        return Err(AccountError::AccountTakedown);
    }
    if cmd.name.trim().is_empty() || cmd.name.chars().count() > APP_PASSWORD_NAME_MAX {
        return Err(AccountError::InvalidAppPasswordName);
    }
    if account.app_passwords.contains_key(&cmd.name) {
        return Err(AccountError::DuplicateAppPassword(cmd.name));
    }
    check_password_hash(&cmd.password_hash)?;
    Ok(vec![AccountEvent::AppPasswordCreated {
        name: cmd.name,
        password_hash: cmd.password_hash,
        privileged: cmd.privileged,
        at: now,
    }])
}

/// `com.atproto.server.revokeAppPassword`: also revokes that app password's sessions. An
/// unknown name is not an error (the reference deletes nothing and answers 200): no event.
pub fn decide_revoke_app_password(
    state: &AccountState,
    name: &str,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    Ok(if account.app_passwords.contains_key(name) {
        vec![AccountEvent::AppPasswordRevoked {
            name: name.to_string(),
            at: now,
        }]
    } else {
        vec![]
    })
}

// ---- identity and credentials ----------------------------------------------------------------

/// `com.atproto.identity.updateHandle` / admin `updateAccountHandle`, after the caller updated
/// the DID document (PLC) or checked it (did:web). Emits `handle_updated` + `#identity{handle}`;
/// the same handle again re-announces it (`#identity` only), as the reference allows.
pub fn decide_update_handle(
    state: &AccountState,
    handle: Handle,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    let mut events = vec![];
    if account.handle != handle {
        events.push(AccountEvent::HandleUpdated {
            handle: handle.clone(),
            at: now,
        });
    }
    events.push(AccountEvent::Identity {
        did: account.did.clone(),
        handle: Some(handle),
    });
    Ok(events)
}

/// `com.atproto.server.updateEmail` (the email token, if one was required, is checked by the
/// caller). Always clears the confirmation, as the reference does.
pub fn decide_update_email(
    state: &AccountState,
    email: &str,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    live(state)?;
    if !email.contains('@') {
        return Err(AccountError::InvalidCommand("email without `@`"));
    }
    Ok(vec![AccountEvent::EmailUpdated {
        email: email.to_lowercase(),
        at: now,
    }])
}

/// `com.atproto.server.confirmEmail` (token checked by the caller): the address must be the
/// account's current one (compared lowercased) → else `InvalidEmail`.
pub fn decide_confirm_email(
    state: &AccountState,
    email: &str,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    let email = email.to_lowercase();
    if email != account.email {
        return Err(AccountError::InvalidEmail);
    }
    Ok(vec![AccountEvent::EmailConfirmed { email, at: now }])
}

/// `resetPassword` / admin `updateAccountPassword`: new hash; every session is revoked.
pub fn decide_change_password(
    state: &AccountState,
    password_hash: String,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    live(state)?;
    check_password_hash(&password_hash)?;
    Ok(vec![AccountEvent::PasswordChanged {
        password_hash,
        at: now,
    }])
}

// ---- lifecycle -------------------------------------------------------------------------------

/// `com.atproto.server.activateAccount`: `activated`, `#account` (of the new state),
/// `#identity{handle}` — the reference's order; the repo aggregate adds the `#sync` of the
/// current commit, appended after these. Emitted even when already active (re-announces).
/// A takendown account cannot be activated (`AccountTakedown`; the reference answers
/// `AccountNotFound`).
pub fn decide_activate(state: &AccountState, now: i64) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    if account.takedown.is_some() {
        return Err(AccountError::AccountTakedown);
    }
    Ok(vec![
        AccountEvent::Activated { at: now },
        AccountEvent::Status {
            did: account.did.clone(),
            active: true,
            status: None,
        },
        AccountEvent::Identity {
            did: account.did.clone(),
            handle: Some(account.handle.clone()),
        },
    ])
}

/// `com.atproto.server.deactivateAccount`: `deactivated` + `#account` of the new state
/// (`deactivated`, or `takendown` if also taken down). Repeating it updates `delete_after`.
pub fn decide_deactivate(
    state: &AccountState,
    delete_after: Option<i64>,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    let event = AccountEvent::Deactivated {
        delete_after,
        at: now,
    };
    let status = status_after(account, &event);
    Ok(vec![event, status])
}

/// Admin `updateSubjectStatus` with `deactivated: {applied: false}` (reference: the account
/// manager's `activateAccount`, then `#account` of the resulting status): `activated` + `#account`
/// (`active`, or `takendown` if also taken down). Unlike the user's `activateAccount` there is no
/// `#identity` and no `#sync`, and a takendown account is not refused. Always emitted, as the
/// reference always sequences the status.
pub fn decide_lift_deactivation(
    state: &AccountState,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    let event = AccountEvent::Activated { at: now };
    let status = status_after(account, &event);
    Ok(vec![event, status])
}

/// Admin `updateSubjectStatus` on the account: a takedown (`reference` = the moderation ref)
/// revokes every session and emits `#account{takendown}`; lifting it emits the new status
/// (active, or deactivated). No change (already in that takedown state with that reference)
/// → no event.
pub fn decide_update_takedown(
    state: &AccountState,
    applied: bool,
    reference: Option<String>,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    let unchanged = match &account.takedown {
        Some(t) => applied && t.reference == reference,
        None => !applied,
    };
    if unchanged {
        return Ok(vec![]);
    }
    let event = AccountEvent::TakedownUpdated {
        applied,
        reference: if applied { reference } else { None },
        at: now,
    };
    let status = status_after(account, &event);
    Ok(vec![event, status])
}

/// `com.atproto.server.deleteAccount` / admin `deleteAccount` (password and token checked by the
/// caller): `deleted` + `#account{active: false, status: deleted}`. The caller then erases the
/// DID's earlier events, keeping these two (design invariant 6).
pub fn decide_delete(state: &AccountState, now: i64) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    Ok(vec![
        AccountEvent::Deleted { at: now },
        AccountEvent::Status {
            did: account.did.clone(),
            active: false,
            status: Some(AccountStatus::Deleted),
        },
    ])
}

/// The `#account` event of the state after `event`.
fn status_after(account: &Account, event: &AccountEvent) -> AccountEvent {
    let next = super::state::evolve(AccountState::Live(Box::new(account.clone())), event);
    match next.live() {
        Some(a) => a.status_event(),
        None => AccountEvent::Status {
            did: account.did.clone(),
            active: false,
            status: Some(AccountStatus::Deleted),
        },
    }
}

// ---- emailed tokens ------------------------------------------------------------------------

/// `request*` (email confirmation / update, password reset, account deletion): a new token of
/// `purpose` (its keyed hash; the caller mails the token), replacing any earlier one.
pub fn decide_issue_email_token(
    state: &AccountState,
    purpose: EmailTokenPurpose,
    token_hash: String,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    live(state)?;
    check_token_hash(&token_hash)?;
    Ok(vec![AccountEvent::EmailTokenIssued {
        purpose,
        token_hash,
        expires_at: now.saturating_add(crate::email_token::LIFETIME_MICROS),
        at: now,
    }])
}

/// The reference's `assertValidToken`: no token of that purpose, or another one →
/// `InvalidToken`; past its 15 minutes → `ExpiredToken`.
pub fn check_email_token(
    account: &Account,
    purpose: EmailTokenPurpose,
    token_hash: &str,
    now: i64,
) -> Result<(), AccountError> {
    let Some(t) = account.email_tokens.get(&purpose) else {
        return Err(AccountError::InvalidToken);
    };
    if !crate::password::hashes_equal(&t.token_hash, token_hash) {
        return Err(AccountError::InvalidToken);
    }
    if t.expires_at <= now {
        return Err(AccountError::ExpiredToken);
    }
    Ok(())
}

/// `confirmEmail` with its token: token first, then the address must be the account's →
/// `email_confirmed` + the token used.
pub fn decide_confirm_email_with_token(
    state: &AccountState,
    email: &str,
    token_hash: &str,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    check_email_token(account, EmailTokenPurpose::ConfirmEmail, token_hash, now)?;
    let mut events = decide_confirm_email(state, email, now)?;
    events.push(AccountEvent::EmailTokenUsed {
        purpose: EmailTokenPurpose::ConfirmEmail,
        at: now,
    });
    Ok(events)
}

/// `updateEmail`: a confirmed address needs the `update_email` token (`TokenRequired`); a
/// token, when given, must be valid. The new address is unconfirmed.
/// The same address again changes nothing but (reference) may switch `email_auth_factor`.
pub fn decide_update_email_with_token(
    state: &AccountState,
    email: &str,
    token_hash: Option<&str>,
    email_auth_factor: Option<bool>,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    match token_hash {
        None if account.email_confirmed_at.is_some() => return Err(AccountError::TokenRequired),
        None => {}
        Some(h) => check_email_token(account, EmailTokenPurpose::UpdateEmail, h, now)?,
    }
    let mut events = if email.to_lowercase() == account.email {
        vec![]
    } else {
        decide_update_email(state, email, now)?
    };
    if let Some(enabled) = email_auth_factor.filter(|e| *e != account.email_auth_factor) {
        events.push(AccountEvent::EmailAuthFactorUpdated { enabled, at: now });
    }
    if token_hash.is_some() {
        events.push(AccountEvent::EmailTokenUsed {
            purpose: EmailTokenPurpose::UpdateEmail,
            at: now,
        });
    }
    Ok(events)
}

/// `resetPassword`: the `reset_password` token, then the new password (every session revoked).
pub fn decide_reset_password(
    state: &AccountState,
    token_hash: &str,
    password_hash: String,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    check_email_token(account, EmailTokenPurpose::ResetPassword, token_hash, now)?;
    let mut events = decide_change_password(state, password_hash, now)?;
    events.push(AccountEvent::EmailTokenUsed {
        purpose: EmailTokenPurpose::ResetPassword,
        at: now,
    });
    Ok(events)
}

/// Email two-factor at login (reference `createSession`), after the password checked: only a
/// login with the account password of an account with `email_auth_factor` needs the emailed
/// sign-in code (app passwords do not). No code → `AuthFactorTokenRequired` (the caller mails
/// one); a code → checked like every emailed token, and used.
pub fn decide_sign_in_factor(
    account: &Account,
    account_password_login: bool,
    token_hash: Option<&str>,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    if !account.email_auth_factor || !account_password_login {
        return Ok(vec![]);
    }
    let Some(h) = token_hash else {
        return Err(AccountError::AuthFactorTokenRequired);
    };
    check_email_token(account, EmailTokenPurpose::SignIn, h, now)?;
    Ok(vec![AccountEvent::EmailTokenUsed {
        purpose: EmailTokenPurpose::SignIn,
        at: now,
    }])
}

/// `signPlcOperation`: the `plc_operation` token is checked and used (the caller signs the op).
pub fn decide_use_plc_operation_token(
    state: &AccountState,
    token_hash: &str,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    check_email_token(account, EmailTokenPurpose::PlcOperation, token_hash, now)?;
    Ok(vec![AccountEvent::EmailTokenUsed {
        purpose: EmailTokenPurpose::PlcOperation,
        at: now,
    }])
}

/// `submitPlcOperation` (after the directory accepted it): `#identity` without a handle, as the
/// reference's `sequenceIdentityEvt(did)`; the handle, if the operation changed it, is adopted.
pub fn decide_identity_changed(
    state: &AccountState,
    handle: Option<Handle>,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    let mut events = vec![];
    if let Some(h) = handle.filter(|h| *h != account.handle) {
        events.push(AccountEvent::HandleUpdated { handle: h, at: now });
    }
    events.push(AccountEvent::Identity {
        did: account.did.clone(),
        handle: None,
    });
    Ok(events)
}

/// `com.atproto.admin.{disable,enable}AccountInvites`: one event when the flag changes, none when
/// it already has that value.
pub fn decide_set_invites_disabled(
    state: &AccountState,
    disabled: bool,
    now: i64,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = live(state)?;
    if account.invites_disabled == disabled {
        return Ok(vec![]);
    }
    Ok(vec![AccountEvent::InvitesDisabledUpdated { disabled, at: now }])
}
