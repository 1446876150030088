#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::*;
use crate::cbor::{self, Ipld};
use crate::testing::{fixture_lines, read_fixture};

const EMPTY_ROOT: &str = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";

fn cid(s: &str) -> Cid {
    Cid::from_str(s).unwrap()
}

fn json(rel: &str) -> Value {
    serde_json::from_str(&read_fixture(rel)).unwrap()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Every node block of a tree, as a block source.
fn blocks_of(tree: &Mst) -> BlockMap {
    tree.node_blocks(&NoBlocks).unwrap().into_iter().collect()
}

/// A tree built by inserting keys one at a time (exercises `put`, not the bulk builder).
fn inserted(keys: &[String], value: Cid) -> Mst {
    let mut tree = Mst::new();
    for k in keys {
        tree.put(&NoBlocks, k, value).unwrap();
    }
    tree
}

// ---- key depth, prefixes, key syntax ------------------------------------------------------

#[track_caller]
fn check_depth(key: &str, expected: u8) {
    assert_eq!(key_depth(key.as_bytes()), expected, "depth of {key:?}");
}

#[test]
fn key_heights_fixture() {
    let cases = json("interop-tests/mst/key_heights.json");
    let mut n = 0;
    for case in cases.as_array().unwrap() {
        check_depth(
            case["key"].as_str().unwrap(),
            case["height"].as_u64().unwrap() as u8,
        );
        n += 1;
    }
    assert_eq!(n, 9);
}

#[test]
fn example_keys_heights() {
    // Each key's second character is its height: `A0/374913` is at layer 0, `C2/014073` at 2.
    let mut n = 0;
    for key in fixture_lines("interop-tests/mst/example_keys.txt") {
        let key = key.trim();
        let height = key.as_bytes()[1] - b'0';
        check_depth(key, height);
        assert!(is_valid_mst_key(key));
        n += 1;
    }
    assert_eq!(n, 156);
}

#[track_caller]
fn check_prefix(left: &str, right: &str, expected: usize) {
    assert_eq!(
        common_prefix_len(left.as_bytes(), right.as_bytes()),
        expected,
        "{left:?} / {right:?}"
    );
}

#[test]
fn common_prefix_fixture() {
    let cases = json("interop-tests/mst/common_prefix.json");
    let mut n = 0;
    for case in cases.as_array().unwrap() {
        check_prefix(
            case["left"].as_str().unwrap(),
            case["right"].as_str().unwrap(),
            case["len"].as_u64().unwrap() as usize,
        );
        n += 1;
    }
    assert_eq!(n, 13);
}

#[track_caller]
fn check_key_validity(key: &str, valid: bool) {
    assert_eq!(is_valid_mst_key(key), valid, "{key:?}");
    let put = Mst::new().put(&NoBlocks, key, cid(EMPTY_ROOT));
    assert_eq!(put.is_ok(), valid, "put {key:?}");
}

#[test]
fn known_roots_key_lists() {
    let f = json("interop-tests-extra/mst_known_roots.json");
    let allowed = strs(&f["allowedKeys"]);
    for k in &allowed {
        check_key_validity(k, true);
    }
    let rejected = strs(&f["rejectedKeys"]);
    for k in &rejected {
        if k.starts_with("<any key longer than 1024") {
            check_key_validity(&format!("coll/{}", "a".repeat(1020)), false);
            check_key_validity(&format!("coll/{}", "a".repeat(1019)), true);
        } else {
            check_key_validity(k, false);
        }
    }
    assert_eq!((allowed.len(), rejected.len()), (8, 23));
}

// ---- known roots ---------------------------------------------------------------------------

#[track_caller]
fn check_root(keys: &[String], value: Cid, expected: &str, layer: Option<u8>) -> Mst {
    let bulk = Mst::from_entries(keys.iter().map(|k| (k.clone(), value))).unwrap();
    assert_eq!(
        bulk.root_cid().unwrap().to_string(),
        expected,
        "bulk build of {keys:?}"
    );
    let one_by_one = inserted(keys, value);
    assert_eq!(
        one_by_one.root_cid().unwrap().to_string(),
        expected,
        "inserted {keys:?}"
    );
    if let Some(layer) = layer {
        assert_eq!(bulk.root_layer(), layer);
    }
    // Round trip through blocks: lazy and full loads agree.
    let blocks = blocks_of(&bulk);
    let root = cid(expected);
    let full = Mst::load_all(&blocks, root).unwrap();
    assert_eq!(full.entries(&NoBlocks).unwrap().len(), keys.len());
    let lazy = Mst::load(&blocks, root).unwrap();
    assert_eq!(lazy.root_cid().unwrap(), root);
    bulk
}

#[test]
fn empty_tree_root() {
    assert_eq!(Mst::new().root_cid().unwrap().to_string(), EMPTY_ROOT);
    let (_, bytes) = Mst::new().root.encode().unwrap();
    assert_eq!(bytes, [0xa2, 0x61, 0x65, 0x80, 0x61, 0x6c, 0xf6]);
}

#[test]
fn known_maps() {
    let f = json("interop-tests-extra/mst_known_roots.json");
    let leaf = cid(f["leafValue"].as_str().unwrap());
    let mut n = 0;
    for case in f["knownMaps"].as_array().unwrap() {
        let layer = case.get("rootLayer").map(|l| l.as_u64().unwrap() as u8);
        check_root(
            &strs(&case["keys"]),
            leaf,
            case["root"].as_str().unwrap(),
            layer,
        );
        n += 1;
    }
    assert_eq!(n, 4);
}

#[test]
fn known_edge_cases() {
    let f = json("interop-tests-extra/mst_known_roots.json");
    let leaf = cid(f["leafValue"].as_str().unwrap());
    let root_of = |t: &Mst| t.root_cid().unwrap().to_string();
    let mut n = 0;
    for case in f["edgeCases"].as_array().unwrap() {
        let s = |k: &str| case[k].as_str().unwrap();
        let layer = |k: &str| case.get(k).map(|l| l.as_u64().unwrap() as u8);
        let keys = strs(&case["keys"]);
        match s("name") {
            "trims top of tree on delete" => {
                let mut t = check_root(&keys, leaf, s("rootBefore"), layer("layerBefore"));
                for k in strs(&case["delete"]) {
                    t.delete(&NoBlocks, &k).unwrap();
                }
                assert_eq!(root_of(&t), s("rootAfter"));
                assert_eq!(Some(t.root_layer()), layer("layerAfter"));
            }
            "handles insertion that splits two layers down" => {
                let mut t = check_root(&keys, leaf, s("rootBefore"), layer("layerBefore"));
                let added = strs(&case["add"]);
                for k in &added {
                    t.put(&NoBlocks, k, leaf).unwrap();
                }
                assert_eq!(root_of(&t), s("rootAfterAdd"));
                assert_eq!(Some(t.root_layer()), layer("layerAfterAdd"));
                for k in &added {
                    t.delete(&NoBlocks, k).unwrap();
                }
                assert_eq!(root_of(&t), s("rootBefore"));
            }
            "handles new layers that are two higher than existing" => {
                let t0 = check_root(&keys, leaf, s("root0"), None);
                let mut t1 = t0.clone();
                for k in strs(&case["add1"]) {
                    t1.put(&NoBlocks, &k, leaf).unwrap();
                }
                assert_eq!(root_of(&t1), s("root1"));
                let mut back = t1.clone();
                for k in strs(&case["add1"]) {
                    back.delete(&NoBlocks, &k).unwrap();
                }
                assert_eq!(root_of(&back), s("root0"));
                let mut t2 = t0.clone();
                for k in strs(&case["add2"]) {
                    t2.put(&NoBlocks, &k, leaf).unwrap();
                }
                assert_eq!(root_of(&t2), s("root2"));
                t2.delete(&NoBlocks, "com.example.record/3jqfcqzm4fd2j")
                    .unwrap();
                assert_eq!(root_of(&t2), s("root1"));
                // The untouched clone still has its own root (copy-on-write).
                assert_eq!(root_of(&t0), s("root0"));
            }
            other => panic!("unknown edge case {other}"),
        }
        n += 1;
    }
    assert_eq!(n, 3);
}

// ---- commit proofs (Sync v1.1) -------------------------------------------------------------

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            out.push(p);
        }
    }
    out
}

#[track_caller]
fn check_commit_proof(case: &Value) {
    let name = case["comment"].as_str().unwrap();
    let leaf = cid(case["leafValue"].as_str().unwrap());
    let (keys, adds, dels) = (
        strs(&case["keys"]),
        strs(&case["adds"]),
        strs(&case["dels"]),
    );
    let before = cid(case["rootBeforeCommit"].as_str().unwrap());
    let after = cid(case["rootAfterCommit"].as_str().unwrap());

    let mut tree = inserted(&keys, leaf);
    assert_eq!(tree.root_cid().unwrap(), before, "{name}: rootBeforeCommit");
    let old = tree.clone();
    for k in &adds {
        tree.put(&NoBlocks, k, leaf).unwrap();
    }
    for k in &dels {
        tree.delete(&NoBlocks, k).unwrap();
    }
    assert_eq!(tree.root_cid().unwrap(), after, "{name}: rootAfterCommit");

    let touched: Vec<String> = adds.iter().chain(&dels).cloned().collect();
    let proof = tree.covering_proof_for(&NoBlocks, &touched).unwrap();
    let got: BTreeSet<String> = proof.cids().map(|c| c.to_string()).collect();
    let want: BTreeSet<String> = strs(&case["blocksInProof"]).into_iter().collect();
    assert_eq!(got, want, "{name}: blocksInProof");

    // The diff names exactly the ops of the commit.
    let d = diff(&old, &tree, &NoBlocks).unwrap();
    let mut expected_ops: Vec<RecordOp> = adds
        .iter()
        .map(|k| RecordOp {
            path: k.clone(),
            old: None,
            new: Some(leaf),
        })
        .chain(dels.iter().map(|k| RecordOp {
            path: k.clone(),
            old: Some(leaf),
            new: None,
        }))
        .collect();
    expected_ops.sort();
    assert_eq!(d.ops, expected_ops, "{name}: diff ops");

    // Inversion from the proof blocks alone, in every order.
    for order in permutations(&expected_ops) {
        let computed = invert_ops(&proof, after, &order).unwrap();
        assert_eq!(computed, before, "{name}: inverted root ({order:?})");
    }
    // And from what a firehose frame carries: new blocks ∪ proof.
    let mut carried = d.created_nodes.clone();
    carried.extend(proof.clone());
    verify_inversion(&carried, after, &d.ops, before).unwrap();
    // A wrong prevData, or an op that was not applied, is caught.
    assert!(matches!(
        verify_inversion(&proof, after, &d.ops, after),
        Err(MstError::InversionMismatch(_))
    ));
    let mut wrong = d.ops.clone();
    wrong[0].new = Some(cid(EMPTY_ROOT));
    assert!(matches!(
        invert_ops(&proof, after, &wrong),
        Err(MstError::OpMismatch(_))
    ));
}

#[test]
fn commit_proof_fixtures() {
    let cases = json("interop-tests/firehose/commit-proof-fixtures.json");
    let mut n = 0;
    for case in cases.as_array().unwrap() {
        check_commit_proof(case);
        n += 1;
    }
    assert_eq!(n, 6);
}

#[test]
fn inversion_without_proof_fails_cleanly() {
    let cases = json("interop-tests/firehose/commit-proof-fixtures.json");
    let case = &cases[0];
    let leaf = cid(case["leafValue"].as_str().unwrap());
    let mut tree = inserted(&strs(&case["keys"]), leaf);
    let old = tree.clone();
    for k in strs(&case["adds"]) {
        tree.put(&NoBlocks, &k, leaf).unwrap();
    }
    let d = diff(&old, &tree, &NoBlocks).unwrap();
    // Only the root: the rest of the path is missing.
    let root = tree.root_cid().unwrap();
    let only_root: BlockMap = d
        .created_nodes
        .iter()
        .filter(|(c, _)| **c == root)
        .map(|(c, b)| (*c, b.clone()))
        .collect();
    assert!(matches!(
        invert_ops(&only_root, root, &d.ops),
        Err(MstError::MissingBlock(_))
    ));
}

// ---- random trees: determinism, diff, inversion --------------------------------------------

fn random_key(rng: &mut StdRng) -> String {
    const COLLS: [&str; 4] = [
        "app.bsky.feed.post",
        "app.bsky.feed.like",
        "app.bsky.graph.follow",
        "com.example.x",
    ];
    const B32: &[u8] = b"234567abcdefghijklmnopqrstuvwxyz";
    let coll = COLLS[rng.gen_range(0..COLLS.len())];
    let rkey: String = (0..13).map(|_| B32[rng.gen_range(0..32)] as char).collect();
    format!("{coll}/{rkey}")
}

fn random_value(rng: &mut StdRng) -> Cid {
    cbor::cid_cbor(&rng.gen::<[u8; 8]>())
}

fn random_map(rng: &mut StdRng, n: usize) -> BTreeMap<String, Cid> {
    (0..n)
        .map(|_| (random_key(rng), random_value(rng)))
        .collect()
}

#[test]
fn root_is_independent_of_history() {
    let mut rng = StdRng::seed_from_u64(0x6d73_7431);
    let sizes = [0, 1, 2, 3, 5, 10, 40, 100, 300, 1000, 3000];
    let mut trials = 0;
    for &size in &sizes {
        for _ in 0..3 {
            let map = random_map(&mut rng, size);
            let expected = Mst::from_entries(map.clone()).unwrap().root_cid().unwrap();
            // Random insertion order, with extra keys inserted and later deleted, and some values
            // first set to something else and then updated.
            let extra = random_map(&mut rng, size / 3 + 1);
            let mut writes: Vec<(String, Option<Cid>)> = Vec::new();
            for (k, v) in &map {
                if rng.gen_bool(0.2) {
                    writes.push((k.clone(), Some(random_value(&mut rng))));
                }
                writes.push((k.clone(), Some(*v)));
            }
            for k in extra.keys().filter(|k| !map.contains_key(*k)) {
                writes.push((k.clone(), Some(random_value(&mut rng))));
                writes.push((k.clone(), None));
            }
            writes.shuffle(&mut rng);
            // The shuffle may put a key's final write before an earlier one: replay per key in order.
            let mut tree = Mst::new();
            for (k, v) in &writes {
                match v {
                    Some(v) => tree.put(&NoBlocks, k, *v).unwrap(),
                    None => tree.delete(&NoBlocks, k).unwrap(),
                };
            }
            for (k, v) in &map {
                tree.put(&NoBlocks, k, *v).unwrap();
            }
            for k in extra.keys().filter(|k| !map.contains_key(*k)) {
                tree.delete(&NoBlocks, k).unwrap();
            }
            assert_eq!(tree.root_cid().unwrap(), expected, "size {size}");
            let listed: BTreeMap<String, Cid> =
                tree.entries(&NoBlocks).unwrap().into_iter().collect();
            assert_eq!(listed, map);
            trials += 1;
        }
    }
    assert_eq!(trials, 33);
}

#[track_caller]
fn check_change(base: &BTreeMap<String, Cid>, rng: &mut StdRng, n_writes: usize) {
    let old_full = Mst::from_entries(base.clone()).unwrap();
    let old_root = old_full.root_cid().unwrap();
    let store = blocks_of(&old_full);
    // Work on a lazily loaded tree, as a server would.
    let old = Mst::load(&store, old_root).unwrap();

    let keys: Vec<&String> = base.keys().collect();
    let mut writes: Vec<(String, Option<Cid>)> = Vec::new();
    let mut target = base.clone();
    for _ in 0..n_writes {
        let w = match rng.gen_range(0..3) {
            0 if !keys.is_empty() => (keys[rng.gen_range(0..keys.len())].clone(), None),
            1 if !keys.is_empty() => (
                keys[rng.gen_range(0..keys.len())].clone(),
                Some(random_value(rng)),
            ),
            _ => (random_key(rng), Some(random_value(rng))),
        };
        match w.1 {
            Some(v) => target.insert(w.0.clone(), v),
            None => target.remove(&w.0),
        };
        writes.push(w);
    }
    let mut new = old.clone();
    new.apply_batch(&store, &writes).unwrap();
    let new_root = new.root_cid().unwrap();
    assert_eq!(
        new_root,
        Mst::from_entries(target.clone())
            .unwrap()
            .root_cid()
            .unwrap()
    );
    assert_eq!(old.root_cid().unwrap(), old_root, "old tree unchanged");

    let d = diff(&old, &new, &store).unwrap();
    let mut expected_ops: Vec<RecordOp> = Vec::new();
    for k in base.keys().chain(target.keys()).collect::<BTreeSet<_>>() {
        let (o, n) = (base.get(k).copied(), target.get(k).copied());
        if o != n {
            expected_ops.push(RecordOp {
                path: k.clone(),
                old: o,
                new: n,
            });
        }
    }
    assert_eq!(d.ops, expected_ops);

    // Node sets: created = new − old, deleted = old − new.
    let new_full = Mst::from_entries(target.clone()).unwrap();
    let new_nodes: BTreeSet<Cid> = blocks_of(&new_full).cids().copied().collect();
    let old_nodes: BTreeSet<Cid> = store.cids().copied().collect();
    let created: BTreeSet<Cid> = d.created_nodes.cids().copied().collect();
    assert_eq!(created, new_nodes.difference(&old_nodes).copied().collect());
    let deleted: BTreeSet<Cid> = d.deleted_nodes.iter().copied().collect();
    assert_eq!(deleted, old_nodes.difference(&new_nodes).copied().collect());

    // Invert from (created nodes ∪ covering proofs) only.
    let paths: Vec<&str> = d.ops.iter().map(|o| o.path.as_str()).collect();
    let mut carried = d.created_nodes.clone();
    carried.extend(new.covering_proof_for(&store, &paths).unwrap());
    verify_inversion(&carried, new_root, &d.ops, old_root).unwrap();
}

#[test]
fn inverting_a_diff_restores_the_old_root() {
    let mut rng = StdRng::seed_from_u64(0x6d73_7432);
    let mut trials = 0;
    for &(size, writes) in &[
        (0, 1),
        (1, 1),
        (5, 3),
        (50, 1),
        (50, 10),
        (500, 1),
        (500, 20),
        (2000, 1),
        (2000, 50),
    ] {
        for _ in 0..4 {
            let base = random_map(&mut rng, size);
            check_change(&base, &mut rng, writes);
            trials += 1;
        }
    }
    assert_eq!(trials, 36);
}

#[test]
fn lists_in_order_from_a_start_key() {
    let mut rng = StdRng::seed_from_u64(7);
    let map = random_map(&mut rng, 500);
    let tree = Mst::from_entries(map.clone()).unwrap();
    let store = blocks_of(&tree);
    let lazy = Mst::load(&store, tree.root_cid().unwrap()).unwrap();
    let all: Vec<(String, Cid)> = map.clone().into_iter().collect();
    assert_eq!(lazy.entries(&store).unwrap(), all);
    // Page through with an exclusive cursor.
    let mut pages = 0;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let start = match &cursor {
            None => Bound::Unbounded,
            Some(c) => Bound::Excluded(c.as_str()),
        };
        let page = lazy.list(&store, start, 37).unwrap();
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(|(k, _)| k.clone());
        seen.extend(page);
        pages += 1;
    }
    assert_eq!(seen, all);
    assert_eq!(pages, 14);
    // Inclusive start at an existing key, and at a key between entries.
    let (k100, _) = &all[100];
    assert_eq!(
        lazy.list(&store, Bound::Included(k100), 3).unwrap(),
        all[100..103].to_vec()
    );
    let between = format!("{k100}0");
    assert_eq!(
        lazy.list(&store, Bound::Included(&between), 2).unwrap(),
        all[101..103].to_vec()
    );
    assert_eq!(lazy.get(&store, k100).unwrap(), Some(all[100].1));
    assert_eq!(lazy.get(&store, &between).unwrap(), None);
}

#[test]
fn batch_is_all_or_nothing() {
    let mut rng = StdRng::seed_from_u64(9);
    let map = random_map(&mut rng, 200);
    let full = Mst::from_entries(map).unwrap();
    let root = full.root_cid().unwrap();
    let store = blocks_of(&full);
    let mut tree = Mst::load(&store, root).unwrap();
    let writes = vec![
        (random_key(&mut rng), Some(random_value(&mut rng))),
        ("bad key".to_string(), None),
    ];
    assert!(matches!(
        tree.apply_batch(&store, &writes),
        Err(MstError::InvalidKey(_))
    ));
    assert_eq!(tree.root_cid().unwrap(), root);
    // Missing blocks: error, tree unchanged.
    let writes = vec![(random_key(&mut rng), Some(random_value(&mut rng)))];
    assert!(matches!(
        tree.apply_batch(&NoBlocks, &writes),
        Err(MstError::MissingBlock(_))
    ));
    assert_eq!(tree.root_cid().unwrap(), root);
    assert!(matches!(
        Mst::from_entries([("a/b", root), ("a/b", root)]),
        Err(MstError::DuplicateKey(_))
    ));
}

// ---- malformed nodes -----------------------------------------------------------------------

fn entry(p: i128, k: &str, t: Option<Cid>, v: Cid) -> Ipld {
    let mut m = BTreeMap::new();
    m.insert("p".to_string(), Ipld::Integer(p));
    m.insert("k".to_string(), Ipld::Bytes(k.as_bytes().to_vec()));
    m.insert("t".to_string(), t.map_or(Ipld::Null, Ipld::Link));
    m.insert("v".to_string(), Ipld::Link(v));
    Ipld::Map(m)
}

fn node_ipld(l: Option<Cid>, e: Vec<Ipld>) -> Ipld {
    let mut m = BTreeMap::new();
    m.insert("l".to_string(), l.map_or(Ipld::Null, Ipld::Link));
    m.insert("e".to_string(), Ipld::List(e));
    Ipld::Map(m)
}

fn put_block(store: &mut BlockMap, value: &Ipld) -> Cid {
    let (c, bytes) = cbor::encode_with_cid(value).unwrap();
    store.insert(c, bytes);
    c
}

/// Two keys at layer 0 and one at layer 1, for hand-built nodes.
fn layer_keys() -> (String, String, String) {
    let mut l0 = Vec::new();
    let mut l1 = None;
    for i in 0.. {
        let k = format!("com.example.record/k{i:04}");
        match key_depth(k.as_bytes()) {
            0 if l0.len() < 2 => l0.push(k),
            1 if l1.is_none() => l1 = Some(k),
            _ => {}
        }
        if l0.len() == 2 && l1.is_some() {
            break;
        }
    }
    (l0[0].clone(), l0[1].clone(), l1.unwrap())
}

#[track_caller]
fn check_malformed(store: &BlockMap, root: Cid, why: &str) {
    match Mst::load_all(store, root) {
        Err(MstError::MalformedNode { reason, .. }) => {
            assert!(reason.contains(why), "{reason:?} should mention {why:?}")
        }
        other => panic!("expected malformed ({why}), got {other:?}"),
    }
}

#[test]
fn rejects_malformed_nodes() {
    let v = cid(EMPTY_ROOT);
    let (a, b, high) = layer_keys();
    assert!(a < b);
    let mut n = 0;
    let mut case = |nodes: &dyn Fn(&mut BlockMap) -> Cid, why: &str| {
        let mut store = BlockMap::new();
        let root = nodes(&mut store);
        check_malformed(&store, root, why);
        n += 1;
    };
    case(
        &|s| {
            put_block(
                s,
                &node_ipld(None, vec![entry(0, &b, None, v), entry(0, &a, None, v)]),
            )
        },
        "strictly increasing",
    );
    case(
        &|s| {
            put_block(
                s,
                &node_ipld(None, vec![entry(0, &a, None, v), entry(0, &b, None, v)]),
            )
        },
        "shared prefix",
    );
    case(
        &|s| put_block(s, &node_ipld(None, vec![entry(3, &a, None, v)])),
        "out of range",
    );
    case(
        &|s| {
            let p = common_prefix_len(a.as_bytes(), high.as_bytes());
            let second = entry(p as i128, &high[p..], None, v);
            put_block(s, &node_ipld(None, vec![entry(0, &a, None, v), second]))
        },
        "depth",
    );
    case(
        &|s| {
            let leaf = put_block(s, &node_ipld(None, vec![entry(0, &a, None, v)]));
            put_block(s, &node_ipld(Some(leaf), vec![]))
        },
        "top not trimmed",
    );
    case(
        &|s| {
            let empty = put_block(s, &node_ipld(None, vec![]));
            put_block(s, &node_ipld(Some(empty), vec![entry(0, &high, None, v)]))
        },
        "empty node below the root",
    );
    case(
        &|s| {
            // A layer-0 child whose key sorts after its parent's entry, in the left slot.
            let after = (0..)
                .map(|i| format!("zzz/k{i}"))
                .find(|k| key_depth(k.as_bytes()) == 0)
                .unwrap();
            let child = put_block(s, &node_ipld(None, vec![entry(0, &after, None, v)]));
            put_block(s, &node_ipld(Some(child), vec![entry(0, &high, None, v)]))
        },
        "above the subtree's range",
    );
    case(
        &|s| {
            let child = put_block(s, &node_ipld(None, vec![entry(0, &a, None, v)]));
            put_block(s, &node_ipld(None, vec![entry(0, &a, Some(child), v)]))
        },
        "layer-0 node has a subtree",
    );
    case(
        &|s| {
            let mut m = BTreeMap::new();
            m.insert("e".to_string(), Ipld::List(vec![]));
            put_block(s, &Ipld::Map(m))
        },
        "exactly the fields e and l",
    );
    case(
        &|s| {
            let mut e = BTreeMap::new();
            e.insert("p".to_string(), Ipld::Integer(0));
            e.insert("k".to_string(), Ipld::Bytes(a.as_bytes().to_vec()));
            e.insert("v".to_string(), Ipld::Link(v));
            e.insert("x".to_string(), Ipld::Null);
            put_block(s, &node_ipld(None, vec![Ipld::Map(e)]))
        },
        "entry t is missing",
    );
    case(
        &|s| put_block(s, &node_ipld(None, vec![entry(0, "no-slash", None, v)])),
        "invalid key",
    );
    case(&|s| put_block(s, &Ipld::List(vec![])), "not a map");
    case(
        &|s| {
            let c = put_block(s, &node_ipld(None, vec![entry(0, &a, None, v)]));
            let bytes = cbor::encode(&node_ipld(None, vec![entry(0, &b, None, v)])).unwrap();
            s.insert(c, bytes);
            c
        },
        "does not hash",
    );
    assert_eq!(n, 13);
    assert!(matches!(
        Mst::load(&NoBlocks, v),
        Err(MstError::MissingBlock(_))
    ));
}

/// Walks `root` over `blocks` to the end: the leaves in order, or the first error.
fn walk_all(blocks: &BlockMap, root: Cid) -> Result<Vec<(String, Cid)>, MstError> {
    let mut walk = super::TreeWalk::new(root);
    let mut leaves = Vec::new();
    while let Some(v) = walk.next(blocks)? {
        if let super::Visit::Leaf(k, c) = v {
            leaves.push((k, c));
        }
    }
    Ok(leaves)
}

#[test]
fn tree_walk_visits_every_entry_in_order_and_refuses_reused_subtrees() {
    let value = cid("bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454");
    let mut keys: Vec<String> = (0..500).map(|i| format!("com.example.record/{i:05}")).collect();
    let tree = inserted(&keys, value);
    let blocks = blocks_of(&tree);
    let root = tree.root_cid().unwrap();
    keys.sort();
    let got = walk_all(&blocks, root).unwrap();
    assert_eq!(got.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), keys);
    assert!(tree.root_layer() > 0, "the fixture must have several layers");
    // the empty tree: one node, no leaves
    let empty = Mst::new();
    assert_eq!(walk_all(&blocks_of(&empty), empty.root_cid().unwrap()).unwrap(), vec![]);
    // a missing node is reported, and the walk resumes once it is there
    let mut partial = BlockMap::new();
    let mut walk = super::TreeWalk::new(root);
    let mut n = 0;
    loop {
        match walk.next(&partial) {
            Ok(None) => break,
            Ok(Some(_)) => n += 1,
            Err(MstError::MissingBlock(c)) => partial.insert(c, blocks.get(&c).unwrap().to_vec()),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(n, 500 + blocks.len());
    // a node whose subtree slots both point at the same child: keys out of range
    let mut root_node = cbor::decode(blocks.get(&root).unwrap()).unwrap();
    let Ipld::Map(m) = &mut root_node else { panic!() };
    let Some(Ipld::Link(left)) = m.get("l").cloned() else { panic!("root has a left subtree") };
    let Some(Ipld::List(entries)) = m.get_mut("e") else { panic!() };
    let Some(Ipld::Map(first)) = entries.get_mut(0) else { panic!() };
    first.insert("t".into(), Ipld::Link(left));
    let bytes = cbor::encode(&root_node).unwrap();
    let forged = cbor::cid_cbor(&bytes);
    let mut reused = blocks.clone();
    reused.insert(forged, bytes);
    let err = walk_all(&reused, forged).unwrap_err();
    assert!(matches!(err, MstError::MalformedNode { .. }), "{err}");
    // a node whose bytes do not hash to the CID it is stored under (a forged link back up)
    let mut cyclic = blocks.clone();
    cyclic.insert(left, blocks.get(&root).unwrap().to_vec());
    assert!(walk_all(&cyclic, root).is_err());
}
