//! `domain::car::read_car` / `CarReader` over arbitrary bytes: never panics. On success every
//! block's bytes hash to its CID (the default reader verifies), and writing the parsed roots and
//! blocks back out and re-reading them gives the same roots and blocks; the block frames
//! (minimal varints, canonical CIDs) re-encode to exactly the input's block section.
#![no_main]

use domain::car::{self, CarReadOptions, CarReader};
use domain::cbor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The streaming reader without hash checks must not panic either, and must see at least
    // as far as the verifying one.
    let mut unverified = 0usize;
    if let Ok(reader) = CarReader::with_options(
        data,
        CarReadOptions { verify: false, ..CarReadOptions::default() },
    ) {
        for block in reader {
            if block.is_err() {
                break;
            }
            unverified += 1;
        }
    }

    let Ok((roots, blocks)) = car::read_car(data) else {
        return;
    };
    assert!(blocks.len() <= unverified, "verifying reader read more blocks than the plain one");
    for (cid, bytes) in &blocks {
        assert_eq!(cid.hash().code(), 0x12, "accepted a non-sha2-256 block {cid}");
        assert_eq!(cbor::cid_for(cid.codec(), bytes), *cid, "block does not hash to its CID");
    }

    let written = car::write_car(&roots, blocks.iter().cloned());
    let (roots2, blocks2) = match car::read_car(&written) {
        Ok(x) => x,
        Err(e) => panic!("re-reading a written CAR failed: {e}"),
    };
    assert_eq!(roots, roots2, "roots changed on write/read");
    assert_eq!(blocks, blocks2, "blocks changed on write/read");

    // Block frames are canonical: the input's block section equals the writer's.
    let header_in = data.len() - blocks.iter().map(|(c, b)| car::encode_block(c, b).len()).sum::<usize>();
    let header_out = car::encode_header(&roots).len();
    assert_eq!(
        &data[header_in..],
        &written[header_out..],
        "block frames are not canonical (non-minimal varint or CID re-encodes differently)"
    );
});
