//! Identity, service auth, migration and session revocation through the real binary, on SQLite
//! and on Postgres (with the reference PLC directory):
//! - admin `updateSubjectStatus` with `deactivated` (both ways; `#account` each time; shown by
//!   `getSubjectStatus` and `getSession`);
//! - an access token stops working as soon as its session is revoked (`deleteSession`);
//! - `com.atproto.identity.updateHandle` (the directory's document follows; `#identity`;
//!   `HandleNotAvailable`, `InvalidHandle`, `UnsupportedDomain`, `AuthMissing`);
//! - `com.atproto.server.getServiceAuth` (the token verifies against the key the directory
//!   publishes; `BadExpiration`, protected and privileged methods);
//! - `getRecommendedDidCredentials`;
//! - bring-your-own-DID `createAccount` on a second server with a service-auth token from the
//!   first (deactivated, an empty repo, no public event; `AuthRequired`, `BadJwtAudience`,
//!   `BadJwtLexiconMethod`); the PLC operation signed on the first server with its emailed token
//!   (`requestPlcOperationSignature`, `signPlcOperation`), submitted on the second
//!   (`submitPlcOperation`: the directory's document moves), `activateAccount` there; then
//!   `pds replay` + `pds verify` and the migrated session still works.

use serde_json::{json, Value};

use crate::harness::{PgDatabase, Server};
use crate::invites::{admin_post, assert_error, get, post, replay_and_verify, signup, start, ADMIN, PASSWORD};
use crate::plc::PlcServer;

const REPO_REF: &str = "com.atproto.admin.defs#repoRef";
const SERVICE_AUTH: &str = "com.atproto.server.getServiceAuth";
const CREATE_ACCOUNT: &str = "com.atproto.server.createAccount";

fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

async fn plc_doc(plc: &PlcServer, did: &str) -> Value {
    reqwest::get(format!("{}/{did}", plc.url)).await.unwrap().json().await.unwrap()
}

async fn service_did(s: &Server) -> String {
    get(s, "com.atproto.server.describeServer", None).await.1["did"].as_str().unwrap().to_owned()
}

async fn service_auth(s: &Server, token: &str, query: &str) -> (u16, Value) {
    get(s, &format!("{SERVICE_AUTH}?{query}"), Some(token)).await
}

async fn identity_flow(pg: Option<(&PgDatabase, &PgDatabase)>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, env) = start(dir.path(), &plc, pg.map(|p| p.0), "false").await;
    let s = &server;
    let alice = post(s, CREATE_ACCOUNT, None, signup("alice.test", "alice@example.com", None)).await;
    assert_eq!(alice.0, 200, "{alice:?}");
    let did = alice.1["did"].as_str().unwrap().to_owned();
    let access = alice.1["accessJwt"].as_str().unwrap().to_owned();
    assert_eq!(post(s, CREATE_ACCOUNT, None, signup("bob.test", "bob@example.com", None)).await.0, 200);

    // --- admin updateSubjectStatus {deactivated} ------------------------------------------------
    let subject = json!({ "$type": REPO_REF, "did": did });
    let before = s.events_of(ADMIN, &did).await.len();
    let r = admin_post(s, "com.atproto.admin.updateSubjectStatus", ADMIN, json!({ "subject": subject, "deactivated": { "applied": true } })).await;
    assert_eq!(r.0, 200, "{r:?}");
    let status = get(s, &format!("com.atproto.admin.getSubjectStatus?did={did}"), None).await;
    assert_eq!(status.0, 401);
    let status = crate::invites::call(reqwest::Method::GET, &s.xrpc(&format!("com.atproto.admin.getSubjectStatus?did={did}")), None, Some(ADMIN), None).await;
    assert_eq!(status.1["deactivated"], json!({ "applied": true }), "{status:?}");
    let session = get(s, "com.atproto.server.getSession", Some(&access)).await;
    assert_eq!((session.1["active"].clone(), session.1["status"].clone()), (json!(false), json!("deactivated")), "{session:?}");
    let r = admin_post(s, "com.atproto.admin.updateSubjectStatus", ADMIN, json!({ "subject": subject, "deactivated": { "applied": false } })).await;
    assert_eq!(r.0, 200, "{r:?}");
    let events = s.events_of(ADMIN, &did).await;
    assert_eq!(
        types(&events[before..]),
        ["account.deactivated", "account.status", "account.activated", "account.status"],
        "{events:#?}"
    );
    assert_eq!(events[before + 1]["payload"]["status"], "deactivated", "{:?}", events[before + 1]);
    assert_eq!(events[before + 3]["payload"]["active"], true, "{:?}", events[before + 3]);
    assert_eq!(get(s, "com.atproto.server.getSession", Some(&access)).await.1["active"], true);
    let unknown = json!({ "$type": REPO_REF, "did": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa" });
    assert_error(&admin_post(s, "com.atproto.admin.updateSubjectStatus", ADMIN, json!({ "subject": unknown, "deactivated": { "applied": true } })).await, 400, "AccountNotFound");

    // --- a revoked session's access token stops at once ------------------------------------------
    let login = post(s, "com.atproto.server.createSession", None, json!({ "identifier": "alice.test", "password": PASSWORD })).await;
    let (a2, r2) = (login.1["accessJwt"].as_str().unwrap().to_owned(), login.1["refreshJwt"].as_str().unwrap().to_owned());
    assert_eq!(get(s, "com.atproto.server.getSession", Some(&a2)).await.0, 200);
    assert_eq!(post(s, "com.atproto.server.deleteSession", Some(&r2), Value::Null).await.0, 200);
    let gone = get(s, "com.atproto.server.getSession", Some(&a2)).await;
    assert_error(&gone, 400, "ExpiredToken");
    assert_eq!(gone.1["message"], "Token has been revoked");
    assert_eq!(get(s, "com.atproto.server.getSession", Some(&access)).await.0, 200, "other sessions untouched");

    // --- updateHandle -------------------------------------------------------------------------------
    let nsid = "com.atproto.identity.updateHandle";
    let before = s.events_of(ADMIN, &did).await.len();
    assert_eq!(post(s, nsid, Some(&access), json!({ "handle": "Alice2.test" })).await.0, 200);
    assert_eq!(get(s, "com.atproto.identity.resolveHandle?handle=alice2.test", None).await.1["did"], did.as_str());
    assert_error(&get(s, "com.atproto.identity.resolveHandle?handle=alice.test", None).await, 400, "HandleNotFound");
    assert_eq!(plc_doc(&plc, &did).await["alsoKnownAs"], json!(["at://alice2.test"]));
    let events = s.events_of(ADMIN, &did).await;
    assert_eq!(types(&events[before..]), ["account.handle_updated", "account.identity"]);
    assert_eq!(events[before + 1]["payload"]["handle"], "alice2.test");
    for (handle, status, name) in [
        ("bob.test", 400, "HandleNotAvailable"),
        ("BOB.test", 400, "HandleNotAvailable"),
        ("-bad-.test", 400, "InvalidRequest"), // not a handle: the lexicon check (as the reference)
        // Another domain must already name the DID (DNS or .well-known; `handles.rs`).
        ("alice.elsewhere.com", 400, "InvalidRequest"),
    ] {
        assert_error(&post(s, nsid, Some(&access), json!({ "handle": handle })).await, status, name);
    }
    assert_error(&post(s, nsid, None, json!({ "handle": "alice3.test" })).await, 401, "AuthMissing");
    assert_error(&post(s, nsid, Some(&access), json!({})).await, 400, "InvalidRequest");
    assert_eq!(get(s, "com.atproto.server.getSession", Some(&access)).await.1["handle"], "alice2.test");

    // --- getServiceAuth ---------------------------------------------------------------------------
    let aud = "did:web:appview.example.com";
    let doc = plc_doc(&plc, &did).await;
    let key = domain::did_doc::atproto_signing_key(&doc, &did).unwrap();
    let got = service_auth(s, &access, &format!("aud={aud}%23bsky_appview&lxm=app.bsky.feed.getTimeline")).await;
    assert_eq!(got.0, 200, "{got:?}");
    let parsed = domain::service_jwt::parse(got.1["token"].as_str().unwrap()).unwrap();
    let claims = domain::service_jwt::verify(&parsed, &key, &format!("{aud}#bsky_appview"), Some("app.bsky.feed.getTimeline"), now_secs()).unwrap();
    assert_eq!(claims.iss, did);
    assert!(claims.exp > now_secs() && claims.exp <= now_secs() + 61, "{claims:?}");
    let long = service_auth(s, &access, &format!("aud={aud}&lxm=app.bsky.feed.getTimeline&exp={}", now_secs() + 1800)).await;
    assert_eq!(long.0, 200, "{long:?}");
    let app_pw = post(s, "com.atproto.server.createAppPassword", Some(&access), json!({ "name": "plain" })).await.1["password"].as_str().unwrap().to_owned();
    let app_access = post(s, "com.atproto.server.createSession", None, json!({ "identifier": did, "password": app_pw })).await.1["accessJwt"].as_str().unwrap().to_owned();
    let now = now_secs();
    for (token, query, status, name) in [
        (&access, format!("aud={aud}&lxm=app.bsky.feed.getTimeline&exp={}", now - 10), 400, "BadExpiration"),
        (&access, format!("aud={aud}&lxm=app.bsky.feed.getTimeline&exp={}", now + 7200), 400, "BadExpiration"),
        (&access, format!("aud={aud}&exp={}", now + 300), 400, "BadExpiration"),
        (&access, format!("aud={aud}&lxm=com.atproto.server.createAppPassword"), 400, "InvalidRequest"),
        (&access, "aud=not-a-did".to_owned(), 400, "InvalidRequest"),
        (&access, "lxm=app.bsky.feed.getTimeline".to_owned(), 400, "InvalidRequest"),
        (&app_access, format!("aud={aud}&lxm=chat.bsky.convo.sendMessage"), 400, "InvalidRequest"),
        (&app_access, format!("aud={aud}&lxm={CREATE_ACCOUNT}"), 400, "InvalidRequest"),
    ] {
        assert_error(&service_auth(s, token, &query).await, status, name);
    }
    assert_eq!(service_auth(s, &app_access, &format!("aud={aud}&lxm=app.bsky.feed.getTimeline")).await.0, 200);
    assert_error(&get(s, &format!("{SERVICE_AUTH}?aud={aud}"), None).await, 401, "AuthMissing");

    // --- getRecommendedDidCredentials --------------------------------------------------------------
    let creds = get(s, "com.atproto.identity.getRecommendedDidCredentials", Some(&access)).await;
    assert_eq!(creds.0, 200, "{creds:?}");
    let data: Value = reqwest::get(format!("{}/{did}/data", plc.url)).await.unwrap().json().await.unwrap();
    assert_eq!(creds.1["rotationKeys"], data["rotationKeys"]);
    assert_eq!(creds.1["alsoKnownAs"], data["alsoKnownAs"]);
    assert_eq!(creds.1["verificationMethods"], data["verificationMethods"]);
    assert_eq!(creds.1["services"], data["services"]);

    // --- bring-your-own DID: alice migrates to a second server ----------------------------------
    let dir_b = tempfile::tempdir().unwrap();
    let (server_b, env_b) = start(dir_b.path(), &plc, pg.map(|p| p.1), "false").await;
    let b = &server_b;
    let b_did = service_did(b).await;
    let migrate = |token: Option<String>| {
        let mut req = reqwest::Client::new()
            .post(b.xrpc(CREATE_ACCOUNT))
            .json(&json!({ "did": did, "handle": "alice2.test", "email": "alice@example.com", "password": "new-password-1" }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let token_for = |query: String| {
        let access = access.clone();
        async move { service_auth(s, &access, &query).await.1["token"].as_str().unwrap().to_owned() }
    };
    assert_error(&migrate(None).await, 401, "AuthRequired");
    let wrong_aud = token_for(format!("aud={}&lxm={CREATE_ACCOUNT}", service_did(s).await)).await;
    assert_error(&migrate(Some(wrong_aud)).await, 401, "BadJwtAudience");
    let wrong_lxm = token_for(format!("aud={b_did}&lxm=com.atproto.repo.createRecord")).await;
    assert_error(&migrate(Some(wrong_lxm)).await, 401, "BadJwtLexiconMethod");
    assert_error(&migrate(Some("not.a.jwt".into())).await, 401, "BadJwt");
    // Without a DID, a bearer token sent along must still be a valid service token.
    let plain = reqwest::Client::new()
        .post(b.xrpc(CREATE_ACCOUNT))
        .bearer_auth(&access)
        .json(&signup("carol.test", "carol@example.com", None))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status().as_u16(), 401);
    assert_eq!(plain.json::<Value>().await.unwrap()["error"], "BadJwt", "an access token is not a service token");
    // A token from bob for alice's DID: iss is not the DID.
    let bob_access = post(s, "com.atproto.server.createSession", None, json!({ "identifier": "bob.test", "password": PASSWORD })).await.1["accessJwt"].as_str().unwrap().to_owned();
    let bobs = service_auth(s, &bob_access, &format!("aud={b_did}&lxm={CREATE_ACCOUNT}")).await.1["token"].as_str().unwrap().to_owned();
    assert_error(&migrate(Some(bobs)).await, 401, "AuthRequired");
    // A takendown account may only mint a createAccount token (to migrate away).
    let bob_did = get(s, "com.atproto.identity.resolveHandle?handle=bob.test", None).await.1["did"].as_str().unwrap().to_owned();
    let takedown = json!({ "subject": { "$type": REPO_REF, "did": bob_did }, "takedown": { "applied": true } });
    assert_eq!(admin_post(s, "com.atproto.admin.updateSubjectStatus", ADMIN, takedown).await.0, 200);
    assert_error(&service_auth(s, &bob_access, &format!("aud={b_did}&lxm={CREATE_ACCOUNT}")).await, 400, "ExpiredToken");
    let td = post(s, "com.atproto.server.createSession", None, json!({ "identifier": "bob.test", "password": PASSWORD, "allowTakendown": true })).await;
    assert_eq!(td.0, 200, "{td:?}");
    let td_access = td.1["accessJwt"].as_str().unwrap().to_owned();
    assert_eq!(service_auth(s, &td_access, &format!("aud={b_did}&lxm={CREATE_ACCOUNT}")).await.0, 200);
    assert_error(&service_auth(s, &td_access, &format!("aud={b_did}&lxm=app.bsky.feed.getTimeline")).await, 400, "InvalidToken");
    assert_error(&get(s, "com.atproto.identity.getRecommendedDidCredentials", Some(&td_access)).await, 400, "InvalidToken");

    let good = token_for(format!("aud={b_did}&lxm={CREATE_ACCOUNT}")).await;
    let created = migrate(Some(good.clone())).await;
    assert_eq!(created.0, 200, "{created:?}");
    assert_eq!(created.1["did"], did.as_str());
    assert_eq!(created.1["handle"], "alice2.test");
    let a_endpoint = s.url.replace("127.0.0.1", "localhost");
    assert_eq!(created.1["didDoc"]["service"][0]["serviceEndpoint"], a_endpoint.as_str(), "the document still names the old PDS");
    let b_access = created.1["accessJwt"].as_str().unwrap().to_owned();
    let b_refresh = created.1["refreshJwt"].as_str().unwrap().to_owned();
    let b_session = get(b, "com.atproto.server.getSession", Some(&b_access)).await;
    assert_eq!((b_session.1["active"].clone(), b_session.1["status"].clone()), (json!(false), json!("deactivated")), "{b_session:?}");
    let b_events = b.events_of(ADMIN, &did).await;
    assert_eq!(types(&b_events), ["account.created", "account.session_created", "repo.committed"], "no public event, an empty repo");
    assert!(b_events.iter().all(|e| e["seq"].is_null()), "{b_events:#?}");
    let status_b = get(b, "com.atproto.server.checkAccountStatus", Some(&b_access)).await;
    assert_eq!(status_b.1["activated"], false, "{status_b:?}");
    let creds_b = get(b, "com.atproto.identity.getRecommendedDidCredentials", Some(&b_access)).await;
    assert_eq!(creds_b.1["services"]["atproto_pds"]["endpoint"], b.url.replace("127.0.0.1", "localhost").as_str());
    assert_ne!(creds_b.1["verificationMethods"]["atproto"], data["verificationMethods"]["atproto"], "a fresh key on B");
    assert_eq!(migrate(Some(good)).await.0, 400, "the DID has an account on B now");

    // --- the PLC operation: A signs (emailed token), B submits, B activates ---------------------------
    assert_error(&post(s, "com.atproto.identity.requestPlcOperationSignature", Some(&app_access), Value::Null).await, 400, "InvalidToken");
    assert_eq!(post(s, "com.atproto.identity.requestPlcOperationSignature", Some(&access), Value::Null).await.0, 200);
    let token = crate::email::last_token(&dir.path().join("pds-data"), "alice@example.com", "PLC Update Operation Requested");
    let fields = json!({
        "rotationKeys": creds_b.1["rotationKeys"],
        "alsoKnownAs": creds_b.1["alsoKnownAs"],
        "verificationMethods": creds_b.1["verificationMethods"],
        "services": creds_b.1["services"],
    });
    let mut wrong = fields.clone();
    wrong["token"] = json!("AAAAA-AAAAA");
    assert_error(&post(s, "com.atproto.identity.signPlcOperation", Some(&access), wrong).await, 400, "InvalidToken");
    let mut with_token = fields.clone();
    with_token["token"] = json!(token);
    let signed = post(s, "com.atproto.identity.signPlcOperation", Some(&access), with_token.clone()).await;
    assert_eq!(signed.0, 200, "{signed:?}");
    let operation = signed.1["operation"].clone();
    assert_eq!(operation["services"], creds_b.1["services"]);
    assert_error(&post(s, "com.atproto.identity.signPlcOperation", Some(&access), with_token).await, 400, "InvalidToken");
    let mut tampered = operation.clone();
    tampered["services"]["atproto_pds"]["endpoint"] = json!("https://elsewhere.example.com");
    let refused = post(b, "com.atproto.identity.submitPlcOperation", Some(&b_access), json!({ "operation": tampered })).await;
    assert_error(&refused, 400, "InvalidRequest");
    let before_b = b.events_of(ADMIN, &did).await.len();
    let submitted = post(b, "com.atproto.identity.submitPlcOperation", Some(&b_access), json!({ "operation": operation })).await;
    assert_eq!(submitted.0, 200, "{submitted:?}");
    let moved = plc_doc(&plc, &did).await;
    assert_eq!(moved["service"][0]["serviceEndpoint"], b.url.replace("127.0.0.1", "localhost").as_str());
    assert_eq!(
        domain::did_doc::atproto_signing_key(&moved, &did).unwrap().to_did_key(),
        creds_b.1["verificationMethods"]["atproto"].as_str().unwrap()
    );
    assert_eq!(post(b, "com.atproto.server.activateAccount", Some(&b_access), Value::Null).await.0, 200);
    let b_events = b.events_of(ADMIN, &did).await;
    assert_eq!(
        types(&b_events[before_b..]),
        ["account.identity", "account.activated", "account.status", "account.identity", "repo.synced"],
        "{b_events:#?}"
    );
    assert_eq!(get(b, "com.atproto.server.getSession", Some(&b_access)).await.1["active"], true);
    assert_eq!(get(b, "com.atproto.server.checkAccountStatus", Some(&b_access)).await.1["validDid"], true);

    // --- replay + verify on B: the migrated account and its session still work ---------------------
    drop(server_b);
    replay_and_verify(dir_b.path(), &env_b);
    let borrowed: Vec<(&str, &str)> = env_b.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server_b = Server::start_in(dir_b.path(), &borrowed).await;
    let b = &server_b;
    assert_eq!(get(b, "com.atproto.server.getSession", Some(&b_access)).await.1["did"], did.as_str());
    assert_eq!(post(b, "com.atproto.server.refreshSession", Some(&b_refresh), Value::Null).await.0, 200);
    let login_b = post(b, "com.atproto.server.createSession", None, json!({ "identifier": did, "password": "new-password-1" })).await;
    assert_eq!(login_b.0, 200, "{login_b:?}");

    // --- and on A: the renamed account, its app password and its sessions ---------------------------
    drop(server);
    replay_and_verify(dir.path(), &env);
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_in(dir.path(), &borrowed).await;
    let s = &server;
    assert_eq!(get(s, "com.atproto.server.getSession", Some(&access)).await.1["handle"], "alice2.test");
    assert_eq!(get(s, "com.atproto.server.getSession", Some(&app_access)).await.0, 200);
    assert_error(&get(s, "com.atproto.server.getSession", Some(&a2)).await, 400, "ExpiredToken");
    assert_eq!(post(s, "com.atproto.server.createSession", None, json!({ "identifier": "alice2.test", "password": app_pw })).await.0, 200);
    drop(server);
    drop(server_b);
    assert_snapshots_match_folds(&dir.path().join("pds-data"), pg.map(|p| p.0)).await;
    assert_snapshots_match_folds(&dir_b.path().join("pds-data"), pg.map(|p| p.1)).await;
}

#[tokio::test]
async fn identity_sqlite() {
    identity_flow(None).await;
}

#[tokio::test]
async fn identity_postgres() {
    let a = PgDatabase::create().await;
    let b = PgDatabase::create().await;
    identity_flow(Some((&a, &b))).await;
    a.drop_now().await;
    b.drop_now().await;
}

/// The account state commands decide on (`load_account`: the read model's rows) equals the fold
/// of each account's whole stream (`fold_account`, the definition), for every account in the log.
pub async fn assert_snapshots_match_folds(data_dir: &std::path::Path, pg: Option<&PgDatabase>) {
    let url = match pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite:{}", data_dir.join("pds.sqlite").display()),
    };
    let log = eventlog::EventLog::open(&url).await.unwrap();
    let mut dids = std::collections::BTreeSet::new();
    for e in log.read_all(0, 100_000).await.unwrap() {
        if let Some(did) = e.stream.strip_prefix("account/") {
            dids.insert(did.to_owned());
        }
    }
    assert!(!dids.is_empty());
    for did in dids {
        let (snapshot, v1) = commands::load_account(&log, &did).await.unwrap();
        let (folded, v2) = commands::fold_account(&log, &did).await.unwrap();
        assert_eq!(v1, v2, "{did}");
        assert_eq!(snapshot, folded, "{did}: the read model and the fold disagree");
    }
}
