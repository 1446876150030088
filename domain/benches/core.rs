//! Micro-benchmarks of the repository core: MST build and updates (diff + covering proof), CAR
//! write/read of a whole repo, DAG-CBOR of a typical post, commit signing.
//!
//! `cargo bench -p domain --bench core` (release profile). Plain `fn main`, no framework: each
//! figure is the median of several runs timed with `std::time::Instant`; the table goes to stdout.
//! `BENCH_KEYS=N` changes the repo size (default 100,000 keys).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use domain::car::{self, CarReadOptions, CarReader, CarWriter};
use domain::cbor::{self, Cid, Ipld};
use domain::commit::{Commit, UnsignedCommit};
use domain::crypto::{KeyType, Keypair};
use domain::mst::{self, BlockMap, Mst, NoBlocks};
use domain::syntax::Did;
use domain::tid::Tid;

const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";

/// Deterministic xorshift64*: the same keys and picks on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn map(pairs: Vec<(&str, Ipld)>) -> Ipld {
    Ipld::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// A typical `app.bsky.feed.post`: text, language, a mention facet, a reply.
fn post(i: u64) -> Ipld {
    let parent = cbor::cid_cbor(format!("parent {i}").as_bytes());
    let strong_ref = |cid: Cid| {
        map(vec![
            ("cid", Ipld::String(cid.to_string())),
            (
                "uri",
                Ipld::String(format!(
                    "at://{DID}/app.bsky.feed.post/3kabcdefgh{:03}",
                    i % 1000
                )),
            ),
        ])
    };
    map(vec![
        ("$type", Ipld::String("app.bsky.feed.post".into())),
        (
            "text",
            Ipld::String(format!(
                "Post number {i}: hello @alice.bsky.social, this is a typical post with a mention and a reply."
            )),
        ),
        ("createdAt", Ipld::String("2024-05-01T12:34:56.789Z".into())),
        ("langs", Ipld::List(vec![Ipld::String("en".into())])),
        (
            "facets",
            Ipld::List(vec![map(vec![
                (
                    "index",
                    map(vec![("byteStart", Ipld::Integer(21)), ("byteEnd", Ipld::Integer(39))]),
                ),
                (
                    "features",
                    Ipld::List(vec![map(vec![
                        ("$type", Ipld::String("app.bsky.richtext.facet#mention".into())),
                        ("did", Ipld::String("did:plc:z72i7hdynmk6r22z27h6tvur".into())),
                    ])]),
                ),
            ])]),
        ),
        ("reply", map(vec![("parent", strong_ref(parent)), ("root", strong_ref(parent))])),
    ])
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs `f` `reps` times, returning each run's duration.
fn runs<T>(reps: usize, mut f: impl FnMut() -> T) -> Vec<Duration> {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect()
}

/// Median time of one call of a fast `f`, measured in batches of `batch` calls.
fn per_op(batch: usize, reps: usize, mut f: impl FnMut()) -> Duration {
    let times = runs(reps, || {
        for _ in 0..batch {
            f();
        }
    });
    median(times) / batch as u32
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}
fn ns(d: Duration) -> String {
    format!("{:.0} ns", d.as_secs_f64() * 1e9)
}
fn mbps(bytes: usize, d: Duration) -> String {
    format!("{:.0} MB/s", bytes as f64 / 1e6 / d.as_secs_f64())
}

fn row(what: &str, figure: &str, note: &str) {
    println!("| {what:<52} | {figure:>14} | {note} |");
}

fn main() {
    let n: u64 = std::env::var("BENCH_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    println!(
        "domain core benchmarks ({n} keys; {} CPUs)\n",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!("| {:<52} | {:>14} | notes |", "operation", "figure");
    println!("|{:-<54}|{:->16}|-------|", "", "");

    // ---- records and keys
    let t0 = 1_714_567_890_000_000u64;
    let mut records: Vec<(String, Cid, Vec<u8>)> = Vec::with_capacity(n as usize);
    for i in 0..n {
        let key = format!(
            "app.bsky.feed.post/{}",
            Tid::from_parts(t0 + i * 1000 + rng.next() % 1000, 7).as_str()
        );
        let (cid, bytes) = cbor::encode_with_cid(&post(i)).unwrap();
        records.push((key, cid, bytes));
    }

    // ---- MST build
    let entries: Vec<(String, Cid)> = records.iter().map(|(k, c, _)| (k.clone(), *c)).collect();
    let build = runs(5, || {
        let tree = Mst::from_entries(entries.iter().cloned()).unwrap();
        tree.root_cid().unwrap()
    });
    let tree = Mst::from_entries(entries.iter().cloned()).unwrap();
    let root = tree.root_cid().unwrap();
    row(
        &format!("MST build, {n} keys (from_entries + root_cid)"),
        &ms(median(build.clone())),
        &format!("median of 5; {} per key", ns(median(build) / n as u32)),
    );
    let incremental = runs(3, || {
        let mut t = Mst::new();
        for (k, c) in &entries {
            t.put(&NoBlocks, k, *c).unwrap();
        }
        t.root_cid().unwrap()
    });
    let mut t = Mst::new();
    for (k, c) in &entries {
        t.put(&NoBlocks, k, *c).unwrap();
    }
    assert_eq!(
        t.root_cid().unwrap(),
        root,
        "incremental and bulk build disagree"
    );
    row(
        &format!("MST build, {n} keys, one put at a time + root_cid"),
        &ms(median(incremental.clone())),
        &format!(
            "median of 3; {} per key",
            ns(median(incremental) / n as u32)
        ),
    );

    // ---- 1,000 single-key updates: put + root_cid, diff, covering proof
    let ops = 1000;
    let mut cur = tree.clone();
    let (mut t_put, mut t_diff, mut t_proof, mut t_all) = (vec![], vec![], vec![], vec![]);
    let (mut diff_blocks, mut proof_blocks) = (0usize, 0usize);
    for j in 0..ops {
        let (key, _, _) = &records[(rng.next() % n) as usize];
        let value = cbor::cid_cbor(format!("edited {j}").as_bytes());
        let start = Instant::now();
        let mut next = cur.clone();
        next.put(&NoBlocks, key, value).unwrap();
        let new_root = next.root_cid().unwrap();
        let a = start.elapsed();
        let d = mst::diff(&cur, &next, &NoBlocks).unwrap();
        let b = start.elapsed();
        let proof = next.covering_proof(&NoBlocks, key).unwrap();
        let c = start.elapsed();
        black_box(new_root);
        diff_blocks += d.created_nodes.len();
        proof_blocks += proof.len();
        t_put.push(a);
        t_diff.push(b - a);
        t_proof.push(c - b);
        t_all.push(c);
        cur = next;
    }
    let total: Duration = t_all.iter().sum();
    row(
        &format!("{ops} updates: total (put+root_cid+diff+proof)"),
        &ms(total),
        &format!(
            "median {} / p99 {} per op; {:.1} new nodes, {:.1} proof blocks per op",
            us(median(t_all.clone())),
            us(pct(t_all, 0.99)),
            diff_blocks as f64 / ops as f64,
            proof_blocks as f64 / ops as f64
        ),
    );
    row(
        "  update: put + root_cid",
        &us(median(t_put.clone())),
        &format!("median; p99 {}", us(pct(t_put, 0.99))),
    );
    row(
        "  update: diff (old vs new tree)",
        &us(median(t_diff.clone())),
        &format!("median; p99 {}", us(pct(t_diff, 0.99))),
    );
    row(
        "  update: covering proof",
        &us(median(t_proof.clone())),
        &format!("median; p99 {}", us(pct(t_proof, 0.99))),
    );

    // 1,000 creates (new TIDs after the last one): the usual write.
    let mut t_create = vec![];
    let mut cur = tree.clone();
    for j in 0..ops {
        let key = format!(
            "app.bsky.feed.post/{}",
            Tid::from_parts(t0 + (n + j) * 1000, 7).as_str()
        );
        let value = cbor::cid_cbor(format!("created {j}").as_bytes());
        let start = Instant::now();
        let mut next = cur.clone();
        next.put(&NoBlocks, &key, value).unwrap();
        black_box(next.root_cid().unwrap());
        let d = mst::diff(&cur, &next, &NoBlocks).unwrap();
        let proof = next.covering_proof(&NoBlocks, &key).unwrap();
        black_box((d, proof));
        t_create.push(start.elapsed());
        cur = next;
    }
    row(
        &format!("{ops} creates (new TID keys): total"),
        &ms(t_create.iter().sum()),
        &format!(
            "median {} / p99 {} per op",
            us(median(t_create.clone())),
            us(pct(t_create, 0.99))
        ),
    );

    // ---- commit signing (K256), through domain::commit
    let key = Keypair::from_private_bytes(KeyType::K256, &[7u8; 32]).unwrap();
    let did = Did::parse(DID).unwrap();
    let rev = Tid::from_parts(t0 + n * 2000, 7);
    let sign = || {
        UnsignedCommit::new(did.clone(), root, rev)
            .sign(&key)
            .unwrap()
            .encode_with_cid()
            .unwrap()
    };
    let sign_t = per_op(50, 11, || {
        black_box(sign());
    });
    row(
        "commit sign K256 (sign + encode_with_cid)",
        &us(sign_t),
        "median of 11 batches of 50",
    );
    let (commit_cid, commit_bytes) = sign();
    let public = key.public_key();
    let verify_t = per_op(50, 11, || {
        let c = Commit::decode(black_box(&commit_bytes)).unwrap();
        c.verify(&public).unwrap();
    });
    row(
        "commit verify K256 (Commit::decode + verify)",
        &us(verify_t),
        "median of 11 batches of 50",
    );

    // ---- CAR write / read of the whole repo: commit, every MST node, every record
    let nodes = tree.node_blocks(&NoBlocks).unwrap();
    let export = runs(5, || tree.node_blocks(&NoBlocks).unwrap().len());
    row(
        &format!("MST node blocks for export ({} nodes)", nodes.len()),
        &ms(median(export)),
        "node_blocks, median of 5",
    );
    let write_once = || {
        let mut w = CarWriter::new(Vec::with_capacity(64 << 20), &[commit_cid]).unwrap();
        w.write_block(&commit_cid, &commit_bytes).unwrap();
        for (cid, bytes) in &nodes {
            w.write_block(cid, bytes).unwrap();
        }
        for (_, cid, bytes) in &records {
            w.write_block(cid, bytes).unwrap();
        }
        w.finish().unwrap()
    };
    let file = write_once();
    let blocks = 1 + nodes.len() + records.len();
    let write = median(runs(7, write_once));
    row(
        &format!(
            "CAR write, {blocks} blocks, {:.1} MB",
            file.len() as f64 / 1e6
        ),
        &ms(write),
        &format!(
            "{}; CarWriter into a Vec, median of 7",
            mbps(file.len(), write)
        ),
    );
    let read = median(runs(7, || car::read_car(&file).unwrap().1.len()));
    row(
        "CAR read (read_car, hashes verified)",
        &ms(read),
        &format!("{}; median of 7", mbps(file.len(), read)),
    );
    let read_nv = median(runs(7, || {
        let opts = CarReadOptions {
            verify: false,
            ..CarReadOptions::default()
        };
        CarReader::with_options(&file[..], opts)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .len()
    }));
    row(
        "CAR read (CarReader into a Vec, no hash check)",
        &ms(read_nv),
        &format!("{}; median of 7", mbps(file.len(), read_nv)),
    );
    let (_, read_blocks) = car::read_car(&file).unwrap();
    let load = median(runs(5, || {
        let bm: BlockMap = read_blocks.iter().cloned().collect();
        let t = Mst::load_all(&bm, root).unwrap();
        t.root_cid().unwrap()
    }));
    row(
        "MST load_all from the CAR's blocks (+ BlockMap fill)",
        &ms(load),
        "every node hash-checked and validated, median of 5",
    );

    // ---- DAG-CBOR of a typical post
    let p = post(42);
    let bytes = cbor::encode(&p).unwrap();
    let enc = per_op(10_000, 11, || {
        black_box(cbor::encode(black_box(&p)).unwrap());
    });
    let dec = per_op(10_000, 11, || {
        black_box(cbor::decode(black_box(&bytes)).unwrap());
    });
    let cid_t = per_op(10_000, 11, || {
        black_box(cbor::cid_cbor(black_box(&bytes)));
    });
    row(
        &format!("DAG-CBOR encode, typical post ({} B)", bytes.len()),
        &ns(enc),
        "median of 11 batches of 10,000",
    );
    row(
        "DAG-CBOR decode, typical post",
        &ns(dec),
        "median of 11 batches of 10,000",
    );
    row(
        "CID (sha2-256) of that post",
        &ns(cid_t),
        "median of 11 batches of 10,000",
    );
}
