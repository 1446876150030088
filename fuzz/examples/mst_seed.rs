//! Writes real MST exports (CAR: root node first, nodes in pre-order, then one record) into the
//! fuzz corpora: `cargo run --example mst_seed -- CORPUS_DIR`. Called by `seed.sh`.
use std::collections::BTreeMap;
use std::path::Path;

use domain::car;
use domain::cbor::{self, Ipld};
use domain::mst::{Mst, NoBlocks};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: mst_seed CORPUS_DIR")?;
    let record = Ipld::Map(BTreeMap::from([
        ("$type".to_string(), Ipld::String("app.bsky.feed.post".into())),
        ("text".to_string(), Ipld::String("hello".into())),
        ("createdAt".to_string(), Ipld::String("2024-01-01T00:00:00.000Z".into())),
    ]));
    let (rec_cid, rec_bytes) = cbor::encode_with_cid(&record)?;
    for n in [0usize, 1, 2, 5, 16, 40, 120] {
        let keys = (0..n).map(|i| (format!("app.bsky.feed.post/3k{i:011}"), rec_cid));
        let tree = Mst::from_entries(keys)?;
        let root = tree.root_cid()?;
        let mut blocks = tree.node_blocks(&NoBlocks)?;
        for (cid, bytes) in &blocks {
            write(&dir, "cbor_decode", bytes)?;
            let _ = cid;
        }
        blocks.push((rec_cid, rec_bytes.clone()));
        let file = car::write_car(&[root], blocks);
        write(&dir, "car_read", &file)?;
        write(&dir, "mst_load", &file)?;
    }
    write(&dir, "cbor_decode", &rec_bytes)?;
    Ok(())
}

fn write(dir: &str, target: &str, bytes: &[u8]) -> std::io::Result<()> {
    let d = Path::new(dir).join(target);
    std::fs::create_dir_all(&d)?;
    let name = cbor::cid_for(cbor::RAW, bytes).to_string();
    std::fs::write(d.join(name), bytes)
}
