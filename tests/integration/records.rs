//! Record writes and reads through the real binary, on SQLite and Postgres, with the reference PLC
//! directory: createRecord / putRecord / deleteRecord / applyWrites / getRecord / listRecords
//! round trips, swapCommit / swapRecord → InvalidSwap, no-op writes that emit no commit, lexicon
//! validation (validate=true on an invalid post, an unknown collection → "unknown"), 201 writes,
//! 20 racing createRecords on one repo (all succeed, revs strictly increasing in the log), and
//! `pds replay` + `pds verify` clean afterwards.

use serde_json::{json, Value};

use crate::harness::{PgDatabase, Server};
use crate::invites::{assert_error, get, post, replay_and_verify, signup, start, ADMIN};
use crate::plc::PlcServer;

const POST: &str = "app.bsky.feed.post";

fn post_record(text: &str) -> Value {
    json!({ "$type": POST, "text": text, "createdAt": "2024-05-01T12:34:56.000Z" })
}

/// The `repo.committed` revs of `did`, in log order.
async fn committed_revs(s: &Server, did: &str) -> Vec<String> {
    let mut revs = Vec::new();
    let mut cursor = "0".to_owned();
    loop {
        let resp = reqwest::Client::new()
            .get(s.xrpc(&format!("org.eventpds.admin.listEvents?cursor={cursor}&limit=1000")))
            .basic_auth("admin", Some(ADMIN))
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        let events = body["events"].as_array().unwrap().clone();
        if events.is_empty() {
            break;
        }
        for e in &events {
            if e["type"] == "repo.committed" && e["stream"] == format!("repo/{did}") {
                revs.push(e["payload"]["rev"].as_str().unwrap().to_owned());
            }
        }
        cursor = body["cursor"].as_str().unwrap().to_owned();
    }
    revs
}

/// The revs of the first `n` `#commit` frames of `did` from `subscribeRepos?cursor=0`.
async fn commit_frames(s: &Server, did: &str, n: usize) -> Vec<String> {
    use domain::cbor::Ipld;
    use domain::repo::firehose::{decode_frame, Frame};
    use futures_util::StreamExt;
    let url = format!("{}?cursor=0", s.xrpc("com.atproto.sync.subscribeRepos")).replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut revs = Vec::new();
    while revs.len() < n {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(30), ws.next()).await.expect("no frame in time");
        let Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b))) = msg else { continue };
        let Frame::Message { t, body } = decode_frame(&b).unwrap() else { panic!("error frame") };
        if t == "#commit" && body.get("repo") == Some(&Ipld::String(did.to_owned())) {
            let Some(Ipld::String(rev)) = body.get("rev") else { panic!("rev") };
            revs.push(rev.clone());
        }
    }
    revs
}

async fn head(s: &Server, did: &str) -> Vec<String> {
    committed_revs(s, did).await
}

async fn records_flow(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (s, env) = start(dir.path(), &plc, pg, "false").await;

    let (st, acct) = post(&s, "com.atproto.server.createAccount", None, signup("alice.test", "alice@example.com", None)).await;
    assert_eq!(st, 200, "{acct}");
    let did = acct["did"].as_str().unwrap().to_owned();
    let token = acct["accessJwt"].as_str().unwrap().to_owned();
    let t = Some(token.as_str());
    let (_, other) = post(&s, "com.atproto.server.createAccount", None, signup("bob.test", "bob@example.com", None)).await;
    let bob_token = other["accessJwt"].as_str().unwrap().to_owned();

    // createRecord: a TID rkey, valid against the lexicon; by handle too.
    let (st, created) = post(&s, "com.atproto.repo.createRecord", t, json!({ "repo": did, "collection": POST, "record": post_record("hello") })).await;
    assert_eq!(st, 200, "{created}");
    assert_eq!(created["validationStatus"], "valid");
    let uri = created["uri"].as_str().unwrap().to_owned();
    let rkey = uri.rsplit('/').next().unwrap().to_owned();
    assert_eq!(rkey.len(), 13, "{uri}");
    let commit1 = created["commit"]["cid"].as_str().unwrap().to_owned();
    let (st, got) = get(&s, &format!("com.atproto.repo.getRecord?repo=alice.test&collection={POST}&rkey={rkey}"), None).await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["cid"], created["cid"]);
    assert_eq!(got["value"]["text"], "hello");
    assert_eq!(got["uri"], uri.as_str());
    // getRecord with a wrong cid / an absent record.
    let (_, other_rec) = post(&s, "com.atproto.repo.createRecord", t, json!({ "repo": "alice.test", "collection": POST, "rkey": "3kaaaaaaaaaa2", "record": post_record("two") })).await;
    assert_eq!(other_rec["uri"], format!("at://{did}/{POST}/3kaaaaaaaaaa2"), "{other_rec}");
    let r = get(&s, &format!("com.atproto.repo.getRecord?repo={did}&collection={POST}&rkey={rkey}&cid={}", other_rec["cid"].as_str().unwrap()), None).await;
    assert_error(&r, 400, "RecordNotFound");
    let r = get(&s, &format!("com.atproto.repo.getRecord?repo={did}&collection={POST}&rkey=nope"), None).await;
    assert_error(&r, 400, "RecordNotFound");

    // Someone else's repo; no token; malformed bodies.
    let r = post(&s, "com.atproto.repo.createRecord", Some(&bob_token), json!({ "repo": did, "collection": POST, "record": post_record("x") })).await;
    assert_eq!(r.0, 401, "{r:?}");
    let r = post(&s, "com.atproto.repo.createRecord", None, json!({ "repo": did, "collection": POST, "record": post_record("x") })).await;
    assert_error(&r, 401, "AuthMissing");
    for bad in [json!([]), json!({ "repo": did }), json!({ "repo": did, "collection": "not an nsid", "record": {} }), json!({ "repo": did, "collection": POST, "record": "str" }), json!({ "repo": did, "collection": POST, "rkey": "..", "record": post_record("x") })] {
        let r = post(&s, "com.atproto.repo.createRecord", t, bad).await;
        assert_error(&r, 400, "InvalidRequest");
    }
    // Creating an existing path.
    let r = post(&s, "com.atproto.repo.createRecord", t, json!({ "repo": did, "collection": POST, "rkey": "3kaaaaaaaaaa2", "record": post_record("again") })).await;
    assert_error(&r, 400, "InvalidRequest");

    // Validation: an invalid post with validate=true (and unset) refused; unknown collection.
    let r = post(&s, "com.atproto.repo.createRecord", t, json!({ "repo": did, "collection": POST, "validate": true, "record": { "text": 12 } })).await;
    assert_error(&r, 400, "InvalidRequest");
    let (st, unk) = post(&s, "com.atproto.repo.createRecord", t, json!({ "repo": did, "collection": "com.example.thing", "record": { "a": 1 } })).await;
    assert_eq!(st, 200, "{unk}");
    assert_eq!(unk["validationStatus"], "unknown");
    let r = post(&s, "com.atproto.repo.createRecord", t, json!({ "repo": did, "collection": "com.example.thing", "validate": true, "record": { "a": 1 } })).await;
    assert_error(&r, 400, "InvalidRequest");
    let (st, skipped) = post(&s, "com.atproto.repo.createRecord", t, json!({ "repo": did, "collection": POST, "validate": false, "record": { "text": 12 } })).await;
    assert_eq!(st, 200, "{skipped}");
    assert!(skipped.get("validationStatus").is_none(), "{skipped}");

    // The schema's record-key type: a profile lives at "self", a post at a TID.
    let r = post(&s, "com.atproto.repo.putRecord", t, json!({ "repo": did, "collection": "app.bsky.actor.profile", "rkey": "other", "record": { "displayName": "x" } })).await;
    assert_error(&r, 400, "InvalidRequest");
    let r = post(&s, "com.atproto.repo.createRecord", t, json!({ "repo": did, "collection": POST, "rkey": "not-a-tid", "record": post_record("x") })).await;
    assert_error(&r, 400, "InvalidRequest");

    // swapCommit: stale → InvalidSwap.
    let r = post(&s, "com.atproto.repo.createRecord", t, json!({ "repo": did, "collection": POST, "swapCommit": commit1, "record": post_record("x") })).await;
    assert_error(&r, 400, "InvalidSwap");

    // putRecord: create, update, a no-op (no commit), swapRecord.
    let profile = json!({ "$type": "app.bsky.actor.profile", "displayName": "Alice" });
    let (st, put1) = post(&s, "com.atproto.repo.putRecord", t, json!({ "repo": did, "collection": "app.bsky.actor.profile", "rkey": "self", "record": profile, "swapRecord": null })).await;
    assert_eq!(st, 200, "{put1}");
    let r = post(&s, "com.atproto.repo.putRecord", t, json!({ "repo": did, "collection": "app.bsky.actor.profile", "rkey": "self", "record": profile, "swapRecord": null })).await;
    assert_error(&r, 400, "InvalidSwap");
    let before = head(&s, &did).await;
    let (st, noop) = post(&s, "com.atproto.repo.putRecord", t, json!({ "repo": did, "collection": "app.bsky.actor.profile", "rkey": "self", "record": profile })).await;
    assert_eq!(st, 200, "{noop}");
    assert_eq!(noop["cid"], put1["cid"]);
    assert_eq!(head(&s, &did).await, before, "a no-op put emits no commit");
    let r = post(&s, "com.atproto.repo.putRecord", t, json!({ "repo": did, "collection": "app.bsky.actor.profile", "rkey": "self", "swapRecord": unk["cid"], "record": { "displayName": "Eve" } })).await;
    assert_error(&r, 400, "InvalidSwap");
    let (st, put2) = post(&s, "com.atproto.repo.putRecord", t, json!({ "repo": did, "collection": "app.bsky.actor.profile", "rkey": "self", "swapRecord": put1["cid"], "record": { "displayName": "Alice B" } })).await;
    assert_eq!(st, 200, "{put2}");
    let (_, got) = get(&s, &format!("com.atproto.repo.getRecord?repo={did}&collection=app.bsky.actor.profile&rkey=self"), None).await;
    assert_eq!(got["value"]["displayName"], "Alice B");
    assert_eq!(got["value"]["$type"], "app.bsky.actor.profile");

    // deleteRecord: swapRecord mismatch, delete, absent delete = no commit.
    let r = post(&s, "com.atproto.repo.deleteRecord", t, json!({ "repo": did, "collection": "app.bsky.actor.profile", "rkey": "self", "swapRecord": put1["cid"] })).await;
    assert_error(&r, 400, "InvalidSwap");
    let (st, del) = post(&s, "com.atproto.repo.deleteRecord", t, json!({ "repo": did, "collection": "app.bsky.actor.profile", "rkey": "self" })).await;
    assert_eq!(st, 200, "{del}");
    assert!(del["commit"]["rev"].is_string(), "{del}");
    let before = head(&s, &did).await;
    let (st, del2) = post(&s, "com.atproto.repo.deleteRecord", t, json!({ "repo": did, "collection": "app.bsky.actor.profile", "rkey": "self" })).await;
    assert_eq!(st, 200, "{del2}");
    assert!(del2.get("commit").is_none(), "{del2}");
    assert_eq!(head(&s, &did).await, before, "an absent delete emits no commit");
    let r = get(&s, &format!("com.atproto.repo.getRecord?repo={did}&collection=app.bsky.actor.profile&rkey=self"), None).await;
    assert_error(&r, 400, "RecordNotFound");

    // applyWrites: results in input order, one commit.
    let (st, aw) = post(&s, "com.atproto.repo.applyWrites", t, json!({ "repo": did, "writes": [
        { "$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.like", "rkey": "3kbbbbbbbbbb2", "value": { "subject": { "uri": uri, "cid": created["cid"] }, "createdAt": "2024-05-01T12:34:56.000Z" } },
        { "$type": "com.atproto.repo.applyWrites#update", "collection": POST, "rkey": "3kaaaaaaaaaa2", "value": post_record("two, edited") },
        { "$type": "com.atproto.repo.applyWrites#delete", "collection": POST, "rkey": rkey },
    ] })).await;
    assert_eq!(st, 200, "{aw}");
    let results = aw["results"].as_array().unwrap();
    assert_eq!(results[0]["$type"], "com.atproto.repo.applyWrites#createResult");
    assert_eq!(results[0]["uri"], format!("at://{did}/app.bsky.feed.like/3kbbbbbbbbbb2"));
    assert_eq!(results[0]["validationStatus"], "valid");
    assert_eq!(results[1]["$type"], "com.atproto.repo.applyWrites#updateResult");
    assert_eq!(results[2]["$type"], "com.atproto.repo.applyWrites#deleteResult");
    assert!(aw["commit"]["cid"].is_string());
    let r = post(&s, "com.atproto.repo.applyWrites", t, json!({ "repo": did, "writes": [{ "collection": POST, "rkey": "x" }] })).await;
    assert_error(&r, 400, "InvalidRequest");
    let many: Vec<Value> = (0..201).map(|i| json!({ "$type": "com.atproto.repo.applyWrites#create", "collection": "com.example.thing", "rkey": format!("k{i}"), "value": { "i": i } })).collect();
    let r = post(&s, "com.atproto.repo.applyWrites", t, json!({ "repo": did, "writes": many })).await;
    assert_error(&r, 400, "InvalidRequest");

    // listRecords: order, limit, cursor, reverse.
    for i in 0..5 {
        let (st, _) = post(&s, "com.atproto.repo.createRecord", t, json!({ "repo": did, "collection": "com.example.list", "rkey": format!("r{i}"), "record": { "i": i } })).await;
        assert_eq!(st, 200);
    }
    let (st, page) = get(&s, &format!("com.atproto.repo.listRecords?repo={did}&collection=com.example.list&limit=2"), None).await;
    assert_eq!(st, 200, "{page}");
    let keys = |p: &Value| p["records"].as_array().unwrap().iter().map(|r| r["uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(keys(&page), ["r4", "r3"]);
    assert_eq!(page["cursor"], "r3");
    let (_, page2) = get(&s, &format!("com.atproto.repo.listRecords?repo={did}&collection=com.example.list&limit=2&cursor=r3"), None).await;
    assert_eq!(keys(&page2), ["r2", "r1"]);
    let (_, rev) = get(&s, "com.atproto.repo.listRecords?repo=alice.test&collection=com.example.list&reverse=true", None).await;
    assert_eq!(keys(&rev), ["r0", "r1", "r2", "r3", "r4"]);
    assert!(rev.get("cursor").is_none());
    assert_eq!(rev["records"][0]["value"]["i"], 0);
    // (`limit=x` reads as 0, as the reference's parseInt; `reverse=maybe` reads as false there.)
    for q in ["limit=0", "limit=101", "limit=x"] {
        let r = get(&s, &format!("com.atproto.repo.listRecords?repo={did}&collection=com.example.list&{q}"), None).await;
        assert_error(&r, 400, "InvalidRequest");
    }

    // The race: 20 concurrent creates on one repo all land, revs strictly increasing.
    let before = committed_revs(&s, &did).await.len();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let url = s.xrpc("com.atproto.repo.createRecord");
        let token = token.clone();
        let did = did.clone();
        tasks.push(tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "repo": did, "collection": "com.example.race", "record": { "i": i } }))
                .send()
                .await
                .unwrap();
            let st = resp.status().as_u16();
            (st, resp.json::<Value>().await.unwrap())
        }));
    }
    let mut uris = std::collections::HashSet::new();
    for t in tasks {
        let (st, body) = t.await.unwrap();
        assert_eq!(st, 200, "{body}");
        uris.insert(body["uri"].as_str().unwrap().to_owned());
    }
    assert_eq!(uris.len(), 20);
    let (_, listed) = get(&s, &format!("com.atproto.repo.listRecords?repo={did}&collection=com.example.race&limit=100"), None).await;
    assert_eq!(listed["records"].as_array().unwrap().len(), 20);
    let revs = committed_revs(&s, &did).await;
    assert_eq!(revs.len(), before + 20);
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");

    // Two processes on one database: their per-process locks do not exclude each other, so the
    // append's expected version does — the losers reload and decide again; nothing forks or is lost.
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s2 = Server::start_in(dir.path(), &borrowed).await;
    let (st, login) = post(&s2, "com.atproto.server.createSession", None, json!({ "identifier": did, "password": crate::invites::PASSWORD })).await;
    assert_eq!(st, 200, "{login}");
    let token2 = login["accessJwt"].as_str().unwrap().to_owned();
    let before = committed_revs(&s, &did).await.len();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (url, token) = if i % 2 == 0 {
            (s.xrpc("com.atproto.repo.createRecord"), token.clone())
        } else {
            (s2.xrpc("com.atproto.repo.createRecord"), token2.clone())
        };
        let did = did.clone();
        tasks.push(tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "repo": did, "collection": "com.example.race2", "record": { "i": i } }))
                .send()
                .await
                .unwrap();
            let st = resp.status().as_u16();
            (st, resp.json::<Value>().await.unwrap())
        }));
    }
    for t in tasks {
        let (st, body) = t.await.unwrap();
        assert_eq!(st, 200, "{body}");
    }
    drop(s2);
    let (_, listed) = get(&s, &format!("com.atproto.repo.listRecords?repo={did}&collection=com.example.race2&limit=100"), None).await;
    assert_eq!(listed["records"].as_array().unwrap().len(), 20);
    let revs = committed_revs(&s, &did).await;
    assert_eq!(revs.len(), before + 20);
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");

    // A subscribeRepos client replaying from the start sees one #commit per committed rev, in order.
    // (`revs` starts with the genesis commit.)
    let frames = commit_frames(&s, &did, revs.len()).await;
    assert_eq!(frames, revs);

    drop(s);
    replay_and_verify(dir.path(), &env);
}

#[tokio::test]
async fn records_sqlite() {
    records_flow(None).await;
}

#[tokio::test]
async fn records_postgres() {
    let db = PgDatabase::create().await;
    records_flow(Some(&db)).await;
    db.drop_now().await;
}
