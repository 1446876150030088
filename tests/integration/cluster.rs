//! A cluster: three `pds serve` processes on one Postgres (+ Redis for the shared replay store,
//! one shared blob directory, the same secrets), a write storm spread over all three — accounts,
//! records, blobs, sign-ins — and `kill -9` of one node mid-storm (the one running the crawl
//! notifier). Then: every acknowledged write is there (read through the survivors), a firehose
//! subscriber on each survivor saw exactly the same contiguous seqs 1..=head, the run-once jobs
//! ran on one node at a time (the fake relay got one requestCrawl per lease holder — two, not
//! one per node — and each job has exactly one holder among the survivors), `pds verify` is clean.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{PgDatabase, Server};
use crate::ops::{base_env, cli, metric, ok, parse_metrics, scrape, with, FakeRelay, Subscriber, ADMIN};
use crate::plc::PlcServer;

const JOBS: [&str; 3] = ["crawl-notifier", "blob-cleaner", "projector:event_stats"];

async fn leaders(s: &Server) -> HashMap<String, f64> {
    let (st, text) = scrape(&s.url, Some(ADMIN)).await;
    assert_eq!(st, 200);
    let m = parse_metrics(&text);
    JOBS.iter().map(|j| ((*j).to_owned(), metric(&m, "pds_job_leader", &[("job", j)]).unwrap_or(0.0))).collect()
}

/// Waits until every job has exactly one holder among `nodes`; returns job → node index.
async fn settled(nodes: &[&Server]) -> HashMap<String, usize> {
    for _ in 0..200 {
        let mut holders: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for (job, v) in leaders(n).await {
                if v == 1.0 {
                    holders.entry(job).or_default().push(i);
                }
            }
        }
        if JOBS.iter().all(|j| holders.get(*j).is_some_and(|h| h.len() == 1)) {
            return holders.into_iter().map(|(j, h)| (j, h[0])).collect();
        }
        assert!(JOBS.iter().all(|j| holders.get(*j).is_none_or(|h| h.len() <= 1)), "a job held twice: {holders:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the jobs never settled on one holder each");
}

#[derive(Default)]
struct Acked {
    records: Vec<(String, String)>,
    blobs: Vec<(String, String, Vec<u8>)>,
    accounts: Vec<String>,
    logins: usize,
}

async fn call(client: &reqwest::Client, url: &str, nsid: &str, token: Option<&str>, body: Value) -> Option<Value> {
    let mut req = client.post(format!("{url}/xrpc/{nsid}")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_on_one_postgres_survive_a_kill_9_mid_storm() {
    let started = Instant::now();
    let plc = PlcServer::start();
    let pg = PgDatabase::create().await;
    let relay = FakeRelay::start(Some(json!({ "hostname": "localhost", "seq": 0, "status": "active" }))).await;
    let root = tempfile::tempdir().unwrap();
    let blobs_dir = root.path().join("shared-blobs");
    let (dpop, plc_key, kek) = ("ab".repeat(32), "1c".repeat(32), "2d".repeat(32));
    let env = with(
        &base_env(&plc, Some(&pg)),
        &[
            ("PDS_DPOP_SECRET", &dpop),
            ("PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX", &plc_key),
            ("PDS_KEY_ENCRYPTION_KEY", &kek),
            ("PDS_REDIS_SCRATCH_ADDRESS", "127.0.0.1:6379"),
            ("PDS_BLOBSTORE_DISK_LOCATION", blobs_dir.to_str().unwrap()),
            ("PDS_CRAWLERS", &relay.url),
        ],
    );
    let mut nodes = Vec::new();
    for i in 0..3 {
        let dir = root.path().join(format!("node{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        nodes.push(Server::start_logging(&dir, &borrowed, Stdio::null()).await);
    }
    let holders = settled(&nodes.iter().collect::<Vec<_>>()).await;
    let subs = {
        let mut v = Vec::new();
        for n in &nodes {
            v.push(Subscriber::start(n, Some(0)).await);
        }
        v
    };
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let client = reqwest::Client::new();
    // Accounts, created on every node.
    let mut accounts = Vec::new();
    for i in 0..6 {
        let url = &urls[i % 3];
        let a = call(&client, url, "com.atproto.server.createAccount", None, crate::invites::signup(&format!("clus{i}.test"), &format!("clus{i}@example.com"), None))
            .await
            .expect("createAccount");
        accounts.push((a["did"].as_str().unwrap().to_owned(), a["accessJwt"].as_str().unwrap().to_owned(), format!("clus{i}.test")));
    }

    // The storm: one worker per account, each request to the next node in turn.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acked { accounts: accounts.iter().map(|a| a.0.clone()).collect(), ..Acked::default() }));
    let mut workers = Vec::new();
    for (w, (did, token, handle)) in accounts.iter().cloned().enumerate() {
        let (stop, acked, urls, client) = (stop.clone(), acked.clone(), urls.clone(), client.clone());
        workers.push(tokio::spawn(async move {
            let mut n = w;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let url = &urls[n % 3];
                match n % 10 {
                    0 => {
                        let bytes = format!("blob {w}/{n} {}", "z".repeat(500 + n)).into_bytes();
                        let Ok(r) = client
                            .post(format!("{url}/xrpc/com.atproto.repo.uploadBlob"))
                            .bearer_auth(&token)
                            .header("content-type", "text/plain")
                            .body(bytes.clone())
                            .send()
                            .await
                        else {
                            continue;
                        };
                        if r.status() != 200 {
                            continue;
                        }
                        let blob = r.json::<Value>().await.unwrap()["blob"].clone();
                        let body = json!({ "repo": did, "collection": "com.example.ops.item", "record": { "file": blob } });
                        // The reference goes to another node: the blob store and log are shared.
                        if let Some(r) = call(&client, &urls[(n + 1) % 3], "com.atproto.repo.createRecord", Some(&token), body).await {
                            let rkey = r["uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
                            let cid = blob["ref"]["$link"].as_str().unwrap().to_owned();
                            let mut a = acked.lock().unwrap();
                            a.records.push((did.clone(), rkey));
                            a.blobs.push((did.clone(), cid, bytes));
                        }
                    }
                    5 => {
                        let body = json!({ "identifier": handle, "password": crate::invites::PASSWORD });
                        if call(&client, url, "com.atproto.server.createSession", None, body).await.is_some() {
                            acked.lock().unwrap().logins += 1;
                        }
                    }
                    7 if w == 0 => {
                        let name = format!("late{n}");
                        let body = crate::invites::signup(&format!("{name}.test"), &format!("{name}@example.com"), None);
                        if let Some(a) = call(&client, url, "com.atproto.server.createAccount", None, body).await {
                            acked.lock().unwrap().accounts.push(a["did"].as_str().unwrap().to_owned());
                        }
                    }
                    _ => {
                        let body = json!({ "repo": did, "collection": "com.example.ops.item", "record": { "n": n } });
                        if let Some(r) = call(&client, url, "com.atproto.repo.createRecord", Some(&token), body).await {
                            let rkey = r["uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
                            acked.lock().unwrap().records.push((did.clone(), rkey));
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // kill -9 the node running the crawl notifier, mid-storm.
    let victim = holders["crawl-notifier"];
    let _ = nodes[victim].child.kill();
    let _ = nodes[victim].child.wait();
    let killed_at = acked.lock().unwrap().records.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.records.len() > killed_at, "writes went on after the kill ({killed_at} → {})", acked.records.len());
    assert!(!acked.blobs.is_empty() && acked.logins > 0 && acked.accounts.len() > 6, "storm mix: {} blobs, {} logins, {} accounts", acked.blobs.len(), acked.logins, acked.accounts.len());

    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let surviving: Vec<&Server> = survivors.iter().map(|i| &nodes[*i]).collect();
    // Hand-over: every job has exactly one holder among the survivors.
    let after = settled(&surviving).await;
    assert!(after.contains_key("crawl-notifier"));

    // One more public event after the hand-over, so the new crawl-notifier holder has one to
    // notify about whatever the timing of the storm.
    let (did, token, _) = &accounts[0];
    let body = json!({ "repo": did, "collection": "com.example.ops.item", "record": { "after": "handover" } });
    let r = call(&client, &surviving[0].url, "com.atproto.repo.createRecord", Some(token), body).await.expect("a write after the hand-over");
    let mut acked = acked;
    acked.records.push((did.clone(), r["uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()));
    let crawl_calls = || relay.calls().iter().filter(|c| c.starts_with("POST /xrpc/com.atproto.sync.requestCrawl ")).count();
    for _ in 0..100 {
        if crawl_calls() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every subscriber on a survivor: the same contiguous seqs 1..=head.
    let head = crate::ops::head_seq(surviving[0]).await;
    for i in &survivors {
        subs[*i].wait_for(head).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let want: Vec<i64> = (1..=head).collect();
    for i in &survivors {
        assert_eq!(subs[*i].all(), want, "node {i}'s subscriber");
    }
    let dead = subs[victim].all();
    assert_eq!(dead, (1..=dead.len() as i64).collect::<Vec<_>>(), "the killed node's subscriber saw a contiguous prefix");

    // Every acknowledged write, read through the survivors.
    for (k, (did, rkey)) in acked.records.iter().enumerate() {
        let url = &surviving[k % 2].url;
        let r = client
            .get(format!("{url}/xrpc/com.atproto.repo.getRecord?repo={did}&collection=com.example.ops.item&rkey={rkey}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged record {did}/{rkey} missing");
    }
    for (k, (did, cid, bytes)) in acked.blobs.iter().enumerate() {
        let url = &surviving[k % 2].url;
        let r = client.get(format!("{url}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "acknowledged blob {cid} missing");
        assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..]);
    }
    for did in &acked.accounts {
        let r = client.get(format!("{}/xrpc/com.atproto.sync.getRepoStatus?did={did}", surviving[0].url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "acknowledged account {did} missing");
    }

    // No job ran twice: one requestCrawl per crawl-notifier lease term (the default interval is
    // 20 minutes), where three independent notifiers would have sent three.
    assert_eq!(crawl_calls(), 2, "requestCrawls: {:?}", relay.calls());

    let dir = root.path().join(format!("node{}", survivors[0]));
    let out = cli(&dir, &env, &["verify"]);
    assert!(ok(&out).contains("verify: clean"));
    eprintln!(
        "cluster: {} records, {} blobs, {} accounts, {} logins acknowledged; head seq {head}; {:.1} s",
        acked.records.len(),
        acked.blobs.len(),
        acked.accounts.len(),
        acked.logins,
        started.elapsed().as_secs_f64()
    );
    assert!(started.elapsed() < Duration::from_secs(120), "the cluster test took {:?}", started.elapsed());
    pg.drop_now().await;
}
