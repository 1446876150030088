//! Invite codes through the real binary, on SQLite and on Postgres, with the reference PLC
//! directory and `PDS_INVITE_REQUIRED` (the default): createInviteCode(s) behind admin auth (the
//! reference's code format), createAccount consuming uses (unknown, missing and used-up codes
//! refused; two signups racing for a one-use code: exactly one wins), getAccountInviteCodes, and
//! `pds replay` + `pds verify` afterwards. Also the shared helpers of `app_passwords.rs`.

use serde_json::{json, Value};

use crate::harness::{pds_env, PgDatabase, Server};
use crate::plc::PlcServer;

pub const ADMIN: &str = "invites-admin";
pub const PASSWORD: &str = "correct horse battery staple";

pub async fn call(
    method: reqwest::Method,
    url: &str,
    bearer: Option<&str>,
    admin: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(p) = admin {
        req = req.basic_auth("admin", Some(p));
    }
    // `Value::Null`: no body at all (what clients send to a procedure without input).
    if let Some(b) = body.filter(|b| !b.is_null()) {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub async fn post(s: &Server, nsid: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
    call(reqwest::Method::POST, &s.xrpc(nsid), bearer, None, Some(body)).await
}

pub async fn admin_post(s: &Server, nsid: &str, password: &str, body: Value) -> (u16, Value) {
    call(reqwest::Method::POST, &s.xrpc(nsid), None, Some(password), Some(body)).await
}

pub async fn get(s: &Server, path_and_query: &str, bearer: Option<&str>) -> (u16, Value) {
    call(reqwest::Method::GET, &s.xrpc(path_and_query), bearer, None, None).await
}

#[track_caller]
pub fn assert_error(got: &(u16, Value), status: u16, name: &str) {
    assert_eq!(got.0, status, "{got:?}");
    assert_eq!(got.1["error"], name, "{got:?}");
}

pub fn signup(handle: &str, email: &str, code: Option<&str>) -> Value {
    let mut b = json!({ "handle": handle, "email": email, "password": PASSWORD });
    if let Some(c) = code {
        b["inviteCode"] = json!(c);
    }
    b
}

/// A server on `dir` with the PLC directory, admin password and `.test` handles, on Postgres if
/// `pg`; returns it and its environment (for the CLI).
pub async fn start<'a>(
    dir: &std::path::Path,
    plc: &'a PlcServer,
    pg: Option<&'a PgDatabase>,
    invite_required: &'a str,
) -> (Server, Vec<(&'a str, String)>) {
    let mut env: Vec<(&str, String)> = vec![
        ("PDS_DID_PLC_URL", plc.url.clone()),
        ("PDS_INVITE_REQUIRED", invite_required.to_owned()),
        ("PDS_JWT_SECRET", "invites-test-jwt-secret".to_owned()),
        ("PDS_ADMIN_PASSWORD", ADMIN.to_owned()),
        ("PDS_SERVICE_HANDLE_DOMAINS", ".test".to_owned()),
    ];
    if let Some(db) = pg {
        env.push(("PDS_DATABASE_URL", db.url.clone()));
    }
    // One service DID per data directory, not per port: tokens issued before a restart (which
    // lands on another port) stay valid after it.
    let name: String = dir.file_name().unwrap_or_default().to_string_lossy().chars().filter(char::is_ascii_alphanumeric).collect();
    env.push(("PDS_SERVICE_DID", format!("did:web:pds-{}.test", name.to_ascii_lowercase())));
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_in(dir, &borrowed).await;
    (server, env)
}

/// `pds replay` then `pds verify` (clean) on the server's data.
pub fn replay_and_verify(dir: &std::path::Path, env: &[(&str, String)]) {
    let data_dir = dir.join("pds-data").display().to_string();
    let mut cli_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    cli_env.push(("PDS_DATA_DIRECTORY", data_dir.as_str()));
    let out = pds_env(&["replay"], &cli_env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = pds_env(&["verify"], &cli_env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("verify: clean"), "{stdout}");
}

const CREATE_ACCOUNT: &str = "com.atproto.server.createAccount";

fn assert_code_format(code: &str) {
    let rest = code.strip_prefix("localhost-").unwrap_or_else(|| panic!("{code}"));
    let parts: Vec<&str> = rest.split('-').collect();
    assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [5, 5], "{code}");
    assert!(rest.bytes().all(|b| b == b'-' || matches!(b, b'a'..=b'z' | b'2'..=b'7')), "{code}");
}

async fn invites_flow(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, env) = start(dir.path(), &plc, pg, "true").await;
    let s = &server;

    // --- admin auth and input ---------------------------------------------------------------
    let nsid = "com.atproto.server.createInviteCode";
    assert_error(&post(s, nsid, None, json!({ "useCount": 1 })).await, 401, "AuthRequired");
    assert_error(&admin_post(s, nsid, "wrong", json!({ "useCount": 1 })).await, 401, "AuthRequired");
    assert_error(&admin_post(s, nsid, ADMIN, json!({ "useCount": 0 })).await, 400, "InvalidRequest");
    assert_error(&admin_post(s, nsid, ADMIN, json!({ "useCount": -3 })).await, 400, "InvalidRequest");
    assert_error(&admin_post(s, nsid, ADMIN, json!({ "useCount": "one" })).await, 400, "InvalidRequest");
    assert_error(&admin_post(s, nsid, ADMIN, json!({})).await, 400, "InvalidRequest");
    assert_error(&admin_post(s, nsid, ADMIN, json!({ "useCount": 1, "forAccount": "nope" })).await, 400, "InvalidRequest");
    let codes_nsid = "com.atproto.server.createInviteCodes";
    assert_error(&admin_post(s, codes_nsid, ADMIN, json!({ "useCount": 1, "codeCount": 0 })).await, 400, "InvalidRequest");
    assert_error(&post(s, codes_nsid, None, json!({ "useCount": 1 })).await, 401, "AuthRequired");

    // --- createAccount needs a live code ----------------------------------------------------
    let one = admin_post(s, nsid, ADMIN, json!({ "useCount": 1 })).await;
    assert_eq!(one.0, 200, "{one:?}");
    let one = one.1["code"].as_str().unwrap().to_owned();
    assert_code_format(&one);
    assert_error(&post(s, CREATE_ACCOUNT, None, signup("nocode.test", "nocode@example.com", None)).await, 400, "InvalidInviteCode");
    assert_error(&post(s, CREATE_ACCOUNT, None, signup("nocode.test", "nocode@example.com", Some(""))).await, 400, "InvalidInviteCode");
    let unknown = post(s, CREATE_ACCOUNT, None, signup("nocode.test", "nocode@example.com", Some("localhost-aaaaa-bbbbb"))).await;
    assert_error(&unknown, 400, "InvalidInviteCode");
    assert_error(&post(s, CREATE_ACCOUNT, None, signup("nocode.test", "nocode@example.com", Some("a/b"))).await, 400, "InvalidInviteCode");

    // Two signups racing for a one-use code: exactly one wins.
    let (a, b) = tokio::join!(
        post(s, CREATE_ACCOUNT, None, signup("race1.test", "race1@example.com", Some(&one))),
        post(s, CREATE_ACCOUNT, None, signup("race2.test", "race2@example.com", Some(&one))),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "{a:?} {b:?}");
    let (winner, loser) = if a.0 == 200 { (&a, &b) } else { (&b, &a) };
    assert_error(loser, 400, "InvalidInviteCode");
    let did = winner.1["did"].as_str().unwrap().to_owned();
    let token = winner.1["accessJwt"].as_str().unwrap().to_owned();
    // Used up.
    assert_error(&post(s, CREATE_ACCOUNT, None, signup("late.test", "late@example.com", Some(&one))).await, 400, "InvalidInviteCode");

    // --- createInviteCodes for the account; getAccountInviteCodes ----------------------------
    let made = admin_post(s, codes_nsid, ADMIN, json!({ "useCount": 2, "codeCount": 2, "forAccounts": [did] })).await;
    assert_eq!(made.0, 200, "{made:?}");
    assert_eq!(made.1["codes"].as_array().unwrap().len(), 1, "{made:?}");
    assert_eq!(made.1["codes"][0]["account"], did.as_str());
    let mine: Vec<String> =
        made.1["codes"][0]["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(mine.len(), 2);
    mine.iter().for_each(|c| assert_code_format(c));
    let admin_made = admin_post(s, codes_nsid, ADMIN, json!({ "useCount": 1 })).await;
    assert_eq!(admin_made.1["codes"][0]["account"], "admin", "{admin_made:?}");

    let list = get(s, "com.atproto.server.getAccountInviteCodes", Some(&token)).await;
    assert_eq!(list.0, 200, "{list:?}");
    let listed = list.1["codes"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{list:?}");
    for c in listed {
        assert!(mine.contains(&c["code"].as_str().unwrap().to_owned()), "{c}");
        assert_eq!(c["available"], 2);
        assert_eq!(c["disabled"], false);
        assert_eq!(c["forAccount"], did.as_str());
        assert_eq!(c["createdBy"], "admin");
        assert!(c["createdAt"].as_str().unwrap().ends_with('Z'), "{c}");
        assert_eq!(c["uses"], json!([]));
    }
    assert_error(&get(s, "com.atproto.server.getAccountInviteCodes", None).await, 401, "AuthMissing");
    assert_error(&get(s, "com.atproto.server.getAccountInviteCodes?includeUsed=maybe", Some(&token)).await, 400, "InvalidRequest");

    // Two uses of a two-use code, then it is gone from includeUsed=false.
    let friend = post(s, CREATE_ACCOUNT, None, signup("friend1.test", "friend1@example.com", Some(&mine[0]))).await;
    assert_eq!(friend.0, 200, "{friend:?}");
    let friend_did = friend.1["did"].as_str().unwrap().to_owned();
    let list = get(s, "com.atproto.server.getAccountInviteCodes?includeUsed=false", Some(&token)).await;
    let used = list.1["codes"].as_array().unwrap().iter().find(|c| c["code"] == mine[0].as_str()).unwrap().clone();
    assert_eq!(used["uses"].as_array().unwrap().len(), 1, "{used}");
    assert_eq!(used["uses"][0]["usedBy"], friend_did.as_str());
    assert!(used["uses"][0]["usedAt"].is_string(), "{used}");
    let friend2 = post(s, CREATE_ACCOUNT, None, signup("friend2.test", "friend2@example.com", Some(&mine[0]))).await;
    assert_eq!(friend2.0, 200, "{friend2:?}");
    assert_error(&post(s, CREATE_ACCOUNT, None, signup("friend3.test", "friend3@example.com", Some(&mine[0]))).await, 400, "InvalidInviteCode");
    let list = get(s, "com.atproto.server.getAccountInviteCodes?includeUsed=false", Some(&token)).await;
    assert_eq!(list.1["codes"].as_array().unwrap().len(), 1, "{list:?}");
    assert_eq!(list.1["codes"][0]["code"], mine[1].as_str());
    let list = get(s, "com.atproto.server.getAccountInviteCodes", Some(&token)).await;
    assert_eq!(list.1["codes"].as_array().unwrap().len(), 2, "{list:?}");
    // The friend's own list is empty.
    let friend_token = friend.1["accessJwt"].as_str().unwrap();
    assert_eq!(get(s, "com.atproto.server.getAccountInviteCodes", Some(friend_token)).await.1, json!({ "codes": [] }));

    // describeServer says codes are required.
    assert_eq!(get(s, "com.atproto.server.describeServer", None).await.1["inviteCodeRequired"], true);

    // --- the read models rebuild --------------------------------------------------------------
    drop(server);
    replay_and_verify(dir.path(), &env);
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_in(dir.path(), &borrowed).await;
    // A new port is a new service DID (the tokens' audience): log in again.
    let login = post(&server, "com.atproto.server.createSession", None, json!({ "identifier": did, "password": PASSWORD })).await;
    assert_eq!(login.0, 200, "{login:?}");
    let token = login.1["accessJwt"].as_str().unwrap().to_owned();
    let list = get(&server, "com.atproto.server.getAccountInviteCodes", Some(&token)).await;
    assert_eq!(list.1["codes"].as_array().unwrap().len(), 2, "{list:?}");
    assert_error(
        &post(&server, CREATE_ACCOUNT, None, signup("after.test", "after@example.com", Some(&mine[0]))).await,
        400,
        "InvalidInviteCode",
    );
    let last = post(&server, CREATE_ACCOUNT, None, signup("after.test", "after@example.com", Some(&mine[1]))).await;
    assert_eq!(last.0, 200, "{last:?}");
}

#[tokio::test]
async fn invites_sqlite() {
    invites_flow(None).await;
}

#[tokio::test]
async fn invites_postgres() {
    let db = PgDatabase::create().await;
    invites_flow(Some(&db)).await;
    db.drop_now().await;
}

/// Without `PDS_INVITE_REQUIRED` a signup needs no code, but a code given is still checked and used.
#[tokio::test]
async fn invites_optional() {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, _env) = start(dir.path(), &plc, None, "false").await;
    let s = &server;
    let open = post(s, CREATE_ACCOUNT, None, signup("uninvited.test", "uninvited@example.com", None)).await;
    assert_eq!(open.0, 200, "{open:?}");
    assert_error(&post(s, CREATE_ACCOUNT, None, signup("bad.test", "bad@example.com", Some("nope"))).await, 400, "InvalidInviteCode");
}
