//! Randomized Sync v1.1 check: a consumer holding only each `#commit`'s CAR slice can verify the
//! signature, follow the rev chain, and invert the ops back to `prevData`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::car::read_car;
use crate::cbor::{Cid, Ipld};
use crate::commit::Commit;
use crate::crypto::{KeyType, Keypair};
use crate::mst::{verify_inversion, BlockMap};

use super::firehose::{self, Frame};
use super::tests::{text, TestRepo};
use super::*;

const COLLECTIONS: [&str; 3] = [
    "app.bsky.feed.post",
    "app.bsky.feed.like",
    "app.bsky.graph.follow",
];

/// A write chosen against the model of the repo (so most writes are meaningful, some are no-ops).
fn random_write(rng: &mut StdRng, model: &BTreeMap<String, Ipld>, n: &mut u64) -> Write {
    let collection = COLLECTIONS[rng.gen_range(0..COLLECTIONS.len())].to_string();
    let rkey = format!("k{}", rng.gen_range(0..60));
    let path = format!("{collection}/{rkey}");
    let exists = model.contains_key(&path);
    *n += 1;
    let value = text(&format!("v{n}"));
    match rng.gen_range(0..10) {
        0 => Write::Create {
            collection,
            rkey: None,
            value,
        },
        1..=3 if !exists => Write::Create {
            collection,
            rkey: Some(rkey),
            value,
        },
        1..=5 => Write::Update {
            collection,
            rkey,
            value,
            swap_record: None,
        },
        6 if exists => Write::Update {
            collection,
            rkey,
            value: model[&path].clone(), // the same record again: a no-op
            swap_record: None,
        },
        _ => Write::Delete {
            collection,
            rkey,
            swap_record: None,
        },
    }
}

fn path_of(w: &Write, result: &WriteResult) -> String {
    let c = match w {
        Write::Create { collection, .. }
        | Write::Update { collection, .. }
        | Write::Delete { collection, .. } => collection,
    };
    format!("{c}/{}", result.rkey)
}

#[test]
fn every_commit_slice_inverts_to_prev_data() {
    let mut rng = StdRng::seed_from_u64(0x5f_11c1);
    let dids = [
        ("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", KeyType::K256),
        ("did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", KeyType::P256),
        ("did:web:example.com", KeyType::K256),
    ];
    let mut repos: Vec<(TestRepo, BTreeMap<String, Ipld>)> = dids
        .iter()
        .enumerate()
        .map(|(i, (did, kt))| {
            let key = Keypair::from_private_bytes(*kt, &[i as u8 + 1; 32]).unwrap();
            (TestRepo::genesis(did, key), BTreeMap::new())
        })
        .collect();

    let (mut writes_total, mut commits, mut ops_total, mut no_op_batches, mut n) =
        (0, 0, 0, 0, 0u64);
    let mut actions = [0usize; 3];
    for round in 0..1_500 {
        let (repo, model) = &mut repos[rng.gen_range(0..3)];
        let count = rng.gen_range(1..=8);
        // Writes are drawn against a working copy of the model, so a batch may touch a path twice.
        let mut working = model.clone();
        let mut writes = Vec::new();
        for _ in 0..count {
            let w = random_write(&mut rng, &working, &mut n);
            if let Write::Create {
                collection,
                rkey: Some(rkey),
                value,
            }
            | Write::Update {
                collection,
                rkey,
                value,
                ..
            } = &w
            {
                working.insert(format!("{collection}/{rkey}"), value.clone());
            }
            if let Write::Delete {
                collection, rkey, ..
            } = &w
            {
                working.remove(&format!("{collection}/{rkey}"));
            }
            writes.push(w);
        }
        let prev = repo.head().clone();
        let swap = if rng.gen_bool(0.3) {
            Some(prev.commit)
        } else {
            None
        };
        let out = repo.apply(&writes, swap).unwrap();
        writes_total += writes.len();
        for (w, r) in writes.iter().zip(&out.results) {
            let path = path_of(w, r);
            match w {
                Write::Delete { .. } => {
                    model.remove(&path);
                }
                Write::Create { value, .. } | Write::Update { value, .. } => {
                    model.insert(path, value.clone());
                }
            }
        }

        let Some(c) = out.commit else {
            no_op_batches += 1;
            assert_eq!(repo.head(), &prev, "round {round}: no commit, same head");
            continue;
        };
        commits += 1;
        let ev = &c.event;
        ops_total += ev.ops.len();
        for op in &ev.ops {
            actions[op.action as usize] += 1;
        }

        // What a consumer does with only the #commit frame.
        let frame = firehose::commit_frame(ev, commits as i64, "2024-01-01T00:00:00.000Z").unwrap();
        let Frame::Message { body, .. } = firehose::decode_frame(&frame).unwrap() else {
            panic!()
        };
        let Ipld::Bytes(car) = &body["blocks"] else {
            panic!()
        };
        let (roots, blocks) = read_car(car).unwrap();
        assert_eq!(
            roots,
            vec![ev.commit],
            "round {round}: CAR root is the commit"
        );
        let slice: BlockMap = blocks.into_iter().collect();
        let commit = Commit::decode(slice.get(&ev.commit).expect("commit block in slice")).unwrap();
        commit.verify(&repo.key.public_key()).unwrap();
        assert_eq!(commit.did.as_str(), repo.state.did.as_str());
        assert_eq!((commit.data, commit.rev), (ev.data, ev.rev));
        assert!(ev.rev > prev.rev, "round {round}: rev strictly increases");
        assert_eq!(ev.since, Some(prev.rev));
        assert_eq!(ev.prev_data, Some(prev.data));
        let ops: Vec<_> = ev.ops.iter().map(|o| o.to_record_op()).collect();
        verify_inversion(&slice, ev.data, &ops, prev.data)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        // Created/updated record blocks are in the slice; every op path is unique.
        for op in &ev.ops {
            if let Some(cid) = op.cid {
                assert!(slice.contains(&cid), "round {round}: record block {cid}");
            }
        }
        let mut paths: Vec<&str> = ev.ops.iter().map(|o| o.path.as_str()).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ev.ops.len());
        // The stored payload reads back the same.
        let e = RepoEvent::Committed(ev.clone());
        assert_eq!(
            RepoEvent::from_payload(e.event_type(), 1, &e.to_payload().unwrap()).unwrap(),
            e
        );

        // Now and then: the tree equals the model.
        if commits % 50 == 0 {
            let entries: Vec<(String, Cid)> = repo.mst.entries(&repo.store).unwrap();
            let want: Vec<String> = model.keys().cloned().collect();
            let got: Vec<String> = entries.into_iter().map(|(k, _)| k).collect();
            assert_eq!(got, want, "round {round}: tree keys");
        }
    }
    // The run exercised what it claims to.
    assert!(writes_total >= 5_000, "{writes_total} writes");
    assert!(commits >= 1_000, "{commits} commits");
    assert!(no_op_batches > 0);
    assert!(
        actions.iter().all(|&a| a > 100),
        "creates/updates/deletes: {actions:?}"
    );
    assert!(ops_total > 3_000);
}
