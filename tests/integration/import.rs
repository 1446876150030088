//! `com.atproto.repo.importRepo` and the migration around it, through the real binary, on SQLite
//! and Postgres (with the reference PLC directory):
//! - `reserveSigningKey` (one key per DID; the migrated account signs with it);
//! - a bring-your-own-DID account on B answers `checkAccountStatus` with all nine fields before
//!   anything is imported (`repoCommit` of its unannounced empty repo, 2 blocks);
//! - broken CARs, each refused with a clear error and the account exactly as before (status,
//!   events): truncated, garbage, two roots, root not a commit, commit for another DID, a block
//!   whose bytes do not match its CID, a forged link back up the tree, MST keys out of order, a
//!   subtree used twice, a missing MST node, a missing record, a record that is not a map, a
//!   `Content-Length` over `PDS_MAX_REPO_IMPORT_SIZE`, a chunked body growing past it, and an
//!   upload cut off half-way (its scratch file gone afterwards);
//! - alice's repo from A (`getRepo`) imported into B: the events (`repo.import_started`, bounded
//!   chunks, `repo.imported`, none public), the counts, `listMissingBlobs` (paginated) until the
//!   blob is uploaded, a second import of the same CAR;
//! - the PLC operation moves the DID to B, `activateAccount`: the firehose from cursor 0 carries
//!   `#identity`, `#account` (active), `#identity` and `#sync` of the imported commit; the next
//!   `#commit` follows the imported rev and is signed with B's key (the directory's); record CIDs
//!   are A's;
//! - an active account re-imports its own export (signature checked against its key; `#sync`);
//! - `pds replay` + `pds verify` on B.

use std::io::Write as _;

use domain::car::{read_car, write_car};
use domain::cbor::{self, Cid, Ipld};
use domain::commit::{Commit, UnsignedCommit};
use domain::crypto::{KeyType, Keypair};
use domain::mst::{key_depth, Mst, NoBlocks};
use domain::syntax::Did;
use domain::tid::TidClock;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{PgDatabase, Server};
use crate::invites::{assert_error, get, post, replay_and_verify, signup, start, ADMIN, PASSWORD};
use crate::plc::PlcServer;

const CREATE_ACCOUNT: &str = "com.atproto.server.createAccount";
const IMPORT: &str = "com.atproto.repo.importRepo";
const LIMIT: usize = 4_000_000;

/// POSTs a CAR over a raw connection, reading the answer while the body is still being written:
/// the server may refuse (and close) before it has read the whole body, which an HTTP client
/// that writes first would see as a broken pipe.
async fn import(s: &Server, token: &str, body: Vec<u8>) -> (u16, Value) {
    let head = format!(
        "POST /xrpc/{IMPORT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/vnd.ipld.car\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let reply = raw(s, head, &body, false).await;
    let status = reply.get(9..12).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no HTTP answer: {reply:?}"));
    let text = reply.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(text).unwrap_or(Value::String(text.to_owned())))
}

fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

/// What must not move when an import is refused: the status and the account's events.
async fn state(s: &Server, token: &str, did: &str) -> (Value, usize) {
    let status = get(s, "com.atproto.server.checkAccountStatus", Some(token)).await;
    assert_eq!(status.0, 200, "{status:?}");
    (status.1, s.events_of(ADMIN, did).await.len())
}

/// A repo built here: commit (signed by `key`), MST nodes, records.
struct Built {
    root: Cid,
    commit: Vec<u8>,
    data: Cid,
    nodes: Vec<(Cid, Vec<u8>)>,
    records: Vec<(String, Cid, Vec<u8>)>,
}

fn record_block(v: Ipld) -> (Cid, Vec<u8>) {
    let b = cbor::encode(&v).unwrap();
    (cbor::cid_cbor(&b), b)
}

fn note(i: usize) -> Ipld {
    let mut m = std::collections::BTreeMap::new();
    m.insert("$type".to_string(), Ipld::String("com.example.note".into()));
    m.insert("text".to_string(), Ipld::String(format!("note {i}")));
    Ipld::Map(m)
}

fn sign(did: &str, data: Cid, key: &Keypair) -> (Cid, Vec<u8>) {
    let rev = TidClock::with_random_clock_id().next(1_700_000_000_000_000);
    let commit = UnsignedCommit::new(Did::parse(did).unwrap(), data, rev).sign(key).unwrap();
    commit.encode_with_cid().unwrap()
}

fn build(did: &str, n: usize, key: &Keypair) -> Built {
    let records: Vec<(String, Cid, Vec<u8>)> = (0..n)
        .map(|i| {
            let (cid, bytes) = record_block(note(i));
            (format!("com.example.note/{i:06}"), cid, bytes)
        })
        .collect();
    let mst = Mst::from_entries(records.iter().map(|(k, c, _)| (k.clone(), *c))).unwrap();
    let data = mst.root_cid().unwrap();
    let nodes = mst.node_blocks(&NoBlocks).unwrap();
    let (root, commit) = sign(did, data, key);
    Built { root, commit, data, nodes, records }
}

impl Built {
    fn car(&self) -> Vec<u8> {
        self.car_with(&[self.root], |_| true)
    }

    fn car_with(&self, roots: &[Cid], keep: impl Fn(&Cid) -> bool) -> Vec<u8> {
        let mut blocks = vec![(self.root, self.commit.clone())];
        blocks.extend(self.nodes.iter().cloned());
        blocks.extend(self.records.iter().map(|(_, c, b)| (*c, b.clone())));
        blocks.retain(|(c, _)| keep(c));
        write_car(roots, blocks)
    }

    /// The same records under another MST root `data` made of `nodes` (re-signed).
    fn with_tree(&self, did: &str, key: &Keypair, data: Cid, nodes: Vec<(Cid, Vec<u8>)>) -> Built {
        let (root, commit) = sign(did, data, key);
        Built { root, commit, data, nodes, records: self.records.clone() }
    }
}

/// A layer-0 node holding `keys` in the given order (no prefix compression: `p` 0).
fn leaf_node(keys: &[(&str, Cid)]) -> (Cid, Vec<u8>) {
    let entries = keys
        .iter()
        .map(|(k, v)| {
            let mut m = std::collections::BTreeMap::new();
            m.insert("k".to_string(), Ipld::Bytes(k.as_bytes().to_vec()));
            m.insert("p".to_string(), Ipld::Integer(0));
            m.insert("t".to_string(), Ipld::Null);
            m.insert("v".to_string(), Ipld::Link(*v));
            Ipld::Map(m)
        })
        .collect();
    let mut m = std::collections::BTreeMap::new();
    m.insert("e".to_string(), Ipld::List(entries));
    m.insert("l".to_string(), Ipld::Null);
    record_block(Ipld::Map(m))
}

/// The broken CARs: (name, body, expected status, error name, words the message must contain).
fn broken_cars(did: &str, other_did: &str, good: &[u8]) -> Vec<(&'static str, Vec<u8>, u16, &'static str, &'static str)> {
    let key = Keypair::generate(KeyType::K256);
    let b = build(did, 300, &key);
    let mut out = Vec::new();
    out.push(("truncated", good[..good.len() / 2].to_vec(), 400, "InvalidRequest", "invalid CAR"));
    let mut garbage = vec![0u8; 100_000];
    for (i, x) in garbage.iter_mut().enumerate() {
        *x = (i * 7919 % 251) as u8;
    }
    out.push(("garbage", garbage, 400, "InvalidRequest", "invalid CAR"));
    out.push(("two roots", b.car_with(&[b.root, b.data], |_| true), 400, "InvalidRequest", "expected one root"));
    let record = b.records[0].1;
    out.push(("root not a commit", b.car_with(&[record], |_| true), 400, "InvalidRequest", "is not a repo commit"));
    let theirs = build(other_did, 10, &key);
    out.push(("commit for another DID", theirs.car(), 400, "InvalidRequest", "the commit is for"));
    // A block whose bytes were changed after its CID was computed.
    let mut tampered = b.car();
    let (_, blocks) = read_car(&tampered).unwrap();
    let last = blocks.last().unwrap();
    let at = tampered.len() - last.1.len() / 2;
    tampered[at] ^= 0x01;
    out.push(("block bytes not matching CID", tampered, 400, "InvalidRequest", "do not hash"));
    // A node that links back to itself: only possible under a CID its bytes do not hash to.
    let (root_cid, root_bytes) = b.nodes[0].clone();
    let mut node = cbor::decode(&root_bytes).unwrap();
    let Ipld::Map(m) = &mut node else { panic!() };
    let left = m.get("l").cloned();
    m.insert("l".into(), Ipld::Link(root_cid));
    let cyclic = write_car(
        &[b.root],
        [(b.root, b.commit.clone()), (root_cid, cbor::encode(&node).unwrap())]
            .into_iter()
            .chain(b.nodes[1..].iter().cloned())
            .chain(b.records.iter().map(|(_, c, x)| (*c, x.clone()))),
    );
    out.push(("MST cycle (forged link)", cyclic, 400, "InvalidRequest", "do not hash"));
    // Keys out of order in a well-hashed node.
    let flat: Vec<&(String, Cid, Vec<u8>)> = b.records.iter().filter(|(k, _, _)| key_depth(k.as_bytes()) == 0).take(2).collect();
    let (n, nb) = leaf_node(&[(&flat[1].0, flat[1].1), (&flat[0].0, flat[0].1)]);
    let disorder = b.with_tree(did, &key, n, vec![(n, nb)]);
    out.push(("MST keys out of order", disorder.car(), 400, "InvalidRequest", "not strictly increasing"));
    // One subtree in two slots of the root.
    let Some(Ipld::Link(left)) = left else { panic!("the test tree's root has a left subtree") };
    let mut reused = cbor::decode(&root_bytes).unwrap();
    let Ipld::Map(m) = &mut reused else { panic!() };
    let Some(Ipld::List(entries)) = m.get_mut("e") else { panic!() };
    let Some(Ipld::Map(first)) = entries.get_mut(0) else { panic!() };
    first.insert("t".into(), Ipld::Link(left));
    let (rn, rb) = record_block(reused);
    let mut nodes = vec![(rn, rb)];
    nodes.extend(b.nodes[1..].iter().cloned());
    let shared = b.with_tree(did, &key, rn, nodes);
    out.push(("MST subtree used twice", shared.car(), 400, "InvalidRequest", "tree is invalid"));
    let node_cid = b.nodes[1].0;
    out.push(("missing MST node", b.car_with(&[b.root], |c| *c != node_cid), 400, "InvalidRequest", "is not in the CAR"));
    let rec_cid = b.records[7].1;
    out.push(("missing record", b.car_with(&[b.root], |c| *c != rec_cid), 400, "InvalidRequest", "is not in the CAR"));
    // A record that is a string, not a map.
    let (sc, sb) = record_block(Ipld::String("not a record".into()));
    let mut odd = build(did, 5, &key);
    odd.records[2].1 = sc;
    odd.records[2].2 = sb;
    let mst = Mst::from_entries(odd.records.iter().map(|(k, c, _)| (k.clone(), *c))).unwrap();
    let odd = odd.with_tree(did, &key, mst.root_cid().unwrap(), mst.node_blocks(&NoBlocks).unwrap());
    out.push(("record not a map", odd.car(), 400, "InvalidRequest", "Could not parse record"));
    out
}

/// Sends `head` then `body` on a raw connection, reading the reply while still writing (the
/// server may answer and close before the body is through); returns what was read.
async fn raw(s: &Server, head: String, body: &[u8], close_early: bool) -> String {
    let addr = s.url.trim_start_matches("http://").to_owned();
    let conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    wr.write_all(head.as_bytes()).await.unwrap();
    if close_early {
        let _ = wr.write_all(body).await;
        return String::new();
    }
    let body = body.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&body).await;
        wr
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(30), rd.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    writer.abort();
    String::from_utf8_lossy(&out).into_owned()
}

/// Every frame of `did` from `subscribeRepos?cursor=0` until `done` says so.
async fn frames_of(s: &Server, did: &str, done: impl Fn(&[(String, std::collections::BTreeMap<String, Ipld>)]) -> bool) -> Vec<(String, std::collections::BTreeMap<String, Ipld>)> {
    use domain::repo::firehose::{decode_frame, Frame};
    use futures_util::StreamExt;
    let url = format!("{}?cursor=0", s.xrpc("com.atproto.sync.subscribeRepos")).replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut out = Vec::new();
    while !done(&out) {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(30), ws.next()).await.expect("no frame in time");
        let Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b))) = msg else { continue };
        let Frame::Message { t, body } = decode_frame(&b).unwrap() else { panic!("error frame") };
        let who = body.get("did").or_else(|| body.get("repo"));
        if who == Some(&Ipld::String(did.to_owned())) {
            out.push((t, body));
        }
    }
    out
}

fn link(body: &std::collections::BTreeMap<String, Ipld>, k: &str) -> Cid {
    match body.get(k) {
        Some(Ipld::Link(c)) => *c,
        other => panic!("{k}: {other:?}"),
    }
}

async fn import_flow(pg: Option<(&PgDatabase, &PgDatabase)>) {
    let plc = PlcServer::start();
    let dir_a = tempfile::tempdir().unwrap();
    let (server_a, _env_a) = start(dir_a.path(), &plc, pg.map(|p| p.0), "false").await;
    let a = &server_a;
    let alice = post(a, CREATE_ACCOUNT, None, signup("alice.test", "alice@example.com", None)).await;
    assert_eq!(alice.0, 200, "{alice:?}");
    let did = alice.1["did"].as_str().unwrap().to_owned();
    let access = alice.1["accessJwt"].as_str().unwrap().to_owned();
    let bob = post(a, CREATE_ACCOUNT, None, signup("bob.test", "bob@example.com", None)).await;
    let bob_did = bob.1["did"].as_str().unwrap().to_owned();

    // alice's repo on A: 300 notes of 2 KB (several import chunks) and one record with a blob.
    let blob_bytes = b"a small text blob for the import test".to_vec();
    let up = reqwest::Client::new()
        .post(a.xrpc("com.atproto.repo.uploadBlob"))
        .bearer_auth(&access)
        .header("content-type", "text/plain")
        .body(blob_bytes.clone())
        .send()
        .await
        .unwrap();
    let blob: Value = up.json().await.unwrap();
    let blob = blob["blob"].clone();
    let blob_cid = blob["ref"]["$link"].as_str().unwrap().to_owned();
    let with_blob = post(a, "com.atproto.repo.createRecord", Some(&access), json!({
        "repo": did, "collection": "com.example.file", "rkey": "one", "record": { "$type": "com.example.file", "file": blob }
    }))
    .await;
    assert_eq!(with_blob.0, 200, "{with_blob:?}");
    for batch in 0..2 {
        let writes: Vec<Value> = (0..150)
            .map(|i| json!({ "$type": "com.atproto.repo.applyWrites#create", "collection": "com.example.note",
                "rkey": format!("n{batch}{i:04}"), "value": { "$type": "com.example.note", "text": "x".repeat(2000) } }))
            .collect();
        let r = post(a, "com.atproto.repo.applyWrites", Some(&access), json!({ "repo": did, "writes": writes })).await;
        assert_eq!(r.0, 200, "{r:?}");
    }
    let car = reqwest::get(a.xrpc(&format!("com.atproto.sync.getRepo?did={did}"))).await.unwrap().bytes().await.unwrap().to_vec();
    let head_a = get(a, &format!("com.atproto.sync.getLatestCommit?did={did}"), None).await.1;

    // --- B: bring-your-own-DID alice, nothing imported yet -------------------------------------------
    let dir_b = tempfile::tempdir().unwrap();
    let (server_b, env_b) = start_with(dir_b.path(), &plc, pg.map(|p| p.1)).await;
    let b = &server_b;
    let b_did = get(b, "com.atproto.server.describeServer", None).await.1["did"].as_str().unwrap().to_owned();
    let token = get(a, &format!("com.atproto.server.getServiceAuth?aud={b_did}&lxm={CREATE_ACCOUNT}"), Some(&access)).await.1["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // reserveSigningKey: per DID one key (asked twice, the same); without a DID a new one each time.
    let reserve = |body: Value| async move { post(b, "com.atproto.server.reserveSigningKey", None, body).await };
    let reserved = reserve(json!({ "did": did })).await;
    assert_eq!(reserved.0, 200, "{reserved:?}");
    let reserved = reserved.1["signingKey"].as_str().unwrap().to_owned();
    assert!(reserved.starts_with("did:key:z"), "{reserved}");
    assert_eq!(reserve(json!({ "did": did })).await.1["signingKey"], reserved.as_str());
    let (k1, k2) = (reserve(json!({})).await.1["signingKey"].clone(), reserve(json!({})).await.1["signingKey"].clone());
    assert!(k1.is_string() && k1 != k2 && k1 != reserved.as_str(), "{k1} {k2}");
    assert_error(&reserve(json!({ "did": "not a did" })).await, 400, "InvalidRequest");
    let created = reqwest::Client::new()
        .post(b.xrpc(CREATE_ACCOUNT))
        .bearer_auth(token)
        .json(&json!({ "did": did, "handle": "alice.test", "email": "alice@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let created: Value = created.json().await.unwrap();
    let b_access = created["accessJwt"].as_str().unwrap().to_owned();
    let (status0, _) = state(b, &b_access, &did).await;
    let fields = ["activated", "validDid", "repoCommit", "repoRev", "repoBlocks", "indexedRecords", "privateStateValues", "expectedBlobs", "importedBlobs"];
    for f in fields {
        assert!(status0.get(f).is_some(), "checkAccountStatus lacks {f}: {status0}");
    }
    assert_eq!(status0.as_object().unwrap().len(), 9, "{status0}");
    assert_eq!((status0["activated"].clone(), status0["validDid"].clone()), (json!(false), json!(false)), "{status0}");
    assert_eq!(
        (status0["repoBlocks"].clone(), status0["indexedRecords"].clone(), status0["expectedBlobs"].clone(), status0["importedBlobs"].clone()),
        (json!(2), json!(0), json!(0), json!(0)),
        "an empty repo: its commit and the empty MST node: {status0}"
    );
    let events = b.events_of(ADMIN, &did).await;
    assert!(events.iter().all(|e| e["seq"].is_null()), "nothing announced: {events:#?}");

    // --- broken CARs: refused, nothing changed ------------------------------------------------------
    let before = state(b, &b_access, &did).await;
    let cases = broken_cars(&did, &bob_did, &car);
    assert_eq!(cases.len(), 12);
    for (name, body, status, error, words) in cases {
        let got = import(b, &b_access, body).await;
        assert_eq!((got.0, got.1["error"].as_str()), (status, Some(error)), "{name}: {got:?}");
        let message = got.1["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{name}: {message:?} should say {words:?}");
        assert_eq!(state(b, &b_access, &did).await, before, "{name} changed the account");
    }
    // Over the limit: by Content-Length at once, and a chunked body as soon as it passes it.
    let big = import(b, &b_access, vec![0u8; LIMIT + 1]).await;
    assert_error(&big, 413, "PayloadTooLarge");
    let head = format!(
        "POST /xrpc/{IMPORT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {b_access}\r\nContent-Type: application/vnd.ipld.car\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    // A well-formed CAR that never ends: one block again and again, in 64 KiB chunks.
    let (root, blocks) = read_car(&car).unwrap();
    let mut endless = domain::car::encode_header(&root);
    while endless.len() <= LIMIT + 65_536 {
        endless.extend(domain::car::encode_block(&blocks[1].0, &blocks[1].1));
    }
    let mut stream = Vec::new();
    for piece in endless.chunks(65_536) {
        write!(stream, "{:x}\r\n", piece.len()).unwrap();
        stream.extend_from_slice(piece);
        stream.extend_from_slice(b"\r\n");
    }
    stream.extend_from_slice(b"0\r\n\r\n");
    let reply = raw(b, head, &stream, false).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("PayloadTooLarge"), "{reply}");
    // Cut off half-way: nothing imported, the scratch file gone.
    let head = format!(
        "POST /xrpc/{IMPORT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {b_access}\r\nContent-Type: application/vnd.ipld.car\r\nContent-Length: {}\r\n\r\n",
        car.len()
    );
    raw(b, head, &car[..car.len() / 2], true).await;
    let spool = b.data_dir.join("blobs").join("tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left: Vec<String> = std::fs::read_dir(&spool)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("import-")).collect())
            .unwrap_or_default();
        if left.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "scratch files left: {left:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(state(b, &b_access, &did).await, before, "the cut-off upload changed the account");

    // --- the real thing: A's export into B ----------------------------------------------------------
    let r = import(b, &b_access, car.clone()).await;
    assert_eq!(r.0, 200, "{r:?}");
    let (status1, _) = state(b, &b_access, &did).await;
    assert_eq!(status1["repoCommit"], head_a["cid"], "{status1}");
    assert_eq!(status1["repoRev"], head_a["rev"], "{status1}");
    assert_eq!(status1["indexedRecords"], json!(301), "{status1}");
    assert_eq!((status1["expectedBlobs"].clone(), status1["importedBlobs"].clone()), (json!(1), json!(0)), "{status1}");
    assert_eq!(status1["activated"], false);
    let events = b.events_of(ADMIN, &did).await;
    let t = types(&events);
    let start_at = t.iter().position(|x| x == "repo.import_started").unwrap();
    let chunks = t.iter().filter(|x| *x == "repo.import_chunk").count();
    assert!(chunks >= 3, "300 × 2 KB notes in chunks of 256 KB: {t:?}");
    assert_eq!(t[start_at + 1 + chunks], "repo.imported", "{t:?}");
    assert!(events.iter().all(|e| e["seq"].is_null()), "a deactivated account's import announces nothing");
    // listMissingBlobs, one page at a time.
    let missing = get(b, "com.atproto.repo.listMissingBlobs?limit=1", Some(&b_access)).await;
    assert_eq!(missing.0, 200, "{missing:?}");
    assert_eq!(missing.1["blobs"], json!([{ "cid": blob_cid, "recordUri": format!("at://{did}/com.example.file/one") }]));
    let cursor = missing.1["cursor"].as_str().unwrap();
    let next = get(b, &format!("com.atproto.repo.listMissingBlobs?limit=1&cursor={cursor}"), Some(&b_access)).await;
    assert_eq!(next.1["blobs"], json!([]), "{next:?}");
    // The same CAR again: accepted, same result.
    assert_eq!(import(b, &b_access, car.clone()).await.0, 200);
    let (again, _) = state(b, &b_access, &did).await;
    assert_eq!(again, status1);
    let up = reqwest::Client::new()
        .post(b.xrpc("com.atproto.repo.uploadBlob"))
        .bearer_auth(&b_access)
        .header("content-type", "text/plain")
        .body(blob_bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 200);
    assert_eq!(get(b, "com.atproto.repo.listMissingBlobs", Some(&b_access)).await.1["blobs"], json!([]));
    assert_eq!(state(b, &b_access, &did).await.0["importedBlobs"], json!(1));

    // --- the DID moves to B; B activates ------------------------------------------------------------
    let creds = get(b, "com.atproto.identity.getRecommendedDidCredentials", Some(&b_access)).await.1;
    assert_eq!(creds["verificationMethods"]["atproto"], reserved.as_str(), "the reserved key signs the migrated repo");
    assert_eq!(post(a, "com.atproto.identity.requestPlcOperationSignature", Some(&access), Value::Null).await.0, 200);
    let token = crate::email::last_token(&dir_a.path().join("pds-data"), "alice@example.com", "PLC Update Operation Requested");
    let signed = post(a, "com.atproto.identity.signPlcOperation", Some(&access), json!({
        "token": token, "rotationKeys": creds["rotationKeys"], "alsoKnownAs": creds["alsoKnownAs"],
        "verificationMethods": creds["verificationMethods"], "services": creds["services"],
    }))
    .await;
    assert_eq!(signed.0, 200, "{signed:?}");
    let submitted = post(b, "com.atproto.identity.submitPlcOperation", Some(&b_access), json!({ "operation": signed.1["operation"] })).await;
    assert_eq!(submitted.0, 200, "{submitted:?}");
    assert_eq!(post(b, "com.atproto.server.activateAccount", Some(&b_access), Value::Null).await.0, 200);
    let after = state(b, &b_access, &did).await.0;
    assert_eq!((after["activated"].clone(), after["validDid"].clone()), (json!(true), json!(true)), "{after}");
    let post_b = post(b, "com.atproto.repo.createRecord", Some(&b_access), json!({
        "repo": did, "collection": "com.example.note", "record": { "$type": "com.example.note", "text": "first on B" }
    }))
    .await;
    assert_eq!(post_b.0, 200, "{post_b:?}");
    let frames = frames_of(b, &did, |f| f.iter().any(|(t, _)| t == "#commit")).await;
    let kinds: Vec<&str> = frames.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(kinds, ["#identity", "#account", "#identity", "#sync", "#commit"], "from cursor 0");
    assert_eq!(frames[1].1.get("active"), Some(&Ipld::Bool(true)));
    let sync = &frames[3].1;
    let Some(Ipld::Bytes(sync_car)) = sync.get("blocks") else { panic!("#sync blocks") };
    let (roots, _) = read_car(sync_car).unwrap();
    assert_eq!(roots[0].to_string(), head_a["cid"].as_str().unwrap(), "#sync names the imported commit");
    assert_eq!(sync.get("rev"), Some(&Ipld::String(head_a["rev"].as_str().unwrap().to_owned())));
    let commit = &frames[4].1;
    assert_eq!(commit.get("since"), Some(&Ipld::String(head_a["rev"].as_str().unwrap().to_owned())));
    let Some(Ipld::Bytes(blocks)) = commit.get("blocks") else { panic!("#commit blocks") };
    let (_, blocks) = read_car(blocks).unwrap();
    let head = link(commit, "commit");
    let signed = Commit::decode(&blocks.iter().find(|(c, _)| *c == head).unwrap().1).unwrap();
    let doc: Value = reqwest::get(format!("{}/{did}", plc.url)).await.unwrap().json().await.unwrap();
    let key = domain::did_doc::atproto_signing_key(&doc, &did).unwrap();
    signed.verify(&key).expect("the first commit after activation is signed with B's key");
    assert_eq!(key.to_did_key(), creds["verificationMethods"]["atproto"].as_str().unwrap());
    // Record CIDs are A's.
    for rkey in ["n00000", "n10149"] {
        let path = format!("com.atproto.repo.getRecord?repo={did}&collection=com.example.note&rkey={rkey}");
        assert_eq!(get(b, &path, None).await.1["cid"], get(a, &path, None).await.1["cid"], "{rkey}");
    }

    // --- an active account re-imports its own export: signature checked, #sync ----------------------
    let own = reqwest::get(b.xrpc(&format!("com.atproto.sync.getRepo?did={did}"))).await.unwrap().bytes().await.unwrap().to_vec();
    let head_b = get(b, &format!("com.atproto.sync.getLatestCommit?did={did}"), None).await.1;
    assert_eq!(import(b, &b_access, own).await.0, 200);
    let r = import(b, &b_access, car.clone()).await;
    assert_error(&r, 400, "InvalidRequest");
    assert!(r.1["message"].as_str().unwrap().contains("signature"), "A's commit is not signed with B's key: {r:?}");
    let frames = frames_of(b, &did, |f| f.iter().filter(|(t, _)| t == "#sync").count() >= 2).await;
    let (_, last) = frames.iter().rev().find(|(t, _)| t == "#sync").unwrap();
    assert_eq!(last.get("rev"), Some(&Ipld::String(head_b["rev"].as_str().unwrap().to_owned())));
    assert_eq!(state(b, &b_access, &did).await.0["indexedRecords"], json!(302));

    // --- replay + verify on B -----------------------------------------------------------------------
    drop(server_b);
    replay_and_verify(dir_b.path(), &env_b);
}

/// `invites::start` with the import limit of these tests.
async fn start_with<'a>(dir: &std::path::Path, plc: &'a PlcServer, pg: Option<&'a PgDatabase>) -> (Server, Vec<(&'a str, String)>) {
    let (first, env) = start(dir, plc, pg, "false").await;
    drop(first);
    let mut env = env;
    env.push(("PDS_MAX_REPO_IMPORT_SIZE", LIMIT.to_string()));
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_in(dir, &borrowed).await;
    (server, env)
}

#[tokio::test]
async fn import_sqlite() {
    import_flow(None).await;
}

#[tokio::test]
async fn import_postgres() {
    let (a, b) = (PgDatabase::create().await, PgDatabase::create().await);
    import_flow(Some((&a, &b))).await;
    a.drop_now().await;
    b.drop_now().await;
}
