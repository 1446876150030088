//! `app.bsky.actor.getPreferences` / `putPreferences` through the real binary, on SQLite and on
//! Postgres, with the reference PDS's rules and messages (its `tests/preferences.test.ts`):
//! round-trips (creates, updates, removals, clearing), refusals that store nothing (outside the
//! namespace, no `$type`, a non-object item, an invalid known preference, over the body limit,
//! `#personalDetailsPref` from an app password), the privacy rules (an app password neither sees
//! nor removes `#personalDetailsPref`; `#declaredAgePref` computed, never stored), read-your-writes,
//! one `account.preferences_put` per accepted change, `pds replay` + `pds verify` with the
//! preferences back after a restart, and erasure with the account.

use serde_json::{json, Value};

use crate::harness::{PgDatabase, Server};
use crate::invites::{admin_post, assert_error, get, post, replay_and_verify, signup, start, ADMIN};
use crate::plc::PlcServer;

const GET: &str = "app.bsky.actor.getPreferences";
const PUT: &str = "app.bsky.actor.putPreferences";
const PERSONAL: &str = "app.bsky.actor.defs#personalDetailsPref";
const DECLARED: &str = "app.bsky.actor.defs#declaredAgePref";

async fn prefs(s: &Server, token: &str) -> Value {
    let got = get(s, GET, Some(token)).await;
    assert_eq!(got.0, 200, "{got:?}");
    got.1["preferences"].clone()
}

async fn put(s: &Server, token: &str, preferences: Value) -> (u16, Value) {
    post(s, PUT, Some(token), json!({ "preferences": preferences })).await
}

#[track_caller]
fn assert_refused(got: &(u16, Value), message_part: &str) {
    assert_error(got, 400, "InvalidRequest");
    let message = got.1["message"].as_str().unwrap_or_default();
    assert!(message.contains(message_part), "{message:?} should contain {message_part:?}");
}

fn preference_events(events: &[Value]) -> usize {
    events.iter().filter(|e| e["type"] == "account.preferences_put").count()
}

async fn preferences_flow(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, env) = start(dir.path(), &plc, pg, "false").await;
    let s = &server;
    let created = post(s, "com.atproto.server.createAccount", None, signup("alice.test", "alice@example.com", None)).await;
    assert_eq!(created.0, 200, "{created:?}");
    let full = created.1["accessJwt"].as_str().unwrap().to_owned();
    let did = created.1["did"].as_str().unwrap().to_owned();

    // --- auth ------------------------------------------------------------------------------------
    assert_error(&get(s, GET, None).await, 401, "AuthMissing");
    assert_error(&post(s, PUT, None, json!({ "preferences": [] })).await, 401, "AuthMissing");
    assert_error(&get(s, GET, Some("garbage")).await, 400, "InvalidToken");

    // --- round trips -----------------------------------------------------------------------------
    assert_eq!(prefs(s, &full).await, json!([]));
    let three = json!([
        { "$type": "app.bsky.actor.defs#adultContentPref", "enabled": false },
        { "$type": "app.bsky.actor.defs#contentLabelPref", "label": "dogs", "visibility": "show" },
        { "$type": "app.bsky.actor.defs#contentLabelPref", "label": "cats", "visibility": "warn" },
        // A preference this server has no lexicon for is kept as given (open union).
        { "$type": "app.bsky.actor.defs#somethingNew", "nested": { "a": [1, "two", null] } },
    ]);
    let done = put(s, &full, three.clone()).await;
    assert_eq!(done.0, 200, "{done:?}");
    assert_eq!(prefs(s, &full).await, three, "read-your-writes, in order");
    let two = json!([
        { "$type": "app.bsky.actor.defs#adultContentPref", "enabled": true },
        { "$type": "app.bsky.actor.defs#contentLabelPref", "label": "dogs", "visibility": "warn" },
    ]);
    assert_eq!(put(s, &full, two.clone()).await.0, 200);
    assert_eq!(prefs(s, &full).await, two);
    assert_eq!(put(s, &full, json!([])).await.0, 200);
    assert_eq!(prefs(s, &full).await, json!([]));
    assert_eq!(put(s, &full, two.clone()).await.0, 200);
    // The same content again changes nothing and records nothing.
    assert_eq!(put(s, &full, two.clone()).await.0, 200);
    let accepted = 4;
    assert_eq!(preference_events(&s.events_of(ADMIN, &did).await), accepted);

    // --- refusals store nothing ------------------------------------------------------------------
    let adult_off = json!({ "$type": "app.bsky.actor.defs#adultContentPref", "enabled": false });
    let outside = json!([adult_off, { "$type": "com.atproto.server.defs#unknown", "hello": "world" }]);
    assert_refused(&put(s, &full, outside).await, "Some preferences are not in the app.bsky namespace");
    let untyped = json!([adult_off, { "label": "dogs", "visibility": "warn" }]);
    assert_refused(&put(s, &full, untyped).await, "object which includes the \"$type\" property");
    assert_refused(&put(s, &full, json!([adult_off, 5])).await, "preferences/1");
    assert_refused(&put(s, &full, json!([adult_off, "x"])).await, "preferences/1");
    assert_refused(&put(s, &full, json!([{ "$type": 7 }])).await, "$type");
    assert_refused(
        &put(s, &full, json!([{ "$type": "app.bsky.actor.defs#adultContentPref" }])).await,
        "enabled",
    );
    assert_refused(&put(s, &full, json!({ "$type": "app.bsky.actor.defs#adultContentPref" })).await, "preferences");
    assert_refused(&post(s, PUT, Some(&full), json!({})).await, "preferences");
    assert_refused(&put(s, &full, json!([{ "$type": "app.bsky.actor.defs#adultContentPref", "enabled": 1.5 }])).await, "");
    let not_json = reqwest::Client::new()
        .post(s.xrpc(PUT))
        .bearer_auth(&full)
        .header("content-type", "application/json")
        .body("{\"preferences\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    // Over the 150 KiB JSON limit: refused before it is read whole.
    let big: Vec<Value> = (0..3000)
        .map(|i| json!({ "$type": "app.bsky.actor.defs#contentLabelPref", "label": format!("label-{i:06}-{}", "x".repeat(40)), "visibility": "warn" }))
        .collect();
    let too_big = put(s, &full, Value::Array(big)).await;
    assert_eq!(too_big.0, 413, "{too_big:?}");
    assert_eq!(prefs(s, &full).await, two, "nothing of a refused put was stored");
    assert_eq!(preference_events(&s.events_of(ADMIN, &did).await), accepted);

    // --- app passwords and the privileged preference ---------------------------------------------
    let app_pw = post(s, "com.atproto.server.createAppPassword", Some(&full), json!({ "name": "phone" })).await;
    assert_eq!(app_pw.0, 200, "{app_pw:?}");
    let login = post(
        s,
        "com.atproto.server.createSession",
        None,
        json!({ "identifier": "alice.test", "password": app_pw.1["password"] }),
    )
    .await;
    assert_eq!(login.0, 200, "{login:?}");
    let app = login.1["accessJwt"].as_str().unwrap().to_owned();

    let personal_now = json!({ "$type": PERSONAL, "birthDate": chrono_like_now() });
    assert_eq!(put(s, &full, json!([personal_now])).await.0, 200);
    // The app password does not see the birth date, only the computed age flags.
    assert_eq!(
        prefs(s, &app).await,
        json!([{ "$type": DECLARED, "isOverAge13": false, "isOverAge16": false, "isOverAge18": false }])
    );
    let personal_1970 = json!({ "$type": PERSONAL, "birthDate": "1970-01-01T00:00:00.000Z" });
    let refused = put(s, &app, json!([personal_1970])).await;
    assert_refused(&refused, "Do not have authorization to set preferences: app.bsky.actor.defs#personalDetailsPref");
    // A put from the app password replaces what it may see and keeps the birth date.
    let saved = json!({ "$type": "app.bsky.actor.defs#savedFeedsPrefV2", "items": [] });
    assert_eq!(put(s, &app, json!([saved])).await.0, 200);
    let seen_full = prefs(s, &full).await;
    assert_eq!(seen_full[0], personal_now, "{seen_full}");
    assert_eq!(seen_full[1], saved, "{seen_full}");
    assert_eq!(seen_full[2]["$type"], DECLARED, "{seen_full}");
    assert_eq!(seen_full.as_array().unwrap().len(), 3, "{seen_full}");

    // #declaredAgePref is computed from the birth date; a client's copy is never stored.
    let fake_age = json!({ "$type": DECLARED, "isOverAge13": false, "isOverAge16": false, "isOverAge18": false });
    assert_eq!(put(s, &full, json!([personal_1970, fake_age])).await.0, 200);
    let adult_age = json!({ "$type": DECLARED, "isOverAge13": true, "isOverAge16": true, "isOverAge18": true });
    assert_eq!(prefs(s, &full).await, json!([personal_1970, adult_age]));
    assert_eq!(prefs(s, &app).await, json!([adult_age]));
    let accepted = accepted + 3;
    let events = s.events_of(ADMIN, &did).await;
    assert_eq!(preference_events(&events), accepted);
    assert!(
        !events.iter().any(|e| e["type"] == "account.preferences_put" && e["payload"].to_string().contains("declaredAgePref")),
        "declaredAgePref never enters the log"
    );

    // --- replay, verify, restart -----------------------------------------------------------------
    drop(server);
    replay_and_verify(dir.path(), &env);
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_in(dir.path(), &borrowed).await;
    let s = &server;
    assert_eq!(prefs(s, &full).await, json!([personal_1970, adult_age]));
    assert_eq!(prefs(s, &app).await, json!([adult_age]));

    // --- erasure -----------------------------------------------------------------------------------
    let deleted = admin_post(s, "com.atproto.admin.deleteAccount", ADMIN, json!({ "did": did })).await;
    assert_eq!(deleted.0, 200, "{deleted:?}");
    assert_eq!(preference_events(&s.events_of(ADMIN, &did).await), 0, "preferences are erased with the account");
    assert!(get(s, GET, Some(&full)).await.0 >= 400);
    // A new account on the same handle starts with none.
    let again = post(s, "com.atproto.server.createAccount", None, signup("alice.test", "alice@example.com", None)).await;
    assert_eq!(again.0, 200, "{again:?}");
    assert_eq!(prefs(s, again.1["accessJwt"].as_str().unwrap()).await, json!([]));
    drop(server);
    replay_and_verify(dir.path(), &env);
}

/// Today's date as an atproto datetime (someone born today is under 13).
fn chrono_like_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (y, m, d) = domain::syntax::civil_from_days(i64::try_from(secs / 86_400).unwrap());
    format!("{y:04}-{m:02}-{d:02}T00:00:00.000Z")
}

#[tokio::test]
async fn preferences_sqlite() {
    preferences_flow(None).await;
}

#[tokio::test]
async fn preferences_postgres() {
    let db = PgDatabase::create().await;
    preferences_flow(Some(&db)).await;
    db.drop_now().await;
}
