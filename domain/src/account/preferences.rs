//! Account preferences (`app.bsky.actor.getPreferences` / `putPreferences`), as pure rules.
//!
//! A put replaces the whole namespace (`app.bsky`): the event `account.preferences_put` on the
//! account's stream carries the namespace's complete new content, in order, so its projection is
//! a plain replace and a replay rebuilds it exactly. The rules are the reference PDS's
//! (`actor-store/preference/{reader,transactor,util}.ts`):
//! - every item has a string `$type` in the namespace;
//! - `#personalDetailsPref` only with full access (a password login, not an app password or
//!   OAuth): others may neither set it, nor see it, and a put of theirs leaves it in place;
//! - `#declaredAgePref` is read-only: never stored (a put's copy is dropped), computed on read
//!   from `#personalDetailsPref`'s `birthDate`, shown to every caller.
//!
//! Never parses a request, never reads a clock: the time is passed in.

use super::events::AccountEvent;
use super::state::AccountState;
use crate::syntax::{civil_from_days, Datetime};

/// The namespace `app.bsky.actor.*Preferences` reads and replaces.
pub const APP_BSKY: &str = "app.bsky";
/// Readable and writable only with full access.
pub const PERSONAL_DETAILS_PREF: &str = "app.bsky.actor.defs#personalDetailsPref";
/// Computed from the birth date on read; never stored.
pub const DECLARED_AGE_PREF: &str = "app.bsky.actor.defs#declaredAgePref";

/// One preference: its `$type` and the JSON object it was given as (compact text, `$type`
/// included), kept as text so that whatever a client stores comes back unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preference {
    pref_type: String,
    json: String,
}

/// Why preferences were refused, with the reference's messages (all `InvalidRequest`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreferencesError {
    #[error("Preference is missing a $type")]
    MissingType,
    #[error("Some preferences are not in the {0} namespace")]
    NotInNamespace(String),
    #[error("Do not have authorization to set preferences: {}", .0.join(", "))]
    Forbidden(Vec<String>),
    #[error("account not found")]
    AccountNotFound,
}

impl Preference {
    /// A preference from a JSON value: an object with a string `$type`.
    pub fn from_value(v: &serde_json::Value) -> Result<Preference, PreferencesError> {
        match v.get("$type") {
            Some(serde_json::Value::String(t)) if v.is_object() => Ok(Preference {
                pref_type: t.clone(),
                json: v.to_string(),
            }),
            _ => Err(PreferencesError::MissingType),
        }
    }

    /// A preference back from its stored JSON text.
    pub fn from_json(text: &str) -> Result<Preference, PreferencesError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|_| PreferencesError::MissingType)?;
        Preference::from_value(&v)
    }

    pub fn pref_type(&self) -> &str {
        &self.pref_type
    }

    /// The JSON object as text.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The JSON object.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.json).unwrap_or(serde_json::Value::Null)
    }
}

/// Whether `$type` `name` belongs to `namespace` (`app.bsky` or `app.bsky.…`).
pub fn in_namespace(namespace: &str, name: &str) -> bool {
    name == namespace
        || name
            .strip_prefix(namespace)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// Whether a caller with or without full access may see and set `pref_type`.
pub fn allowed(pref_type: &str, full_access: bool) -> bool {
    full_access || pref_type != PERSONAL_DETAILS_PREF
}

/// Read-only preferences: computed, never stored.
pub fn is_read_only(pref_type: &str) -> bool {
    pref_type == DECLARED_AGE_PREF
}

/// `putPreferences`: `current` is the account's stored preferences (every namespace, in order),
/// `put` the new content of `namespace`. The result replaces the namespace with what the caller
/// may set: the preferences the caller may not see stay (first, in their order), then `put`
/// without read-only ones. Nothing changes → no event.
pub fn decide_put_preferences(
    state: &AccountState,
    current: &[Preference],
    namespace: &str,
    put: Vec<Preference>,
    full_access: bool,
    now: i64,
) -> Result<Vec<AccountEvent>, PreferencesError> {
    state.live().ok_or(PreferencesError::AccountNotFound)?;
    if !put.iter().all(|p| in_namespace(namespace, &p.pref_type)) {
        return Err(PreferencesError::NotInNamespace(namespace.to_owned()));
    }
    let forbidden: Vec<String> = put
        .iter()
        .filter(|p| !allowed(&p.pref_type, full_access))
        .map(|p| p.pref_type.clone())
        .collect();
    if !forbidden.is_empty() {
        return Err(PreferencesError::Forbidden(forbidden));
    }
    let in_ns = current.iter().filter(|p| in_namespace(namespace, &p.pref_type));
    let before: Vec<&Preference> = in_ns.clone().collect();
    let after: Vec<&Preference> = in_ns
        .filter(|p| !allowed(&p.pref_type, full_access))
        .chain(put.iter().filter(|p| !is_read_only(&p.pref_type)))
        .collect();
    if before == after {
        return Ok(vec![]);
    }
    Ok(vec![AccountEvent::PreferencesPut {
        namespace: namespace.to_owned(),
        prefs: after.into_iter().map(|p| p.json.clone()).collect(),
        at: now,
    }])
}

/// `getPreferences`: the stored preferences of `namespace` the caller may see, plus the computed
/// `#declaredAgePref` when `#personalDetailsPref` has a `birthDate` (ages as of `now`, Unix
/// microseconds, in UTC).
pub fn view_preferences(
    stored: &[Preference],
    namespace: &str,
    full_access: bool,
    now: i64,
) -> Vec<Preference> {
    let mut prefs: Vec<Preference> = stored
        .iter()
        .filter(|p| namespace.is_empty() || in_namespace(namespace, &p.pref_type))
        .cloned()
        .collect();
    let birth_date = prefs
        .iter()
        .find(|p| p.pref_type == PERSONAL_DETAILS_PREF)
        .and_then(|p| match p.to_value().get("birthDate") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        });
    if let Some(birth_date) = birth_date {
        // An unreadable date is no age at all: every flag false (the reference's NaN).
        let age = age_on(&birth_date, now);
        let over = |years: i64| age.is_some_and(|a| a >= years);
        let declared = serde_json::json!({
            "$type": DECLARED_AGE_PREF,
            "isOverAge13": over(13),
            "isOverAge16": over(16),
            "isOverAge18": over(18),
        });
        prefs.push(Preference {
            pref_type: DECLARED_AGE_PREF.to_owned(),
            json: declared.to_string(),
        });
    }
    prefs.retain(|p| allowed(&p.pref_type, full_access));
    prefs
}

/// Whole years from `birth_date` (an atproto datetime, or a plain `YYYY-MM-DD`) to `now` (Unix
/// microseconds), by the UTC calendar.
fn age_on(birth_date: &str, now: i64) -> Option<i64> {
    let born = match Datetime::parse(birth_date) {
        Ok(d) => civil(d.unix_micros()),
        Err(_) => plain_date(birth_date)?,
    };
    let today = civil(now);
    let mut age = today.0 - born.0;
    if (today.1, today.2) < (born.1, born.2) {
        age -= 1;
    }
    Some(age)
}

fn civil(micros: i64) -> (i64, i64, i64) {
    civil_from_days(micros.div_euclid(86_400_000_000))
}

fn plain_date(s: &str) -> Option<(i64, i64, i64)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::account::AccountCreated;
    use crate::syntax::{Did, Handle};
    use serde_json::json;

    fn pref(v: serde_json::Value) -> Preference {
        Preference::from_value(&v).unwrap()
    }

    fn live() -> AccountState {
        AccountState::from_events(&[AccountEvent::Created(Box::new(AccountCreated {
            did: Did::parse("did:plc:abcdefghijklmnopqrstuvwx").unwrap(),
            handle: Handle::parse("alice.test").unwrap(),
            email: "alice@example.com".into(),
            password_hash: "$argon2id$x".into(),
            signing_key_encrypted: vec![1],
            signing_did_key: "did:key:z".into(),
            plc_genesis: None,
            invite_code: None,
            deactivated: false,
            created_at: 0,
        }))])
    }

    /// 2026-06-15T00:00:00Z in Unix microseconds.
    const NOW: i64 = 1_781_481_600_000_000;

    fn put(
        current: &[Preference],
        new: &[serde_json::Value],
        full: bool,
    ) -> Result<Vec<String>, PreferencesError> {
        let new = new.iter().cloned().map(pref).collect();
        let events = decide_put_preferences(&live(), current, APP_BSKY, new, full, NOW)?;
        Ok(match events.as_slice() {
            [] => current.iter().map(|p| p.json.clone()).collect(),
            [AccountEvent::PreferencesPut { prefs, namespace, at }] => {
                assert_eq!((namespace.as_str(), *at), (APP_BSKY, NOW));
                prefs.clone()
            }
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn type_is_required() {
        for v in [json!({"label": "dogs"}), json!(7), json!(["x"]), json!({"$type": 3})] {
            assert_eq!(Preference::from_value(&v), Err(PreferencesError::MissingType), "{v}");
        }
        assert_eq!(pref(json!({"$type": "app.bsky.x", "a": 1})).pref_type(), "app.bsky.x");
    }

    #[test]
    fn namespace_match() {
        for (name, yes) in [
            ("app.bsky", true),
            ("app.bsky.actor.defs#adultContentPref", true),
            ("app.bskyx.actor", false),
            ("com.atproto.server.defs#unknown", false),
            ("app", false),
        ] {
            assert_eq!(in_namespace(APP_BSKY, name), yes, "{name}");
        }
    }

    #[test]
    fn put_replaces_the_namespace() {
        let adult = json!({"$type": "app.bsky.actor.defs#adultContentPref", "enabled": true});
        let dogs = json!({"$type": "app.bsky.actor.defs#contentLabelPref", "label": "dogs", "visibility": "warn"});
        let got = put(&[], &[adult.clone(), dogs.clone()], true).unwrap();
        assert_eq!(got, [adult.to_string(), dogs.to_string()]);
        let current: Vec<Preference> = got.iter().map(|j| Preference::from_json(j).unwrap()).collect();
        assert_eq!(put(&current, &[], true).unwrap(), Vec::<String>::new());
        // The same content again: no event.
        let events = decide_put_preferences(&live(), &current, APP_BSKY, current.clone(), true, NOW).unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn refusals() {
        let other = json!({"$type": "com.atproto.server.defs#unknown", "hello": "world"});
        assert_eq!(put(&[], &[other], true), Err(PreferencesError::NotInNamespace("app.bsky".into())));
        let personal = json!({"$type": PERSONAL_DETAILS_PREF, "birthDate": "1970-01-01T00:00:00.000Z"});
        let err = put(&[], &[personal], false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Do not have authorization to set preferences: app.bsky.actor.defs#personalDetailsPref"
        );
        let none = decide_put_preferences(&AccountState::Absent, &[], APP_BSKY, vec![], true, NOW);
        assert_eq!(none, Err(PreferencesError::AccountNotFound));
    }

    #[test]
    fn app_password_keeps_personal_details_and_declared_age_is_never_stored() {
        let personal = json!({"$type": PERSONAL_DETAILS_PREF, "birthDate": "1970-01-01T00:00:00.000Z"});
        let age = json!({"$type": DECLARED_AGE_PREF, "isOverAge13": false, "isOverAge16": false, "isOverAge18": false});
        let adult = json!({"$type": "app.bsky.actor.defs#adultContentPref", "enabled": false});
        let stored = put(&[], &[adult.clone(), personal.clone(), age], true).unwrap();
        assert_eq!(stored, [adult.to_string(), personal.to_string()]);
        let current: Vec<Preference> = stored.iter().map(|j| Preference::from_json(j).unwrap()).collect();
        let saved = json!({"$type": "app.bsky.actor.defs#savedFeedsPrefV2", "items": []});
        let after = put(&current, std::slice::from_ref(&saved), false).unwrap();
        assert_eq!(after, [personal.to_string(), saved.to_string()]);
    }

    #[track_caller]
    fn check_age(birth: &str, full: bool, expect: Option<[bool; 3]>) {
        let stored = [pref(json!({"$type": PERSONAL_DETAILS_PREF, "birthDate": birth}))];
        let seen = view_preferences(&stored, APP_BSKY, full, NOW);
        let types: Vec<&str> = seen.iter().map(Preference::pref_type).collect();
        match expect {
            None => assert_eq!(types, if full { vec![PERSONAL_DETAILS_PREF] } else { vec![] }),
            Some([a, b, c]) => {
                let want = json!({"$type": DECLARED_AGE_PREF, "isOverAge13": a, "isOverAge16": b, "isOverAge18": c});
                assert_eq!(seen.last().unwrap().to_value(), want, "{birth}");
                assert_eq!(types.len(), if full { 2 } else { 1 });
            }
        }
    }

    #[test]
    fn declared_age() {
        let cases: &[(&str, Option<[bool; 3]>)] = &[
            ("1970-01-01T00:00:00.000Z", Some([true, true, true])),
            ("2008-06-15T00:00:00.000Z", Some([true, true, true])), // 18 today
            ("2008-06-16T00:00:00.000Z", Some([true, true, false])), // 18 tomorrow
            ("2010-06-15", Some([true, true, false])),
            ("2013-06-16T00:00:00Z", Some([false, false, false])),
            ("2026-06-15T00:00:00.000Z", Some([false, false, false])),
            ("not a date", Some([false, false, false])),
            ("", None),
        ];
        for (birth, expect) in cases {
            check_age(birth, true, *expect);
            check_age(birth, false, *expect);
        }
    }

    #[test]
    fn view_filters_namespace_and_privilege() {
        let stored = [
            pref(json!({"$type": "com.atproto.server.defs#unknown"})),
            pref(json!({"$type": PERSONAL_DETAILS_PREF})),
            pref(json!({"$type": "app.bsky.actor.defs#adultContentPref", "enabled": true})),
        ];
        let full: Vec<String> = view_preferences(&stored, APP_BSKY, true, NOW).iter().map(|p| p.pref_type.clone()).collect();
        assert_eq!(full, [PERSONAL_DETAILS_PREF, "app.bsky.actor.defs#adultContentPref"]);
        let app: Vec<String> = view_preferences(&stored, APP_BSKY, false, NOW).iter().map(|p| p.pref_type.clone()).collect();
        assert_eq!(app, ["app.bsky.actor.defs#adultContentPref"]);
    }
}
