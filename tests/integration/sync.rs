//! `com.atproto.sync.{getLatestCommit, getRepo, getRecord, getBlocks, listRepos, getRepoStatus}`
//! through the real binary, on SQLite and Postgres, with the reference PLC directory: the getRepo
//! CAR parsed and verified (commit signature against the directory's key, every record in the
//! tree with its block), getRecord proving presence and absence, getBlocks, listRepos paging,
//! every error (RepoNotFound, RepoDeactivated, RepoTakendown, BlockNotFound, malformed params).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use domain::car;
use domain::cbor::Cid;
use domain::commit::Commit;
use domain::crypto::{KeyType, PublicKey};
use domain::mst::{BlockMap, Mst};

use crate::harness::{PgDatabase, Server};
use crate::invites::{admin_post, assert_error, get, post, signup, start, ADMIN};
use crate::plc::PlcServer;

const POST: &str = "app.bsky.feed.post";
const UNKNOWN_DID: &str = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";

pub fn post_record(text: &str) -> Value {
    json!({ "$type": POST, "text": text, "createdAt": "2024-05-01T12:34:56.000Z" })
}

pub async fn get_bytes(s: &Server, path_and_query: &str) -> (u16, Vec<u8>, String) {
    let r = reqwest::get(s.xrpc(path_and_query)).await.unwrap();
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, r.bytes().await.unwrap().to_vec(), ct)
}

/// The account's `#atproto` signing key from the PLC directory.
pub async fn signing_key(plc: &PlcServer, did: &str) -> PublicKey {
    let doc: Value = reqwest::get(plc.at(did)).await.unwrap().json().await.unwrap();
    let vm = doc["verificationMethod"].as_array().unwrap().iter().find(|m| m["id"].as_str().unwrap().ends_with("#atproto")).unwrap();
    let mb = vm["publicKeyMultibase"].as_str().unwrap();
    match vm["type"].as_str().unwrap() {
        "Multikey" => PublicKey::from_multikey(mb).unwrap(),
        suite => PublicKey::from_legacy_multibase(KeyType::from_legacy_suite(suite).unwrap(), mb).unwrap(),
    }
}

fn block_map(blocks: Vec<(Cid, Vec<u8>)>) -> BlockMap {
    let mut m = BlockMap::new();
    for (c, b) in blocks {
        car::verify_block(&c, &b).unwrap();
        m.insert(c, b);
    }
    m
}

async fn sync_flow(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (s, _env) = start(dir.path(), &plc, pg, "false").await;

    let (st, acct) = post(&s, "com.atproto.server.createAccount", None, signup("alice.test", "alice@example.com", None)).await;
    assert_eq!(st, 200, "{acct}");
    let did = acct["did"].as_str().unwrap().to_owned();
    let token = acct["accessJwt"].as_str().unwrap().to_owned();
    let t = Some(token.as_str());
    let (_, bob) = post(&s, "com.atproto.server.createAccount", None, signup("bob.test", "bob@example.com", None)).await;
    let bob_did = bob["did"].as_str().unwrap().to_owned();
    let bob_token = bob["accessJwt"].as_str().unwrap().to_owned();
    let (_, carol) = post(&s, "com.atproto.server.createAccount", None, signup("carol.test", "carol@example.com", None)).await;
    let carol_did = carol["did"].as_str().unwrap().to_owned();

    // Alice writes 30 posts and a profile, then deletes one post.
    let mut last = Value::Null;
    for i in 0..30 {
        let (st, c) = post(&s, "com.atproto.repo.createRecord", t, json!({ "repo": did, "collection": POST, "record": post_record(&format!("post {i}")) })).await;
        assert_eq!(st, 200, "{c}");
        last = c;
    }
    let (st, _) = post(&s, "com.atproto.repo.putRecord", t, json!({ "repo": did, "collection": "app.bsky.actor.profile", "rkey": "self", "record": { "$type": "app.bsky.actor.profile", "displayName": "Alice" } })).await;
    assert_eq!(st, 200);
    let deleted_rkey = last["uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let (st, del) = post(&s, "com.atproto.repo.deleteRecord", t, json!({ "repo": did, "collection": POST, "rkey": deleted_rkey })).await;
    assert_eq!(st, 200, "{del}");

    // getLatestCommit = the last write's commit.
    let (st, latest) = get(&s, &format!("com.atproto.sync.getLatestCommit?did={did}"), None).await;
    assert_eq!(st, 200, "{latest}");
    assert_eq!(latest["cid"], del["commit"]["cid"], "{latest} {del}");
    assert_eq!(latest["rev"], del["commit"]["rev"], "{latest} {del}");

    // Every record, per listRecords.
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for coll in [POST, "app.bsky.actor.profile"] {
        let (_, l) = get(&s, &format!("com.atproto.repo.listRecords?repo={did}&collection={coll}&limit=100"), None).await;
        for r in l["records"].as_array().unwrap() {
            let rkey = r["uri"].as_str().unwrap().rsplit('/').next().unwrap();
            expected.insert(format!("{coll}/{rkey}"), r["cid"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(expected.len(), 30);

    // getRepo: a CAR rooted at the head commit, commit first, signature valid, every record there.
    let key = signing_key(&plc, &did).await;
    let (st, bytes, ct) = get_bytes(&s, &format!("com.atproto.sync.getRepo?did={did}")).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(ct, "application/vnd.ipld.car");
    let (roots, blocks) = car::read_car(&bytes).unwrap();
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0].to_string(), latest["cid"].as_str().unwrap());
    assert_eq!(blocks[0].0, roots[0], "commit block first");
    let bm = block_map(blocks);
    let commit = Commit::decode(bm.get(&roots[0]).unwrap()).unwrap();
    commit.verify(&key).unwrap();
    assert_eq!(commit.rev.to_string(), latest["rev"].as_str().unwrap());
    let tree = Mst::load_all(&bm, commit.data).unwrap();
    let entries: BTreeMap<String, String> = tree.entries(&bm).unwrap().into_iter().map(|(k, c)| (k, c.to_string())).collect();
    assert_eq!(entries, expected);
    for c in entries.values() {
        assert!(bm.contains(&Cid::try_from(c.as_str()).unwrap()), "record block {c}");
    }
    // since: accepted (the full repo comes back); malformed → 400.
    let (st, since_bytes, _) = get_bytes(&s, &format!("com.atproto.sync.getRepo?did={did}&since={}", commit.rev)).await;
    assert_eq!(st, 200);
    assert!(car::read_car(&since_bytes).is_ok());
    assert_error(&get(&s, &format!("com.atproto.sync.getRepo?did={did}&since=nope"), None).await, 400, "InvalidRequest");

    // getRecord: presence (commit + path + record) and absence, each checked against the CAR alone.
    let (present_key, present_cid) = expected.iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
    let (coll, rkey) = present_key.split_once('/').unwrap();
    let (st, bytes, ct) = get_bytes(&s, &format!("com.atproto.sync.getRecord?did={did}&collection={coll}&rkey={rkey}")).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(ct, "application/vnd.ipld.car");
    let (roots, blocks) = car::read_car(&bytes).unwrap();
    assert!(blocks.len() < bm.len(), "a proof, not the whole repo");
    let proof = block_map(blocks);
    let commit = Commit::decode(proof.get(&roots[0]).unwrap()).unwrap();
    commit.verify(&key).unwrap();
    let tree = Mst::load(&proof, commit.data).unwrap();
    let found = tree.get(&proof, &present_key).unwrap().unwrap();
    assert_eq!(found.to_string(), present_cid);
    assert!(proof.contains(&found));
    for absent in [format!("{POST}/{deleted_rkey}"), format!("{POST}/2222222222222"), format!("{POST}/zzzzzzzzzzzzz")] {
        let (coll, rkey) = absent.split_once('/').unwrap();
        let (st, bytes, _) = get_bytes(&s, &format!("com.atproto.sync.getRecord?did={did}&collection={coll}&rkey={rkey}")).await;
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&bytes));
        let (roots, blocks) = car::read_car(&bytes).unwrap();
        let proof = block_map(blocks);
        let commit = Commit::decode(proof.get(&roots[0]).unwrap()).unwrap();
        let tree = Mst::load(&proof, commit.data).unwrap();
        assert_eq!(tree.get(&proof, &absent).unwrap(), None, "absence of {absent} proven by the CAR alone");
    }
    assert_error(&get(&s, &format!("com.atproto.sync.getRecord?did={did}&collection=nope&rkey=x"), None).await, 400, "InvalidRequest");
    assert_error(&get(&s, &format!("com.atproto.sync.getRecord?did={did}&collection={POST}"), None).await, 400, "InvalidRequest");
    assert_error(&get(&s, &format!("com.atproto.sync.getRecord?did={UNKNOWN_DID}&collection={POST}&rkey=x"), None).await, 400, "RepoNotFound");

    // getBlocks: known → a CAR of exactly them; an unknown one → BlockNotFound; malformed → 400.
    let (st, bytes, _) = get_bytes(&s, &format!("com.atproto.sync.getBlocks?did={did}&cids={}&cids={present_cid}", roots[0])).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&bytes));
    let (_, got) = car::read_car(&bytes).unwrap();
    let got: Vec<String> = got.iter().map(|(c, _)| c.to_string()).collect();
    assert_eq!(got, vec![roots[0].to_string(), present_cid.clone()]);
    let unknown_cid = domain::cbor::cid_cbor(b"\xa1anbno").to_string();
    let r = get(&s, &format!("com.atproto.sync.getBlocks?did={did}&cids={present_cid}&cids={unknown_cid}"), None).await;
    assert_error(&r, 400, "BlockNotFound");
    assert_error(&get(&s, &format!("com.atproto.sync.getBlocks?did={did}&cids=notacid"), None).await, 400, "InvalidRequest");

    // getRepoStatus and listRepos.
    let (st, status) = get(&s, &format!("com.atproto.sync.getRepoStatus?did={did}"), None).await;
    assert_eq!(st, 200);
    assert_eq!(status, json!({ "did": did, "active": true, "rev": latest["rev"] }));
    let (st, all) = get(&s, "com.atproto.sync.listRepos", None).await;
    assert_eq!(st, 200, "{all}");
    let dids: Vec<&str> = all["repos"].as_array().unwrap().iter().map(|r| r["did"].as_str().unwrap()).collect();
    assert_eq!(dids, vec![did.as_str(), bob_did.as_str(), carol_did.as_str()]);
    assert!(all.get("cursor").is_none());
    assert_eq!(all["repos"][0], json!({ "did": did, "head": latest["cid"], "rev": latest["rev"], "active": true }));
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor { Some(c) => format!("com.atproto.sync.listRepos?limit=2&cursor={c}"), None => "com.atproto.sync.listRepos?limit=2".into() };
        let (st, page) = get(&s, &q, None).await;
        assert_eq!(st, 200, "{page}");
        for r in page["repos"].as_array().unwrap() {
            paged.push(r["did"].as_str().unwrap().to_owned());
        }
        match page["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, dids);
    for bad in ["limit=0", "limit=1001", "limit=x", "cursor=garbage"] {
        assert_error(&get(&s, &format!("com.atproto.sync.listRepos?{bad}"), None).await, 400, "InvalidRequest");
    }

    // Unknown and malformed DIDs, on every repo endpoint.
    for nsid in ["getLatestCommit", "getRepo", "getRepoStatus", "getBlocks"] {
        // getBlocks needs its required `cids` before the repo is looked up (params come first).
        let cids = if nsid == "getBlocks" { "&cids=bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm" } else { "" };
        assert_error(&get(&s, &format!("com.atproto.sync.{nsid}?did={UNKNOWN_DID}{cids}"), None).await, 400, "RepoNotFound");
        assert_error(&get(&s, &format!("com.atproto.sync.{nsid}?did=nope"), None).await, 400, "InvalidRequest");
        assert_error(&get(&s, &format!("com.atproto.sync.{nsid}"), None).await, 400, "InvalidRequest");
    }

    // Deactivated: RepoDeactivated; status says so.
    let (st, _) = post(&s, "com.atproto.server.deactivateAccount", Some(&bob_token), json!({})).await;
    assert_eq!(st, 200);
    for q in [format!("getLatestCommit?did={bob_did}"), format!("getRepo?did={bob_did}"), format!("getRecord?did={bob_did}&collection={POST}&rkey=x")] {
        assert_error(&get(&s, &format!("com.atproto.sync.{q}"), None).await, 400, "RepoDeactivated");
    }
    let (_, status) = get(&s, &format!("com.atproto.sync.getRepoStatus?did={bob_did}"), None).await;
    assert_eq!(status["active"], false, "{status}");
    assert_eq!(status["status"], "deactivated", "{status}");

    // Taken down: RepoTakendown; listRepos says so.
    let takedown = json!({ "subject": { "$type": "com.atproto.admin.defs#repoRef", "did": carol_did }, "takedown": { "applied": true, "ref": "t1" } });
    let (st, r) = admin_post(&s, "com.atproto.admin.updateSubjectStatus", ADMIN, takedown).await;
    assert_eq!(st, 200, "{r}");
    for q in [format!("getLatestCommit?did={carol_did}"), format!("getRepo?did={carol_did}"), format!("getBlocks?did={carol_did}&cids=bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm")] {
        assert_error(&get(&s, &format!("com.atproto.sync.{q}"), None).await, 400, "RepoTakendown");
    }
    let (_, status) = get(&s, &format!("com.atproto.sync.getRepoStatus?did={carol_did}"), None).await;
    assert_eq!(status["status"], "takendown", "{status}");
    let (_, all) = get(&s, "com.atproto.sync.listRepos", None).await;
    assert_eq!(all["repos"][1]["status"], "deactivated", "{all}");
    assert_eq!(all["repos"][2]["status"], "takendown", "{all}");
    assert_eq!(all["repos"][2]["active"], false, "{all}");
}

#[tokio::test]
async fn sync_sqlite() {
    sync_flow(None).await;
}

#[tokio::test]
async fn sync_postgres() {
    let db = PgDatabase::create().await;
    sync_flow(Some(&db)).await;
    db.drop_now().await;
}
