//! Repositories under contention and at the edges of sync, through the real binary, on SQLite and
//! Postgres with the reference PLC directory:
//! - `getRepo?since`, deprecated `getHead` / `getCheckout`, `describeRepo` collections;
//! - `requestCrawl` to every `PDS_CRAWLERS` host (tiny fake crawlers record the calls): at most
//!   once per interval, a failing crawler's breaker opens after 3 failures, default = once;
//! - a race: 50 writers on one repo and 50 on 50 other repos at once — every write lands, no
//!   fork (each `#commit` chains `since`/`prevData` to the previous one of its repo and inverts
//!   to it), revs strictly increase, and a subscriber connected before sees contiguous seqs;
//! - a Sync v1.1 check: a seeded random sequence of thousands of creates/updates/deletes over
//!   several repos, every `#commit` inverted against `prevData`, final repos equal the model;
//! - two `pds serve` processes on one Postgres: a subscriber on B sees A's writes in seq order,
//!   and concurrent writes to one repo through both never fork.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use domain::car;
use domain::cbor::{Cid, Ipld};
use domain::crypto::PublicKey;
use domain::mst::{BlockMap, Mst};

use crate::firehose::{check_sync_v11, decode, int, next_message, string, Ws};
use crate::harness::{PgDatabase, Server};
use crate::invites::{assert_error, get, post, signup, start, ADMIN};
use crate::plc::PlcServer;
use crate::sync::{get_bytes, post_record, signing_key};

const POST: &str = "app.bsky.feed.post";

async fn account(s: &Server, name: &str) -> (String, String) {
    let (st, a) = post(s, "com.atproto.server.createAccount", None, signup(&format!("{name}.test"), &format!("{name}@example.com"), None)).await;
    assert_eq!(st, 200, "{a}");
    (a["did"].as_str().unwrap().to_owned(), a["accessJwt"].as_str().unwrap().to_owned())
}

async fn create(s: &Server, token: &str, did: &str, collection: &str, record: Value) -> Value {
    let (st, r) = post(s, "com.atproto.repo.createRecord", Some(token), json!({ "repo": did, "collection": collection, "record": record })).await;
    assert_eq!(st, 200, "{r}");
    r
}

async fn subscribe(s: &Server, cursor: Option<i64>) -> Ws {
    let q = cursor.map(|c| format!("?cursor={c}")).unwrap_or_default();
    let url = format!("{}{q}", s.xrpc("com.atproto.sync.subscribeRepos")).replace("http://", "ws://");
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Frames (seq, bytes) until `done` says enough.
async fn frames_until(ws: &mut Ws, mut done: impl FnMut(&[(i64, Vec<u8>)]) -> bool) -> Vec<(i64, Vec<u8>)> {
    let mut got: Vec<(i64, Vec<u8>)> = Vec::new();
    while !done(&got) {
        match next_message(ws).await {
            Message::Binary(b) => {
                let (_, body) = decode(&b);
                got.push((int(&body, "seq"), b.to_vec()));
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?} after {} frames", got.len()),
        }
    }
    got
}

/// `#commit` frames with at least one op (not genesis), per repo: (seq, rev, since).
fn commits(frames: &[(i64, Vec<u8>)]) -> BTreeMap<String, Vec<(i64, String, String)>> {
    let mut out: BTreeMap<String, Vec<(i64, String, String)>> = BTreeMap::new();
    for (seq, b) in frames {
        let (t, body) = decode(b);
        if t != "#commit" || matches!(body.get("ops"), Some(Ipld::List(l)) if l.is_empty()) {
            continue;
        }
        let since = match body.get("since") {
            Some(Ipld::String(s)) => s.clone(),
            _ => String::new(),
        };
        out.entry(string(&body, "repo").to_owned()).or_default().push((*seq, string(&body, "rev").to_owned(), since));
    }
    out
}

fn count_commits(frames: &[(i64, Vec<u8>)]) -> usize {
    commits(frames).values().map(Vec::len).sum()
}

#[track_caller]
fn assert_contiguous(frames: &[(i64, Vec<u8>)], first: i64) {
    for (i, (seq, _)) in frames.iter().enumerate() {
        assert_eq!(*seq, first + i as i64, "seqs must be contiguous from {first}");
    }
}

/// Per repo: revs strictly increase and each commit's `since` is the previous commit's rev.
#[track_caller]
fn assert_linear(frames: &[(i64, Vec<u8>)]) {
    for (did, list) in commits(frames) {
        for w in list.windows(2) {
            assert!(w[1].1 > w[0].1, "{did}: rev {} after {}", w[1].1, w[0].1);
            assert_eq!(w[1].2, w[0].1, "{did}: since of seq {} is not the previous rev (fork)", w[1].0);
        }
    }
}

async fn keys_of(plc: &PlcServer, dids: &[String]) -> HashMap<String, PublicKey> {
    let mut keys = HashMap::new();
    for d in dids {
        keys.insert(d.clone(), signing_key(plc, d).await);
    }
    keys
}

/// Every rkey of `collection` in `did`'s repo, through listRecords paging.
async fn all_rkeys(s: &Server, did: &str, collection: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let c = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let (st, page) = get(s, &format!("com.atproto.repo.listRecords?repo={did}&collection={collection}&limit=100{c}"), None).await;
        assert_eq!(st, 200, "{page}");
        let recs = page["records"].as_array().unwrap();
        for r in recs {
            out.insert(r["uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned());
        }
        match page["cursor"].as_str() {
            Some(c) if !recs.is_empty() => cursor = Some(c.to_owned()),
            _ => return out,
        }
    }
}

fn car_blocks(bytes: &[u8]) -> (Vec<Cid>, BlockMap) {
    let (roots, blocks) = car::read_car(bytes).unwrap();
    (roots, blocks.into_iter().collect())
}

// ---------------------------------------------------------------------------------------------
// getRepo since, getHead, getCheckout, describeRepo collections

async fn sync_extras_flow(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (s, _env) = start(dir.path(), &plc, pg, "false").await;
    let (did, token) = account(&s, "alice").await;

    // describeRepo: collections from the records index, in name order; an emptied one goes.
    let (_, d) = get(&s, &format!("com.atproto.repo.describeRepo?repo={did}"), None).await;
    assert_eq!(d["collections"], json!([]), "{d}");
    let mut old_records = Vec::new();
    for i in 0..3 {
        let r = create(&s, &token, &did, POST, post_record(&format!("old {i}"))).await;
        old_records.push(Cid::try_from(r["cid"].as_str().unwrap()).unwrap());
    }
    let thing = create(&s, &token, &did, "com.example.thing", json!({ "a": 1 })).await;
    let (_, d) = get(&s, "com.atproto.repo.describeRepo?repo=alice.test", None).await;
    assert_eq!(d["collections"], json!(["app.bsky.feed.post", "com.example.thing"]), "{d}");
    let thing_rkey = thing["uri"].as_str().unwrap().rsplit('/').next().unwrap();
    let (st, _) = post(&s, "com.atproto.repo.deleteRecord", Some(&token), json!({ "repo": did, "collection": "com.example.thing", "rkey": thing_rkey })).await;
    assert_eq!(st, 200);
    let (_, d) = get(&s, &format!("com.atproto.repo.describeRepo?repo={did}"), None).await;
    assert_eq!(d["collections"], json!(["app.bsky.feed.post"]), "{d}");

    // getHead (deprecated) = getLatestCommit's cid; the same errors.
    let (_, latest) = get(&s, &format!("com.atproto.sync.getLatestCommit?did={did}"), None).await;
    let (st, h) = get(&s, &format!("com.atproto.sync.getHead?did={did}"), None).await;
    assert_eq!(st, 200, "{h}");
    assert_eq!(h, json!({ "root": latest["cid"] }));
    assert_error(&get(&s, "com.atproto.sync.getHead?did=did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", None).await, 400, "RepoNotFound");
    assert_error(&get(&s, "com.atproto.sync.getHead?did=nope", None).await, 400, "InvalidRequest");
    assert_error(&get(&s, "com.atproto.sync.getHead", None).await, 400, "InvalidRequest");

    // getCheckout (deprecated) = getRepo without since, byte for byte.
    let (st, full, ct) = get_bytes(&s, &format!("com.atproto.sync.getRepo?did={did}")).await;
    assert_eq!((st, ct.as_str()), (200, "application/vnd.ipld.car"));
    let (st, checkout, _) = get_bytes(&s, &format!("com.atproto.sync.getCheckout?did={did}")).await;
    assert_eq!(st, 200);
    assert_eq!(checkout, full);
    let (roots, full_blocks) = car_blocks(&full);
    assert_eq!(roots[0].to_string(), latest["cid"].as_str().unwrap());
    for c in &old_records {
        assert!(full_blocks.contains(c));
    }
    assert_error(&get(&s, "com.atproto.sync.getCheckout?did=did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", None).await, 400, "RepoNotFound");

    // getRepo?since: only blocks first stored after that rev (and the commit, first).
    let since = latest["rev"].as_str().unwrap().to_owned();
    let new = create(&s, &token, &did, POST, post_record("new")).await;
    let new_cid = Cid::try_from(new["cid"].as_str().unwrap()).unwrap();
    let (st, diff, _) = get_bytes(&s, &format!("com.atproto.sync.getRepo?did={did}&since={since}")).await;
    assert_eq!(st, 200);
    let (roots, blocks) = car_blocks(&diff);
    assert_eq!(roots[0].to_string(), new["commit"]["cid"].as_str().unwrap());
    let (_, first_block) = car::read_car(&diff).unwrap();
    assert_eq!(first_block[0].0, roots[0], "the commit block comes first");
    assert!(blocks.contains(&new_cid), "the new record");
    for c in &old_records {
        assert!(!blocks.contains(c), "an old record {c} sent despite since");
    }
    // The new tree's root node is new in that rev.
    let commit = domain::commit::Commit::decode(blocks.get(&roots[0]).unwrap()).unwrap();
    assert!(blocks.contains(&commit.data));
    let (_, full_now, _) = get_bytes(&s, &format!("com.atproto.sync.getRepo?did={did}")).await;
    assert!(blocks.len() < car_blocks(&full_now).1.len());
    // Every block of the diff is in the full repo, and the full repo still verifies as a tree.
    let (_, all) = car_blocks(&full_now);
    for c in blocks.cids() {
        assert!(all.contains(c));
    }
    let tree = Mst::load_all(&all, commit.data).unwrap();
    let entries = tree.entries(&all).unwrap();
    assert_eq!(entries.len(), 4);
    // Only what the head reaches: commit + nodes + records; not the deleted record, not old nodes.
    let thing_cid = Cid::try_from(thing["cid"].as_str().unwrap()).unwrap();
    assert!(!all.contains(&thing_cid), "getRepo sent the block of a deleted record");
    let records: BTreeSet<Cid> = entries.iter().map(|(_, c)| *c).collect();
    assert_eq!(all.len(), 1 + tree.node_blocks(&all).unwrap().len() + records.len());
    // since = the head rev: only the commit.
    let head_rev = new["commit"]["rev"].as_str().unwrap();
    let (_, only_commit, _) = get_bytes(&s, &format!("com.atproto.sync.getRepo?did={did}&since={head_rev}")).await;
    let (_, b) = car_blocks(&only_commit);
    assert_eq!(b.cids().collect::<Vec<_>>(), vec![&roots[0]]);
    assert_error(&get(&s, &format!("com.atproto.sync.getRepo?did={did}&since=notatid"), None).await, 400, "InvalidRequest");
}

#[tokio::test]
async fn sync_extras_sqlite() {
    sync_extras_flow(None).await;
}

#[tokio::test]
async fn sync_extras_postgres() {
    let pg = PgDatabase::create().await;
    sync_extras_flow(Some(&pg)).await;
    pg.drop_now().await;
}

// ---------------------------------------------------------------------------------------------
// requestCrawl

/// A tiny HTTP server answering every request with `status`, recording (when, path, JSON body).
struct FakeCrawler {
    url: String,
    calls: Arc<Mutex<Vec<(Instant, String, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCrawler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeCrawler {
    async fn start(status: u16) -> FakeCrawler {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let sink = calls.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let sink = sink.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        let Ok(n) = sock.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let Ok(n) = sock.read(&mut chunk).await else { return };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let line = head.lines().next().unwrap_or_default().to_owned();
                    let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
                    sink.lock().unwrap().push((Instant::now(), line, body));
                    let reply = if status == 200 { "{}" } else { r#"{"error":"InternalServerError","message":"down"}"# };
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        FakeCrawler { url, calls, task }
    }

    fn calls(&self) -> Vec<(Instant, String, Value)> {
        self.calls.lock().unwrap().clone()
    }
}

async fn start_with(dir: &std::path::Path, plc: &PlcServer, pg: Option<&PgDatabase>, extra: &[(&str, &str)]) -> Server {
    let mut env: Vec<(&str, &str)> = vec![
        ("PDS_DID_PLC_URL", plc.url.as_str()),
        ("PDS_INVITE_REQUIRED", "false"),
        ("PDS_JWT_SECRET", "repos-test-jwt-secret"),
        ("PDS_ADMIN_PASSWORD", ADMIN),
        ("PDS_SERVICE_HANDLE_DOMAINS", ".test"),
    ];
    if let Some(db) = pg {
        env.push(("PDS_DATABASE_URL", db.url.as_str()));
    }
    env.extend_from_slice(extra);
    Server::start_in(dir, &env).await
}

#[track_caller]
fn assert_crawl_calls(calls: &[(Instant, String, Value)], min_gap: Duration) {
    for (_, line, body) in calls {
        assert!(line.starts_with("POST /xrpc/com.atproto.sync.requestCrawl "), "{line}");
        assert_eq!(body, &json!({ "hostname": "localhost" }));
    }
    for w in calls.windows(2) {
        let gap = w[1].0.duration_since(w[0].0);
        assert!(gap >= min_gap, "two requestCrawls {gap:?} apart (at most one per interval)");
    }
}

async fn request_crawl_flow(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let ok = FakeCrawler::start(200).await;
    let failing = FakeCrawler::start(500).await;
    // A crawler that refuses connections.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let crawlers = format!("{}, {}/,{dead}", ok.url, failing.url);
    let interval_ms: u64 = 250;
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), &plc, pg, &[("PDS_CRAWLERS", &crawlers), ("PDS_CRAWL_INTERVAL_MS", &interval_ms.to_string())]).await;
    let (did, token) = account(&s, "alice").await;
    // Public events for 2.5 s; writes succeed whatever the crawlers do.
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < Duration::from_millis(2500) {
        create(&s, &token, &did, POST, post_record(&format!("p{n}"))).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let min_gap = Duration::from_millis(interval_ms - 50);
    let ok_calls = ok.calls();
    assert!(ok_calls.len() >= 4, "{} requestCrawls to a healthy crawler in 2.5 s at {interval_ms} ms", ok_calls.len());
    assert!(ok_calls.len() <= 12, "{} requestCrawls: more than one per interval", ok_calls.len());
    assert_crawl_calls(&ok_calls, min_gap);
    // The failing crawler: three attempts, one per interval, then the breaker is open (10
    // intervals = 2.5 s, longer than what is left of the activity).
    let failing_calls = failing.calls();
    assert_eq!(failing_calls.len(), 3, "breaker: {} calls to a crawler answering 500", failing_calls.len());
    assert_crawl_calls(&failing_calls, min_gap);
    drop(s);

    // The default interval (20 minutes): one requestCrawl per crawler however many events.
    let once = FakeCrawler::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let pg2 = match pg {
        Some(_) => Some(PgDatabase::create().await),
        None => None,
    };
    let s = start_with(dir.path(), &plc, pg2.as_ref(), &[("PDS_CRAWLERS", &once.url)]).await;
    let (did, token) = account(&s, "bob").await;
    for i in 0..5 {
        create(&s, &token, &did, POST, post_record(&format!("q{i}"))).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = once.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_crawl_calls(&calls, Duration::ZERO);
    drop(s);
    if let Some(p) = pg2 {
        p.drop_now().await;
    }
}

#[tokio::test]
async fn request_crawl_sqlite() {
    request_crawl_flow(None).await;
}

#[tokio::test]
async fn request_crawl_postgres() {
    let pg = PgDatabase::create().await;
    request_crawl_flow(Some(&pg)).await;
    pg.drop_now().await;
}

// ---------------------------------------------------------------------------------------------
// The race: 50 writers on one repo, 50 on 50 repos

async fn race_flow(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (s, _env) = start(dir.path(), &plc, pg, "false").await;
    let (main_did, main_token) = account(&s, "racemain").await;
    let mut others = Vec::new();
    for i in 0..50 {
        others.push(account(&s, &format!("racer{i:02}")).await);
    }
    let mut dids = vec![main_did.clone()];
    dids.extend(others.iter().map(|(d, _)| d.clone()));
    let keys = keys_of(&plc, &dids).await;

    // Subscribed before the writes: backfill of the signups, then live through the race.
    let mut ws = subscribe(&s, Some(0)).await;
    let s = Arc::new(s);
    let gate = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (did, token) = if i < 50 { (main_did.clone(), main_token.clone()) } else { others[i - 50].clone() };
        let (s, gate) = (s.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            let r = create(&s, &token, &did, POST, post_record(&format!("racer {i}"))).await;
            (did, r["uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned())
        }));
    }
    let mut written: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for t in tasks {
        let (did, rkey) = t.await.unwrap();
        written.entry(did).or_default().insert(rkey);
    }
    assert_eq!(written[&main_did].len(), 50, "50 distinct records on the shared repo");

    let frames = frames_until(&mut ws, |f| count_commits(f) >= 100).await;
    assert_contiguous(&frames, 1);
    assert_linear(&frames);
    assert_eq!(check_sync_v11(&frames, &keys), 100, "every write's #commit inverts to its prevData");
    let per_repo = commits(&frames);
    assert_eq!(per_repo[&main_did].len(), 50);
    for (d, _) in &others {
        assert_eq!(per_repo[d].len(), 1);
    }
    // No lost write: every record is listed, and the head is the last commit.
    for (did, rkeys) in &written {
        assert_eq!(&all_rkeys(&s, did, POST).await, rkeys, "{did}");
        let (_, latest) = get(&s, &format!("com.atproto.sync.getLatestCommit?did={did}"), None).await;
        assert_eq!(latest["rev"].as_str().unwrap(), per_repo[did].last().unwrap().1);
    }
}

#[tokio::test]
async fn race_sqlite() {
    race_flow(None).await;
}

#[tokio::test]
async fn race_postgres() {
    let pg = PgDatabase::create().await;
    race_flow(Some(&pg)).await;
    pg.drop_now().await;
}

// ---------------------------------------------------------------------------------------------
// Sync v1.1: a random sequence of creates/updates/deletes, every #commit inverted

/// xorshift64*: a seeded, reproducible sequence (the seed is printed on failure).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn sync_v11_flow(pg: Option<&PgDatabase>) {
    const REPOS: usize = 4;
    const COMMITS: usize = 500;
    const COLLECTIONS: [&str; 3] = ["com.example.alpha", "com.example.beta", "com.example.gamma"];
    let seed = std::env::var("SYNC_V11_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234_abcd_0001u64);
    let mut rng = Rng(seed);
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (s, _env) = start(dir.path(), &plc, pg, "false").await;
    let mut repos = Vec::new();
    for i in 0..REPOS {
        repos.push(account(&s, &format!("repo{i}")).await);
    }
    let dids: Vec<String> = repos.iter().map(|(d, _)| d.clone()).collect();
    let keys = keys_of(&plc, &dids).await;
    // The model: per repo, path → the `n` the record holds.
    let mut model: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); REPOS];
    let mut ops_total = 0;
    let mut n = 0u64;
    for c in 0..COMMITS {
        let r = rng.below(REPOS as u64) as usize;
        let (did, token) = &repos[r];
        let size = if rng.below(3) == 0 { 1 } else { 1 + rng.below(14) as usize };
        let mut writes = Vec::new();
        let mut paths = BTreeSet::new();
        for _ in 0..size {
            let coll = COLLECTIONS[rng.below(3) as usize];
            let path = format!("{coll}/k{:05}", rng.below(400));
            if !paths.insert(path.clone()) {
                continue;
            }
            n += 1;
            let (coll, rkey) = path.split_once('/').unwrap();
            let exists = model[r].contains_key(&path);
            let w = match (exists, rng.below(3)) {
                (false, _) => {
                    model[r].insert(path.clone(), n);
                    json!({ "$type": "com.atproto.repo.applyWrites#create", "collection": coll, "rkey": rkey, "value": { "n": n } })
                }
                (true, 0) => {
                    model[r].remove(&path);
                    json!({ "$type": "com.atproto.repo.applyWrites#delete", "collection": coll, "rkey": rkey })
                }
                (true, _) => {
                    model[r].insert(path.clone(), n);
                    json!({ "$type": "com.atproto.repo.applyWrites#update", "collection": coll, "rkey": rkey, "value": { "n": n } })
                }
            };
            writes.push(w);
        }
        ops_total += writes.len();
        let (st, b) = post(&s, "com.atproto.repo.applyWrites", Some(token), json!({ "repo": did, "writes": writes })).await;
        assert_eq!(st, 200, "seed {seed:#x}, commit {c}: {b}");
    }
    assert!(ops_total >= 2000, "{ops_total} operations");

    let mut ws = subscribe(&s, Some(0)).await;
    let frames = frames_until(&mut ws, |f| count_commits(f) >= COMMITS).await;
    assert_contiguous(&frames, 1);
    assert_linear(&frames);
    assert_eq!(check_sync_v11(&frames, &keys), COMMITS, "seed {seed:#x}: every #commit inverts to prevData");

    // Each repo equals the model: getRepo's tree holds exactly its records.
    for (r, (did, _)) in repos.iter().enumerate() {
        let (st, bytes, _) = get_bytes(&s, &format!("com.atproto.sync.getRepo?did={did}")).await;
        assert_eq!(st, 200);
        let (roots, blocks) = car_blocks(&bytes);
        let commit = domain::commit::Commit::decode(blocks.get(&roots[0]).unwrap()).unwrap();
        commit.verify(&keys[did]).unwrap();
        let tree = Mst::load_all(&blocks, commit.data).unwrap();
        let got: BTreeMap<String, u64> = tree
            .entries(&blocks)
            .unwrap()
            .into_iter()
            .map(|(path, cid)| {
                let value = domain::cbor::decode(blocks.get(&cid).unwrap()).unwrap();
                let Ipld::Map(m) = value else { panic!("record") };
                let Some(Ipld::Integer(n)) = m.get("n") else { panic!("n") };
                (path, *n as u64)
            })
            .collect();
        assert_eq!(got, model[r], "seed {seed:#x}: repo {r}");
    }
}

#[tokio::test]
async fn sync_v11_random_ops_sqlite() {
    sync_v11_flow(None).await;
}

#[tokio::test]
async fn sync_v11_random_ops_postgres() {
    let pg = PgDatabase::create().await;
    sync_v11_flow(Some(&pg)).await;
    pg.drop_now().await;
}

// ---------------------------------------------------------------------------------------------
// Two processes on one Postgres

#[tokio::test]
async fn two_processes_on_one_postgres() {
    let pg = PgDatabase::create().await;
    let plc = PlcServer::start();
    // One data directory: B reads the secrets.env A generated (same key encryption key), and both
    // get one JWT secret and service DID (the tokens' audience), as nodes of one deployment do.
    let dir = tempfile::tempdir().unwrap();
    let same = [("PDS_SERVICE_DID", "did:web:pds.test")];
    let a = start_with(dir.path(), &plc, Some(&pg), &same).await;
    let b = start_with(dir.path(), &plc, Some(&pg), &same).await;
    let (did, token) = account(&a, "shared").await;
    let keys = keys_of(&plc, std::slice::from_ref(&did)).await;

    // A subscriber on B (and one on A), connected before the writes.
    let mut on_b = subscribe(&b, Some(0)).await;
    let mut on_a = subscribe(&a, Some(0)).await;
    for i in 0..15 {
        create(&a, &token, &did, POST, post_record(&format!("via A {i}"))).await;
    }
    let seen = frames_until(&mut on_b, |f| count_commits(f) >= 15).await;
    assert_contiguous(&seen, 1);
    assert_linear(&seen);

    // Concurrent writes to the same repo through both processes: compare-and-swap, no fork.
    let a = Arc::new(a);
    let b = Arc::new(b);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (did, token) = (did.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let r = create(&s, &token, &did, POST, post_record(&format!("both {i}"))).await;
            r["uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()
        }));
    }
    let mut rkeys = BTreeSet::new();
    for t in tasks {
        rkeys.insert(t.await.unwrap());
    }
    assert_eq!(rkeys.len(), 40);
    let more = frames_until(&mut on_b, |f| count_commits(f) >= 40).await;
    let mut all_b = seen;
    all_b.extend(more);
    assert_contiguous(&all_b, 1);
    assert_linear(&all_b);
    assert_eq!(check_sync_v11(&all_b, &keys), 55);
    // A's subscriber got the same frames, byte for byte.
    let all_a = frames_until(&mut on_a, |f| count_commits(f) >= 55).await;
    assert_eq!(all_a, all_b);
    assert_eq!(all_rkeys(&b, &did, POST).await.len(), 55);
    drop(a);
    drop(b);
    pg.drop_now().await;
}
