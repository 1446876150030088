//! `domain::cbor::decode` on arbitrary bytes. The decoder is strict (canonical DAG-CBOR only), so
//! whatever it accepts must re-encode to exactly the input: decode -> encode is the identity.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = domain::cbor::decode(data) {
        match domain::cbor::encode(&value) {
            Ok(bytes) => assert!(
                bytes == data,
                "decode accepted non-canonical input: re-encoded {} bytes differ from the {} input bytes",
                bytes.len(),
                data.len()
            ),
            Err(e) => panic!("decode accepted a value that encode rejects: {e}"),
        }
    }
});
