//! The account aggregate (stream `account/<did>`): the write side of accounts, credentials and
//! legacy sessions, as pure decide/evolve.
//!
//! - `events` — [`AccountEvent`], its stable names, versions and DAG-CBOR payloads; which events
//!   are public (`#identity`, `#account`).
//! - `state` — [`AccountState`] and [`evolve`].
//! - `decide` — one `decide_*` per command, and [`AccountError`] with its XRPC mapping.
//! - `preferences` — `app.bsky` preferences: the put rules and the read view.
//! - `rotation` — [`successor_jti`], the derived refresh-token successor.
//!
//! Commands load the state (fold the stream, or read it from the accounts/sessions projection),
//! call a `decide_*` with the time passed in (Unix microseconds), and append the events. What
//! needs I/O, a clock, randomness or a secret (argon2, key encryption, JWTs, DID documents,
//! handle/email uniqueness across accounts) is done by the caller before deciding.
//!
//! Never performs I/O; never records a secret in the clear (design invariant 5): the decide
//! functions refuse a password that is not an argon2id hash, a token id that is not a hash and
//! a signing key that is not encrypted.

mod decide;
mod events;
pub mod preferences;
mod rotation;
mod state;

#[cfg(test)]
mod tests;

pub use decide::{
    check_email_token, decide_confirm_email_with_token, decide_issue_email_token, decide_reset_password,
    decide_sign_in_factor, decide_use_plc_operation_token, decide_identity_changed,
    decide_update_email_with_token,
    decide_activate, decide_change_password, decide_confirm_email, decide_create_account,
    decide_create_app_password, decide_create_session, decide_deactivate, decide_delete,
    decide_delete_session, decide_lift_deactivation, decide_refresh_session, decide_revoke_app_password, decide_update_email,
    decide_update_handle, decide_update_takedown, AccountError, CreateAccount, CreateAppPassword,
    CreateSession, PasswordCheck, RefreshDecision, RefreshSession, SessionGrant,
    APP_PASSWORD_NAME_MAX, REFRESH_GRACE_MICROS,
};
pub use events::{
    AccountCreated, AccountEvent, AccountStatus, EmailTokenPurpose, EventDecodeError, EVENT_TYPES, EVENT_VERSION,
    PREFERENCE_EVENT_TYPES,
};
pub use rotation::successor_jti;
pub use state::{
    evolve, Account, AccountState, AppPassword, Deactivation, EmailToken, RefreshToken, Takedown,
    RETIRED_TOKEN_MEMORY_MICROS,
};

/// The stream of the account `did`.
pub fn stream_name(did: &crate::syntax::Did) -> String {
    format!("account/{did}")
}
