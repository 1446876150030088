//! The conformance suite, `tests/interop/run`: every third-party judge (`@atproto/api`,
//! the Bluesky app's calls through `@atproto/api` (with the canned AppView of
//! `tests/interop/upstream/appview.mjs` behind the server), `@atproto/repo`, `@atproto/identity`,
//! `@atproto/sync`'s `Firehose`,
//! `@atproto/oauth-client-node`, the Python `atproto` SDK
//! and its `FirehoseSubscribeReposClient`) against one real server registering its accounts with
//! the reference PLC directory, ending with `N passed, N failed`. Green on SQLite and Postgres;
//! and red, naming the failing judges and steps, when one endpoint of the server is broken (a
//! proxy in front of it answers 501 for `com.atproto.repo.createRecord` and passes the rest).
//! Needs `scripts/interop-install` and `scripts/plc-install`; fails, never skips, without them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{free_port, pds_bin, PgDatabase, Server};
use crate::bsky_app::AppView;
use crate::plc::PlcServer;

const ADMIN_PASSWORD: &str = "conformance-admin-password";
const JWT_SECRET: &str = "conformance-jwt-secret";
/// Steps the judges pass today (agent 16, bsky 7, sync 6, identity 8, firehose 22, OAuth 9,
/// Python 10 = 78); more is fine.
const AT_LEAST_PASSED: u32 = 78;

fn env_for(plc: &PlcServer) -> Vec<(&'static str, String)> {
    vec![
        ("PDS_DID_PLC_URL", plc.url.clone()),
        ("PDS_INVITE_REQUIRED", "false".into()),
        ("PDS_SERVICE_HANDLE_DOMAINS", ".test".into()),
        ("PDS_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
        ("PDS_JWT_SECRET", JWT_SECRET.into()),
    ]
}

/// Runs `tests/interop/run` against `pds_url` (with the canned AppView it is configured with).
async fn run_suite(pds_url: &str, plc: &PlcServer, appview: Option<&AppView>) -> Output {
    let run = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/run");
    let (pds_url, plc_url) = (pds_url.to_owned(), plc.url.clone());
    let appview_url = appview.map(|a| a.url.clone());
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(&run);
        if let Some(url) = appview_url {
            cmd.env("APPVIEW_URL", url);
        } else {
            cmd.env_remove("APPVIEW_URL");
        }
        cmd.env("PDS_URL", pds_url)
            .env("PLC_URL", plc_url)
            .env("PDS_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("PDS_JWT_SECRET", JWT_SECRET)
            .env_remove("INTEROP_ONLY")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; run scripts/interop-install", run.display()))
    })
    .await
    .unwrap()
}

/// `(passed, failed)` from the last line, which must be the count line.
fn counts(stdout: &str) -> (u32, u32) {
    let last = stdout.lines().last().unwrap_or_default();
    let parsed = last
        .strip_suffix(" failed")
        .and_then(|s| s.split_once(" passed, "))
        .and_then(|(p, f)| Some((p.parse().ok()?, f.parse().ok()?)));
    parsed.unwrap_or_else(|| panic!("no count line at the end:\n{stdout}"))
}

async fn suite_passes(pg: Option<&PgDatabase>) {
    let plc = PlcServer::start();
    let appview = AppView::start(&plc);
    let mut env = env_for(&plc);
    if let Some(db) = pg {
        env.push(("PDS_DATABASE_URL", db.url.clone()));
    }
    env.push(("PDS_BSKY_APP_VIEW_URL", appview.url.clone()));
    env.push(("PDS_BSKY_APP_VIEW_DID", appview.did.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(&env).await;
    let out = run_suite(&server.url, &plc, Some(&appview)).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let (passed, failed) = counts(&stdout);
    assert!(
        out.status.success() && failed == 0 && passed >= AT_LEAST_PASSED,
        "the conformance suite failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    for judge in ["agent.mjs", "bsky.mjs", "sync.mjs", "identity.mjs", "firehose.mjs", "oauth.mjs", "login.py"] {
        assert!(stdout.contains(&format!("ok   {judge} (")), "{judge} did not run:\n{stdout}");
    }
}

#[tokio::test]
async fn conformance_suite_passes_sqlite() {
    suite_passes(None).await;
}

#[tokio::test]
async fn conformance_suite_passes_postgres() {
    let db = PgDatabase::create().await;
    suite_passes(Some(&db)).await;
    db.drop_now().await;
}

/// A `pds serve` listening on `127.0.0.2:port`, killed on drop.
struct Hidden(Child);

impl Drop for Hidden {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The suite against a server whose `createRecord` answers 501: it exits non-zero, names the
/// judges and steps that needed it, and the judges that do not need it still pass.
/// The server listens on 127.0.0.2 and the proxy on 127.0.0.1 at the same port, so the URL the
/// server puts in its DID documents (`http://localhost:<port>`) leads to the proxy too.
#[tokio::test]
async fn conformance_suite_fails_naming_the_step_when_an_endpoint_is_broken() {
    let plc = PlcServer::start();
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(pds_bin());
    cmd.arg("serve").current_dir(data.path()).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("PDS_") && k != "PDS_BIN" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env_for(&plc) {
        cmd.env(k, v);
    }
    cmd.env("PDS_PORT", port.to_string()).env("PDS_BIND_ADDRESS", "127.0.0.2");
    let _server = Hidden(cmd.spawn().unwrap());
    let upstream: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://{upstream}/xrpc/_health")).await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(Instant::now() < deadline, "pds did not become healthy at {upstream}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let proxy = tokio::spawn(proxy(listener, upstream, "/xrpc/com.atproto.repo.createRecord"));

    // The proxy itself is transparent: the server answers through it.
    let through: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{port}/xrpc/com.atproto.server.describeServer")).await.unwrap().json().await.unwrap();
    assert!(through["did"].as_str().unwrap().starts_with("did:web:"), "{through}");

    let out = run_suite(&format!("http://127.0.0.1:{port}"), &plc, None).await;
    proxy.abort();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let ctx = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(!out.status.success(), "the suite passed a server without createRecord:\n{ctx}");
    let (passed, failed) = counts(&stdout);
    assert_eq!(failed, 5, "{ctx}");
    assert!(passed > 0, "{ctx}");
    for named in [
        "FAIL agent.mjs: step postWithImage: ",
        "FAIL sync.mjs: step createRecords: Error: com.atproto.repo.createRecord: 501 ",
        "FAIL oauth.mjs: step createRecord (DPoP): ",
        "FAIL firehose.mjs: step post: ",
        "FAIL login.py: step firehose_commit: ",
        "ok   identity.mjs (",
        "ok   bsky.mjs (",
    ] {
        assert!(stdout.contains(named), "expected {named:?}:\n{ctx}");
    }
    let firehose = stdout.lines().find(|l| l.starts_with("FAIL firehose.mjs")).unwrap();
    assert!(firehose.contains("disabled by the conformance test's proxy"), "{ctx}");
}

/// An HTTP/1.1 proxy from `listener` to `upstream` that answers `disabled` (a path prefix) with
/// 501 MethodNotImplemented itself. Every forwarded request gets `Connection: close`, so each
/// connection carries one request and each request is seen here; WebSocket upgrades pass through.
async fn proxy(listener: TcpListener, upstream: SocketAddr, disabled: &'static str) {
    loop {
        let Ok((client, _)) = listener.accept().await else { return };
        tokio::spawn(forward(client, upstream, disabled));
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, disabled: &str) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let lines: Vec<&str> = head.trim_end().split("\r\n").collect();
    let header = |name: &str| {
        lines.iter().skip(1).find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
    };
    let path = lines[0].split_whitespace().nth(1).unwrap_or_default();
    if path.starts_with(disabled) {
        // Read the body first, so closing does not reset the connection under the client.
        let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while buf.len() < head_end + length {
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = r#"{"error":"MethodNotImplemented","message":"disabled by the conformance test's proxy"}"#;
        let reply = format!(
            "HTTP/1.1 501 Not Implemented\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = client.write_all(reply.as_bytes()).await;
        let _ = client.shutdown().await;
        return;
    }
    let upgrade = header("upgrade").is_some();
    let mut out = String::new();
    for line in &lines {
        let is_connection = line.split_once(':').is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"));
        if !is_connection || upgrade {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    if !upgrade {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    if server.write_all(out.as_bytes()).await.is_err() || server.write_all(&buf[head_end..]).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
