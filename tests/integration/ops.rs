//! Running it for real, through the binary:
//! - `pds backup` under a write storm, restored into a fresh SQLite directory, into the same
//!   directory (`--force`) and into Postgres: `pds verify` clean, every record acknowledged before
//!   the backup and every blob present, and the next firehose seq above every seq served before
//!   (the fresh targets: the backup's `servedSeq`, which covers what was served before and while
//!   it ran; the same directory: ever, from `<data>/firehose-seq`);
//! - a server whose database went back in time raises its sequence at start;
//! - `/metrics` parsed by a Prometheus text parser: present, admin-only on the main port, open on
//!   `PDS_METRICS_BIND`, and moving under load; request ids; JSON logs that carry them, with
//!   sign-up / sign-in / refresh lines and no secret;
//! - `pds relay status` / `crawl` against fake relays.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::firehose::{decode, int};
use crate::harness::{free_port, pds_bin, PgDatabase, Server};
use crate::invites::{get, post, signup};
use crate::plc::PlcServer;

pub const ADMIN: &str = "ops-admin";
const SERVICE_DID: &str = "did:web:ops.test";

pub fn base_env(plc: &PlcServer, pg: Option<&PgDatabase>) -> Vec<(String, String)> {
    let mut env = vec![
        ("PDS_DID_PLC_URL".to_owned(), plc.url.clone()),
        ("PDS_INVITE_REQUIRED".to_owned(), "false".to_owned()),
        ("PDS_JWT_SECRET".to_owned(), "ops-test-jwt-secret".to_owned()),
        ("PDS_ADMIN_PASSWORD".to_owned(), ADMIN.to_owned()),
        ("PDS_SERVICE_HANDLE_DOMAINS".to_owned(), ".test".to_owned()),
        ("PDS_SERVICE_DID".to_owned(), SERVICE_DID.to_owned()),
    ];
    if let Some(db) = pg {
        env.push(("PDS_DATABASE_URL".to_owned(), db.url.clone()));
    }
    env
}

pub fn with(env: &[(String, String)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut e = env.to_vec();
    e.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    e
}

pub async fn start(dir: &Path, env: &[(String, String)]) -> Server {
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_in(dir, &borrowed).await
}

/// `pds ARGS` in `dir` (so `./pds-data` is the server's) with exactly `env`.
pub fn cli(dir: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new(pds_bin());
    cmd.args(args).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("PDS_") && k != "PDS_BIN" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd.output().unwrap()
}

#[track_caller]
pub fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "exit {:?}\nstdout: {stdout}\nstderr: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    stdout
}

pub async fn account(s: &Server, name: &str) -> (String, String) {
    let (st, a) = post(s, "com.atproto.server.createAccount", None, signup(&format!("{name}.test"), &format!("{name}@example.com"), None)).await;
    assert_eq!(st, 200, "{a}");
    (a["did"].as_str().unwrap().to_owned(), a["accessJwt"].as_str().unwrap().to_owned())
}

pub async fn create(s: &Server, token: &str, did: &str, record: Value) -> Option<String> {
    let (st, r) = post(s, "com.atproto.repo.createRecord", Some(token), json!({ "repo": did, "collection": "com.example.ops.item", "record": record })).await;
    (st == 200).then(|| r["uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned())
}

pub async fn upload(s: &Server, token: &str, bytes: Vec<u8>) -> Value {
    let resp = reqwest::Client::new()
        .post(s.xrpc("com.atproto.repo.uploadBlob"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "text/plain")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["blob"].clone()
}

/// A firehose subscriber in the background: every seq it receives, in order.
pub struct Subscriber {
    pub seqs: Arc<Mutex<Vec<i64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    pub async fn start(s: &Server, cursor: Option<i64>) -> Subscriber {
        let q = cursor.map(|c| format!("?cursor={c}")).unwrap_or_default();
        let url = format!("{}{q}", s.xrpc("com.atproto.sync.subscribeRepos")).replace("http://", "ws://");
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let seqs = Arc::new(Mutex::new(Vec::new()));
        let sink = seqs.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Binary(b) = m {
                    let (_, body) = decode(&b);
                    sink.lock().unwrap().push(int(&body, "seq"));
                }
            }
        });
        Subscriber { seqs, task }
    }

    pub fn max(&self) -> i64 {
        self.seqs.lock().unwrap().iter().copied().max().unwrap_or(0)
    }

    pub fn all(&self) -> Vec<i64> {
        self.seqs.lock().unwrap().clone()
    }

    /// Waits until the subscriber has seen `seq` (at most 30 s).
    pub async fn wait_for(&self, seq: i64) {
        for _ in 0..600 {
            if self.max() >= seq {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("subscriber never saw seq {seq} (max {})", self.max());
    }
}

/// The log head seq, from `/metrics`.
pub async fn head_seq(s: &Server) -> i64 {
    let (st, text) = scrape(&s.url, Some(ADMIN)).await;
    assert_eq!(st, 200, "{text}");
    metric(&parse_metrics(&text), "pds_log_head_seq", &[]).unwrap_or_else(|| panic!("no pds_log_head_seq in {text}")) as i64
}

/// Writes one record and returns the seq of its `#commit` frame, from a live subscriber.
async fn next_seq_after_write(s: &Server, token: &str, did: &str) -> i64 {
    let sub = Subscriber::start(s, None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    create(s, token, did, json!({ "n": -1 })).await.expect("write after restore");
    for _ in 0..200 {
        if let Some(first) = sub.all().first() {
            return *first;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no frame after a write");
}

struct Storm {
    stop: Arc<AtomicBool>,
    /// (did, rkey) of every acknowledged write, in order.
    acked: Arc<Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Storm {
    fn start(url: String, accounts: Vec<(String, String)>) -> Storm {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (stop2, acked2) = (stop.clone(), acked.clone());
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let (did, token) = &accounts[(n as usize) % accounts.len()];
                n += 1;
                let r = client
                    .post(format!("{url}/xrpc/com.atproto.repo.createRecord"))
                    .bearer_auth(token)
                    .json(&json!({ "repo": did, "collection": "com.example.ops.item", "record": { "n": n } }))
                    .send()
                    .await;
                if let Ok(r) = r {
                    if r.status() == 200 {
                        let v: Value = r.json().await.unwrap();
                        let rkey = v["uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
                        acked2.lock().unwrap().push((did.clone(), rkey));
                    }
                }
            }
        });
        Storm { stop, acked, task }
    }

    fn acked(&self) -> Vec<(String, String)> {
        self.acked.lock().unwrap().clone()
    }

    async fn stop(self) -> Vec<(String, String)> {
        self.stop.store(true, Ordering::Relaxed);
        let acked = self.acked.clone();
        let _ = self.task.await;
        let all = acked.lock().unwrap().clone();
        all
    }
}

async fn assert_present(s: &Server, records: &[(String, String)], blobs: &[(String, String, Vec<u8>)]) {
    for (did, rkey) in records {
        let (st, r) = get(s, &format!("com.atproto.repo.getRecord?repo={did}&collection=com.example.ops.item&rkey={rkey}"), None).await;
        assert_eq!(st, 200, "record {did}/{rkey} missing after restore: {r}");
    }
    for (did, cid, bytes) in blobs {
        let r = reqwest::get(s.xrpc(&format!("com.atproto.sync.getBlob?did={did}&cid={cid}"))).await.unwrap();
        assert_eq!(r.status(), 200, "blob {did}/{cid} missing after restore");
        assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..], "blob {cid} bytes");
    }
}

#[track_caller]
fn assert_verify_clean(dir: &Path, env: &[(String, String)]) {
    let out = cli(dir, env, &["verify"]);
    let stdout = ok(&out);
    assert!(stdout.contains("verify: clean"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_under_load_restores_everywhere_and_seq_never_goes_back() {
    let plc = PlcServer::start();
    let root = tempfile::tempdir().unwrap();
    let (a_dir, b_dir, c_dir) = (root.path().join("a"), root.path().join("b"), root.path().join("c"));
    for d in [&a_dir, &b_dir, &c_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    let env = base_env(&plc, None);
    let a = start(&a_dir, &env).await;
    let mut accounts = Vec::new();
    for name in ["alice", "bob", "carol"] {
        accounts.push(account(&a, name).await);
    }
    // Blobs referenced by records, and one temporary upload.
    let mut blobs = Vec::new();
    for (i, (did, token)) in accounts.iter().enumerate() {
        let bytes = format!("blob {i} of {did}: {}", "x".repeat(1000 * (i + 1))).into_bytes();
        let blob = upload(&a, token, bytes.clone()).await;
        create(&a, token, did, json!({ "file": blob })).await.expect("record with a blob");
        blobs.push((did.clone(), blob["ref"]["$link"].as_str().unwrap().to_owned(), bytes));
    }
    let sub = Subscriber::start(&a, Some(0)).await;
    let storm = Storm::start(a.url.clone(), accounts.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_backup = storm.acked();
    assert!(!before_backup.is_empty(), "the storm wrote nothing");
    let dest = root.path().join("backup");
    let (dir, e, d) = (a_dir.clone(), env.clone(), dest.clone());
    // Served before the backup began: the backup's servedSeq must cover it (and it also covers
    // what was served while it ran, up to its last read of the head).
    let served_before_backup = sub.max();
    let out = tokio::task::spawn_blocking(move || cli(&dir, &e, &["backup", d.to_str().unwrap()])).await.unwrap();
    let summary = ok(&out);
    assert!(summary.contains("backup: done:"), "{summary}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all_acked = storm.stop().await;
    assert!(all_acked.len() > before_backup.len(), "writes went on during the backup");
    let head_a = head_seq(&a).await;
    sub.wait_for(head_a).await;
    let served_ever = sub.max();
    let manifest: Value = serde_json::from_slice(&std::fs::read(dest.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["database"], "full");
    assert_eq!(manifest["blobs"], 3, "{manifest}");
    let served_seq = manifest["servedSeq"].as_i64().unwrap();
    assert!(served_seq >= served_before_backup && served_seq >= manifest["headSeq"].as_i64().unwrap(), "{manifest} vs {served_before_backup}");
    assert_eq!(std::fs::read(a_dir.join("pds-data/firehose-seq")).map(|b| String::from_utf8(b).unwrap().trim().parse::<i64>().unwrap()).unwrap(), served_ever);
    drop(sub);
    drop(a);

    // 1. A fresh SQLite directory.
    let restore = ok(&cli(&b_dir, &env, &["restore", dest.to_str().unwrap()]));
    assert!(restore.contains("restore: done:"), "{restore}");
    assert_verify_clean(&b_dir, &env);
    let b = start(&b_dir, &env).await;
    assert_present(&b, &before_backup, &blobs).await;
    let (did, token) = &accounts[0];
    let next = next_seq_after_write(&b, token, did).await;
    assert!(next > served_seq, "next seq {next} after a restore into a fresh directory, the backup's servedSeq {served_seq}");
    drop(b);

    // 2. The same directory (its database replaced by the older backup): above EVERY seq served.
    let refused = cli(&a_dir, &env, &["restore", dest.to_str().unwrap()]);
    assert!(!refused.status.success(), "restore over a live database without --force");
    ok(&cli(&a_dir, &env, &["restore", "--force", dest.to_str().unwrap()]));
    assert_verify_clean(&a_dir, &env);
    let a2 = start(&a_dir, &env).await;
    let next = next_seq_after_write(&a2, token, did).await;
    assert!(next > served_ever, "next seq {next} after restoring in place, {served_ever} served ever");
    drop(a2);

    // 3. Postgres, from the SQLite backup.
    let pg = PgDatabase::create().await;
    let pg_env = base_env(&plc, Some(&pg));
    ok(&cli(&c_dir, &pg_env, &["restore", dest.to_str().unwrap()]));
    assert_verify_clean(&c_dir, &pg_env);
    let c = start(&c_dir, &pg_env).await;
    assert_present(&c, &before_backup, &blobs).await;
    let next = next_seq_after_write(&c, token, did).await;
    assert!(next > served_seq, "Postgres: next seq {next}, the backup's servedSeq {served_seq}");

    // 4. And back: a backup of the Postgres server (log only) restores into SQLite.
    let dest2 = root.path().join("backup-pg");
    ok(&cli(&c_dir, &pg_env, &["backup", dest2.to_str().unwrap()]));
    drop(c);
    let manifest: Value = serde_json::from_slice(&std::fs::read(dest2.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["database"], "log");
    let d_dir = root.path().join("d");
    std::fs::create_dir_all(&d_dir).unwrap();
    ok(&cli(&d_dir, &env, &["restore", dest2.to_str().unwrap()]));
    assert_verify_clean(&d_dir, &env);
    let d = start(&d_dir, &env).await;
    assert_present(&d, &before_backup, &blobs).await;
    let next2 = next_seq_after_write(&d, token, did).await;
    assert!(next2 > next, "SQLite from Postgres: next seq {next2} after {next}");
    pg.drop_now().await;
}

#[tokio::test]
async fn a_database_behind_the_served_mark_raises_its_sequence_at_start_sqlite() {
    behind_the_mark(None).await;
}

#[tokio::test]
async fn a_database_behind_the_served_mark_raises_its_sequence_at_start_postgres() {
    let pg = PgDatabase::create().await;
    behind_the_mark(Some(&pg)).await;
    pg.drop_now().await;
}

async fn behind_the_mark(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&plc, pg);
    let s = start(dir.path(), &env).await;
    let (did, token) = account(&s, "dora").await;
    let head = head_seq(&s).await;
    drop(s);
    // As if relays had seen seq head + 1000 before the database was replaced by an older one.
    std::fs::write(dir.path().join("pds-data/firehose-seq"), format!("{}\n", head + 1000)).unwrap();
    let s = start(dir.path(), &env).await;
    assert_eq!(head_seq(&s).await, head + 1000);
    let next = next_seq_after_write(&s, &token, &did).await;
    assert_eq!(next, head + 1001);
    // `pds seq raise` moves it further (the fix for a relay whose cursor is ahead).
    drop(s);
    let out = ok(&cli(dir.path(), &env, &["seq", "raise", &(head + 5000).to_string()]));
    assert!(out.contains(&format!("the next firehose seq is {}", head + 5001)), "{out}");
    let s = start(dir.path(), &env).await;
    assert_eq!(next_seq_after_write(&s, &token, &did).await, head + 5001);
}

// ---------------------------------------------------------------------------------------------
// metrics and logs

pub fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// Sum of the samples named `name` whose labels include `labels` (None when there is none).
pub fn metric(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for s in &scrape.samples {
        if s.metric != name || !labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)) {
            continue;
        }
        let v = match &s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => *v,
            _ => continue,
        };
        *found.get_or_insert(0.0) += v;
    }
    found
}

pub async fn scrape(url: &str, admin: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("{url}/metrics"));
    if let Some(p) = admin {
        req = req.basic_auth("admin", Some(p));
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn metrics_move_under_load_and_logs_carry_request_ids_sqlite() {
    metrics_and_logs(None).await;
}

#[tokio::test]
async fn metrics_move_under_load_and_logs_carry_request_ids_postgres() {
    let pg = PgDatabase::create().await;
    metrics_and_logs(Some(&pg)).await;
    pg.drop_now().await;
}

async fn metrics_and_logs(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let metrics_bind = format!("127.0.0.1:{metrics_port}");
    let env = with(&base_env(&plc, pg), &[("PDS_METRICS_BIND", &metrics_bind), ("PDS_LOG_FORMAT", "json")]);
    // The log (stdout) goes to a file.
    let log_path = dir.path().join("pds.log");
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut s = Server::start_logging(dir.path(), &borrowed, Stdio::from(std::fs::File::create(&log_path).unwrap())).await;
    let url = s.url.clone();
    let client = reqwest::Client::new();

    // Admin only on the main port; open on PDS_METRICS_BIND.
    assert_eq!(scrape(&url, None).await.0, 401);
    assert_eq!(scrape(&url, Some("wrong")).await.0, 401);
    let (st, text) = scrape(&url, Some(ADMIN)).await;
    assert_eq!(st, 200);
    let before = parse_metrics(&text);
    for name in [
        "pds_log_head_seq",
        "pds_log_head_position",
        "pds_firehose_subscribers",
        "pds_pool_connections",
        "pds_job_leader",
        "pds_projector_lag_events",
    ] {
        assert!(metric(&before, name, &[]).is_some(), "{name} missing from:\n{text}");
    }
    assert_eq!(metric(&before, "pds_job_leader", &[("job", "blob-cleaner")]), Some(1.0), "{text}");
    assert_eq!(metric(&before, "pds_job_leader", &[("job", "projector:event_stats")]), Some(1.0), "{text}");

    // Load: a subscriber, an account, 20 records; request ids on the way.
    let sub = Subscriber::start(&s, None).await;
    let signup_resp = client
        .post(format!("{url}/xrpc/com.atproto.server.createAccount"))
        .header("x-request-id", "ops-signup-1")
        .json(&signup("erin.test", "erin@example.com", None))
        .send()
        .await
        .unwrap();
    assert_eq!(signup_resp.headers()["x-request-id"], "ops-signup-1");
    let a: Value = signup_resp.json().await.unwrap();
    let (did, token) = (a["did"].as_str().unwrap().to_owned(), a["accessJwt"].as_str().unwrap().to_owned());
    let login = client
        .post(format!("{url}/xrpc/com.atproto.server.createSession"))
        .header("x-request-id", "ops-signin-1")
        .json(&json!({ "identifier": "erin.test", "password": crate::invites::PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let session: Value = login.json().await.unwrap();
    let refresh = client
        .post(format!("{url}/xrpc/com.atproto.server.refreshSession"))
        .bearer_auth(session["refreshJwt"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 200);
    let generated = refresh.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(generated.len() >= 16, "a generated request id: {generated}");
    for i in 0..20 {
        create(&s, &token, &did, json!({ "i": i })).await.expect("createRecord");
    }
    let head = head_seq(&s).await;
    sub.wait_for(head).await;

    let (st, text) = scrape(&format!("http://{metrics_bind}"), None).await;
    assert_eq!(st, 200, "PDS_METRICS_BIND serves without auth");
    let after = parse_metrics(&text);
    let creates = [("nsid", "com.atproto.repo.createRecord"), ("status", "200")];
    assert_eq!(metric(&after, "pds_http_requests_total", &creates), Some(20.0), "{text}");
    assert!(metric(&after, "pds_http_request_duration_seconds_count", &[("nsid", "com.atproto.repo.createRecord")]) >= Some(20.0));
    assert_eq!(metric(&after, "pds_http_requests_total", &[("nsid", "com.atproto.server.createSession"), ("status", "200")]), Some(1.0));
    let grew = |name: &str, by: f64| {
        let (b, a) = (metric(&before, name, &[]).unwrap_or(0.0), metric(&after, name, &[]).unwrap_or(0.0));
        assert!(a - b >= by, "{name}: {b} → {a}, expected to grow by {by}");
    };
    grew("pds_log_head_seq", 24.0);
    grew("pds_log_append_duration_seconds_count", 21.0);
    grew("pds_log_group_commit_size_count", 1.0);
    grew("pds_log_appended_events_total", 24.0);
    grew("pds_firehose_frames_total", 24.0);
    assert_eq!(metric(&after, "pds_firehose_subscribers", &[]), Some(1.0));
    assert_eq!(metric(&after, "pds_log_head_seq", &[]), Some(head as f64));
    assert!(metric(&after, "pds_firehose_seq_high_water", &[]) >= Some(head as f64));
    assert!(metric(&after, "pds_pool_connections", &[("state", "max")]) > Some(0.0));
    drop(sub);

    // The log: JSON lines, request ids on every request line, auth events, no secret.
    let _ = s.child.kill();
    let _ = s.child.wait();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(lines.len() > 20, "{} log lines", lines.len());
    let of = |id: &str| -> Vec<&Value> { lines.iter().filter(|l| l["span"]["request_id"] == id).collect() };
    let signup_lines = of("ops-signup-1");
    assert!(signup_lines.iter().any(|l| l["fields"]["event"] == "sign-up" && l["fields"]["did"] == did.as_str()), "{signup_lines:?}");
    assert!(signup_lines.iter().any(|l| l["fields"]["message"] == "request" && l["fields"]["status"] == 200), "{signup_lines:?}");
    assert!(of("ops-signin-1").iter().any(|l| l["fields"]["event"] == "sign-in" && l["fields"]["did"] == did.as_str()));
    assert!(of(&generated).iter().any(|l| l["fields"]["event"] == "refresh"));
    for secret in [crate::invites::PASSWORD, token.as_str(), session["refreshJwt"].as_str().unwrap(), ADMIN, "ops-test-jwt-secret"] {
        assert!(!text.contains(secret), "a secret in the log: {secret}");
    }
}

// ---------------------------------------------------------------------------------------------
// relays

/// A fake relay: `getHostStatus` answers `status_body` (or 400 HostNotFound when None) and
/// `requestCrawl` 200; records request lines.
pub struct FakeRelay {
    pub url: String,
    pub calls: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeRelay {
    pub async fn start(status_body: Option<Value>) -> FakeRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let sink = calls.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let (sink, status_body) = (sink.clone(), status_body.clone());
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
                    sink.lock().unwrap().push(line.clone());
                    let (status, body) = if line.contains("getHostStatus") {
                        match &status_body {
                            Some(b) => (200, b.to_string()),
                            None => (400, json!({ "error": "HostNotFound", "message": "unknown host" }).to_string()),
                        }
                    } else {
                        (200, "{}".to_owned())
                    };
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        FakeRelay { url, calls, task }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_status_compares_seqs_and_crawl_asks_now() {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&plc, None);
    let s = start(dir.path(), &env).await;
    account(&s, "fred").await;
    let head = head_seq(&s).await;
    drop(s);
    let active_behind = FakeRelay::start(Some(json!({ "hostname": "localhost", "seq": head - 1, "status": "active", "accountCount": 1 }))).await;
    let idle = FakeRelay::start(Some(json!({ "hostname": "localhost", "seq": head, "status": "idle" }))).await;
    let ahead = FakeRelay::start(Some(json!({ "hostname": "localhost", "seq": head + 500, "status": "active" }))).await;
    let unknown = FakeRelay::start(None).await;
    let crawlers = [&active_behind, &idle, &ahead, &unknown].iter().map(|r| r.url.clone()).collect::<Vec<_>>().join(",");
    let env = with(&env, &[("PDS_CRAWLERS", &crawlers)]);
    let out = ok(&cli(dir.path(), &env, &["relay", "status", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["headSeq"], head);
    let by_url: HashMap<String, Value> = v["relays"].as_array().unwrap().iter().map(|r| (r["relay"].as_str().unwrap().to_owned(), r.clone())).collect();
    let r = &by_url[&active_behind.url];
    assert_eq!((r["crawlDue"].clone(), r["behind"].clone(), r["status"].clone()), (json!(false), json!(1), json!("active")), "{r}");
    assert_eq!(by_url[&idle.url]["crawlDue"], true, "{}", by_url[&idle.url]);
    assert_eq!(by_url[&unknown.url]["crawlDue"], true);
    assert!(by_url[&ahead.url]["verdict"].as_str().unwrap().contains(&format!("pds seq raise {}", head + 500)));
    for relay in [&active_behind, &idle, &ahead, &unknown] {
        let calls = relay.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(calls[0].starts_with("GET /xrpc/com.atproto.sync.getHostStatus?hostname=localhost "), "{calls:?}");
    }
    let human = ok(&cli(dir.path(), &env, &["relay", "status"]));
    assert!(human.contains("RELAY IS AHEAD"), "{human}");
    let out = ok(&cli(dir.path(), &env, &["relay", "crawl"]));
    assert_eq!(out.matches("requestCrawl accepted").count(), 4, "{out}");
    for relay in [&active_behind, &idle, &ahead, &unknown] {
        assert!(relay.calls().iter().any(|c| c.starts_with("POST /xrpc/com.atproto.sync.requestCrawl ")));
    }
    // No crawler configured: a clear error.
    let out = cli(dir.path(), &base_env(&plc, None), &["relay", "status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PDS_CRAWLERS is not set"));
}

#[tokio::test]
async fn tls_check_approves_our_hostname_and_hosted_handles_only() {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &base_env(&plc, None)).await;
    account(&s, "gina").await;
    let check = |q: &str| {
        let url = format!("{}/tls-check{q}", s.url);
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(check("?domain=gina.test").await, (200, json!({ "success": true })));
    assert_eq!(check("?domain=GINA.test").await.0, 200);
    assert_eq!(check("?domain=localhost").await.0, 200);
    assert_eq!(check("?domain=nobody.test").await, (404, json!({ "error": "NotFound", "message": "handle not found for this domain" })));
    assert_eq!(check("?domain=gina.test.attacker.example").await.1["error"], "InvalidRequest");
    assert_eq!(check("?domain=.test").await.0, 400);
    assert_eq!(check("").await, (400, json!({ "error": "InvalidRequest", "message": "bad or missing domain query param" })));
}

#[tokio::test]
async fn sigterm_stops_the_server_even_with_firehose_subscribers_open() {
    let plc = PlcServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path(), &base_env(&plc, None)).await;
    let sub = Subscriber::start(&s, None).await;
    let pid = s.child.id().to_string();
    let t0 = std::time::Instant::now();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "pds still running 20 s after SIGTERM with a subscriber open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    drop(sub);
}
