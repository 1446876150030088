//! The account aggregate's state, folded from its events by [`evolve`].
//!
//! `evolve` never fails and never looks at a clock: it applies what was decided. Public events
//! (`account.identity`, `account.status`) announce changes the private events already record, so
//! they leave the state alone, except that a `status: deleted` tombstone folds to
//! [`AccountState::Deleted`] (erasure may keep only the tombstone of a deleted account's stream).

use std::collections::BTreeMap;

use crate::cbor::Cid;
use crate::session_jwt::Scope;
use crate::syntax::{Did, Handle};

use super::events::{AccountCreated, AccountEvent, AccountStatus, EmailTokenPurpose};

/// How long a rotated refresh token is remembered after its grace period ended, so that its
/// reuse is recognised and revokes the family. Older ones are forgotten (presenting one is then
/// just an unknown token), which bounds the state of a long-lived, often-refreshed session.
pub const RETIRED_TOKEN_MEMORY_MICROS: i64 = 7 * 24 * 3600 * 1_000_000;

/// The state of stream `account/<did>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AccountState {
    /// No `account.created` yet.
    #[default]
    Absent,
    Live(Box<Account>),
    /// Deleted: every command but a new `create_account` answers `AccountNotFound`.
    Deleted,
}

/// A live account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub did: Did,
    pub handle: Handle,
    /// Lowercased.
    pub email: String,
    pub email_confirmed_at: Option<i64>,
    /// Email two-factor login: a password login also needs the emailed sign-in code.
    pub email_auth_factor: bool,
    /// argon2id PHC string.
    pub password_hash: String,
    pub signing_key_encrypted: Vec<u8>,
    pub signing_did_key: String,
    pub plc_genesis: Option<Cid>,
    pub invite_code: Option<String>,
    pub created_at: i64,
    pub deactivation: Option<Deactivation>,
    pub takedown: Option<Takedown>,
    /// By name.
    pub app_passwords: BTreeMap<String, AppPassword>,
    /// By token hash (`refresh_token_hash` of the `jti`).
    pub refresh_tokens: BTreeMap<String, RefreshToken>,
    /// The live emailed token of each purpose.
    pub email_tokens: BTreeMap<EmailTokenPurpose, EmailToken>,
}

/// An emailed token: its keyed hash and when it stops being accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailToken {
    pub token_hash: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deactivation {
    pub at: i64,
    pub delete_after: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takedown {
    pub reference: Option<String>,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPassword {
    /// argon2id PHC string with the DID-derived salt (`password::hash_app_password`).
    pub password_hash: String,
    pub privileged: bool,
    pub created_at: i64,
}

/// One stored refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// Hash of the first token of this login; every rotation keeps it.
    pub family: String,
    pub app_password_name: Option<String>,
    /// For a rotated token, the end of its grace period.
    pub expires_at: i64,
    /// Set once rotated: the hash of the token that replaced it.
    pub successor: Option<String>,
}

impl AccountState {
    /// Folds a stream from the start.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a AccountEvent>) -> AccountState {
        events.into_iter().fold(AccountState::Absent, evolve)
    }

    pub fn live(&self) -> Option<&Account> {
        match self {
            AccountState::Live(a) => Some(a),
            _ => None,
        }
    }
}

impl Account {
    /// `#account` semantics: `None` when active, else why not. A takedown outranks a
    /// deactivation (reference `formatAccountStatus`).
    pub fn status(&self) -> Option<AccountStatus> {
        if self.takedown.is_some() {
            Some(AccountStatus::Takendown)
        } else if self.deactivation.is_some() {
            Some(AccountStatus::Deactivated)
        } else {
            None
        }
    }

    pub fn is_active(&self) -> bool {
        self.status().is_none()
    }

    /// The app password whose stored hash equals `hash` (constant-time comparison).
    pub fn app_password_by_hash(&self, hash: &str) -> Option<(&str, &AppPassword)> {
        self.app_passwords
            .iter()
            .find(|(_, p)| crate::password::hashes_equal(&p.password_hash, hash))
            .map(|(n, p)| (n.as_str(), p))
    }

    /// The scope of tokens issued for a login with `app_password_name` (reference
    /// `formatScope`): takendown → `com.atproto.takendown`; app password → `appPass` or
    /// `appPassPrivileged`; else full access.
    pub fn session_scope(&self, app_password_name: Option<&str>) -> Scope {
        if self.takedown.is_some() {
            return Scope::Takendown;
        }
        match app_password_name.map(|n| self.app_passwords.get(n)) {
            None => Scope::Access,
            Some(Some(p)) if p.privileged => Scope::AppPassPrivileged,
            Some(_) => Scope::AppPass,
        }
    }

    /// The `#account` event for the current state.
    pub fn status_event(&self) -> AccountEvent {
        let status = self.status();
        AccountEvent::Status {
            did: self.did.clone(),
            active: status.is_none(),
            status,
        }
    }

    fn revoke_family(&mut self, family: &str) {
        self.refresh_tokens.retain(|_, t| t.family != family);
    }

    /// Forgets tokens that can no longer matter at time `at`: unrotated tokens past their
    /// expiry, rotated ones [`RETIRED_TOKEN_MEMORY_MICROS`] past their grace.
    fn prune_tokens(&mut self, at: i64) {
        self.refresh_tokens.retain(|_, t| match t.successor {
            None => t.expires_at > at,
            Some(_) => t.expires_at.saturating_add(RETIRED_TOKEN_MEMORY_MICROS) > at,
        });
    }
}

fn created(c: &AccountCreated) -> Account {
    Account {
        did: c.did.clone(),
        handle: c.handle.clone(),
        email: c.email.clone(),
        email_confirmed_at: None,
        email_auth_factor: false,
        password_hash: c.password_hash.clone(),
        signing_key_encrypted: c.signing_key_encrypted.clone(),
        signing_did_key: c.signing_did_key.clone(),
        plc_genesis: c.plc_genesis,
        invite_code: c.invite_code.clone(),
        created_at: c.created_at,
        deactivation: c.deactivated.then_some(Deactivation {
            at: c.created_at,
            delete_after: None,
        }),
        takedown: None,
        app_passwords: BTreeMap::new(),
        refresh_tokens: BTreeMap::new(),
        email_tokens: BTreeMap::new(),
    }
}

/// Applies one event. Events that do not fit the state (which `decide_*` never produces) are
/// ignored rather than trusted to invent an account.
pub fn evolve(state: AccountState, event: &AccountEvent) -> AccountState {
    match event {
        AccountEvent::Created(c) => return AccountState::Live(Box::new(created(c))),
        AccountEvent::Deleted { .. }
        | AccountEvent::Status {
            status: Some(AccountStatus::Deleted),
            ..
        } => return AccountState::Deleted,
        _ => {}
    }
    let AccountState::Live(mut a) = state else {
        return state;
    };
    match event {
        AccountEvent::HandleUpdated { handle, .. } => a.handle = handle.clone(),
        AccountEvent::EmailUpdated { email, .. } => {
            a.email = email.clone();
            a.email_confirmed_at = None;
        }
        AccountEvent::EmailConfirmed { email, at } => {
            if *email == a.email {
                a.email_confirmed_at = Some(*at);
            }
        }
        AccountEvent::PasswordChanged { password_hash, .. } => {
            a.password_hash = password_hash.clone();
            a.refresh_tokens.clear();
        }
        AccountEvent::AppPasswordCreated {
            name,
            password_hash,
            privileged,
            at,
        } => {
            a.app_passwords.insert(
                name.clone(),
                AppPassword {
                    password_hash: password_hash.clone(),
                    privileged: *privileged,
                    created_at: *at,
                },
            );
        }
        AccountEvent::AppPasswordRevoked { name, .. } => {
            a.app_passwords.remove(name);
            a.refresh_tokens
                .retain(|_, t| t.app_password_name.as_deref() != Some(name.as_str()));
        }
        AccountEvent::SessionCreated {
            token_hash,
            app_password_name,
            expires_at,
            at,
        } => {
            a.prune_tokens(*at);
            a.refresh_tokens.insert(
                token_hash.clone(),
                RefreshToken {
                    family: token_hash.clone(),
                    app_password_name: app_password_name.clone(),
                    expires_at: *expires_at,
                    successor: None,
                },
            );
        }
        AccountEvent::SessionRefreshed {
            family,
            old_hash,
            new_hash,
            grace_expires_at,
            expires_at,
            at,
        } => {
            let app_password_name = match a.refresh_tokens.get_mut(old_hash) {
                Some(old) => {
                    old.expires_at = *grace_expires_at;
                    old.successor = Some(new_hash.clone());
                    old.app_password_name.clone()
                }
                None => None,
            };
            a.refresh_tokens.insert(
                new_hash.clone(),
                RefreshToken {
                    family: family.clone(),
                    app_password_name,
                    expires_at: *expires_at,
                    successor: None,
                },
            );
            a.prune_tokens(*at);
        }
        AccountEvent::SessionRevoked { family, .. }
        | AccountEvent::SessionFamilyRevoked { family, .. } => a.revoke_family(family),
        AccountEvent::EmailTokenIssued {
            purpose,
            token_hash,
            expires_at,
            ..
        } => {
            a.email_tokens.insert(
                *purpose,
                EmailToken {
                    token_hash: token_hash.clone(),
                    expires_at: *expires_at,
                },
            );
        }
        AccountEvent::EmailTokenUsed { purpose, .. } => {
            a.email_tokens.remove(purpose);
        }
        AccountEvent::EmailAuthFactorUpdated { enabled, .. } => a.email_auth_factor = *enabled,
        AccountEvent::Activated { .. } => a.deactivation = None,
        AccountEvent::Deactivated { delete_after, at } => {
            a.deactivation = Some(Deactivation {
                at: *at,
                delete_after: *delete_after,
            });
        }
        AccountEvent::TakedownUpdated {
            applied,
            reference,
            at,
        } => {
            if *applied {
                a.takedown = Some(Takedown {
                    reference: reference.clone(),
                    at: *at,
                });
                a.refresh_tokens.clear();
            } else {
                a.takedown = None;
            }
        }
        // Preferences are not part of the state commands decide on (`preferences.rs` and the
        // preferences projection keep them).
        AccountEvent::Created(_)
        | AccountEvent::Deleted { .. }
        | AccountEvent::PreferencesPut { .. }
        | AccountEvent::Identity { .. }
        | AccountEvent::Status { .. } => {}
    }
    AccountState::Live(a)
}
