//! Account status through the real binary, on SQLite and on Postgres (with the reference PLC
//! directory): checkAccountStatus (the directory's document names this PDS and key; repo head,
//! rev, blocks), deactivateAccount (`account.deactivated` + `#account{deactivated}`), sessions of
//! a deactivated account, activateAccount (`#account`, `#identity`, `#sync` of the head commit in
//! one append, contiguous seqs), full access required for both, and `pds replay` + `pds verify`.

use serde_json::{json, Value};

use crate::harness::{PgDatabase, Server};
use crate::invites::{assert_error, get, post, replay_and_verify, signup, start, ADMIN, PASSWORD};
use crate::plc::PlcServer;

const STATUS: &str = "com.atproto.server.checkAccountStatus";
const ACTIVATE: &str = "com.atproto.server.activateAccount";
const DEACTIVATE: &str = "com.atproto.server.deactivateAccount";

async fn events_of(s: &Server, did: &str) -> Vec<Value> {
    s.events_of(ADMIN, did).await
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// The events are one append: consecutive positions; the public ones have consecutive seqs.
#[track_caller]
fn one_append(events: &[Value]) {
    let positions: Vec<i64> = events.iter().map(|e| e["position"].as_i64().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[1] == w[0] + 1), "{positions:?}");
    let seqs: Vec<i64> = events.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

async fn account_status_flow(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, env) = start(dir.path(), &plc, pg, "false").await;
    let s = &server;
    let created = post(s, "com.atproto.server.createAccount", None, signup("alice.test", "alice@example.com", None)).await;
    assert_eq!(created.0, 200, "{created:?}");
    let did = created.1["did"].as_str().unwrap().to_owned();
    let full = created.1["accessJwt"].as_str().unwrap().to_owned();

    // --- checkAccountStatus ---------------------------------------------------------------------
    let st = get(s, STATUS, Some(&full)).await;
    assert_eq!(st.0, 200, "{st:?}");
    assert_eq!(st.1["activated"], true, "{st:?}");
    assert_eq!(st.1["validDid"], true, "{st:?}");
    assert!(st.1["repoCommit"].as_str().unwrap().starts_with("bafy"), "{st:?}");
    assert_eq!(st.1["repoRev"].as_str().unwrap().len(), 13, "{st:?}");
    assert_eq!(st.1["repoBlocks"], 2, "the commit and the empty MST node: {st:?}");
    for k in ["indexedRecords", "privateStateValues", "expectedBlobs", "importedBlobs"] {
        assert_eq!(st.1[k], 0, "{k}: {st:?}");
    }
    assert_error(&get(s, STATUS, None).await, 401, "AuthMissing");

    // App-password sessions may not (de)activate.
    let app = post(s, "com.atproto.server.createAppPassword", Some(&full), json!({ "name": "app" })).await;
    let app_pw = app.1["password"].as_str().unwrap().to_owned();
    let app_login = post(s, "com.atproto.server.createSession", None, json!({ "identifier": did, "password": app_pw })).await;
    let app_token = app_login.1["accessJwt"].as_str().unwrap().to_owned();
    assert_error(&post(s, DEACTIVATE, Some(&app_token), Value::Null).await, 400, "InvalidToken");
    assert_error(&post(s, ACTIVATE, Some(&app_token), Value::Null).await, 400, "InvalidToken");
    assert_eq!(get(s, STATUS, Some(&app_token)).await.0, 200);
    assert_error(&post(s, DEACTIVATE, None, Value::Null).await, 401, "AuthMissing");
    assert_error(&post(s, DEACTIVATE, Some(&full), json!({ "deleteAfter": "tomorrow" })).await, 400, "InvalidRequest");
    assert_error(&post(s, DEACTIVATE, Some(&full), json!({ "deleteAfter": 5 })).await, 400, "InvalidRequest");

    // --- deactivate ---------------------------------------------------------------------------------
    let before = events_of(s, &did).await.len();
    let r = post(s, DEACTIVATE, Some(&full), json!({ "deleteAfter": "2030-01-01T00:00:00.000Z" })).await;
    assert_eq!(r.0, 200, "{r:?}");
    let after = events_of(s, &did).await;
    let new = &after[before..];
    assert_eq!(types(new), ["account.deactivated", "account.status"], "{new:?}");
    assert!(new[1]["seq"].is_i64() && new[0]["seq"].is_null(), "{new:?}");
    assert_eq!(new[1]["payload"]["active"], false, "{new:?}");
    assert_eq!(new[1]["payload"]["status"], "deactivated", "{new:?}");
    one_append(new);
    let me = get(s, "com.atproto.server.getSession", Some(&full)).await;
    assert_eq!((me.1["active"].clone(), me.1["status"].clone()), (json!(false), json!("deactivated")), "{me:?}");
    assert_eq!(get(s, STATUS, Some(&full)).await.1["activated"], false);
    // A deactivated account still logs in; deactivating again is fine.
    let relog = post(s, "com.atproto.server.createSession", None, json!({ "identifier": "alice.test", "password": PASSWORD })).await;
    assert_eq!(relog.0, 200, "{relog:?}");
    assert_eq!(relog.1["active"], false);
    // deactivateAccount declares a JSON input: no body at all is the reference's InvalidRequest.
    let bare = reqwest::Client::new().post(s.xrpc(DEACTIVATE)).bearer_auth(&full).send().await.unwrap();
    assert_eq!(bare.status().as_u16(), 400);
    let bare: Value = bare.json().await.unwrap();
    assert_eq!(bare["message"], "A request body is expected but none was provided", "{bare}");
    assert_eq!(post(s, DEACTIVATE, Some(&full), json!({})).await.0, 200, "deactivating again is fine");

    // --- activate -----------------------------------------------------------------------------------
    let before = events_of(s, &did).await.len();
    let r = post(s, ACTIVATE, Some(&full), Value::Null).await;
    assert_eq!(r.0, 200, "{r:?}");
    let after = events_of(s, &did).await;
    let new = &after[before..];
    assert_eq!(types(new), ["account.activated", "account.status", "account.identity", "repo.synced"], "{new:?}");
    one_append(new);
    assert_eq!(new.iter().filter(|e| e["seq"].is_i64()).count(), 3, "#account, #identity, #sync: {new:?}");
    assert_eq!(new[1]["payload"]["active"], true, "{new:?}");
    assert_eq!(new[2]["payload"]["handle"], "alice.test", "{new:?}");
    let head = get(s, STATUS, Some(&full)).await;
    assert_eq!(head.1["activated"], true);
    assert_eq!(new[3]["payload"]["commit"]["$link"], head.1["repoCommit"], "{new:?} {head:?}");
    let me = get(s, "com.atproto.server.getSession", Some(&full)).await;
    assert_eq!(me.1["active"], true, "{me:?}");
    assert!(me.1.get("status").is_none(), "{me:?}");
    // Activating an active account re-announces.
    assert_eq!(post(s, ACTIVATE, Some(&full), Value::Null).await.0, 200);

    // --- replay, verify -------------------------------------------------------------------------------
    drop(server);
    replay_and_verify(dir.path(), &env);
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_in(dir.path(), &borrowed).await;
    let relog = post(&server, "com.atproto.server.createSession", None, json!({ "identifier": "alice.test", "password": PASSWORD })).await;
    assert_eq!(relog.0, 200, "{relog:?}");
    assert_eq!(relog.1["active"], true);
}

#[tokio::test]
async fn account_status_sqlite() {
    account_status_flow(None).await;
}

#[tokio::test]
async fn account_status_postgres() {
    let db = PgDatabase::create().await;
    account_status_flow(Some(&db)).await;
    db.drop_now().await;
}
