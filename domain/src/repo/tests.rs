//! Decision tests for the repo aggregate: given (earlier writes) / when (a batch) / then (outcome
//! or error), the rules as a table; genesis; payloads; firehose frames.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use crate::car::read_car;
use crate::cbor::{self, Cid, Ipld};
use crate::commit::Commit;
use crate::crypto::{KeyType, Keypair};
use crate::mst::{BlockMap, Mst};
use crate::syntax::{is_valid_tid, Did};
use crate::testing::read_lexicon;
use crate::tid::TidClock;

use super::firehose::{self, Frame, StreamError};
use super::*;

pub(super) const NOW: u64 = 1_700_000_000_000_000;
const POST: &str = "app.bsky.feed.post";
const EMPTY_MST: &str = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";

// ---- harness --------------------------------------------------------------------------------

/// A repo as the command layer would hold it: state folded from events, the tree, the stored
/// blocks (what the `repo_blocks` read model would have).
pub(super) struct TestRepo {
    pub state: RepoState,
    pub mst: Mst,
    pub store: BlockMap,
    pub key: Keypair,
    pub clock: TidClock,
    pub now: u64,
    pub events: Vec<RepoEvent>,
}

impl TestRepo {
    pub fn genesis(did: &str, key: Keypair) -> TestRepo {
        let did = Did::parse(did).unwrap();
        let mut clock = TidClock::new(7);
        let g = decide_genesis(did.clone(), &key, &mut clock, NOW).unwrap();
        let state = RepoState::from_events(did, &g.events);
        TestRepo {
            state,
            mst: g.mst,
            store: g.new_blocks,
            key,
            clock,
            now: NOW,
            events: g.events,
        }
    }

    /// Decides a batch; on a commit, folds the event and stores the new blocks.
    pub fn apply(
        &mut self,
        writes: &[Write],
        swap_commit: Option<Cid>,
    ) -> Result<ApplyWritesOutcome, RepoError> {
        self.now += 1_000;
        let out = decide_apply_writes(
            &self.state,
            &self.mst,
            &self.store,
            writes,
            swap_commit,
            &self.key,
            &mut self.clock,
            self.now,
        )?;
        if let Some(c) = &out.commit {
            for e in c.events() {
                self.state.apply(&e);
                self.events.push(e);
            }
            self.mst = c.mst.clone();
            self.store.extend(c.new_blocks.clone());
        }
        Ok(out)
    }

    pub fn head(&self) -> &RepoRoot {
        self.state.root.as_ref().unwrap()
    }
}

fn key() -> Keypair {
    Keypair::from_private_bytes(KeyType::K256, &[7u8; 32]).unwrap()
}

pub(super) fn text(s: &str) -> Ipld {
    let mut m = BTreeMap::new();
    m.insert("text".to_string(), Ipld::String(s.to_string()));
    Ipld::Map(m)
}

fn with(mut v: Ipld, k: &str, x: Ipld) -> Ipld {
    if let Ipld::Map(m) = &mut v {
        m.insert(k.to_string(), x);
    }
    v
}

/// The CID the record gets once `$type` is filled in.
fn cid_of(collection: &str, v: &Ipld) -> Cid {
    let v = with(v.clone(), "$type", Ipld::String(collection.to_string()));
    cbor::cid_cbor(&cbor::encode(&v).unwrap())
}

pub(super) fn create(rkey: &str, v: Ipld) -> Write {
    Write::Create {
        collection: POST.into(),
        rkey: Some(rkey.into()),
        value: v,
    }
}
fn put(rkey: &str, v: Ipld, swap: Option<Option<Cid>>) -> Write {
    Write::Update {
        collection: POST.into(),
        rkey: rkey.into(),
        value: v,
        swap_record: swap,
    }
}
fn del(rkey: &str, swap: Option<Cid>) -> Write {
    Write::Delete {
        collection: POST.into(),
        rkey: rkey.into(),
        swap_record: swap,
    }
}

fn error_name(e: &RepoError) -> &'static str {
    match e {
        RepoError::TooManyWrites { .. } => "TooManyWrites",
        RepoError::InvalidCollection(_) => "InvalidCollection",
        RepoError::InvalidRecordKey(_) => "InvalidRecordKey",
        RepoError::InvalidRecord { .. } => "InvalidRecord",
        RepoError::RecordAlreadyExists(_) => "RecordAlreadyExists",
        RepoError::InvalidSwap(_) => "InvalidSwap",
        RepoError::RecordTooLarge { .. } => "RecordTooLarge",
        RepoError::CommitTooLarge { .. } => "CommitTooLarge",
        RepoError::NotInitialized(_) => "NotInitialized",
        RepoError::StaleTree { .. } => "StaleTree",
        RepoError::Cbor(_) => "Cbor",
        RepoError::Mst(_) => "Mst",
        RepoError::Commit(_) => "Commit",
    }
}

// ---- the rules, as a table ------------------------------------------------------------------

#[derive(Clone, Copy)]
enum SwapCommit {
    No,
    Current,
    Stale,
}

enum Then {
    /// Effects per write, and the firehose actions of the commit (`[]` = no commit).
    Ok(&'static [WriteEffect], &'static [&'static str]),
    Err(&'static str),
}

struct Case {
    name: &'static str,
    given: Vec<Write>,
    when: Vec<Write>,
    swap_commit: SwapCommit,
    then: Then,
}

fn cases() -> Vec<Case> {
    use WriteEffect::*;
    let a = text("a");
    let b = text("b");
    let ca = cid_of(POST, &a);
    let cb = cid_of(POST, &b);
    let big = |n: usize, t: &str| with(text(t), "blob", Ipld::Bytes(vec![1u8; n]));
    let legacy_blob = {
        let mut m = BTreeMap::new();
        m.insert("cid".to_string(), Ipld::String(ca.to_string()));
        m.insert("mimeType".to_string(), Ipld::String("image/png".into()));
        with(text("x"), "img", Ipld::Map(m))
    };
    let c = |name, given: Vec<Write>, when: Vec<Write>, then| Case {
        name,
        given,
        when,
        swap_commit: SwapCommit::No,
        then,
    };
    vec![
        c(
            "create",
            vec![],
            vec![create("a", a.clone())],
            Then::Ok(&[Created], &["create"]),
        ),
        c(
            "create on an existing path",
            vec![create("a", a.clone())],
            vec![create("a", b.clone())],
            Then::Err("RecordAlreadyExists"),
        ),
        c(
            "create with a matching $type",
            vec![],
            vec![create(
                "a",
                with(a.clone(), "$type", Ipld::String(POST.into())),
            )],
            Then::Ok(&[Created], &["create"]),
        ),
        c(
            "create with another $type",
            vec![],
            vec![create(
                "a",
                with(
                    a.clone(),
                    "$type",
                    Ipld::String("app.bsky.feed.like".into()),
                ),
            )],
            Then::Err("InvalidRecord"),
        ),
        c(
            "create with a non-string $type",
            vec![],
            vec![create("a", with(a.clone(), "$type", Ipld::Integer(1)))],
            Then::Err("InvalidRecord"),
        ),
        c(
            "a record that is not an object",
            vec![],
            vec![create("a", Ipld::String("hi".into()))],
            Then::Err("InvalidRecord"),
        ),
        c(
            "a record with a float",
            vec![],
            vec![create("a", with(a.clone(), "n", Ipld::Float(1.5)))],
            Then::Err("InvalidRecord"),
        ),
        c(
            "a legacy blob ref",
            vec![],
            vec![create("a", legacy_blob)],
            Then::Err("InvalidRecord"),
        ),
        c(
            "invalid collection",
            vec![],
            vec![Write::Create {
                collection: "not an nsid".into(),
                rkey: None,
                value: a.clone(),
            }],
            Then::Err("InvalidCollection"),
        ),
        c(
            "rkey `..`",
            vec![],
            vec![create("..", a.clone())],
            Then::Err("InvalidRecordKey"),
        ),
        c(
            "rkey with a slash",
            vec![],
            vec![create("a/b", a.clone())],
            Then::Err("InvalidRecordKey"),
        ),
        c(
            "rkey of 513 chars",
            vec![],
            vec![create(&"k".repeat(513), a.clone())],
            Then::Err("InvalidRecordKey"),
        ),
        c(
            "put on an absent path creates",
            vec![],
            vec![put("a", a.clone(), None)],
            Then::Ok(&[Created], &["create"]),
        ),
        c(
            "put a new value updates",
            vec![create("a", a.clone())],
            vec![put("a", b.clone(), None)],
            Then::Ok(&[Updated], &["update"]),
        ),
        c(
            "put the same value is a no-op",
            vec![create("a", a.clone())],
            vec![put("a", a.clone(), None)],
            Then::Ok(&[Unchanged], &[]),
        ),
        c(
            "put swapRecord null on absent",
            vec![],
            vec![put("a", a.clone(), Some(None))],
            Then::Ok(&[Created], &["create"]),
        ),
        c(
            "put swapRecord null on existing",
            vec![create("a", a.clone())],
            vec![put("a", b.clone(), Some(None))],
            Then::Err("InvalidSwap"),
        ),
        c(
            "put swapRecord current",
            vec![create("a", a.clone())],
            vec![put("a", b.clone(), Some(Some(ca)))],
            Then::Ok(&[Updated], &["update"]),
        ),
        c(
            "put swapRecord stale",
            vec![create("a", a.clone())],
            vec![put("a", b.clone(), Some(Some(cb)))],
            Then::Err("InvalidSwap"),
        ),
        c(
            "put same value, stale swapRecord",
            vec![create("a", a.clone())],
            vec![put("a", a.clone(), Some(Some(cb)))],
            Then::Err("InvalidSwap"),
        ),
        c(
            "put swapRecord on absent",
            vec![],
            vec![put("a", a.clone(), Some(Some(ca)))],
            Then::Err("InvalidSwap"),
        ),
        c(
            "delete",
            vec![create("a", a.clone())],
            vec![del("a", None)],
            Then::Ok(&[Deleted], &["delete"]),
        ),
        c(
            "delete an absent record is a no-op",
            vec![],
            vec![del("a", None)],
            Then::Ok(&[Unchanged], &[]),
        ),
        c(
            "delete swapRecord current",
            vec![create("a", a.clone())],
            vec![del("a", Some(ca))],
            Then::Ok(&[Deleted], &["delete"]),
        ),
        c(
            "delete swapRecord stale",
            vec![create("a", a.clone())],
            vec![del("a", Some(cb))],
            Then::Err("InvalidSwap"),
        ),
        c(
            "delete swapRecord on absent",
            vec![],
            vec![del("a", Some(ca))],
            Then::Err("InvalidSwap"),
        ),
        c(
            "no-ops beside a change: one op",
            vec![],
            vec![del("x", None), create("a", a.clone())],
            Then::Ok(&[Unchanged, Created], &["create"]),
        ),
        c(
            "create then delete in one batch: no commit",
            vec![],
            vec![create("a", a.clone()), del("a", None)],
            Then::Ok(&[Created, Deleted], &[]),
        ),
        c(
            "update then update: one net op",
            vec![create("a", a.clone())],
            vec![put("a", b.clone(), None), put("a", text("c"), None)],
            Then::Ok(&[Updated, Updated], &["update"]),
        ),
        c(
            "writes apply in order",
            vec![],
            vec![create("a", a.clone()), put("a", b.clone(), Some(Some(ca)))],
            Then::Ok(&[Created, Updated], &["create"]),
        ),
        c(
            "an error anywhere refuses the batch",
            vec![],
            vec![create("a", a.clone()), create("a", b.clone())],
            Then::Err("RecordAlreadyExists"),
        ),
        c(
            "200 writes",
            vec![],
            (0..200)
                .map(|i| create(&format!("r{i}"), text(&i.to_string())))
                .collect(),
            Then::Ok(&[Created; 200], &["create"; 200]),
        ),
        c(
            "201 writes",
            vec![],
            (0..201)
                .map(|i| create(&format!("r{i}"), text(&i.to_string())))
                .collect(),
            Then::Err("TooManyWrites"),
        ),
        c(
            "a record just under 1,000,000 bytes",
            vec![],
            vec![create("a", big(999_900, "a"))],
            Then::Ok(&[Created], &["create"]),
        ),
        c(
            "the same big record three times is stored once",
            vec![],
            vec![
                create("a", big(700_000, "x")),
                create("b", big(700_000, "x")),
                create("c", big(700_000, "x")),
            ],
            Then::Ok(&[Created; 3], &["create"; 3]),
        ),
        c(
            "a record over 1,000,000 bytes",
            vec![],
            vec![create("a", big(1_000_001, "a"))],
            Then::Err("RecordTooLarge"),
        ),
        c(
            "commit blocks over 2,000,000 bytes",
            vec![],
            vec![
                create("a", big(700_000, "a")),
                create("b", big(700_000, "b")),
                create("c", big(700_000, "c")),
            ],
            Then::Err("CommitTooLarge"),
        ),
        Case {
            name: "swapCommit current",
            given: vec![create("a", a.clone())],
            when: vec![put("a", b.clone(), None)],
            swap_commit: SwapCommit::Current,
            then: Then::Ok(&[Updated], &["update"]),
        },
        Case {
            name: "swapCommit stale",
            given: vec![create("a", a.clone())],
            when: vec![put("a", b.clone(), None)],
            swap_commit: SwapCommit::Stale,
            then: Then::Err("InvalidSwap"),
        },
        Case {
            name: "swapCommit current, nothing changes",
            given: vec![],
            when: vec![del("a", None)],
            swap_commit: SwapCommit::Current,
            then: Then::Ok(&[Unchanged], &[]),
        },
    ]
}

#[track_caller]
fn check(case: Case) {
    let mut repo = TestRepo::genesis("did:plc:abcdefghijklmnopqrstuvwx", key());
    let genesis_commit = repo.head().commit;
    if !case.given.is_empty() {
        repo.apply(&case.given, None).unwrap();
    }
    let before = repo.head().clone();
    let swap = match case.swap_commit {
        SwapCommit::No => None,
        SwapCommit::Current => Some(before.commit),
        SwapCommit::Stale => Some(genesis_commit),
    };
    let got = repo.apply(&case.when, swap);
    let name = case.name;
    match (case.then, got) {
        (Then::Err(want), Err(e)) => {
            assert_eq!(error_name(&e), want, "{name}: {e}");
            assert_eq!(
                repo.head(),
                &before,
                "{name}: a refused batch changes nothing"
            );
        }
        (Then::Err(want), Ok(o)) => panic!("{name}: expected {want}, got {:?}", o.results),
        (Then::Ok(..), Err(e)) => panic!("{name}: unexpected error {e:?}"),
        (Then::Ok(effects, actions), Ok(out)) => {
            let got: Vec<WriteEffect> = out.results.iter().map(|r| r.effect).collect();
            assert_eq!(got, effects, "{name}: effects");
            for (r, w) in out.results.iter().zip(&case.when) {
                assert_eq!(
                    r.uri,
                    format!(
                        "at://did:plc:abcdefghijklmnopqrstuvwx/{}/{}",
                        r.collection, r.rkey
                    ),
                    "{name}"
                );
                if let Write::Create { rkey: Some(k), .. } | Write::Update { rkey: k, .. } = w {
                    assert_eq!(&r.rkey, k, "{name}");
                }
            }
            match out.commit {
                None => {
                    assert!(actions.is_empty(), "{name}: expected a commit");
                    assert_eq!(repo.head(), &before, "{name}: no commit, same head");
                }
                Some(c) => {
                    let got: Vec<&str> = c.event.ops.iter().map(|o| o.action.as_str()).collect();
                    assert_eq!(got, actions, "{name}: ops");
                    assert_eq!(c.event.since, Some(before.rev), "{name}: since");
                    assert_eq!(c.event.prev_data, Some(before.data), "{name}: prevData");
                    assert!(c.event.rev > before.rev, "{name}: rev increases");
                    assert_eq!(repo.head(), &c.root, "{name}: state follows the event");
                }
            }
        }
    }
}

#[test]
fn write_rules() {
    let cases = cases();
    assert!(cases.len() >= 30);
    for case in cases {
        check(case);
    }
}

#[test]
fn create_without_rkey_gets_a_tid() {
    let mut repo = TestRepo::genesis("did:plc:abcdefghijklmnopqrstuvwx", key());
    let w = Write::Create {
        collection: POST.into(),
        rkey: None,
        value: text("hi"),
    };
    let out = repo.apply(&[w.clone(), w], None).unwrap();
    assert!(is_valid_tid(&out.results[0].rkey));
    assert!(out.results[1].rkey > out.results[0].rkey);
    assert_eq!(out.commit.unwrap().event.ops.len(), 2);
}

#[test]
fn type_is_filled_in_and_blobs_are_collected() {
    let mut repo = TestRepo::genesis("did:plc:abcdefghijklmnopqrstuvwx", key());
    let blob = cbor::cid_for(cbor::RAW, b"image bytes");
    let mut b = BTreeMap::new();
    b.insert("$type".to_string(), Ipld::String("blob".into()));
    b.insert("ref".to_string(), Ipld::Link(blob));
    b.insert("mimeType".to_string(), Ipld::String("image/png".into()));
    b.insert("size".to_string(), Ipld::Integer(11));
    let v = with(text("pic"), "embed", Ipld::List(vec![Ipld::Map(b)]));
    let out = repo.apply(&[create("a", v.clone())], None).unwrap();
    let c = out.commit.unwrap();
    assert_eq!(c.event.blobs, vec![blob]);
    let cid = out.results[0].cid.unwrap();
    assert_eq!(cid, cid_of(POST, &v));
    let stored = cbor::decode(c.new_blocks.get(&cid).unwrap()).unwrap();
    assert_eq!(stored, with(v, "$type", Ipld::String(POST.into())));
}

#[test]
fn a_repo_without_genesis_refuses_writes() {
    let did = Did::parse("did:plc:abcdefghijklmnopqrstuvwx").unwrap();
    let state = RepoState::new(did);
    let err = decide_apply_writes(
        &state,
        &Mst::new(),
        &BlockMap::new(),
        &[create("a", text("a"))],
        None,
        &key(),
        &mut TidClock::new(1),
        NOW,
    )
    .unwrap_err();
    assert_eq!(error_name(&err), "NotInitialized");
}

#[test]
fn a_tree_that_is_not_the_head_is_refused() {
    let repo = TestRepo::genesis("did:plc:abcdefghijklmnopqrstuvwx", key());
    let other = Mst::from_entries([(format!("{POST}/x"), cid_of(POST, &text("x")))]).unwrap();
    let err = decide_apply_writes(
        &repo.state,
        &other,
        &repo.store,
        &[create("a", text("a"))],
        None,
        &key(),
        &mut TidClock::new(1),
        NOW,
    )
    .unwrap_err();
    assert_eq!(error_name(&err), "StaleTree");
}

#[test]
fn the_commit_carries_a_checkable_slice() {
    let mut repo = TestRepo::genesis("did:plc:abcdefghijklmnopqrstuvwx", key());
    repo.apply(&[create("a", text("a")), create("b", text("b"))], None)
        .unwrap();
    let out = repo
        .apply(
            &[
                put("a", text("a2"), None),
                del("b", None),
                create("c", text("c")),
            ],
            None,
        )
        .unwrap();
    let c = out.commit.unwrap();
    let (roots, blocks) = read_car(&c.event.blocks).unwrap();
    assert_eq!(roots, vec![c.event.commit]);
    assert_eq!(blocks[0].0, c.event.commit, "the commit block comes first");
    let slice: BlockMap = blocks.into_iter().collect();
    // Every new block is in the slice; the deleted record's block is not; the updated record's
    // old block is not.
    for cid in c.new_blocks.cids() {
        assert!(slice.contains(cid));
    }
    assert!(!slice.contains(&cid_of(POST, &text("b"))));
    assert!(!slice.contains(&cid_of(POST, &text("a"))));
    let commit = Commit::decode(slice.get(&c.event.commit).unwrap()).unwrap();
    assert_eq!((commit.data, commit.rev), (c.event.data, c.event.rev));
    commit.verify(&key().public_key()).unwrap();
    let ops: Vec<_> = c.event.ops.iter().map(|o| o.to_record_op()).collect();
    crate::mst::verify_inversion(&slice, c.event.data, &ops, c.event.prev_data.unwrap()).unwrap();
    // update carries prev; delete has no cid; create has no prev.
    let by_action: Vec<(&str, bool, bool)> = c
        .event
        .ops
        .iter()
        .map(|o| (o.action.as_str(), o.cid.is_some(), o.prev.is_some()))
        .collect();
    assert_eq!(
        by_action,
        vec![
            ("update", true, true),
            ("delete", false, true),
            ("create", true, false)
        ]
    );
}

// ---- genesis --------------------------------------------------------------------------------

#[test]
fn genesis_commits_the_empty_repo_then_syncs() {
    let did = Did::parse("did:plc:abcdefghijklmnopqrstuvwx").unwrap();
    let g = decide_genesis(did.clone(), &key(), &mut TidClock::new(3), NOW).unwrap();
    let [RepoEvent::Committed(c), RepoEvent::Synced(s)] = g.events.as_slice() else {
        panic!("expected committed then synced, got {:?}", g.events);
    };
    assert!(g.events.iter().all(|e| e.is_public()));
    assert_eq!(c.data.to_string(), EMPTY_MST);
    assert_eq!(
        (c.since, c.prev_data, c.ops.len(), c.blobs.len()),
        (None, None, 0, 0)
    );
    assert_eq!((s.commit, s.rev, s.data), (c.commit, c.rev, c.data));

    let (roots, blocks) = read_car(&c.blocks).unwrap();
    assert_eq!(roots, vec![c.commit]);
    let cids: BTreeSet<String> = blocks.iter().map(|b| b.0.to_string()).collect();
    assert_eq!(
        cids,
        BTreeSet::from([c.commit.to_string(), EMPTY_MST.to_string()])
    );
    let commit = Commit::decode(&blocks[0].1).unwrap();
    commit.verify(&key().public_key()).unwrap();
    assert_eq!(commit.did, did);

    let (roots, blocks) = read_car(&s.blocks).unwrap();
    assert_eq!(roots, vec![c.commit]);
    assert_eq!(blocks.len(), 1, "#sync carries only the commit block");
    assert_eq!(blocks[0].0, c.commit);

    let state = RepoState::from_events(did, &g.events);
    assert_eq!(state.root, Some(g.root.clone()));
    assert_eq!(g.new_blocks.len(), 2);
}

// ---- payloads -------------------------------------------------------------------------------

#[test]
fn payloads_round_trip() {
    let mut repo = TestRepo::genesis("did:plc:abcdefghijklmnopqrstuvwx", key());
    repo.apply(&[create("a", text("a")), create("b", text("b"))], None)
        .unwrap();
    repo.apply(&[put("a", text("a2"), None), del("b", None)], None)
        .unwrap();
    assert_eq!(repo.events.len(), 4);
    for e in &repo.events {
        let bytes = e.to_payload().unwrap();
        let back = RepoEvent::from_payload(e.event_type(), e.event_version(), &bytes).unwrap();
        assert_eq!(&back, e);
        assert_eq!(back.to_payload().unwrap(), bytes);
    }
}

#[test]
fn unreadable_payloads_are_errors() {
    let repo = TestRepo::genesis("did:plc:abcdefghijklmnopqrstuvwx", key());
    let e = &repo.events[0];
    let bytes = e.to_payload().unwrap();
    let unknown = |t: &str, v: u32| {
        matches!(
            RepoEvent::from_payload(t, v, &bytes),
            Err(EventError::Unknown { .. })
        )
    };
    assert!(unknown("repo.committed", 2));
    assert!(unknown("repo.rebased", 1));
    assert!(matches!(
        RepoEvent::from_payload(REPO_SYNCED, 1, &bytes),
        Err(EventError::Field { .. })
    ));
    assert!(matches!(
        RepoEvent::from_payload(REPO_COMMITTED, 1, &bytes[1..]),
        Err(EventError::Cbor { .. })
    ));
    let Ipld::Map(mut m) = cbor::decode(&bytes).unwrap() else {
        panic!()
    };
    m.insert("extra".into(), Ipld::Null);
    let extra = cbor::encode(&Ipld::Map(m.clone())).unwrap();
    assert!(
        matches!(RepoEvent::from_payload(REPO_COMMITTED, 1, &extra), Err(EventError::Field { field, .. }) if field == "extra")
    );
    m.remove("extra");
    m.remove("rev");
    let missing = cbor::encode(&Ipld::Map(m)).unwrap();
    assert!(
        matches!(RepoEvent::from_payload(REPO_COMMITTED, 1, &missing), Err(EventError::Field { field, .. }) if field == "rev")
    );
}

// ---- firehose frames ------------------------------------------------------------------------

fn lexicon_def(def: &str) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_str(&read_lexicon(
        "com/atproto/sync/subscribeRepos.json",
    ))
    .unwrap();
    doc["defs"][def].clone()
}

fn names(v: &serde_json::Value) -> BTreeSet<String> {
    match v {
        serde_json::Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        serde_json::Value::Object(o) => o.keys().cloned().collect(),
        _ => BTreeSet::new(),
    }
}

fn message(bytes: &[u8], want_t: &str) -> BTreeMap<String, Ipld> {
    match firehose::decode_frame(bytes).unwrap() {
        Frame::Message { t, body } => {
            assert_eq!(t, want_t);
            assert!(!body.contains_key("$type"));
            body
        }
        f => panic!("expected a message, got {f:?}"),
    }
}

const TIME: &str = "2024-01-02T03:04:05.678Z";

#[test]
fn commit_frames_match_the_lexicon() {
    let mut repo = TestRepo::genesis("did:plc:abcdefghijklmnopqrstuvwx", key());
    repo.apply(&[create("a", text("a")), create("b", text("b"))], None)
        .unwrap();
    repo.apply(
        &[
            put("a", text("a2"), None),
            del("b", None),
            create("c", text("c")),
        ],
        None,
    )
    .unwrap();
    let def = lexicon_def("commit");
    let required = names(&def["required"]);
    let known = names(&def["properties"]);
    let op_def = lexicon_def("repoOp");
    let op_required = names(&op_def["required"]);

    let commits: Vec<&Committed> = repo
        .events
        .iter()
        .filter_map(|e| match e {
            RepoEvent::Committed(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(commits.len(), 3);
    for (i, c) in commits.into_iter().enumerate() {
        let seq = 10 + i as i64;
        let bytes = firehose::commit_frame(c, seq, TIME).unwrap();
        // Canonical header: {t: "#commit", op: 1}.
        assert!(bytes.starts_with(&[
            0xa2, 0x61, b't', 0x67, b'#', b'c', b'o', b'm', b'm', b'i', b't', 0x62, b'o', b'p',
            0x01
        ]));
        let body = message(&bytes, "#commit");
        let keys: BTreeSet<String> = body.keys().cloned().collect();
        let mut want = required.clone();
        if c.prev_data.is_some() {
            want.insert("prevData".into());
        }
        assert_eq!(
            keys, want,
            "#commit fields are the lexicon's required ones (+ prevData)"
        );
        assert!(keys.is_subset(&known));
        assert_eq!(body["seq"], Ipld::Integer(seq.into()));
        assert_eq!(body["rebase"], Ipld::Bool(false));
        assert_eq!(body["tooBig"], Ipld::Bool(false));
        assert_eq!(body["repo"], Ipld::String(c.did.to_string()));
        assert_eq!(body["commit"], Ipld::Link(c.commit));
        assert_eq!(body["rev"], Ipld::String(c.rev.to_string()));
        assert_eq!(
            body["since"],
            c.since.map_or(Ipld::Null, |s| Ipld::String(s.to_string()))
        );
        assert_eq!(body["blocks"], Ipld::Bytes(c.blocks.clone()));
        assert_eq!(body["blobs"], Ipld::List(vec![]));
        assert_eq!(body["time"], Ipld::String(TIME.into()));
        if let Some(p) = c.prev_data {
            assert_eq!(body["prevData"], Ipld::Link(p));
        }
        let Ipld::List(ops) = &body["ops"] else {
            panic!()
        };
        assert_eq!(ops.len(), c.ops.len());
        for (wire, op) in ops.iter().zip(&c.ops) {
            let Ipld::Map(m) = wire else { panic!() };
            let keys: BTreeSet<String> = m.keys().cloned().collect();
            let mut want = op_required.clone();
            if op.prev.is_some() {
                want.insert("prev".into());
            }
            assert_eq!(keys, want, "repoOp: prev only when there was a record");
            assert_eq!(m["action"], Ipld::String(op.action.as_str().into()));
            assert_eq!(m["path"], Ipld::String(op.path.clone()));
            assert_eq!(m["cid"], op.cid.map_or(Ipld::Null, Ipld::Link));
        }
    }
}

#[test]
fn other_frames_round_trip() {
    let repo = TestRepo::genesis("did:plc:abcdefghijklmnopqrstuvwx", key());
    let RepoEvent::Synced(s) = &repo.events[1] else {
        panic!()
    };
    let did = "did:plc:abcdefghijklmnopqrstuvwx";
    let body = message(
        &firehose::repo_event_frame(&repo.events[1], 5, TIME).unwrap(),
        "#sync",
    );
    assert_eq!(
        body.keys().cloned().collect::<BTreeSet<_>>(),
        names(&lexicon_def("sync")["required"])
    );
    assert_eq!(body["blocks"], Ipld::Bytes(s.blocks.clone()));
    assert_eq!(body["rev"], Ipld::String(s.rev.to_string()));

    type Check = (Vec<u8>, &'static str, Vec<(&'static str, Ipld)>);
    let table: Vec<Check> = vec![
        (
            firehose::identity_frame(did, Some("alice.test"), 1, TIME).unwrap(),
            "#identity",
            vec![
                ("seq", Ipld::Integer(1)),
                ("did", Ipld::String(did.into())),
                ("time", Ipld::String(TIME.into())),
                ("handle", Ipld::String("alice.test".into())),
            ],
        ),
        (
            firehose::identity_frame(did, None, 2, TIME).unwrap(),
            "#identity",
            vec![
                ("seq", Ipld::Integer(2)),
                ("did", Ipld::String(did.into())),
                ("time", Ipld::String(TIME.into())),
            ],
        ),
        (
            firehose::account_frame(did, true, None, 3, TIME).unwrap(),
            "#account",
            vec![
                ("seq", Ipld::Integer(3)),
                ("did", Ipld::String(did.into())),
                ("time", Ipld::String(TIME.into())),
                ("active", Ipld::Bool(true)),
            ],
        ),
        (
            firehose::account_frame(did, false, Some("deactivated"), 4, TIME).unwrap(),
            "#account",
            vec![
                ("seq", Ipld::Integer(4)),
                ("did", Ipld::String(did.into())),
                ("time", Ipld::String(TIME.into())),
                ("active", Ipld::Bool(false)),
                ("status", Ipld::String("deactivated".into())),
            ],
        ),
        (
            firehose::info_frame("OutdatedCursor", Some("too old")).unwrap(),
            "#info",
            vec![
                ("name", Ipld::String("OutdatedCursor".into())),
                ("message", Ipld::String("too old".into())),
            ],
        ),
        (
            firehose::info_frame("OutdatedCursor", None).unwrap(),
            "#info",
            vec![("name", Ipld::String("OutdatedCursor".into()))],
        ),
    ];
    for (bytes, t, fields) in table {
        let body = message(&bytes, t);
        let want: BTreeMap<String, Ipld> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(body, want, "{t}");
        let def = lexicon_def(&t[1..]);
        let keys: BTreeSet<String> = body.keys().cloned().collect();
        assert!(names(&def["required"]).is_subset(&keys), "{t}");
        assert!(keys.is_subset(&names(&def["properties"])), "{t}");
    }

    for (err, msg) in [
        (StreamError::FutureCursor, Some("Cursor in the future.")),
        (StreamError::ConsumerTooSlow, None),
    ] {
        let bytes = firehose::error_frame(err, msg).unwrap();
        assert!(
            bytes.starts_with(&[0xa1, 0x62, b'o', b'p', 0x20]),
            "header {{op: -1}}"
        );
        assert_eq!(
            firehose::decode_frame(&bytes).unwrap(),
            Frame::Error {
                error: err.as_str().into(),
                message: msg.map(String::from)
            }
        );
    }
    assert!(firehose::decode_frame(&[0xa1]).is_err());
}
