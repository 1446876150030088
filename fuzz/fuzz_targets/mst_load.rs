//! `domain::mst::Mst::load_all` over a tree built from fuzzed blocks: never panics, and a tree it
//! accepts is canonical (rebuilding it from its entries gives the same root CID).
//!
//! The input is read as a CAR without hash checks. A fuzzer cannot forge SHA-256 links, so the
//! blocks are re-linked before loading: from the last block to the first, every CID link in a
//! block that names a later block of the input points to that block's new CID; any other link
//! points to a later block chosen by its digest's first byte (or stays as is for the last block).
//! Block 0 is the root. So seeds that are real MST exports (node blocks in pre-order) stay intact,
//! and mutations explore malformed nodes at every depth.
#![no_main]

use std::collections::HashMap;

use domain::car::{CarReadOptions, CarReader};
use domain::cbor::{self, Cid, Ipld};
use domain::mst::{BlockMap, Mst, NoBlocks};
use libfuzzer_sys::fuzz_target;

fn relink(value: Ipld, renamed: &HashMap<Cid, Cid>, later: &[Cid]) -> Ipld {
    match value {
        Ipld::Link(cid) => Ipld::Link(match renamed.get(&cid) {
            Some(new) => *new,
            None if !later.is_empty() => {
                let pick = cid.hash().digest().first().copied().unwrap_or(0) as usize % later.len();
                later[pick]
            }
            None => cid,
        }),
        Ipld::List(items) => Ipld::List(items.into_iter().map(|v| relink(v, renamed, later)).collect()),
        Ipld::Map(m) => Ipld::Map(m.into_iter().map(|(k, v)| (k, relink(v, renamed, later))).collect()),
        other => other,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = CarReader::with_options(
        data,
        CarReadOptions { verify: false, ..CarReadOptions::default() },
    ) else {
        return;
    };
    let raw: Vec<(Cid, Vec<u8>)> = reader.take(64).map_while(Result::ok).collect();
    if raw.is_empty() {
        return;
    }

    // Re-link from the last block to the first.
    let mut renamed: HashMap<Cid, Cid> = HashMap::new();
    let mut new_cids: Vec<Cid> = Vec::with_capacity(raw.len());
    let mut blocks = BlockMap::new();
    for (old_cid, bytes) in raw.iter().rev() {
        let bytes = match cbor::decode(bytes) {
            Ok(value) => match cbor::encode(&relink(value, &renamed, &new_cids)) {
                Ok(b) => b,
                Err(_) => bytes.clone(),
            },
            Err(_) => bytes.clone(),
        };
        let cid = cbor::cid_cbor(&bytes);
        renamed.entry(*old_cid).or_insert(cid);
        new_cids.push(cid);
        blocks.insert(cid, bytes);
    }
    let Some(root) = new_cids.last().copied() else {
        return;
    };

    // The lazy loader and the full loader must both be panic-free.
    if let Ok(lazy) = Mst::load(&blocks, root) {
        let _ = lazy.entries(&blocks);
        let _ = lazy.get(&blocks, "app.bsky.feed.post/3jzfcijpj2z2a");
    }
    let Ok(tree) = Mst::load_all(&blocks, root) else {
        return;
    };
    let entries = match tree.entries(&NoBlocks) {
        Ok(e) => e,
        Err(e) => panic!("entries of a fully loaded tree failed: {e}"),
    };
    for (key, value) in &entries {
        assert_eq!(tree.get(&NoBlocks, key).ok().flatten(), Some(*value), "get({key}) disagrees with entries");
    }
    match tree.root_cid() {
        Ok(cid) => assert_eq!(cid, root, "loaded tree re-hashes to another root"),
        Err(e) => panic!("root_cid of a loaded tree failed: {e}"),
    }
    let rebuilt = match Mst::from_entries(entries.iter().cloned()) {
        Ok(t) => t,
        Err(e) => panic!("load_all accepted entries that from_entries rejects: {e}"),
    };
    assert_eq!(
        rebuilt.root_cid().ok(),
        Some(root),
        "load_all accepted a non-canonical tree: rebuilding from its {} entries gives another root",
        entries.len()
    );
    let _ = tree.node_blocks(&NoBlocks);
});
