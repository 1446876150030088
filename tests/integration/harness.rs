//! Starting and stopping real `pds` processes on free ports with private data directories.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of the `pds` binary built for this profile (`$PDS_BIN` overrides).
pub fn pds_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PDS_BIN") {
        return PathBuf::from(p);
    }
    // <target>/<profile>/deps/integration-<hash> -> <target>/<profile>/pds
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target profile dir");
    let bin = profile_dir.join("pds");
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo build -p api --bin pds`, which scripts/test does)",
        bin.display()
    );
    bin
}

/// Runs `pds ARGS` to completion.
pub fn pds(args: &[&str]) -> Output {
    Command::new(pds_bin()).args(args).output().expect("run pds")
}

/// Runs `pds ARGS` to completion with only the given `PDS_*` variables set.
pub fn pds_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(pds_bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PDS_") && k != "PDS_BIN" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run pds")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `pds serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `pds serve` in a fresh temporary directory with only `PDS_PORT` set (plus `extra`).
    pub async fn start(extra: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server::start_in(tmp.path(), extra).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts `pds serve` with `dir` as its working directory (so the default `./pds-data` lands there).
    pub async fn start_in(dir: &Path, extra: &[(&str, &str)]) -> Server {
        Server::start_logging(dir, extra, Stdio::null()).await
    }

    /// [`Server::start_in`] with the server's stdout (its log) sent to `log`.
    pub async fn start_logging(dir: &Path, extra: &[(&str, &str)], log: Stdio) -> Server {
        let port = free_port();
        let mut cmd = Command::new(pds_bin());
        cmd.arg("serve").current_dir(dir).stdout(log).stderr(Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("PDS_") && k != "PDS_BIN" {
                cmd.env_remove(k);
            }
        }
        cmd.env("PDS_PORT", port.to_string());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let server = Server { child, url, data_dir: dir.join("pds-data"), _tmp: None };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/xrpc/_health", self.url)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "pds did not become healthy at {}", self.url);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn xrpc(&self, nsid: &str) -> String {
        format!("{}/xrpc/{nsid}", self.url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh Postgres database for one test, dropped (forcibly) on `drop_now` or at the end.
/// Fails, never skips, if Postgres is unreachable (`scripts/services` starts it).
pub struct PgDatabase {
    admin: String,
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        use sqlx::Connection;
        let admin = std::env::var("PDS_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("pds_it_{}_{nanos}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("Postgres unreachable at {admin} ({e}); run scripts/services"));
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
        PgDatabase { url: format!("{base}/{name}"), admin, name }
    }

    pub async fn drop_now(&self) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn).await.unwrap();
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Best effort, on a thread of its own (Drop cannot await).
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
                }
            })
        })
        .join();
    }
}

impl Server {
    /// Every event of `did`'s streams, from the admin `listEvents` endpoint (first 1,000 of the log).
    pub async fn events_of(&self, admin_password: &str, did: &str) -> Vec<serde_json::Value> {
        let r = reqwest::Client::new()
            .get(self.xrpc("org.eventpds.admin.listEvents?limit=1000"))
            .basic_auth("admin", Some(admin_password))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "listEvents");
        let events: serde_json::Value = r.json().await.unwrap();
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["stream"].as_str().unwrap().ends_with(did))
            .cloned()
            .collect()
    }
}
