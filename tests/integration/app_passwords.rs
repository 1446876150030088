//! App passwords through the real binary, on SQLite and on Postgres (with the reference PLC
//! directory): create (the password once, `xxxx-xxxx-xxxx-xxxx`), list (never the password),
//! login with one (scope `com.atproto.appPass` / `appPassPrivileged`), an app-password session
//! refused `createAppPassword` and `getAccountInviteCodes` (`Bad token scope`), revoke (its
//! sessions can no longer refresh and their access tokens are refused at once, the password no
//! longer logs in), and `pds replay` + `pds verify` followed by the earlier sessions (access and
//! refresh) and logins.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::harness::{PgDatabase, Server};
use crate::invites::{assert_error, get, post, replay_and_verify, signup, start, PASSWORD};
use crate::plc::PlcServer;

const CREATE: &str = "com.atproto.server.createAppPassword";
const LIST: &str = "com.atproto.server.listAppPasswords";
const REVOKE: &str = "com.atproto.server.revokeAppPassword";
const LOGIN: &str = "com.atproto.server.createSession";
const REFRESH: &str = "com.atproto.server.refreshSession";

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn login(s: &Server, identifier: &str, password: &str) -> (u16, Value) {
    post(s, LOGIN, None, json!({ "identifier": identifier, "password": password })).await
}

fn is_app_password(p: &str) -> bool {
    let groups: Vec<&str> = p.split('-').collect();
    groups.len() == 4 && groups.iter().all(|g| g.len() == 4 && g.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7')))
}

async fn app_passwords_flow(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, env) = start(dir.path(), &plc, pg, "false").await;
    let s = &server;
    let created = post(s, "com.atproto.server.createAccount", None, signup("alice.test", "alice@example.com", None)).await;
    assert_eq!(created.0, 200, "{created:?}");
    let full = created.1["accessJwt"].as_str().unwrap().to_owned();
    assert_eq!(claims(&full)["scope"], "com.atproto.access");

    // --- create and list ---------------------------------------------------------------------
    assert_eq!(get(s, LIST, Some(&full)).await.1, json!({ "passwords": [] }));
    let phone = post(s, CREATE, Some(&full), json!({ "name": "phone" })).await;
    assert_eq!(phone.0, 200, "{phone:?}");
    assert_eq!(phone.1["name"], "phone");
    assert_eq!(phone.1["privileged"], false);
    assert!(phone.1["createdAt"].as_str().unwrap().ends_with('Z'), "{phone:?}");
    let phone_pw = phone.1["password"].as_str().unwrap().to_owned();
    assert!(is_app_password(&phone_pw), "{phone_pw}");
    let chat = post(s, CREATE, Some(&full), json!({ "name": "chat", "privileged": true })).await;
    assert_eq!(chat.0, 200, "{chat:?}");
    assert_eq!(chat.1["privileged"], true);
    let chat_pw = chat.1["password"].as_str().unwrap().to_owned();
    assert_ne!(chat_pw, phone_pw);

    assert_error(&post(s, CREATE, Some(&full), json!({ "name": "phone" })).await, 400, "InvalidRequest");
    assert_error(&post(s, CREATE, Some(&full), json!({ "name": "   " })).await, 400, "InvalidRequest");
    assert_error(&post(s, CREATE, Some(&full), json!({ "name": "x".repeat(101) })).await, 400, "InvalidRequest");
    assert_error(&post(s, CREATE, Some(&full), json!({})).await, 400, "InvalidRequest");
    assert_error(&post(s, CREATE, Some(&full), json!({ "name": 7 })).await, 400, "InvalidRequest");
    assert_error(&post(s, CREATE, None, json!({ "name": "nope" })).await, 401, "AuthMissing");
    assert_error(&post(s, CREATE, Some("garbage"), json!({ "name": "nope" })).await, 400, "InvalidToken");

    let list = get(s, LIST, Some(&full)).await;
    assert_eq!(list.0, 200, "{list:?}");
    let names: Vec<&str> = list.1["passwords"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["chat", "phone"]);
    assert!(!list.1.to_string().contains(&phone_pw) && !list.1.to_string().contains("password\""), "{list:?}");
    assert_eq!(list.1["passwords"][0]["privileged"], true);
    assert!(list.1["passwords"][1]["createdAt"].is_string());

    // --- logins with app passwords ------------------------------------------------------------
    let phone_session = login(s, "alice.test", &phone_pw).await;
    assert_eq!(phone_session.0, 200, "{phone_session:?}");
    let phone_access = phone_session.1["accessJwt"].as_str().unwrap().to_owned();
    let phone_refresh = phone_session.1["refreshJwt"].as_str().unwrap().to_owned();
    assert_eq!(claims(&phone_access)["scope"], "com.atproto.appPass");
    let chat_session = login(s, "alice@example.com", &chat_pw).await;
    assert_eq!(chat_session.0, 200, "{chat_session:?}");
    let chat_access = chat_session.1["accessJwt"].as_str().unwrap().to_owned();
    let chat_refresh = chat_session.1["refreshJwt"].as_str().unwrap().to_owned();
    assert_eq!(claims(&chat_access)["scope"], "com.atproto.appPassPrivileged");
    assert_error(&login(s, "alice.test", "aaaa-bbbb-cccc-dddd").await, 401, "AuthenticationRequired");

    // App-password sessions: no new app passwords, no invite codes; the rest works.
    for token in [&phone_access, &chat_access] {
        let refused = post(s, CREATE, Some(token), json!({ "name": "sneaky" })).await;
        assert_error(&refused, 400, "InvalidToken");
        assert_eq!(refused.1["message"], "Bad token scope");
        assert_error(&get(s, "com.atproto.server.getAccountInviteCodes", Some(token)).await, 400, "InvalidToken");
        assert_eq!(get(s, "com.atproto.server.getSession", Some(token)).await.0, 200);
        assert_eq!(get(s, LIST, Some(token)).await.0, 200);
    }
    assert_eq!(get(s, LIST, Some(&full)).await.1["passwords"].as_array().unwrap().len(), 2, "sneaky was not made");

    // Refresh keeps the app-password scope.
    let refreshed = post(s, REFRESH, Some(&phone_refresh), Value::Null).await;
    assert_eq!(refreshed.0, 200, "{refreshed:?}");
    assert_eq!(claims(refreshed.1["accessJwt"].as_str().unwrap())["scope"], "com.atproto.appPass");
    let phone_refresh = refreshed.1["refreshJwt"].as_str().unwrap().to_owned();
    let phone_access_2 = refreshed.1["accessJwt"].as_str().unwrap().to_owned();

    // --- revoke ends its sessions ----------------------------------------------------------------
    assert_eq!(post(s, REVOKE, Some(&full), json!({ "name": "phone" })).await.0, 200);
    assert_error(&post(s, REFRESH, Some(&phone_refresh), Value::Null).await, 400, "ExpiredToken");
    // Its access tokens (before and after the refresh) stop at once; the other app password's do not.
    for token in [&phone_access, &phone_access_2] {
        let refused = get(s, "com.atproto.server.getSession", Some(token)).await;
        assert_error(&refused, 400, "ExpiredToken");
        assert_eq!(refused.1["message"], "Token has been revoked");
    }
    assert_eq!(get(s, "com.atproto.server.getSession", Some(&chat_access)).await.0, 200);
    assert_error(&login(s, "alice.test", &phone_pw).await, 401, "AuthenticationRequired");
    assert_eq!(post(s, REVOKE, Some(&full), json!({ "name": "never-existed" })).await.0, 200);
    assert_error(&post(s, REVOKE, Some(&full), json!({})).await, 400, "InvalidRequest");
    assert_error(&post(s, REVOKE, None, json!({ "name": "chat" })).await, 401, "AuthMissing");
    let names = get(s, LIST, Some(&full)).await;
    assert_eq!(names.1["passwords"].as_array().unwrap().len(), 1, "{names:?}");
    assert_eq!(names.1["passwords"][0]["name"], "chat");
    // The other app password's session is untouched.
    let chat_refreshed = post(s, REFRESH, Some(&chat_refresh), Value::Null).await;
    assert_eq!(chat_refreshed.0, 200, "{chat_refreshed:?}");
    let chat_access = chat_refreshed.1["accessJwt"].as_str().unwrap().to_owned();
    let chat_refresh = chat_refreshed.1["refreshJwt"].as_str().unwrap().to_owned();
    // A revoked name can be used again, with a new password.
    let again = post(s, CREATE, Some(&full), json!({ "name": "phone" })).await;
    assert_eq!(again.0, 200, "{again:?}");
    let again_pw = again.1["password"].as_str().unwrap().to_owned();
    assert_ne!(again_pw, phone_pw);

    // The log holds no app password in the clear.
    let events = reqwest::Client::new()
        .get(s.xrpc("org.eventpds.admin.listEvents?limit=1000"))
        .basic_auth("admin", Some(crate::invites::ADMIN))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!events.contains(&phone_pw) && !events.contains(&chat_pw) && !events.contains(PASSWORD));

    // --- replay, verify, logins -------------------------------------------------------------------
    drop(server);
    replay_and_verify(dir.path(), &env);
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_in(dir.path(), &borrowed).await;
    let s = &server;
    // Sessions made before the replay still work; the revoked one's tokens stay refused.
    let chat_after = get(s, "com.atproto.server.getSession", Some(&chat_access)).await;
    assert_eq!(chat_after.0, 200, "{chat_after:?}");
    assert_eq!(get(s, "com.atproto.server.getSession", Some(&full)).await.0, 200);
    assert_error(&get(s, "com.atproto.server.getSession", Some(&phone_access_2)).await, 400, "ExpiredToken");
    assert_eq!(post(s, REFRESH, Some(&chat_refresh), Value::Null).await.0, 200);
    let chat_login = login(s, "alice.test", &chat_pw).await;
    assert_eq!(chat_login.0, 200, "{chat_login:?}");
    assert_eq!(claims(chat_login.1["accessJwt"].as_str().unwrap())["scope"], "com.atproto.appPassPrivileged");
    assert_eq!(login(s, "alice.test", &again_pw).await.0, 200);
    assert_error(&login(s, "alice.test", &phone_pw).await, 401, "AuthenticationRequired");
}

#[tokio::test]
async fn app_passwords_sqlite() {
    app_passwords_flow(None).await;
}

#[tokio::test]
async fn app_passwords_postgres() {
    let db = PgDatabase::create().await;
    app_passwords_flow(Some(&db)).await;
    db.drop_now().await;
}
