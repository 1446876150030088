//! `pds car inspect | verify | diff` on repositories built with the domain core, and on broken
//! files: right answers, clear errors, non-zero exits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use domain::car::write_car;
use domain::cbor::{encode_with_cid, Cid, Ipld};
use domain::commit::UnsignedCommit;
use domain::crypto::{KeyType, Keypair};
use domain::mst::{Mst, NoBlocks};
use domain::syntax::Did;
use domain::tid::Tid;
use serde_json::{json, Value};

use crate::harness::pds;

const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";

fn record(collection: &str, text: &str) -> (Cid, Vec<u8>) {
    let map = BTreeMap::from([
        ("$type".to_string(), Ipld::String(collection.to_string())),
        ("text".to_string(), Ipld::String(text.to_string())),
        ("createdAt".to_string(), Ipld::String("2026-11-26T00:00:00.000Z".to_string())),
    ]);
    encode_with_cid(&Ipld::Map(map)).unwrap()
}

/// Writes a signed repo CAR holding `records` (path -> text); returns the file path.
/// `drop_record` leaves that record's block out of the file.
fn write_repo(dir: &Path, name: &str, key: &Keypair, rev: u64, records: &[(&str, &str)], drop_record: Option<&str>) -> PathBuf {
    let mut blocks: Vec<(Cid, Vec<u8>)> = Vec::new();
    let mut entries = Vec::new();
    for (path, text) in records {
        let (cid, bytes) = record(path.split('/').next().unwrap(), text);
        entries.push((path.to_string(), cid));
        if Some(*path) != drop_record {
            blocks.push((cid, bytes));
        }
    }
    let mst = Mst::from_entries(entries).unwrap();
    blocks.extend(mst.node_blocks(&NoBlocks).unwrap());
    let unsigned = UnsignedCommit::new(Did::parse(DID).unwrap(), mst.root_cid().unwrap(), Tid::from_parts(rev, 7));
    let (commit_cid, commit_bytes) = unsigned.sign(key).unwrap().encode_with_cid().unwrap();
    blocks.insert(0, (commit_cid, commit_bytes));
    let path = dir.join(name);
    std::fs::write(&path, write_car(&[commit_cid], blocks)).unwrap();
    path
}

fn ok_json(args: &[&str]) -> Value {
    let out = pds(args);
    assert!(out.status.success(), "pds {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[track_caller]
fn check_fails(args: &[&str], expected_in_stderr: &str) {
    let out = pds(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "pds {args:?} should fail; stderr: {err}");
    assert!(err.contains(expected_in_stderr), "pds {args:?}: expected {expected_in_stderr:?} in stderr, got: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

const RECORDS: &[(&str, &str)] = &[
    ("app.bsky.feed.post/3l4qpz7ajrc2a", "one"),
    ("app.bsky.feed.post/3l4qpz7ajrc2b", "two"),
    ("app.bsky.feed.post/3l4qpz7ajrc2c", "three"),
    ("app.bsky.feed.like/3l4qpz7ajrc2d", "like"),
    ("app.bsky.actor.profile/self", "me"),
];

#[test]
fn inspect_reports_commit_and_counts_per_collection() {
    let tmp = tempfile::tempdir().unwrap();
    let key = Keypair::generate(KeyType::K256);
    let car = write_repo(tmp.path(), "repo.car", &key, 1_700_000_000_000_000, RECORDS, None);
    let report = ok_json(&["car", "inspect", car.to_str().unwrap()]);
    assert_eq!(report["commit"]["did"], DID);
    assert_eq!(report["commit"]["version"], 3);
    assert_eq!(report["records"], 5);
    assert_eq!(
        report["collections"],
        json!({"app.bsky.actor.profile": 1, "app.bsky.feed.like": 1, "app.bsky.feed.post": 3})
    );
    assert!(report["root"].as_str().unwrap().starts_with("bafyrei"));
}

#[test]
fn verify_checks_did_signature_and_every_record() {
    let tmp = tempfile::tempdir().unwrap();
    let key = Keypair::generate(KeyType::K256);
    let did_key = key.public_key().to_did_key();
    let car = write_repo(tmp.path(), "repo.car", &key, 1_700_000_000_000_000, RECORDS, None);
    let car = car.to_str().unwrap();

    let report = ok_json(&["car", "verify", car, "--did", DID, "--key", &did_key]);
    assert_eq!(report["signature"], "verified");
    assert_eq!(report["records"], 5);
    let report = ok_json(&["car", "verify", car]);
    assert_eq!(report["signature"], "not checked (no --key)");

    let other = Keypair::generate(KeyType::P256).public_key().to_did_key();
    check_fails(&["car", "verify", car, "--key", &other], "signature does not verify");
    check_fails(&["car", "verify", car, "--did", "did:plc:someoneelse"], "expected did:plc:someoneelse");
    check_fails(&["car", "verify", car, "--key", "did:key:zNotAKey"], "not a did:key");

    let missing = write_repo(tmp.path(), "missing.car", &key, 1, RECORDS, Some("app.bsky.feed.like/3l4qpz7ajrc2d"));
    check_fails(&["car", "verify", missing.to_str().unwrap()], "record app.bsky.feed.like/3l4qpz7ajrc2d");
}

#[test]
fn broken_car_files_fail_clearly_for_every_tool() {
    let tmp = tempfile::tempdir().unwrap();
    let key = Keypair::generate(KeyType::K256);
    let good = write_repo(tmp.path(), "repo.car", &key, 1, RECORDS, None);
    let bytes = std::fs::read(&good).unwrap();

    let truncated = tmp.path().join("truncated.car");
    std::fs::write(&truncated, &bytes[..bytes.len() - 7]).unwrap();
    let garbage = tmp.path().join("garbage.car");
    std::fs::write(&garbage, b"this is not a CAR file at all").unwrap();
    let mut flipped = bytes.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0xff;
    let corrupt = tmp.path().join("corrupt.car");
    std::fs::write(&corrupt, &flipped).unwrap();
    // The official CAR fixture is a valid CAR whose root is not a repo commit.
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("interop-tests-extra/repo-car-file-fixtures.json")).unwrap(),
    )
    .unwrap();
    let car_b64 = fixture[0]["car"].as_str().unwrap();
    let not_repo = tmp.path().join("not-repo.car");
    std::fs::write(&not_repo, b64(car_b64)).unwrap();

    let cases: &[(&Path, &str)] = &[
        (&truncated, "not a valid CAR file"),
        (&garbage, "not a valid CAR file"),
        (&corrupt, "not a valid CAR file"),
        (&not_repo, "is not a repo commit"),
        (Path::new("/nonexistent/repo.car"), "No such file"),
    ];
    for (file, expected) in cases {
        let f = file.to_str().unwrap();
        check_fails(&["car", "inspect", f], expected);
        check_fails(&["car", "verify", f], expected);
        check_fails(&["car", "diff", good.to_str().unwrap(), f], expected);
    }
}

#[test]
fn diff_lists_nodes_record_ops_and_proof() {
    let tmp = tempfile::tempdir().unwrap();
    let key = Keypair::generate(KeyType::K256);
    let a = write_repo(tmp.path(), "a.car", &key, 1, RECORDS, None);
    let mut changed: Vec<(&str, &str)> = RECORDS.to_vec();
    changed.retain(|(p, _)| *p != "app.bsky.feed.like/3l4qpz7ajrc2d"); // delete
    changed[0].1 = "one, edited"; // update
    changed.push(("app.bsky.graph.follow/3l4qpz7ajrc2e", "follow")); // create
    let b = write_repo(tmp.path(), "b.car", &key, 2, &changed, None);

    let report = ok_json(&["car", "diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    let cid = |coll: &str, text: &str| record(coll, text).0.to_string();
    assert_eq!(
        report["record_ops"],
        json!([
            {"rpath": "app.bsky.feed.like/3l4qpz7ajrc2d", "old_value": cid("app.bsky.feed.like", "like"), "new_value": null},
            {"rpath": "app.bsky.feed.post/3l4qpz7ajrc2a", "old_value": cid("app.bsky.feed.post", "one"), "new_value": cid("app.bsky.feed.post", "one, edited")},
            {"rpath": "app.bsky.graph.follow/3l4qpz7ajrc2e", "old_value": null, "new_value": cid("app.bsky.graph.follow", "follow")},
        ])
    );
    for field in ["created_nodes", "deleted_nodes", "proof_nodes"] {
        let list: Vec<&str> = report[field].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let mut sorted = list.clone();
        sorted.sort();
        assert_eq!(list, sorted, "{field} must be sorted");
    }
    assert!(!report["created_nodes"].as_array().unwrap().is_empty());
    assert!(!report["proof_nodes"].as_array().unwrap().is_empty());

    // A repo diffed against itself: nothing.
    let same = ok_json(&["car", "diff", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert_eq!(same, json!({"created_nodes": [], "deleted_nodes": [], "record_ops": [], "proof_nodes": []}));
}

/// The atproto fixtures in the repository (`tests/fixtures/atproto/`; `$ATPROTO_FIXTURES` overrides).
fn fixtures() -> PathBuf {
    std::env::var_os("ATPROTO_FIXTURES")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/atproto"))
}

fn b64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.decode(s.trim_end_matches('=')).unwrap()
}
