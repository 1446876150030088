//! Admin account XRPC through the real binary, on SQLite and on Postgres (with the reference PLC
//! directory): getAccountInfo(s), getSubjectStatus / updateSubjectStatus (a takedown blocks login
//! with `AccountTakedown` and emits `account.takedown_updated` + `#account{takendown}`; lifting it
//! restores login), updateAccountPassword (the old password and sessions stop working), 401
//! without the admin password, 400 for bad input and unknown accounts, `pds replay` + `pds verify`.

use serde_json::{json, Value};

use crate::harness::{pds_env, PgDatabase};
use crate::invites::{assert_error, call, post, replay_and_verify, signup, start, ADMIN, PASSWORD};
use crate::plc::PlcServer;

const INFO: &str = "com.atproto.admin.getAccountInfo";
const INFOS: &str = "com.atproto.admin.getAccountInfos";
const GET_STATUS: &str = "com.atproto.admin.getSubjectStatus";
const UPDATE_STATUS: &str = "com.atproto.admin.updateSubjectStatus";
const UPDATE_PASSWORD: &str = "com.atproto.admin.updateAccountPassword";
const DELETE: &str = "com.atproto.admin.deleteAccount";
const UNKNOWN_DID: &str = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";

async fn admin_get(s: &crate::harness::Server, path: &str, password: Option<&str>) -> (u16, Value) {
    call(reqwest::Method::GET, &s.xrpc(path), None, password, None).await
}

async fn admin_post(s: &crate::harness::Server, nsid: &str, password: Option<&str>, body: Value) -> (u16, Value) {
    call(reqwest::Method::POST, &s.xrpc(nsid), None, password, Some(body)).await
}

async fn events_of(s: &crate::harness::Server, did: &str) -> Vec<Value> {
    s.events_of(ADMIN, did).await
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn verify_clean(dir: &std::path::Path, env: &[(&str, String)]) {
    let data_dir = dir.join("pds-data").display().to_string();
    let mut cli_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    cli_env.push(("PDS_DATA_DIRECTORY", data_dir.as_str()));
    let out = pds_env(&["verify"], &cli_env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("verify: clean"), "{stdout}");
}

async fn login(s: &crate::harness::Server, id: &str, password: &str) -> (u16, Value) {
    post(s, "com.atproto.server.createSession", None, json!({ "identifier": id, "password": password })).await
}

async fn admin_flow(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, env) = start(dir.path(), &plc, pg, "false").await;
    let s = &server;
    let created = post(s, "com.atproto.server.createAccount", None, signup("alice.test", "alice@example.com", None)).await;
    assert_eq!(created.0, 200, "{created:?}");
    let did = created.1["did"].as_str().unwrap().to_owned();
    let bob = post(s, "com.atproto.server.createAccount", None, signup("bob.test", "bob@example.com", None)).await;
    let bob_did = bob.1["did"].as_str().unwrap().to_owned();

    // --- auth ---------------------------------------------------------------------------------------
    let info_path = format!("{INFO}?did={did}");
    assert_error(&admin_get(s, &info_path, None).await, 401, "AuthRequired");
    assert_error(&admin_get(s, &info_path, Some("wrong")).await, 401, "AuthRequired");
    assert_error(&admin_get(s, &format!("{GET_STATUS}?did={did}"), None).await, 401, "AuthRequired");
    let takedown = json!({ "subject": { "$type": "com.atproto.admin.defs#repoRef", "did": did }, "takedown": { "applied": true, "ref": "mod-1" } });
    assert_error(&admin_post(s, UPDATE_STATUS, None, takedown.clone()).await, 401, "AuthRequired");
    assert_error(&admin_post(s, UPDATE_PASSWORD, Some("nope"), json!({ "did": did, "password": "x" })).await, 401, "AuthRequired");

    // --- getAccountInfo(s) ----------------------------------------------------------------------------
    let info = admin_get(s, &info_path, Some(ADMIN)).await;
    assert_eq!(info.0, 200, "{info:?}");
    assert_eq!(info.1["did"], did.as_str());
    assert_eq!(info.1["handle"], "alice.test");
    assert_eq!(info.1["email"], "alice@example.com");
    assert!(info.1["indexedAt"].as_str().unwrap().ends_with('Z'), "{info:?}");
    assert!(info.1.get("deactivatedAt").is_none(), "{info:?}");
    assert_error(&admin_get(s, &format!("{INFO}?did={UNKNOWN_DID}"), Some(ADMIN)).await, 400, "AccountNotFound");
    assert_error(&admin_get(s, &format!("{INFO}?did=alice"), Some(ADMIN)).await, 400, "InvalidRequest");
    assert_error(&admin_get(s, INFO, Some(ADMIN)).await, 400, "InvalidRequest");
    let infos = admin_get(s, &format!("{INFOS}?dids={did}&dids={UNKNOWN_DID}&dids={}", bob_did.replace(':', "%3A")), Some(ADMIN)).await;
    assert_eq!(infos.0, 200, "{infos:?}");
    let handles: Vec<&str> = infos.1["infos"].as_array().unwrap().iter().map(|i| i["handle"].as_str().unwrap()).collect();
    assert_eq!(handles, ["alice.test", "bob.test"], "{infos:?}");
    assert_error(&admin_get(s, INFOS, Some(ADMIN)).await, 400, "InvalidRequest");
    assert_error(&admin_get(s, &format!("{INFOS}?dids=bad"), Some(ADMIN)).await, 400, "InvalidRequest");

    // --- takedown -------------------------------------------------------------------------------------
    let st = admin_get(s, &format!("{GET_STATUS}?did={did}"), Some(ADMIN)).await;
    assert_eq!(st.0, 200, "{st:?}");
    assert_eq!(st.1["takedown"]["applied"], false, "{st:?}");
    assert_eq!(st.1["subject"]["did"], did.as_str(), "{st:?}");
    assert_error(&admin_get(s, &format!("{GET_STATUS}?did={UNKNOWN_DID}"), Some(ADMIN)).await, 400, "NotFound");
    let bad_subject = json!({ "subject": { "$type": "com.atproto.repo.strongRef", "uri": "at://x", "cid": "y" }, "takedown": { "applied": true } });
    assert_error(&admin_post(s, UPDATE_STATUS, Some(ADMIN), bad_subject).await, 400, "InvalidRequest");
    assert_error(&admin_post(s, UPDATE_STATUS, Some(ADMIN), json!({ "takedown": 1 })).await, 400, "InvalidRequest");
    let unknown = json!({ "subject": { "$type": "com.atproto.admin.defs#repoRef", "did": UNKNOWN_DID }, "takedown": { "applied": true } });
    assert_error(&admin_post(s, UPDATE_STATUS, Some(ADMIN), unknown).await, 400, "AccountNotFound");

    let before = events_of(s, &did).await.len();
    let r = admin_post(s, UPDATE_STATUS, Some(ADMIN), takedown.clone()).await;
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.1["takedown"]["applied"], true, "{r:?}");
    assert_eq!(r.1["takedown"]["ref"], "mod-1", "{r:?}");
    let after = events_of(s, &did).await;
    let new = &after[before..];
    assert_eq!(types(new), ["account.takedown_updated", "account.status"], "{new:?}");
    assert!(new[0]["seq"].is_null() && new[1]["seq"].is_i64(), "{new:?}");
    assert_eq!(new[1]["payload"]["active"], false, "{new:?}");
    assert_eq!(new[1]["payload"]["status"], "takendown", "{new:?}");
    // The same takedown again appends nothing.
    assert_eq!(admin_post(s, UPDATE_STATUS, Some(ADMIN), takedown.clone()).await.0, 200);
    assert_eq!(events_of(s, &did).await.len(), after.len());
    let st = admin_get(s, &format!("{GET_STATUS}?did={did}"), Some(ADMIN)).await;
    assert_eq!(st.1["takedown"], json!({ "applied": true, "ref": "mod-1" }), "{st:?}");
    assert_error(&login(s, "alice.test", PASSWORD).await, 401, "AccountTakedown");
    assert_eq!(login(s, "bob.test", PASSWORD).await.0, 200, "others are untouched");

    let untake = json!({ "subject": { "$type": "com.atproto.admin.defs#repoRef", "did": did }, "takedown": { "applied": false } });
    let before = events_of(s, &did).await.len();
    assert_eq!(admin_post(s, UPDATE_STATUS, Some(ADMIN), untake).await.0, 200);
    let after = events_of(s, &did).await;
    let new = &after[before..];
    assert_eq!(types(new), ["account.takedown_updated", "account.status"], "{new:?}");
    assert_eq!(new[1]["payload"]["active"], true, "{new:?}");
    assert_eq!(login(s, "alice.test", PASSWORD).await.0, 200);
    let st = admin_get(s, &format!("{GET_STATUS}?did={did}"), Some(ADMIN)).await;
    assert_eq!(st.1["takedown"]["applied"], false, "{st:?}");

    // --- updateAccountPassword ------------------------------------------------------------------------
    let session = login(s, "alice.test", PASSWORD).await;
    let refresh = session.1["refreshJwt"].as_str().unwrap().to_owned();
    assert_error(&admin_post(s, UPDATE_PASSWORD, Some(ADMIN), json!({ "did": did })).await, 400, "InvalidRequest");
    assert_error(&admin_post(s, UPDATE_PASSWORD, Some(ADMIN), json!({ "did": "x", "password": "p" })).await, 400, "InvalidRequest");
    assert_error(
        &admin_post(s, UPDATE_PASSWORD, Some(ADMIN), json!({ "did": UNKNOWN_DID, "password": "p" })).await,
        400,
        "AccountNotFound",
    );
    let r = admin_post(s, UPDATE_PASSWORD, Some(ADMIN), json!({ "did": did, "password": "new password 2" })).await;
    assert_eq!(r.0, 200, "{r:?}");
    assert_error(&login(s, "alice.test", PASSWORD).await, 401, "AuthenticationRequired");
    assert_eq!(login(s, "alice.test", "new password 2").await.0, 200);
    let refreshed = post(s, "com.atproto.server.refreshSession", Some(&refresh), Value::Null).await;
    assert_eq!(refreshed.0, 400, "sessions end with a new password: {refreshed:?}");

    // --- updateAccountHandle ---------------------------------------------------------------------------
    let h = "com.atproto.admin.updateAccountHandle";
    assert_error(&admin_post(s, h, None, json!({ "did": bob_did, "handle": "robert.test" })).await, 401, "AuthRequired");
    assert_error(&admin_post(s, h, Some(ADMIN), json!({ "did": bob_did })).await, 400, "InvalidRequest");
    assert_error(&admin_post(s, h, Some(ADMIN), json!({ "did": bob_did, "handle": "bad handle" })).await, 400, "InvalidRequest");
    assert_error(&admin_post(s, h, Some(ADMIN), json!({ "did": bob_did, "handle": "ALICE.test" })).await, 400, "HandleNotAvailable");
    assert_error(&admin_post(s, h, Some(ADMIN), json!({ "did": UNKNOWN_DID, "handle": "someone.test" })).await, 400, "AccountNotFound");
    let before = events_of(s, &bob_did).await.len();
    let r = admin_post(s, h, Some(ADMIN), json!({ "did": bob_did, "handle": "Robert.test" })).await;
    assert_eq!(r.0, 200, "{r:?}");
    let after = events_of(s, &bob_did).await;
    let new = &after[before..];
    assert_eq!(types(new), ["account.handle_updated", "account.identity"], "{new:?}");
    assert_eq!(new[1]["payload"]["handle"], "robert.test", "{new:?}");
    assert!(new[1]["seq"].is_i64(), "{new:?}");
    let doc: Value = reqwest::get(plc.at(&bob_did)).await.unwrap().json().await.unwrap();
    assert_eq!(doc["alsoKnownAs"], json!(["at://robert.test"]), "the directory has the new handle: {doc}");
    assert_eq!(login(s, "robert.test", PASSWORD).await.0, 200);
    assert_error(&login(s, "bob.test", PASSWORD).await, 401, "AuthenticationRequired");
    let info = admin_get(s, &format!("{INFO}?did={bob_did}"), Some(ADMIN)).await;
    assert_eq!(info.1["handle"], "robert.test", "{info:?}");

    // --- deleteAccount (erasure) -----------------------------------------------------------------------
    let token = login(s, "alice.test", "new password 2").await.1["accessJwt"].as_str().unwrap().to_owned();
    let rec = post(
        s,
        "com.atproto.repo.createRecord",
        Some(&token),
        json!({ "repo": did, "collection": "app.bsky.feed.post", "record": { "text": "hi", "createdAt": "2024-01-01T00:00:00.000Z" } }),
    )
    .await;
    assert_eq!(rec.0, 200, "{rec:?}");
    assert_error(&admin_post(s, DELETE, None, json!({ "did": did })).await, 401, "AuthRequired");
    assert_error(&admin_post(s, DELETE, Some(ADMIN), json!({ "did": "nope" })).await, 400, "InvalidRequest");
    assert_error(&admin_post(s, DELETE, Some(ADMIN), json!({})).await, 400, "InvalidRequest");
    assert_error(&admin_post(s, DELETE, Some(ADMIN), json!({ "did": UNKNOWN_DID })).await, 400, "AccountNotFound");
    let before = events_of(s, &did).await;
    assert!(before.len() > 5, "{before:?}");
    let r = admin_post(s, DELETE, Some(ADMIN), json!({ "did": did })).await;
    assert_eq!(r.0, 200, "{r:?}");
    let left = events_of(s, &did).await;
    assert_eq!(types(&left), ["account.deleted", "account.status"], "only the tombstone: {left:?}");
    assert!(left[0]["position"].as_i64().unwrap() > before.last().unwrap()["position"].as_i64().unwrap());
    assert_eq!(left[1]["payload"]["status"], "deleted", "{left:?}");
    assert!(left[1]["seq"].is_i64(), "{left:?}");
    assert_error(&login(s, "alice.test", "new password 2").await, 401, "AuthenticationRequired");
    assert_error(&login(s, &did, "new password 2").await, 401, "AuthenticationRequired");
    assert_error(&admin_get(s, &info_path, Some(ADMIN)).await, 400, "AccountNotFound");
    let gone = call(reqwest::Method::GET, &s.xrpc(&format!("com.atproto.repo.listRecords?repo={did}&collection=app.bsky.feed.post")), None, None, None).await;
    assert!(gone.0 != 200 || gone.1["records"] == json!([]), "the record index is erased: {gone:?}");
    // Deleting again finishes nothing new but is fine (an interrupted erasure is completed).
    assert_eq!(admin_post(s, DELETE, Some(ADMIN), json!({ "did": did })).await.0, 200);
    assert_eq!(events_of(s, &did).await.len(), 2);
    // The handle is free again; bob is untouched.
    let again = post(s, "com.atproto.server.createAccount", None, signup("alice.test", "alice@example.com", None)).await;
    assert_eq!(again.0, 200, "{again:?}");
    assert_ne!(again.1["did"], did.as_str());
    assert_eq!(login(s, "robert.test", PASSWORD).await.0, 200);
    // The read models match a rebuild without replaying first.
    verify_clean(dir.path(), &env);

    // --- replay, verify -------------------------------------------------------------------------------
    drop(server);
    replay_and_verify(dir.path(), &env);
}

#[tokio::test]
async fn admin_accounts_sqlite() {
    admin_flow(None).await;
}

#[tokio::test]
async fn admin_accounts_postgres() {
    let db = PgDatabase::create().await;
    admin_flow(Some(&db)).await;
    db.drop_now().await;
}

/// `pds admin …` against the running server: exit code, stdout, stderr.
fn admin_cli(server: &crate::harness::Server, dir: &std::path::Path, password: &str, args: &[&str]) -> (i32, String, String) {
    let data_dir = dir.join("cli-data").display().to_string();
    let mut full = vec!["admin", "--url", server.url.as_str()];
    full.extend_from_slice(args);
    let out = pds_env(&full, &[("PDS_ADMIN_PASSWORD", password), ("PDS_DATA_DIRECTORY", data_dir.as_str())]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn admin_cli_flow(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, env) = start(dir.path(), &plc, pg, "true").await;
    let s = &server;
    let d = dir.path();

    // create (an invite code is made for it, as pdsadmin does), JSON output
    let (code, out, err) = admin_cli(s, d, ADMIN, &["--json", "account", "create", "carol@example.com", "carol.test"]);
    assert_eq!(code, 0, "{out}{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let did = created["did"].as_str().unwrap().to_owned();
    let password = created["password"].as_str().unwrap().to_owned();
    assert_eq!(created["handle"], "carol.test");
    assert_eq!(login(s, "carol.test", &password).await.0, 200);
    let (code, out, _) = admin_cli(s, d, ADMIN, &["account", "create", "dave@example.com", "dave.test", "--password", PASSWORD]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("dave.test") && out.contains("did:plc:"), "{out}");

    // list (table and JSON), info
    let (code, out, err) = admin_cli(s, d, ADMIN, &["account", "list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("Handle"), "{out}");
    assert!(out.contains("carol.test") && out.contains("dave.test") && out.contains(&did), "{out}");
    let (_, out, _) = admin_cli(s, d, ADMIN, &["--json", "account", "list"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["accounts"].as_array().unwrap().len(), 2, "{list}");
    let (code, out, _) = admin_cli(s, d, ADMIN, &["account", "info", &did]);
    assert_eq!(code, 0);
    assert!(out.contains("carol@example.com"), "{out}");

    // takedown / untakedown
    let (code, out, err) = admin_cli(s, d, ADMIN, &["account", "takedown", &did, "--ref", "case-7"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_error(&login(s, "carol.test", &password).await, 401, "AccountTakedown");
    let (_, out, _) = admin_cli(s, d, ADMIN, &["account", "list"]);
    assert!(out.lines().any(|l| l.contains("carol.test") && l.contains("takendown")), "{out}");
    assert_eq!(admin_cli(s, d, ADMIN, &["account", "untakedown", &did]).0, 0);
    assert_eq!(login(s, "carol.test", &password).await.0, 200);

    // reset-password
    let (code, out, _) = admin_cli(s, d, ADMIN, &["--json", "account", "reset-password", &did]);
    assert_eq!(code, 0, "{out}");
    let new_password = serde_json::from_str::<Value>(&out).unwrap()["password"].as_str().unwrap().to_owned();
    assert_error(&login(s, "carol.test", &password).await, 401, "AuthenticationRequired");
    assert_eq!(login(s, "carol.test", &new_password).await.0, 200);

    // invite create
    let (code, out, _) = admin_cli(s, d, ADMIN, &["invite", "create", "--uses", "2"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.trim().starts_with("localhost-"), "{out}");

    // errors: wrong password, unknown account, bad DID, no server — non-zero with the error name
    let (code, _, err) = admin_cli(s, d, "wrong", &["account", "list"]);
    assert_eq!(code, 1);
    assert!(err.contains("AuthRequired"), "{err}");
    let (code, _, err) = admin_cli(s, d, ADMIN, &["account", "info", UNKNOWN_DID]);
    assert_eq!(code, 1);
    assert!(err.contains("AccountNotFound"), "{err}");
    let (code, _, err) = admin_cli(s, d, ADMIN, &["account", "takedown", "not-a-did"]);
    assert_eq!(code, 1);
    assert!(err.contains("InvalidRequest"), "{err}");
    let data_dir = d.join("cli-data").display().to_string();
    let out = pds_env(
        &["admin", "--url", "http://127.0.0.1:1", "account", "list"],
        &[("PDS_ADMIN_PASSWORD", ADMIN), ("PDS_DATA_DIRECTORY", data_dir.as_str())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Connection"), "{out:?}");

    // delete
    let (code, out, err) = admin_cli(s, d, ADMIN, &["account", "delete", &did]);
    assert_eq!(code, 0, "{out}{err}");
    assert_error(&login(s, "carol.test", &new_password).await, 401, "AuthenticationRequired");
    let (_, out, _) = admin_cli(s, d, ADMIN, &["account", "list"]);
    assert!(!out.contains("carol.test") && out.contains("dave.test"), "{out}");

    drop(server);
    replay_and_verify(dir.path(), &env);
}

#[tokio::test]
async fn admin_cli_sqlite() {
    admin_cli_flow(None).await;
}

#[tokio::test]
async fn admin_cli_postgres() {
    let db = PgDatabase::create().await;
    admin_cli_flow(Some(&db)).await;
    db.drop_now().await;
}
