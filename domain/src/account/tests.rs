//! Given/when/then tests of the account aggregate, and payload round trips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::cbor;
use crate::session_jwt::{refresh_token_hash, Scope};
use crate::syntax::{Did, Handle};

// ---- the test DSL ------------------------------------------------------------------------------

/// Anything a decide function returns that carries events to append.
trait Decided {
    fn decided_events(&self) -> Vec<AccountEvent>;
}
impl Decided for Vec<AccountEvent> {
    fn decided_events(&self) -> Vec<AccountEvent> {
        self.clone()
    }
}
impl Decided for RefreshDecision {
    fn decided_events(&self) -> Vec<AccountEvent> {
        self.events().to_vec()
    }
}

struct Given(AccountState);
struct When<R>(AccountState, Result<R, AccountError>);

/// Starts from a state reached earlier in the test.
fn given_state(state: AccountState) -> Given {
    Given(state)
}

fn given(events: impl IntoIterator<Item = AccountEvent>) -> Given {
    let events: Vec<AccountEvent> = events.into_iter().collect();
    Given(AccountState::from_events(&events))
}

impl Given {
    fn when<R>(self, decide: impl FnOnce(&AccountState) -> Result<R, AccountError>) -> When<R> {
        let out = decide(&self.0);
        When(self.0, out)
    }
}

impl<R: Decided + PartialEq + std::fmt::Debug> When<R> {
    /// The decision equals `expected`; its events survive the log (payload round trip) and fold.
    /// Returns the state after them, for further checks.
    #[track_caller]
    fn then(self, expected: R) -> AccountState {
        let got = self
            .1
            .unwrap_or_else(|e| panic!("expected {expected:?}, got error {e:?}"));
        assert_eq!(got, expected);
        let mut state = self.0;
        for e in got.decided_events() {
            assert_round_trips(&e);
            state = evolve(state, &e);
        }
        state
    }

    #[track_caller]
    fn then_error(self, expected: AccountError) {
        match self.1 {
            Ok(got) => panic!("expected error {expected:?}, got {got:?}"),
            Err(e) => assert_eq!(e, expected),
        }
    }
}

#[track_caller]
fn assert_round_trips(e: &AccountEvent) {
    let bytes = e.to_payload();
    let ipld = cbor::decode(&bytes).expect("payload is canonical DAG-CBOR");
    assert_eq!(cbor::encode(&ipld).unwrap(), bytes);
    let back = AccountEvent::from_payload(e.event_type(), e.event_version(), &bytes).unwrap();
    assert_eq!(&back, e);
}

// ---- fixtures ----------------------------------------------------------------------------------

const T0: i64 = 1_700_000_000_000_000;
const MIN: i64 = 60 * 1_000_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn alice() -> Did {
    Did::parse("did:plc:alice7ddcakeeqv2t4wdnx3").unwrap()
}
fn handle(s: &str) -> Handle {
    Handle::parse(s).unwrap()
}
fn pw_hash(tag: &str) -> String {
    format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ${tag}")
}
fn token(n: &str) -> String {
    refresh_token_hash(n)
}
fn encrypted_key() -> Vec<u8> {
    let mut k = vec![crate::key_encryption::VERSION_1];
    k.extend([7u8; 12 + 32 + 16]);
    k
}
fn genesis_cid() -> cbor::Cid {
    cbor::cid_cbor(b"genesis op")
}

fn create_cmd() -> CreateAccount {
    CreateAccount {
        did: alice(),
        handle: handle("alice.test"),
        email: "Alice@Example.com".into(),
        password_hash: pw_hash("main"),
        signing_key_encrypted: encrypted_key(),
        signing_did_key: "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme".into(),
        plc_genesis: Some(genesis_cid()),
        invite_code: Some("test-invite-1234".into()),
        deactivated: false,
    }
}

fn account_created() -> AccountEvent {
    AccountEvent::Created(Box::new(AccountCreated {
        did: alice(),
        handle: handle("alice.test"),
        email: "alice@example.com".into(),
        password_hash: pw_hash("main"),
        signing_key_encrypted: encrypted_key(),
        signing_did_key: "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme".into(),
        plc_genesis: Some(genesis_cid()),
        invite_code: Some("test-invite-1234".into()),
        deactivated: false,
        created_at: T0,
    }))
}

fn session_created(jti: &str, at: i64) -> AccountEvent {
    AccountEvent::SessionCreated {
        token_hash: token(jti),
        app_password_name: None,
        expires_at: at + 90 * DAY,
        at,
    }
}

fn refreshed(old: &str, new: &str, at: i64, family: &str) -> AccountEvent {
    AccountEvent::SessionRefreshed {
        family: token(family),
        old_hash: token(old),
        new_hash: token(new),
        grace_expires_at: at + 2 * HOUR,
        expires_at: at + 90 * DAY,
        at,
    }
}

fn app_password_created(name: &str, privileged: bool) -> AccountEvent {
    AccountEvent::AppPasswordCreated {
        name: name.into(),
        password_hash: pw_hash(name),
        privileged,
        at: T0,
    }
}

fn status(active: bool, s: Option<AccountStatus>) -> AccountEvent {
    AccountEvent::Status {
        did: alice(),
        active,
        status: s,
    }
}

fn identity(h: &str) -> AccountEvent {
    AccountEvent::Identity {
        did: alice(),
        handle: Some(handle(h)),
    }
}

fn takedown(reference: &str, at: i64) -> AccountEvent {
    AccountEvent::TakedownUpdated {
        applied: true,
        reference: Some(reference.into()),
        at,
    }
}

fn login(account_ok: bool, app_pw: Option<&str>, jti: &str) -> CreateSession {
    CreateSession {
        password: PasswordCheck {
            account_password_ok: account_ok,
            app_password_hash: app_pw.map(pw_hash),
        },
        allow_takendown: false,
        token_hash: token(jti),
        expires_at: T0 + 90 * DAY,
    }
}

fn refresh(old: &str, new: &str, at: i64) -> RefreshSession {
    RefreshSession {
        token_hash: token(old),
        successor_hash: token(new),
        successor_expires_at: at + 90 * DAY,
    }
}

// ---- create_account ----------------------------------------------------------------------------

#[test]
fn create_account_emits_created_identity_and_active_status() {
    let state = given([])
        .when(|s| decide_create_account(s, create_cmd(), T0))
        .then(vec![
            account_created(),
            identity("alice.test"),
            status(true, None),
        ]);
    let a = state.live().unwrap();
    assert!(a.is_active());
    assert_eq!(a.email, "alice@example.com");
}

#[test]
fn bring_your_own_did_starts_deactivated_and_announces_nothing() {
    let cmd = CreateAccount {
        deactivated: true,
        plc_genesis: None,
        ..create_cmd()
    };
    let AccountEvent::Created(mut c) = account_created() else {
        unreachable!()
    };
    c.deactivated = true;
    c.plc_genesis = None;
    let state = given([])
        .when(|s| decide_create_account(s, cmd, T0))
        .then(vec![AccountEvent::Created(c)]);
    assert_eq!(
        state.live().unwrap().status(),
        Some(AccountStatus::Deactivated)
    );
}

#[test]
fn create_account_twice_is_refused() {
    given([account_created()])
        .when(|s| decide_create_account(s, create_cmd(), T0))
        .then_error(AccountError::AccountAlreadyExists);
}

#[test]
fn a_deleted_did_can_come_back() {
    given([account_created(), AccountEvent::Deleted { at: T0 + DAY }])
        .when(|s| decide_create_account(s, create_cmd(), T0))
        .then(vec![
            account_created(),
            identity("alice.test"),
            status(true, None),
        ]);
}

#[test]
fn create_account_refuses_secrets_in_the_clear() {
    given([])
        .when(|s| {
            decide_create_account(
                s,
                CreateAccount {
                    password_hash: "hunter2".into(),
                    ..create_cmd()
                },
                T0,
            )
        })
        .then_error(AccountError::SecretNotProtected(
            "password hash is not an argon2id PHC string",
        ));
    given([])
        .when(|s| {
            decide_create_account(
                s,
                CreateAccount {
                    signing_key_encrypted: vec![0x01; 32],
                    ..create_cmd()
                },
                T0,
            )
        })
        .then_error(AccountError::SecretNotProtected(
            "signing key is not a key_encryption v1 blob",
        ));
}

#[test]
fn a_plc_genesis_op_needs_a_did_plc() {
    let cmd = CreateAccount {
        did: Did::parse("did:web:alice.example.com").unwrap(),
        ..create_cmd()
    };
    given([])
        .when(|s| decide_create_account(s, cmd, T0))
        .then_error(AccountError::InvalidCommand(
            "a PLC genesis operation needs a did:plc",
        ));
}

// ---- create_session ----------------------------------------------------------------------------

#[test]
fn login_with_the_account_password_stores_the_refresh_token() {
    given([account_created()])
        .when(|s| decide_create_session(s, login(true, None, "jti-1"), T0))
        .then(vec![session_created("jti-1", T0)]);
}

#[test]
fn login_with_an_app_password_names_it_and_scopes_the_session() {
    let state = given([account_created(), app_password_created("phone", true)])
        .when(|s| decide_create_session(s, login(false, Some("phone"), "jti-1"), T0))
        .then(vec![AccountEvent::SessionCreated {
            token_hash: token("jti-1"),
            app_password_name: Some("phone".into()),
            expires_at: T0 + 90 * DAY,
            at: T0,
        }]);
    let a = state.live().unwrap();
    assert_eq!(a.session_scope(Some("phone")), Scope::AppPassPrivileged);
    assert_eq!(a.session_scope(None), Scope::Access);
}

#[test]
fn login_with_a_wrong_password_is_refused() {
    given([account_created(), app_password_created("phone", false)])
        .when(|s| decide_create_session(s, login(false, Some("other"), "jti-1"), T0))
        .then_error(AccountError::InvalidPassword);
}

#[test]
fn login_to_a_takendown_account_is_refused_after_the_password_check() {
    given([account_created(), takedown("mod-1", T0)])
        .when(|s| decide_create_session(s, login(false, None, "jti-1"), T0))
        .then_error(AccountError::InvalidPassword);
    given([account_created(), takedown("mod-1", T0)])
        .when(|s| decide_create_session(s, login(true, None, "jti-1"), T0))
        .then_error(AccountError::AccountTakedown);
}

#[test]
fn takendown_login_with_allow_takendown_stores_no_refresh_token() {
    let state = given([account_created(), takedown("mod-1", T0)])
        .when(|s| {
            decide_create_session(
                s,
                CreateSession {
                    allow_takendown: true,
                    ..login(true, None, "jti-1")
                },
                T0,
            )
        })
        .then(vec![]);
    assert_eq!(state.live().unwrap().session_scope(None), Scope::Takendown);
}

#[test]
fn takendown_accounts_cannot_use_app_passwords() {
    given([
        account_created(),
        app_password_created("phone", false),
        takedown("mod-1", T0),
    ])
    .when(|s| {
        decide_create_session(
            s,
            CreateSession {
                allow_takendown: true,
                ..login(false, Some("phone"), "jti-1")
            },
            T0,
        )
    })
    .then_error(AccountError::InvalidPassword);
}

#[test]
fn a_deactivated_account_can_log_in() {
    given([
        account_created(),
        AccountEvent::Deactivated {
            delete_after: None,
            at: T0,
        },
    ])
    .when(|s| decide_create_session(s, login(true, None, "jti-1"), T0))
    .then(vec![session_created("jti-1", T0)]);
}

#[test]
fn login_refuses_a_raw_token_id() {
    given([account_created()])
        .when(|s| {
            decide_create_session(
                s,
                CreateSession {
                    token_hash: "jti-1".into(),
                    ..login(true, None, "x")
                },
                T0,
            )
        })
        .then_error(AccountError::SecretNotProtected(
            "refresh token hash is not 64 lowercase hex digits",
        ));
}

#[test]
fn no_session_for_an_unknown_or_deleted_account() {
    given([])
        .when(|s| decide_create_session(s, login(true, None, "jti-1"), T0))
        .then_error(AccountError::AccountNotFound);
    given([account_created(), AccountEvent::Deleted { at: T0 }])
        .when(|s| decide_create_session(s, login(true, None, "jti-1"), T0))
        .then_error(AccountError::AccountNotFound);
}

// ---- refresh_session ---------------------------------------------------------------------------

#[test]
fn first_refresh_rotates_with_a_two_hour_grace() {
    let now = T0 + DAY;
    given([account_created(), session_created("a", T0)])
        .when(|s| decide_refresh_session(s, refresh("a", "b", now), now))
        .then(RefreshDecision::Rotate {
            events: vec![refreshed("a", "b", now, "a")],
            grant: SessionGrant {
                token_hash: token("b"),
                expires_at: now + 90 * DAY,
                app_password_name: None,
            },
        });
}

#[test]
fn grace_never_outlives_the_original_expiry() {
    let now = T0 + 90 * DAY - 30 * MIN;
    given([account_created(), session_created("a", T0)])
        .when(|s| decide_refresh_session(s, refresh("a", "b", now), now))
        .then(RefreshDecision::Rotate {
            events: vec![AccountEvent::SessionRefreshed {
                family: token("a"),
                old_hash: token("a"),
                new_hash: token("b"),
                grace_expires_at: T0 + 90 * DAY,
                expires_at: now + 90 * DAY,
                at: now,
            }],
            grant: SessionGrant {
                token_hash: token("b"),
                expires_at: now + 90 * DAY,
                app_password_name: None,
            },
        });
}

#[test]
fn reuse_within_grace_returns_the_same_successor() {
    let t1 = T0 + DAY;
    given([
        account_created(),
        session_created("a", T0),
        refreshed("a", "b", t1, "a"),
    ])
    .when(|s| decide_refresh_session(s, refresh("a", "b", t1 + HOUR), t1 + HOUR))
    .then(RefreshDecision::Reissue {
        grant: SessionGrant {
            token_hash: token("b"),
            expires_at: t1 + 90 * DAY,
            app_password_name: None,
        },
    });
}

#[test]
fn reuse_within_grace_with_another_derivation_is_invalid() {
    let t1 = T0 + DAY;
    given([
        account_created(),
        session_created("a", T0),
        refreshed("a", "b", t1, "a"),
    ])
    .when(|s| decide_refresh_session(s, refresh("a", "c", t1 + HOUR), t1 + HOUR))
    .then_error(AccountError::InvalidToken);
}

#[test]
fn reuse_after_grace_revokes_the_whole_family() {
    let t1 = T0 + DAY;
    let t2 = t1 + 3 * HOUR;
    let state = given([
        account_created(),
        session_created("a", T0),
        refreshed("a", "b", t1, "a"),
        session_created("other", T0),
    ])
    .when(|s| decide_refresh_session(s, refresh("a", "b", t2), t2))
    .then(RefreshDecision::RevokeFamily {
        events: vec![AccountEvent::SessionFamilyRevoked {
            family: token("a"),
            reused_hash: token("a"),
            at: t2,
        }],
    });
    // The successor is gone with its family; the other login survives.
    given_state(state.clone())
        .when(|s| decide_refresh_session(s, refresh("b", "c", t2), t2))
        .then_error(AccountError::TokenRevoked);
    assert!(state
        .live()
        .unwrap()
        .refresh_tokens
        .contains_key(&token("other")));
}

#[test]
fn an_expired_token_is_refused() {
    given([account_created(), session_created("a", T0)])
        .when(|s| decide_refresh_session(s, refresh("a", "b", T0 + 91 * DAY), T0 + 90 * DAY))
        .then_error(AccountError::ExpiredToken);
}

#[test]
fn an_unknown_token_is_revoked() {
    given([account_created(), session_created("a", T0)])
        .when(|s| decide_refresh_session(s, refresh("zzz", "b", T0), T0))
        .then_error(AccountError::TokenRevoked);
}

#[test]
fn refresh_of_a_takendown_account_is_refused() {
    given([
        account_created(),
        session_created("a", T0),
        takedown("mod-1", T0),
    ])
    .when(|s| decide_refresh_session(s, refresh("a", "b", T0), T0))
    .then_error(AccountError::AccountTakedown);
}

#[test]
fn a_password_change_revokes_every_session() {
    given([
        account_created(),
        session_created("a", T0),
        AccountEvent::PasswordChanged {
            password_hash: pw_hash("new"),
            at: T0 + HOUR,
        },
    ])
    .when(|s| decide_refresh_session(s, refresh("a", "b", T0 + 2 * HOUR), T0 + 2 * HOUR))
    .then_error(AccountError::TokenRevoked);
}

#[test]
fn rotated_tokens_are_forgotten_a_week_after_their_grace() {
    let t1 = T0 + DAY;
    let late = t1 + 2 * HOUR + RETIRED_TOKEN_MEMORY_MICROS + 1;
    let state = given([
        account_created(),
        session_created("a", T0),
        refreshed("a", "b", t1, "a"),
        refreshed("b", "c", late, "a"),
    ])
    .0;
    let tokens = &state.live().unwrap().refresh_tokens;
    assert!(!tokens.contains_key(&token("a")));
    assert!(tokens.contains_key(&token("b")));
    assert_eq!(tokens[&token("c")].family, token("a"));
}

// ---- delete_session ----------------------------------------------------------------------------

#[test]
fn logout_revokes_the_family_so_an_ancestor_in_grace_cannot_revive_it() {
    let t1 = T0 + DAY;
    let state = given([
        account_created(),
        session_created("a", T0),
        refreshed("a", "b", t1, "a"),
    ])
    .when(|s| decide_delete_session(s, &token("b"), t1 + MIN))
    .then(vec![AccountEvent::SessionRevoked {
        family: token("a"),
        token_hash: token("b"),
        at: t1 + MIN,
    }]);
    given_state(state)
        .when(|s| decide_refresh_session(s, refresh("a", "b", t1 + 2 * MIN), t1 + 2 * MIN))
        .then_error(AccountError::TokenRevoked);
}

#[test]
fn logout_of_an_unknown_token_is_a_no_op() {
    given([account_created()])
        .when(|s| decide_delete_session(s, &token("nope"), T0))
        .then(vec![]);
}

// ---- app passwords -----------------------------------------------------------------------------

#[test]
fn app_password_names_are_unique_and_bounded() {
    given([account_created(), app_password_created("phone", false)])
        .when(|s| {
            decide_create_app_password(
                s,
                CreateAppPassword {
                    name: "phone".into(),
                    password_hash: pw_hash("x"),
                    privileged: false,
                },
                T0,
            )
        })
        .then_error(AccountError::DuplicateAppPassword("phone".into()));
    for bad in ["", "   ", &"x".repeat(APP_PASSWORD_NAME_MAX + 1)] {
        given([account_created()])
            .when(|s| {
                decide_create_app_password(
                    s,
                    CreateAppPassword {
                        name: bad.to_string(),
                        password_hash: pw_hash("x"),
                        privileged: false,
                    },
                    T0,
                )
            })
            .then_error(AccountError::InvalidAppPasswordName);
    }
}

#[test]
fn create_app_password() {
    given([account_created()])
        .when(|s| {
            decide_create_app_password(
                s,
                CreateAppPassword {
                    name: "phone".into(),
                    password_hash: pw_hash("phone"),
                    privileged: true,
                },
                T0,
            )
        })
        .then(vec![app_password_created("phone", true)]);
}

#[test]
fn takendown_accounts_cannot_create_app_passwords() {
    given([account_created(), takedown("mod-1", T0)])
        .when(|s| {
            decide_create_app_password(
                s,
                CreateAppPassword {
                    name: "phone".into(),
                    password_hash: pw_hash("phone"),
                    privileged: false,
                },
                T0,
            )
        })
        .then_error(AccountError::AccountTakedown);
}

#[test]
fn revoking_an_app_password_revokes_its_sessions_only() {
    let state = given([
        account_created(),
        app_password_created("phone", false),
        session_created("main", T0),
        AccountEvent::SessionCreated {
            token_hash: token("via-app"),
            app_password_name: Some("phone".into()),
            expires_at: T0 + 90 * DAY,
            at: T0,
        },
    ])
    .when(|s| decide_revoke_app_password(s, "phone", T0 + HOUR))
    .then(vec![AccountEvent::AppPasswordRevoked {
        name: "phone".into(),
        at: T0 + HOUR,
    }]);
    let a = state.live().unwrap();
    assert!(a.app_passwords.is_empty());
    assert!(a.refresh_tokens.contains_key(&token("main")));
    assert!(!a.refresh_tokens.contains_key(&token("via-app")));
}

#[test]
fn revoking_an_unknown_app_password_is_a_no_op() {
    given([account_created()])
        .when(|s| decide_revoke_app_password(s, "nope", T0))
        .then(vec![]);
}

// ---- handle, email, password -------------------------------------------------------------------

#[test]
fn update_handle_emits_handle_updated_and_identity() {
    given([account_created()])
        .when(|s| decide_update_handle(s, handle("alice2.test"), T0 + HOUR))
        .then(vec![
            AccountEvent::HandleUpdated {
                handle: handle("alice2.test"),
                at: T0 + HOUR,
            },
            identity("alice2.test"),
        ]);
}

#[test]
fn the_same_handle_again_only_re_announces_it() {
    given([account_created()])
        .when(|s| decide_update_handle(s, handle("alice.test"), T0 + HOUR))
        .then(vec![identity("alice.test")]);
}

#[test]
fn update_email_lowercases_and_clears_confirmation() {
    let state = given([
        account_created(),
        AccountEvent::EmailConfirmed {
            email: "alice@example.com".into(),
            at: T0,
        },
    ])
    .when(|s| decide_update_email(s, "New@Example.com", T0 + HOUR))
    .then(vec![AccountEvent::EmailUpdated {
        email: "new@example.com".into(),
        at: T0 + HOUR,
    }]);
    assert_eq!(state.live().unwrap().email_confirmed_at, None);
}

#[test]
fn confirm_email_must_name_the_current_address() {
    let state = given([account_created()])
        .when(|s| decide_confirm_email(s, "ALICE@example.com", T0 + HOUR))
        .then(vec![AccountEvent::EmailConfirmed {
            email: "alice@example.com".into(),
            at: T0 + HOUR,
        }]);
    assert_eq!(state.live().unwrap().email_confirmed_at, Some(T0 + HOUR));
    given([account_created()])
        .when(|s| decide_confirm_email(s, "bob@example.com", T0))
        .then_error(AccountError::InvalidEmail);
}

#[test]
fn change_password_needs_a_hash() {
    given([account_created()])
        .when(|s| decide_change_password(s, pw_hash("new"), T0))
        .then(vec![AccountEvent::PasswordChanged {
            password_hash: pw_hash("new"),
            at: T0,
        }]);
    given([account_created()])
        .when(|s| decide_change_password(s, "plain".into(), T0))
        .then_error(AccountError::SecretNotProtected(
            "password hash is not an argon2id PHC string",
        ));
}

// ---- lifecycle ---------------------------------------------------------------------------------

#[test]
fn deactivate_emits_deactivated_status() {
    given([account_created()])
        .when(|s| decide_deactivate(s, Some(T0 + 30 * DAY), T0))
        .then(vec![
            AccountEvent::Deactivated {
                delete_after: Some(T0 + 30 * DAY),
                at: T0,
            },
            status(false, Some(AccountStatus::Deactivated)),
        ]);
}

#[test]
fn activate_emits_status_then_identity() {
    let state = given([
        account_created(),
        AccountEvent::Deactivated {
            delete_after: None,
            at: T0,
        },
    ])
    .when(|s| decide_activate(s, T0 + HOUR))
    .then(vec![
        AccountEvent::Activated { at: T0 + HOUR },
        status(true, None),
        identity("alice.test"),
    ]);
    assert!(state.live().unwrap().is_active());
}

#[test]
fn a_takendown_account_cannot_be_activated() {
    given([account_created(), takedown("mod-1", T0)])
        .when(|s| decide_activate(s, T0))
        .then_error(AccountError::AccountTakedown);
}

#[test]
fn takedown_revokes_sessions_and_announces_takendown() {
    let state = given([account_created(), session_created("a", T0)])
        .when(|s| decide_update_takedown(s, true, Some("mod-1".into()), T0 + HOUR))
        .then(vec![
            takedown("mod-1", T0 + HOUR),
            status(false, Some(AccountStatus::Takendown)),
        ]);
    assert!(state.live().unwrap().refresh_tokens.is_empty());
}

#[test]
fn lifting_a_takedown_restores_the_underlying_status() {
    let lift = AccountEvent::TakedownUpdated {
        applied: false,
        reference: None,
        at: T0 + HOUR,
    };
    given([account_created(), takedown("mod-1", T0)])
        .when(|s| decide_update_takedown(s, false, None, T0 + HOUR))
        .then(vec![lift.clone(), status(true, None)]);
    given([
        account_created(),
        AccountEvent::Deactivated {
            delete_after: None,
            at: T0,
        },
        takedown("mod-1", T0),
    ])
    .when(|s| decide_update_takedown(s, false, None, T0 + HOUR))
    .then(vec![lift, status(false, Some(AccountStatus::Deactivated))]);
}

#[test]
fn a_takedown_outranks_a_deactivation() {
    given([account_created(), takedown("mod-1", T0)])
        .when(|s| decide_deactivate(s, None, T0 + HOUR))
        .then(vec![
            AccountEvent::Deactivated {
                delete_after: None,
                at: T0 + HOUR,
            },
            status(false, Some(AccountStatus::Takendown)),
        ]);
}

#[test]
fn takedown_without_change_emits_nothing() {
    given([account_created(), takedown("mod-1", T0)])
        .when(|s| decide_update_takedown(s, true, Some("mod-1".into()), T0 + HOUR))
        .then(vec![]);
    given([account_created()])
        .when(|s| decide_update_takedown(s, false, None, T0 + HOUR))
        .then(vec![]);
}

#[test]
fn delete_emits_deleted_and_the_tombstone_status() {
    let state = given([account_created()])
        .when(|s| decide_delete(s, T0 + DAY))
        .then(vec![
            AccountEvent::Deleted { at: T0 + DAY },
            status(false, Some(AccountStatus::Deleted)),
        ]);
    assert_eq!(state, AccountState::Deleted);
    given([account_created(), AccountEvent::Deleted { at: T0 + DAY }])
        .when(|s| decide_delete(s, T0 + 2 * DAY))
        .then_error(AccountError::AccountNotFound);
}

#[test]
fn a_stream_erased_down_to_its_tombstone_folds_to_deleted() {
    assert_eq!(
        AccountState::from_events(&[status(false, Some(AccountStatus::Deleted))]),
        AccountState::Deleted
    );
}

// ---- payloads ----------------------------------------------------------------------------------

fn every_event() -> Vec<AccountEvent> {
    let AccountEvent::Created(mut bare) = account_created() else {
        unreachable!()
    };
    bare.plc_genesis = None;
    bare.invite_code = None;
    bare.deactivated = true;
    vec![
        account_created(),
        AccountEvent::Created(bare),
        AccountEvent::HandleUpdated {
            handle: handle("alice2.test"),
            at: T0,
        },
        AccountEvent::EmailUpdated {
            email: "a@b.c".into(),
            at: T0,
        },
        AccountEvent::EmailConfirmed {
            email: "a@b.c".into(),
            at: T0,
        },
        AccountEvent::PasswordChanged {
            password_hash: pw_hash("x"),
            at: T0,
        },
        app_password_created("phone", true),
        AccountEvent::AppPasswordRevoked {
            name: "phone".into(),
            at: T0,
        },
        session_created("a", T0),
        AccountEvent::SessionCreated {
            token_hash: token("b"),
            app_password_name: Some("phone".into()),
            expires_at: T0,
            at: T0,
        },
        refreshed("a", "b", T0, "a"),
        AccountEvent::SessionRevoked {
            family: token("a"),
            token_hash: token("b"),
            at: T0,
        },
        AccountEvent::SessionFamilyRevoked {
            family: token("a"),
            reused_hash: token("a"),
            at: T0,
        },
        AccountEvent::Activated { at: T0 },
        AccountEvent::Deactivated {
            delete_after: None,
            at: T0,
        },
        AccountEvent::Deactivated {
            delete_after: Some(T0 + DAY),
            at: T0,
        },
        takedown("mod-1", T0),
        AccountEvent::TakedownUpdated {
            applied: false,
            reference: None,
            at: -1,
        },
        AccountEvent::EmailTokenIssued {
            purpose: EmailTokenPurpose::ResetPassword,
            token_hash: "ab".repeat(32),
            expires_at: T0 + 1,
            at: T0,
        },
        AccountEvent::EmailTokenUsed {
            purpose: EmailTokenPurpose::DeleteAccount,
            at: T0,
        },
        AccountEvent::EmailAuthFactorUpdated { enabled: true, at: T0 },
        AccountEvent::PreferencesPut {
            namespace: "app.bsky".into(),
            prefs: vec![r#"{"$type":"app.bsky.actor.defs#adultContentPref","enabled":true}"#.into()],
            at: T0,
        },
        AccountEvent::PreferencesPut { namespace: "app.bsky".into(), prefs: vec![], at: T0 },
        AccountEvent::InvitesDisabledUpdated { disabled: true, at: T0 },
        AccountEvent::InvitesDisabledUpdated { disabled: false, at: T0 },
        AccountEvent::Deleted { at: T0 },
        identity("alice.test"),
        AccountEvent::Identity {
            did: alice(),
            handle: None,
        },
        status(true, None),
        status(false, Some(AccountStatus::Takendown)),
        status(false, Some(AccountStatus::Suspended)),
        status(false, Some(AccountStatus::Deleted)),
        status(false, Some(AccountStatus::Deactivated)),
    ]
}

#[test]
fn every_event_round_trips_through_its_payload() {
    let events = every_event();
    let mut types: Vec<&str> = events.iter().map(AccountEvent::event_type).collect();
    types.sort_unstable();
    types.dedup();
    let mut all = EVENT_TYPES.to_vec();
    all.sort_unstable();
    assert_eq!(types, all, "every event type is covered");
    for e in &events {
        assert_round_trips(e);
    }
}

#[test]
fn only_identity_and_status_are_public() {
    for e in every_event() {
        let public = matches!(e.event_type(), "account.identity" | "account.status");
        assert_eq!(e.is_public(), public, "{}", e.event_type());
    }
}

#[test]
fn public_payloads_are_firehose_bodies_without_seq_and_time() {
    let ipld = cbor::decode(&status(false, Some(AccountStatus::Takendown)).to_payload()).unwrap();
    let json = crate::json::ipld_to_json(&ipld);
    assert_eq!(
        json,
        serde_json::json!({"did": alice().as_str(), "active": false, "status": "takendown"})
    );
    let ipld = cbor::decode(&identity("alice.test").to_payload()).unwrap();
    assert_eq!(
        crate::json::ipld_to_json(&ipld),
        serde_json::json!({"did": alice().as_str(), "handle": "alice.test"})
    );
}

#[test]
fn decoding_is_strict() {
    let payload = AccountEvent::Activated { at: T0 }.to_payload();
    assert_eq!(
        AccountEvent::from_payload("account.nope", 1, &payload),
        Err(EventDecodeError::UnknownType("account.nope".into()))
    );
    assert_eq!(
        AccountEvent::from_payload("account.activated", 2, &payload),
        Err(EventDecodeError::UnknownVersion {
            event_type: "account.activated".into(),
            version: 2
        })
    );
    assert_eq!(
        AccountEvent::from_payload("account.deleted", 1, &identity("alice.test").to_payload()),
        Err(EventDecodeError::Missing("at"))
    );
    assert_eq!(
        AccountEvent::from_payload(
            "account.identity",
            1,
            &AccountEvent::Deleted { at: 1 }.to_payload()
        ),
        Err(EventDecodeError::Missing("did"))
    );
    let extra = cbor::encode(&cbor::Ipld::Map(
        [
            ("at".to_string(), cbor::Ipld::Integer(1)),
            ("x".to_string(), cbor::Ipld::Bool(true)),
        ]
        .into(),
    ))
    .unwrap();
    assert_eq!(
        AccountEvent::from_payload("account.activated", 1, &extra),
        Err(EventDecodeError::Unexpected("x".into()))
    );
    let inconsistent = cbor::encode(&cbor::Ipld::Map(
        [
            ("did".to_string(), cbor::Ipld::String(alice().into_string())),
            ("active".to_string(), cbor::Ipld::Bool(true)),
            ("status".to_string(), cbor::Ipld::String("takendown".into())),
        ]
        .into(),
    ))
    .unwrap();
    assert_eq!(
        AccountEvent::from_payload("account.status", 1, &inconsistent),
        Err(EventDecodeError::Invalid("status"))
    );
    assert!(matches!(
        AccountEvent::from_payload("account.activated", 1, b"\xff"),
        Err(EventDecodeError::Cbor(_))
    ));
}

#[test]
fn payloads_hold_no_secret_in_the_clear() {
    // The created event keeps the password hash and the encrypted key, no other credential field.
    let cbor::Ipld::Map(m) = cbor::decode(&account_created().to_payload()).unwrap() else {
        panic!("not a map")
    };
    let keys: std::collections::BTreeSet<&str> = m.keys().map(String::as_str).collect();
    let expected = [
        "at",
        "did",
        "email",
        "plcOp",
        "didKey",
        "handle",
        "invite",
        "keyEnc",
        "pwHash",
        "deactivated",
    ];
    assert_eq!(keys, expected.into_iter().collect());
    assert!(matches!(m.get("pwHash"), Some(cbor::Ipld::String(h)) if h.starts_with("$argon2id$")));
}

// ---- rotation ----------------------------------------------------------------------------------

#[test]
fn successor_jti_is_deterministic_secret_dependent_and_jti_shaped() {
    let a = successor_jti(b"secret-1", "jti");
    assert_eq!(a, successor_jti(b"secret-1", "jti"));
    assert_ne!(a, successor_jti(b"secret-2", "jti"));
    assert_ne!(a, successor_jti(b"secret-1", "jti2"));
    assert_eq!(a.len(), 43);
}

// ---- emailed tokens ----------------------------------------------------------------------------

fn issued(purpose: EmailTokenPurpose, hash: &str) -> AccountEvent {
    AccountEvent::EmailTokenIssued {
        purpose,
        token_hash: hash.to_string(),
        expires_at: T0 + crate::email_token::LIFETIME_MICROS,
        at: T0,
    }
}

#[test]
fn an_email_token_is_checked_for_purpose_hash_and_expiry_and_used_once() {
    let h = "a".repeat(64);
    let other = "b".repeat(64);
    let state = given([account_created()])
        .when(|s| decide_issue_email_token(s, EmailTokenPurpose::ConfirmEmail, h.clone(), T0))
        .then(vec![issued(EmailTokenPurpose::ConfirmEmail, &h)]);
    let email = state.live().unwrap().email.clone();
    given_state(state.clone())
        .when(|s| decide_confirm_email_with_token(s, &email, &other, T0 + 1))
        .then_error(AccountError::InvalidToken);
    given_state(state.clone())
        .when(|s| decide_reset_password(s, &h, "$argon2id$x".into(), T0 + 1))
        .then_error(AccountError::InvalidToken);
    given_state(state.clone())
        .when(|s| decide_confirm_email_with_token(s, &email, &h, T0 + crate::email_token::LIFETIME_MICROS))
        .then_error(AccountError::ExpiredToken);
    given_state(state.clone())
        .when(|s| decide_confirm_email_with_token(s, "someone@else.com", &h, T0 + 1))
        .then_error(AccountError::InvalidEmail);
    let confirmed = given_state(state)
        .when(|s| decide_confirm_email_with_token(s, &email.to_uppercase(), &h, T0 + 1))
        .then(vec![
            AccountEvent::EmailConfirmed { email: email.clone(), at: T0 + 1 },
            AccountEvent::EmailTokenUsed { purpose: EmailTokenPurpose::ConfirmEmail, at: T0 + 1 },
        ]);
    given_state(confirmed.clone())
        .when(|s| decide_confirm_email_with_token(s, &email, &h, T0 + 2))
        .then_error(AccountError::InvalidToken);
    // A confirmed address needs the update token; an unconfirmed one does not.
    given_state(confirmed.clone())
        .when(|s| decide_update_email_with_token(s, "new@example.com", None, None, T0 + 2))
        .then_error(AccountError::TokenRequired);
    let with_token = given_state(confirmed)
        .when(|s| decide_issue_email_token(s, EmailTokenPurpose::UpdateEmail, other.clone(), T0 + 2))
        .then(vec![AccountEvent::EmailTokenIssued {
            purpose: EmailTokenPurpose::UpdateEmail,
            token_hash: other.clone(),
            expires_at: T0 + 2 + crate::email_token::LIFETIME_MICROS,
            at: T0 + 2,
        }]);
    let updated = given_state(with_token)
        .when(|s| decide_update_email_with_token(s, "New@Example.com", Some(&other), None, T0 + 3))
        .then(vec![
            AccountEvent::EmailUpdated { email: "new@example.com".into(), at: T0 + 3 },
            AccountEvent::EmailTokenUsed { purpose: EmailTokenPurpose::UpdateEmail, at: T0 + 3 },
        ]);
    assert_eq!(updated.live().unwrap().email_confirmed_at, None);
    given_state(updated)
        .when(|s| decide_update_email_with_token(s, "third@example.com", None, None, T0 + 4))
        .then(vec![AccountEvent::EmailUpdated { email: "third@example.com".into(), at: T0 + 4 }]);
}

#[test]
fn email_two_factor_needs_the_sign_in_code_for_password_logins_only() {
    let h = "c".repeat(64);
    let on = given([account_created()])
        .when(|s| decide_update_email_with_token(s, "ALICE@example.com", None, Some(true), T0))
        .then(vec![AccountEvent::EmailAuthFactorUpdated { enabled: true, at: T0 }]);
    let account = on.live().unwrap().clone();
    assert!(account.email_auth_factor);
    let table = [
        (decide_sign_in_factor(&account, true, None, T0), Err(AccountError::AuthFactorTokenRequired)),
        (decide_sign_in_factor(&account, false, None, T0), Ok(vec![])),
        (decide_sign_in_factor(&account, true, Some(&h), T0), Err(AccountError::InvalidToken)),
    ];
    for (i, (got, want)) in table.into_iter().enumerate() {
        assert_eq!(got, want, "case {i}");
    }
    let with_code = given_state(on)
        .when(|s| decide_issue_email_token(s, EmailTokenPurpose::SignIn, h.clone(), T0))
        .then(vec![issued(EmailTokenPurpose::SignIn, &h)]);
    let account = with_code.live().unwrap();
    assert_eq!(
        decide_sign_in_factor(account, true, Some(&h), T0 + 1),
        Ok(vec![AccountEvent::EmailTokenUsed { purpose: EmailTokenPurpose::SignIn, at: T0 + 1 }])
    );
    assert_eq!(
        decide_sign_in_factor(account, true, Some(&h), T0 + crate::email_token::LIFETIME_MICROS),
        Err(AccountError::ExpiredToken)
    );
}
