//! Accounts, sessions and identity through the real binary, on SQLite and on Postgres, with the
//! reference PLC directory: createAccount (and the DID document the directory then serves),
//! the handle/email refusals, createSession by handle/DID/email, getSession, refreshSession
//! rotation (a retry within the grace period gets the same successor), deleteSession, the bearer
//! errors, resolveHandle / describeRepo / `.well-known/atproto-did`, the firehose order of the
//! creation's events, and `pds replay` + `pds verify` followed by a login.

use base64::Engine as _;
use domain::crypto::{KeyType, PublicKey};
use serde_json::{json, Value};

use crate::harness::{pds_env, PgDatabase, Server};
use crate::plc::PlcServer;

const JWT_SECRET: &str = "accounts-test-jwt-secret";
const ADMIN: &str = "accounts-admin";
const PASSWORD: &str = "correct horse battery staple";

async fn call(
    method: reqwest::Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method, url);
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn post(s: &Server, nsid: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
    call(reqwest::Method::POST, &s.xrpc(nsid), bearer, Some(body)).await
}

async fn get(s: &Server, path_and_query: &str, bearer: Option<&str>) -> (u16, Value) {
    call(reqwest::Method::GET, &s.xrpc(path_and_query), bearer, None).await
}

#[track_caller]
fn assert_error(got: &(u16, Value), status: u16, name: &str) {
    assert_eq!(got.0, status, "{got:?}");
    assert_eq!(got.1["error"], name, "{got:?}");
}

fn create_body(handle: &str, email: &str) -> Value {
    json!({ "handle": handle, "email": email, "password": PASSWORD })
}

/// The `jti` claim of a refresh JWT.
fn jti(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["jti"].as_str().unwrap().to_owned()
}

fn port_of(s: &Server) -> &str {
    s.url.rsplit_once(':').unwrap().1
}

async fn accounts_flow(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("pds-data").display().to_string();
    let mut env: Vec<(&str, &str)> = vec![
        ("PDS_DID_PLC_URL", plc.url.as_str()),
        ("PDS_INVITE_REQUIRED", "false"),
        ("PDS_JWT_SECRET", JWT_SECRET),
        ("PDS_ADMIN_PASSWORD", ADMIN),
        ("PDS_SERVICE_HANDLE_DOMAINS", ".test"),
    ];
    if let Some(db) = pg {
        env.push(("PDS_DATABASE_URL", db.url.as_str()));
    }
    let server = Server::start_in(dir.path(), &env).await;
    let public_url = format!("http://localhost:{}", port_of(&server));

    // --- createAccount ----------------------------------------------------------------------
    let created = post(&server, "com.atproto.server.createAccount", None, create_body("Alice.test", "Alice@Example.com")).await;
    assert_eq!(created.0, 200, "{created:?}");
    let did = created.1["did"].as_str().unwrap().to_owned();
    assert!(did.starts_with("did:plc:"), "{did}");
    assert_eq!(created.1["handle"], "alice.test");
    assert!(created.1["accessJwt"].is_string() && created.1["refreshJwt"].is_string());
    let our_key = created.1["didDoc"]["verificationMethod"][0]["publicKeyMultibase"].as_str().unwrap().to_owned();

    // The directory's document: this PDS, the account's key, the handle.
    let doc: Value = reqwest::get(plc.at(&did)).await.unwrap().json().await.unwrap();
    assert_eq!(doc["id"], did.as_str(), "{doc}");
    assert!(doc["alsoKnownAs"].as_array().unwrap().contains(&json!("at://alice.test")), "{doc}");
    let pds = doc["service"].as_array().unwrap().iter().find(|s| s["id"].as_str().unwrap().ends_with("#atproto_pds")).unwrap();
    assert_eq!(pds["type"], "AtprotoPersonalDataServer");
    assert_eq!(pds["serviceEndpoint"], public_url.as_str(), "{doc}");
    let vm = doc["verificationMethod"].as_array().unwrap().iter().find(|m| m["id"].as_str().unwrap().ends_with("#atproto")).unwrap();
    // The directory may render the key as a legacy uncompressed multibase or as a Multikey.
    let theirs = vm["publicKeyMultibase"].as_str().unwrap();
    let theirs = match vm["type"].as_str().unwrap() {
        "Multikey" => PublicKey::from_multikey(theirs).unwrap(),
        suite => PublicKey::from_legacy_multibase(KeyType::from_legacy_suite(suite).unwrap(), theirs).unwrap(),
    };
    assert!(our_key.starts_with("zQ3sh"), "a secp256k1 multikey: {our_key}");
    assert_eq!(theirs.to_did_key(), PublicKey::from_multikey(&our_key).unwrap().to_did_key(), "{doc}");
    assert_eq!(created.1["didDoc"]["alsoKnownAs"], doc["alsoKnownAs"]);
    assert_eq!(created.1["didDoc"]["service"], doc["service"]);

    // --- refusals ----------------------------------------------------------------------------
    let s = &server;
    let nsid = "com.atproto.server.createAccount";
    assert_error(&post(s, nsid, None, create_body("al.test", "x1@example.com")).await, 400, "InvalidHandle");
    assert_error(&post(s, nsid, None, create_body("al!ce.test", "x2@example.com")).await, 400, "InvalidHandle");
    assert_error(&post(s, nsid, None, create_body("alice.example.com", "x3@example.com")).await, 400, "UnsupportedDomain");
    assert_error(&post(s, nsid, None, create_body("ALICE.test", "x4@example.com")).await, 400, "HandleNotAvailable");
    let taken = post(s, nsid, None, create_body("bobby.test", "alice@EXAMPLE.com")).await;
    assert_error(&taken, 400, "InvalidRequest");
    assert!(taken.1["message"].as_str().unwrap().contains("Email already taken"), "{taken:?}");
    assert_error(&post(s, nsid, None, create_body("bobby.test", "not-an-email")).await, 400, "InvalidRequest");
    let malformed = reqwest::Client::new()
        .post(s.xrpc(nsid))
        .header("content-type", "application/json")
        .body("{\"handle\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    assert_eq!(malformed.json::<Value>().await.unwrap()["error"], "InvalidRequest");

    // Two creations racing for one handle: one wins, the other is HandleNotAvailable (the read
    // model's UNIQUE constraint), never a 500; the same for one email.
    let (a, b) = tokio::join!(
        post(s, nsid, None, create_body("racer.test", "racer1@example.com")),
        post(s, nsid, None, create_body("RACER.test", "racer2@example.com")),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "{a:?} {b:?}");
    let loser = if a.0 == 400 { &a } else { &b };
    assert_error(loser, 400, "HandleNotAvailable");
    let (a, b) = tokio::join!(
        post(s, nsid, None, create_body("mailrace1.test", "same@example.com")),
        post(s, nsid, None, create_body("mailrace2.test", "SAME@example.com")),
    );
    let loser = if a.0 == 400 { &a } else { &b };
    assert_eq!([a.0.min(b.0), a.0.max(b.0)], [200, 400], "{a:?} {b:?}");
    assert_error(loser, 400, "InvalidRequest");

    // --- createSession -------------------------------------------------------------------------
    let login = |id: &str, pw: &str| json!({ "identifier": id, "password": pw });
    let by_handle = post(s, "com.atproto.server.createSession", None, login("alice.test", PASSWORD)).await;
    assert_eq!(by_handle.0, 200, "{by_handle:?}");
    assert_eq!(by_handle.1["did"], did.as_str());
    assert_eq!(by_handle.1["email"], "alice@example.com");
    assert_eq!(by_handle.1["active"], true);
    for id in [did.as_str(), "ALICE@example.com", "Alice.Test"] {
        let r = post(s, "com.atproto.server.createSession", None, login(id, PASSWORD)).await;
        assert_eq!(r.0, 200, "{id}: {r:?}");
        assert_eq!(r.1["did"], did.as_str());
    }
    let wrong = post(s, "com.atproto.server.createSession", None, login("alice.test", "wrong password")).await;
    assert_error(&wrong, 401, "AuthenticationRequired");
    assert_eq!(wrong.1["message"], "Invalid identifier or password");
    let unknown = post(s, "com.atproto.server.createSession", None, login("nobody.test", PASSWORD)).await;
    assert_error(&unknown, 401, "AuthenticationRequired");
    assert_eq!(unknown.1["message"], "Invalid identifier or password");

    // --- getSession and bearer errors --------------------------------------------------------------
    let access = by_handle.1["accessJwt"].as_str().unwrap().to_owned();
    let me = get(s, "com.atproto.server.getSession", Some(&access)).await;
    assert_eq!(me.0, 200, "{me:?}");
    assert_eq!(me.1["handle"], "alice.test");
    assert_eq!(me.1["did"], did.as_str());
    assert_eq!(me.1["email"], "alice@example.com");
    assert_error(&get(s, "com.atproto.server.getSession", None).await, 401, "AuthMissing");
    assert_error(&get(s, "com.atproto.server.getSession", Some("garbage")).await, 400, "InvalidToken");
    let (_, described) = get(s, "com.atproto.server.describeServer", None).await;
    let service_did = described["did"].as_str().unwrap();
    let key = domain::session_jwt::JwtKey::new(JWT_SECRET.as_bytes()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let expired = domain::session_jwt::create_access_token(&key, &did, service_did, domain::session_jwt::Scope::Access, now - 3 * 3600);
    assert_error(&get(s, "com.atproto.server.getSession", Some(&expired)).await, 400, "ExpiredToken");
    let other = domain::session_jwt::JwtKey::new(b"another secret").unwrap();
    let forged = domain::session_jwt::create_access_token(&other, &did, service_did, domain::session_jwt::Scope::Access, now);
    assert_error(&get(s, "com.atproto.server.getSession", Some(&forged)).await, 400, "InvalidToken");
    let refresh0 = by_handle.1["refreshJwt"].as_str().unwrap().to_owned();
    assert_error(&get(s, "com.atproto.server.getSession", Some(&refresh0)).await, 400, "InvalidToken");

    // --- refreshSession: rotation, a retry within grace, the successor works -------------------------------
    let r1 = post(s, "com.atproto.server.refreshSession", Some(&refresh0), json!({})).await;
    assert_eq!(r1.0, 200, "{r1:?}");
    let refresh1 = r1.1["refreshJwt"].as_str().unwrap().to_owned();
    assert_ne!(jti(&refresh1), jti(&refresh0));
    let again = post(s, "com.atproto.server.refreshSession", Some(&refresh0), json!({})).await;
    assert_eq!(again.0, 200, "{again:?}");
    assert_eq!(jti(again.1["refreshJwt"].as_str().unwrap()), jti(&refresh1), "same successor within grace");
    let access1 = r1.1["accessJwt"].as_str().unwrap();
    assert_eq!(get(s, "com.atproto.server.getSession", Some(access1)).await.0, 200);
    let r2 = post(s, "com.atproto.server.refreshSession", Some(&refresh1), json!({})).await;
    assert_eq!(r2.0, 200, "{r2:?}");
    let refresh2 = r2.1["refreshJwt"].as_str().unwrap().to_owned();
    assert_error(&post(s, "com.atproto.server.refreshSession", None, json!({})).await, 401, "AuthMissing");
    assert_error(&post(s, "com.atproto.server.refreshSession", Some(&access), json!({})).await, 400, "InvalidToken");

    // --- deleteSession, then the token is gone -------------------------------------------------------
    let del = post(s, "com.atproto.server.deleteSession", Some(&refresh2), json!({})).await;
    assert_eq!(del.0, 200, "{del:?}");
    assert_error(&post(s, "com.atproto.server.refreshSession", Some(&refresh2), json!({})).await, 400, "ExpiredToken");
    assert_error(&post(s, "com.atproto.server.refreshSession", Some(&refresh0), json!({})).await, 400, "ExpiredToken");

    // --- identity reads -----------------------------------------------------------------------------
    let resolved = get(s, "com.atproto.identity.resolveHandle?handle=Alice.test", None).await;
    assert_eq!(resolved, (200, json!({ "did": did })));
    let missing = get(s, "com.atproto.identity.resolveHandle?handle=nobody.test", None).await;
    assert_error(&missing, 400, "HandleNotFound");
    assert_eq!(missing.1["message"], "Unable to resolve handle");
    let repo = get(s, "com.atproto.repo.describeRepo?repo=alice.test", None).await;
    assert_eq!(repo.0, 200, "{repo:?}");
    assert_eq!(repo.1["did"], did.as_str());
    assert_eq!(repo.1["handle"], "alice.test");
    assert_eq!(repo.1["collections"], json!([]));
    assert_eq!(repo.1["handleIsCorrect"], true);
    assert_eq!(repo.1["didDoc"], created.1["didDoc"]);
    let wk = reqwest::Client::new()
        .get(format!("{}/.well-known/atproto-did", s.url))
        .header("host", "alice.test")
        .send()
        .await
        .unwrap();
    assert_eq!(wk.status().as_u16(), 200);
    assert_eq!(wk.text().await.unwrap(), did);
    let wk = reqwest::Client::new()
        .get(format!("{}/.well-known/atproto-did", s.url))
        .header("host", "nobody.test")
        .send()
        .await
        .unwrap();
    assert_eq!(wk.status().as_u16(), 404);

    // --- the creation's events: #identity, #account, #commit, #sync, in seq order -------------------------
    let mine = s.events_of(ADMIN, &did).await;
    let types: Vec<&str> = mine.iter().take(6).map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["account.created", "account.identity", "account.status", "account.session_created", "repo.committed", "repo.synced"]
    );
    let public: Vec<(&str, i64)> = mine
        .iter()
        .take(6)
        .filter_map(|e| e["seq"].as_i64().map(|q| (e["type"].as_str().unwrap(), q)))
        .collect();
    assert_eq!(public.iter().map(|p| p.0).collect::<Vec<_>>(), ["account.identity", "account.status", "repo.committed", "repo.synced"]);
    assert!(public.windows(2).all(|w| w[1].1 == w[0].1 + 1), "contiguous seqs: {public:?}");
    assert!(mine.iter().take(6).all(|e| e["position"].as_i64().unwrap() == mine[0]["position"].as_i64().unwrap() + mine.iter().position(|x| x == e).unwrap() as i64), "one append");
    let all = Value::from(s.events_of(ADMIN, "").await);
    assert!(!all.to_string().contains(PASSWORD), "no password in the log");

    // --- replay, verify, log in again ----------------------------------------------------------------
    drop(server);
    let mut cli_env = env.clone();
    cli_env.push(("PDS_DATA_DIRECTORY", data_dir.as_str()));
    let out = pds_env(&["replay"], &cli_env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = pds_env(&["verify"], &cli_env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("verify: clean"), "{stdout}");
    let server = Server::start_in(dir.path(), &env).await;
    let relogin = post(&server, "com.atproto.server.createSession", None, login("alice.test", PASSWORD)).await;
    assert_eq!(relogin.0, 200, "{relogin:?}");
    let me = get(&server, "com.atproto.server.getSession", relogin.1["accessJwt"].as_str()).await;
    assert_eq!(me.0, 200, "{me:?}");
    assert_eq!(me.1["did"], did.as_str());
    drop(server);
}

#[tokio::test]
async fn accounts_sqlite() {
    accounts_flow(None).await;
}

#[tokio::test]
async fn accounts_postgres() {
    let db = PgDatabase::create().await;
    accounts_flow(Some(&db)).await;
    db.drop_now().await;
}

/// A directory that does not answer: createAccount fails with 502 `UpstreamFailure` naming the
/// directory (not a 500), and nothing reaches the log.
#[tokio::test]
async fn plc_failure_appends_nothing() {
    let dead = format!("http://127.0.0.1:{}", crate::harness::free_port());
    let server = Server::start(&[
        ("PDS_DID_PLC_URL", dead.as_str()),
        ("PDS_INVITE_REQUIRED", "false"),
        ("PDS_ADMIN_PASSWORD", ADMIN),
    ])
    .await;
    let r = post(&server, "com.atproto.server.createAccount", None, create_body("carol.test", "carol@example.com")).await;
    assert_error(&r, 502, "UpstreamFailure");
    let message = r.1["message"].as_str().unwrap();
    assert!(message.contains(&dead) && message.contains("unreachable"), "{message}");
    let events: Value = reqwest::Client::new()
        .get(server.xrpc("org.eventpds.admin.listEvents"))
        .basic_auth("admin", Some(ADMIN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events["events"], json!([]), "{events}");
    assert_error(&get(&server, "com.atproto.identity.resolveHandle?handle=carol.test", None).await, 400, "HandleNotFound");
}

/// With `PDS_INVITE_REQUIRED` (the default), a signup without a code or with an unknown code is refused.
#[tokio::test]
async fn invite_required_refuses_every_code() {
    let server = Server::start(&[]).await;
    let mut body = create_body("dave.test", "dave@example.com");
    assert_error(&post(&server, "com.atproto.server.createAccount", None, body.clone()).await, 400, "InvalidInviteCode");
    body["inviteCode"] = json!("some-code");
    assert_error(&post(&server, "com.atproto.server.createAccount", None, body).await, 400, "InvalidInviteCode");
}
