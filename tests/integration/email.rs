//! The emailed-token flows through the real binary, on SQLite and on Postgres (with the
//! reference PLC directory), reading each token from the dev mail sink (`<data>/mail/*.eml`):
//! requestEmailConfirmation / confirmEmail (`InvalidToken`, `InvalidEmail`, token used once),
//! requestEmailUpdate (`tokenRequired` once confirmed) / updateEmail (`TokenRequired`, taken
//! address), requestPasswordReset (silent for unknown addresses) / resetPassword (sessions end,
//! the new password logs in), requestAccountDelete / deleteAccount (wrong password, wrong token,
//! then erasure: `#account{deleted}`, login refused, handle free); email two-factor login
//! (`AuthFactorTokenRequired`, the mailed sign-in code used once, app passwords exempt); the log
//! holds no token; replay + verify.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::harness::{PgDatabase, Server};
use crate::invites::{assert_error, get, post, replay_and_verify, signup, start, ADMIN, PASSWORD};
use crate::plc::PlcServer;

/// Every mail in the sink, oldest first: (file, headers + body).
fn mails(data_dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(dir) = std::fs::read_dir(data_dir.join("mail")) else { return vec![] };
    let mut files: Vec<PathBuf> = dir.map(|e| e.unwrap().path()).collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect()
}

/// The token of the next mail to `to` (one this helper has not returned yet), waiting up to 20 s
/// for the outbox to write it, and checking its subject line.
pub fn last_token(data_dir: &Path, to: &str, subject: &str) -> String {
    use std::sync::Mutex;
    static SEEN: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (path, text) = loop {
        let all = mails(data_dir);
        let next = all.into_iter().find(|(p, t)| t.contains(&format!("\r\nTo: {to}\r\n")) && !SEEN.lock().unwrap().contains(p));
        if let Some(found) = next {
            SEEN.lock().unwrap().push(found.0.clone());
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "no new mail to {to} within 20 s: {:?}", mails(data_dir));
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(text.contains(&format!("\r\nSubject: {subject}\r\n")), "{path:?}: {text}");
    let token = text.lines().find_map(|l| l.strip_prefix("Token: ")).unwrap_or_else(|| panic!("{text}")).trim();
    assert_eq!(token.len(), 11, "{token}");
    assert!(token.bytes().enumerate().all(|(i, b)| if i == 5 { b == b'-' } else { b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b) }), "{token}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    token.to_owned()
}

async fn login(s: &Server, id: &str, pw: &str) -> (u16, Value) {
    post(s, "com.atproto.server.createSession", None, json!({ "identifier": id, "password": pw })).await
}

async fn email_flow(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, env) = start(dir.path(), &plc, pg, "false").await;
    let s = &server;
    let data = dir.path().join("pds-data");
    let alice = post(s, "com.atproto.server.createAccount", None, signup("alice.test", "alice@example.com", None)).await;
    assert_eq!(alice.0, 200, "{alice:?}");
    let did = alice.1["did"].as_str().unwrap().to_owned();
    let access = alice.1["accessJwt"].as_str().unwrap().to_owned();
    assert_eq!(post(s, "com.atproto.server.createAccount", None, signup("bob.test", "bob@example.com", None)).await.0, 200);

    // --- confirm ----------------------------------------------------------------------------------
    assert_error(&post(s, "com.atproto.server.requestEmailConfirmation", None, Value::Null).await, 401, "AuthMissing");
    assert_eq!(post(s, "com.atproto.server.requestEmailConfirmation", Some(&access), Value::Null).await.0, 200);
    let first = last_token(&data, "alice@example.com", "Email Confirmation");
    assert_eq!(post(s, "com.atproto.server.requestEmailConfirmation", Some(&access), Value::Null).await.0, 200);
    let token = last_token(&data, "alice@example.com", "Email Confirmation");
    assert_ne!(token, first);
    let confirm = "com.atproto.server.confirmEmail";
    for (body, status, name) in [
        (json!({ "email": "alice@example.com", "token": first }), 400, "InvalidToken"),
        (json!({ "email": "alice@example.com", "token": "AAAAA-AAAAA" }), 400, "InvalidToken"),
        (json!({ "email": "other@example.com", "token": token }), 400, "InvalidEmail"),
        (json!({ "email": "alice@example.com" }), 400, "InvalidRequest"),
    ] {
        assert_error(&post(s, confirm, Some(&access), body).await, status, name);
    }
    assert_eq!(get(s, "com.atproto.server.getSession", Some(&access)).await.1["emailConfirmed"], false);
    let ok = post(s, confirm, Some(&access), json!({ "email": "Alice@Example.com", "token": token.to_lowercase() })).await;
    assert_eq!(ok.0, 200, "{ok:?}");
    assert_eq!(get(s, "com.atproto.server.getSession", Some(&access)).await.1["emailConfirmed"], true);
    assert_error(&post(s, confirm, Some(&access), json!({ "email": "alice@example.com", "token": token })).await, 400, "InvalidToken");

    // --- update ------------------------------------------------------------------------------------
    let update = "com.atproto.server.updateEmail";
    assert_error(&post(s, update, Some(&access), json!({ "email": "new@example.com" })).await, 400, "TokenRequired");
    let req = post(s, "com.atproto.server.requestEmailUpdate", Some(&access), Value::Null).await;
    assert_eq!(req, (200, json!({ "tokenRequired": true })));
    let token = last_token(&data, "alice@example.com", "Email Update Requested");
    assert_error(&post(s, update, Some(&access), json!({ "email": "bob@example.com", "token": token })).await, 400, "InvalidRequest");
    assert_error(&post(s, update, Some(&access), json!({ "email": "not-an-email", "token": token })).await, 400, "InvalidRequest");
    assert_error(&post(s, update, Some(&access), json!({ "email": "new@example.com", "token": "AAAAA-AAAAA" })).await, 400, "InvalidToken");
    assert_eq!(post(s, update, Some(&access), json!({ "email": "New@Example.com", "token": token })).await.0, 200);
    let me = get(s, "com.atproto.server.getSession", Some(&access)).await;
    assert_eq!((me.1["email"].clone(), me.1["emailConfirmed"].clone()), (json!("new@example.com"), json!(false)));
    // Unconfirmed: no token needed, none sent.
    let before = mails(&data).len();
    assert_eq!(post(s, "com.atproto.server.requestEmailUpdate", Some(&access), Value::Null).await, (200, json!({ "tokenRequired": false })));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(mails(&data).len(), before);
    assert_eq!(post(s, update, Some(&access), json!({ "email": "alice@example.com" })).await.0, 200);

    // --- password reset ------------------------------------------------------------------------------
    let before = mails(&data).len();
    assert_eq!(post(s, "com.atproto.server.requestPasswordReset", None, json!({ "email": "nobody@example.com" })).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(mails(&data).len(), before, "no mail for an unknown address");
    assert_eq!(post(s, "com.atproto.server.requestPasswordReset", None, json!({ "email": "ALICE@example.com" })).await.0, 200);
    let token = last_token(&data, "alice@example.com", "Password Reset Requested");
    let reset = "com.atproto.server.resetPassword";
    assert_error(&post(s, reset, None, json!({ "token": "AAAAA-AAAAA", "password": "brand-new-pw" })).await, 400, "InvalidToken");
    assert_eq!(post(s, reset, None, json!({ "token": token, "password": "brand-new-pw" })).await.0, 200);
    assert_error(&post(s, reset, None, json!({ "token": token, "password": "again-new-pw" })).await, 400, "InvalidToken");
    assert_error(&get(s, "com.atproto.server.getSession", Some(&access)).await, 400, "ExpiredToken");
    assert_error(&login(s, "alice.test", PASSWORD).await, 401, "AuthenticationRequired");
    let relogin = login(s, "alice.test", "brand-new-pw").await;
    assert_eq!(relogin.0, 200, "{relogin:?}");
    let access = relogin.1["accessJwt"].as_str().unwrap().to_owned();

    // --- email two-factor login ----------------------------------------------------------------------
    let on = post(s, update, Some(&access), json!({ "email": "alice@example.com", "emailAuthFactor": true })).await;
    assert_eq!(on.0, 200, "{on:?}");
    assert_eq!(get(s, "com.atproto.server.getSession", Some(&access)).await.1["emailAuthFactor"], true);
    let app_pw = post(s, "com.atproto.server.createAppPassword", Some(&access), json!({ "name": "bot" })).await.1["password"].as_str().unwrap().to_owned();
    let needed = login(s, "alice.test", "brand-new-pw").await;
    assert_error(&needed, 401, "AuthFactorTokenRequired");
    assert_eq!(needed.1["message"], "A sign in code has been sent to your email address");
    let code = last_token(&data, "alice@example.com", "Sign in code");
    let with = |token: &str| json!({ "identifier": "alice.test", "password": "brand-new-pw", "authFactorToken": token });
    assert_error(&post(s, "com.atproto.server.createSession", None, with("AAAAA-AAAAA")).await, 400, "InvalidToken");
    assert_error(&post(s, "com.atproto.server.createSession", None, json!({ "identifier": "alice.test", "password": "wrong-pw", "authFactorToken": code })).await, 401, "AuthenticationRequired");
    let in2 = post(s, "com.atproto.server.createSession", None, with(&code)).await;
    assert_eq!(in2.0, 200, "{in2:?}");
    assert_eq!(in2.1["emailAuthFactor"], true);
    assert_error(&post(s, "com.atproto.server.createSession", None, with(&code)).await, 400, "InvalidToken");
    assert_eq!(login(s, "alice.test", &app_pw).await.0, 200, "app passwords skip the second factor");
    assert_eq!(post(s, update, Some(&access), json!({ "email": "alice@example.com", "emailAuthFactor": false })).await.0, 200);
    assert_eq!(login(s, "alice.test", "brand-new-pw").await.0, 200);

    // --- the log holds no token and no mail ------------------------------------------------------
    let log = reqwest::Client::new()
        .get(s.xrpc("org.eventpds.admin.listEvents?limit=1000"))
        .basic_auth("admin", Some(ADMIN))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (_, text) in mails(&data) {
        let t = text.lines().find_map(|l| l.strip_prefix("Token: ")).unwrap().trim().to_owned();
        assert!(!log.contains(&t) && !log.contains(&t.to_lowercase()), "token {t} in the log");
    }
    assert!(log.contains("account.email_token_issued") && log.contains("account.email_token_used"));

    // --- replay + verify: a token issued before still works after -----------------------------------
    assert_eq!(post(s, "com.atproto.server.requestAccountDelete", Some(&access), Value::Null).await.0, 200);
    let delete_token = last_token(&data, "alice@example.com", "Account Deletion Requested");
    drop(server);
    replay_and_verify(dir.path(), &env);
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_in(dir.path(), &borrowed).await;
    let s = &server;

    // --- account deletion -------------------------------------------------------------------------
    let delete = "com.atproto.server.deleteAccount";
    assert_error(&post(s, delete, None, json!({ "did": did, "password": "wrong-password", "token": delete_token })).await, 401, "AuthenticationRequired");
    assert_error(&post(s, delete, None, json!({ "did": did, "password": "brand-new-pw", "token": "AAAAA-AAAAA" })).await, 400, "InvalidToken");
    assert_error(&post(s, delete, None, json!({ "did": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "password": "x", "token": delete_token })).await, 400, "InvalidRequest");
    let deleted = post(s, delete, None, json!({ "did": did, "password": "brand-new-pw", "token": delete_token })).await;
    assert_eq!(deleted.0, 200, "{deleted:?}");
    let events = s.events_of(ADMIN, &did).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["account.deleted", "account.status"], "only the tombstone is left");
    assert_eq!(events[1]["payload"]["status"], "deleted");
    assert_error(&login(s, "alice.test", "brand-new-pw").await, 401, "AuthenticationRequired");
    assert_error(&get(s, "com.atproto.server.getSession", Some(&access)).await, 400, "ExpiredToken");
    assert_eq!(post(s, "com.atproto.server.createAccount", None, signup("alice.test", "alice@example.com", None)).await.0, 200, "handle and address are free again");
    drop(server);
    replay_and_verify(dir.path(), &env);
    crate::identity::assert_snapshots_match_folds(&dir.path().join("pds-data"), pg).await;
}

#[tokio::test]
async fn email_sqlite() {
    email_flow(None).await;
}

#[tokio::test]
async fn email_postgres() {
    let db = PgDatabase::create().await;
    email_flow(Some(&db)).await;
    db.drop_now().await;
}
