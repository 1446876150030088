//! The XRPC kernel's own surface (issue 13): `/health`, the service's `did.json`, the admin
//! invite methods (`getInviteCodes`, `disableInviteCodes`, `disableAccountInvites`,
//! `enableAccountInvites`: their events on the invite and account streams, their effect on
//! signups and views) and `com.atproto.temp.checkSignupQueue` — on SQLite and Postgres.

use serde_json::{json, Value};

use crate::harness::{PgDatabase, Server};
use crate::invites::{admin_post, assert_error, call, get, post, replay_and_verify, signup, start, ADMIN};
use crate::plc::PlcServer;

async fn admin_get(s: &Server, path_and_query: &str) -> (u16, Value) {
    call(reqwest::Method::GET, &s.xrpc(path_and_query), None, Some(ADMIN), None).await
}

fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test]
async fn health_and_service_did_document() {
    let s = Server::start(&[]).await;
    for path in ["/health", "/xrpc/_health"] {
        let r = reqwest::get(format!("{}{path}", s.url)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(body["version"].is_string(), "{path}: {body}");
    }
    // The default service DID is did:web:localhost%3A<port>: its document names this server.
    let describe: Value = reqwest::get(s.xrpc("com.atproto.server.describeServer")).await.unwrap().json().await.unwrap();
    let did = describe["did"].as_str().unwrap().to_owned();
    assert!(did.starts_with("did:web:localhost"), "{did}");
    let doc: Value = reqwest::get(format!("{}/.well-known/did.json", s.url)).await.unwrap().json().await.unwrap();
    assert_eq!(doc["id"], did.as_str(), "{doc}");
    assert_eq!(doc["service"][0]["id"], "#atproto_pds");
    assert_eq!(doc["service"][0]["type"], "AtprotoPersonalDataServer");
    assert_eq!(doc["service"][0]["serviceEndpoint"], s.url.replace("127.0.0.1", "localhost").as_str(), "PDS_PUBLIC_URL");

    // Another service DID: no document here.
    let other = Server::start(&[("PDS_SERVICE_DID", "did:web:elsewhere.example")]).await;
    let r = reqwest::get(format!("{}/.well-known/did.json", other.url)).await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn invite_admin_methods_sqlite() {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    invite_admin_methods(&dir, &plc, None).await;
}

#[tokio::test]
async fn invite_admin_methods_postgres() {
    let plc = PlcServer::start();
    let db = PgDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    invite_admin_methods(&dir, &plc, Some(&db)).await;
}

async fn invite_admin_methods(dir: &tempfile::TempDir, plc: &PlcServer, pg: Option<&PgDatabase>) {
    let (s, env) = start(dir.path(), plc, pg, "true").await;
    let s = &s;
    let make = |n: i64| json!({ "useCount": n });
    let code_a = admin_post(s, "com.atproto.server.createInviteCode", ADMIN, make(2)).await.1["code"].as_str().unwrap().to_owned();
    let code_b = admin_post(s, "com.atproto.server.createInviteCode", ADMIN, make(1)).await.1["code"].as_str().unwrap().to_owned();
    let alice = post(s, "com.atproto.server.createAccount", None, signup("alice.test", "alice@example.com", Some(&code_a))).await;
    assert_eq!(alice.0, 200, "{alice:?}");
    let alice_did = alice.1["did"].as_str().unwrap().to_owned();
    let alice_token = alice.1["accessJwt"].as_str().unwrap().to_owned();

    // --- getInviteCodes: admin only; recent first, usage order, pages ----------------------------
    assert_error(&get(s, "com.atproto.admin.getInviteCodes", None).await, 401, "AuthRequired");
    let recent = admin_get(s, "com.atproto.admin.getInviteCodes").await;
    assert_eq!(recent.0, 200, "{recent:?}");
    let codes: Vec<&str> = recent.1["codes"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap()).collect();
    assert_eq!(codes, [code_b.as_str(), code_a.as_str()], "newest first");
    let a_view = &recent.1["codes"][1];
    assert_eq!((a_view["available"].clone(), a_view["disabled"].clone()), (json!(2), json!(false)), "{a_view}");
    assert_eq!(a_view["uses"][0]["usedBy"], alice_did.as_str());
    let usage = admin_get(s, "com.atproto.admin.getInviteCodes?sort=usage").await;
    assert_eq!(usage.1["codes"][0]["code"], code_a.as_str(), "most used first: {usage:?}");
    let page1 = admin_get(s, "com.atproto.admin.getInviteCodes?limit=1").await;
    assert_eq!(page1.1["codes"].as_array().unwrap().len(), 1);
    let cursor = page1.1["cursor"].as_str().unwrap().to_owned();
    let page2 = admin_get(s, &format!("com.atproto.admin.getInviteCodes?limit=1&cursor={cursor}")).await;
    assert_eq!(page2.1["codes"][0]["code"], code_a.as_str(), "{page2:?}");
    assert_error(&admin_get(s, "com.atproto.admin.getInviteCodes?sort=oldest").await, 400, "InvalidRequest");
    assert_error(&admin_get(s, "com.atproto.admin.getInviteCodes?limit=501").await, 400, "InvalidRequest");

    // --- disableInviteCodes: the code stops working; its view says disabled; no admin accounts --
    let disable = "com.atproto.admin.disableInviteCodes";
    assert_error(&admin_post(s, disable, "wrong", json!({ "codes": [code_b] })).await, 401, "AuthRequired");
    assert_error(&admin_post(s, disable, ADMIN, json!({ "accounts": ["admin"] })).await, 400, "InvalidRequest");
    assert_eq!(admin_post(s, disable, ADMIN, json!({ "codes": [code_b] })).await.0, 200);
    let events = s.events_of(ADMIN, &format!("invite/{code_b}")).await;
    assert_eq!(types(&events), ["invite.created", "invite.disabled"], "{events:#?}");
    // Disabling again appends nothing.
    assert_eq!(admin_post(s, disable, ADMIN, json!({ "codes": [code_b] })).await.0, 200);
    assert_eq!(s.events_of(ADMIN, &format!("invite/{code_b}")).await.len(), 2);
    let refused = post(s, "com.atproto.server.createAccount", None, signup("bob.test", "bob@example.com", Some(&code_b))).await;
    assert_error(&refused, 400, "InvalidInviteCode");
    let after = admin_get(s, "com.atproto.admin.getInviteCodes").await;
    assert_eq!(after.1["codes"][0]["disabled"], true, "{after:?}");

    // --- disable/enableAccountInvites: account.invites_disabled_updated; invitesDisabled --------
    let info_path = format!("com.atproto.admin.getAccountInfo?did={alice_did}");
    assert_eq!(admin_get(s, &info_path).await.1["invitesDisabled"], false);
    let off = "com.atproto.admin.disableAccountInvites";
    let on = "com.atproto.admin.enableAccountInvites";
    assert_eq!(admin_post(s, off, ADMIN, json!({ "account": alice_did })).await.0, 200);
    assert_eq!(admin_post(s, off, ADMIN, json!({ "account": alice_did })).await.0, 200, "idempotent");
    assert_eq!(admin_get(s, &info_path).await.1["invitesDisabled"], true);
    assert_eq!(admin_post(s, on, ADMIN, json!({ "account": alice_did })).await.0, 200);
    assert_eq!(admin_get(s, &info_path).await.1["invitesDisabled"], false);
    let account_events = s.events_of(ADMIN, &alice_did).await;
    let toggles: Vec<&Value> =
        account_events.iter().filter(|e| e["type"] == "account.invites_disabled_updated").collect();
    assert_eq!(toggles.len(), 2, "one event per change: {account_events:#?}");
    assert_eq!((toggles[0]["payload"]["disabled"].clone(), toggles[1]["payload"]["disabled"].clone()), (json!(true), json!(false)));
    assert_error(&admin_post(s, off, ADMIN, json!({ "account": "did:plc:unknownunknownunknown" })).await, 400, "AccountNotFound");
    assert_error(&admin_post(s, off, ADMIN, json!({ "account": "not a did" })).await, 400, "InvalidRequest");
    assert_error(&admin_post(s, off, ADMIN, json!({})).await, 400, "InvalidRequest");

    // --- checkSignupQueue: no queue here; a signed-in account is activated ------------------------
    let q = get(s, "com.atproto.temp.checkSignupQueue", Some(&alice_token)).await;
    assert_eq!(q, (200, json!({ "activated": true })));
    assert_error(&get(s, "com.atproto.temp.checkSignupQueue", None).await, 401, "AuthMissing");

    replay_and_verify(dir.path(), &env);
}
