//! `domain::service_jwt::{parse, verify}` (inter-service auth). The bytes as a token through
//! `parse` and, when parsed, `verify` against a fixed key; and header and claims JSON from the
//! bytes (split at the first NUL) signed by that key (ES256K), then parsed and verified. Oracle:
//! never panics; an accepted token names the expected audience and method and is not expired.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use domain::crypto::{KeyType, Keypair};
use domain::service_jwt::{parse, verify};
use libfuzzer_sys::fuzz_target;

const AUD: &str = "did:web:pds.example";
const LXM: &str = "com.atproto.server.createAccount";
const NOW: i64 = 1_700_000_000;

fn check(key: &Keypair, token: &str) {
    let Ok(parsed) = parse(token) else { return };
    for lxm in [None, Some(LXM)] {
        if let Ok(claims) = verify(&parsed, &key.public_key(), AUD, lxm, NOW) {
            assert_eq!(claims.aud, AUD, "accepted a token for another audience");
            assert!(claims.exp >= NOW, "accepted an expired token");
            if let Some(m) = lxm {
                assert_eq!(claims.lxm.as_deref(), Some(m), "accepted a token for another method");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(key) = Keypair::from_private_bytes(KeyType::K256, &[9u8; 32]) else { return };
    check(&key, &String::from_utf8_lossy(data));
    let Some(i) = data.iter().position(|b| *b == 0) else { return };
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(&data[..i]), URL_SAFE_NO_PAD.encode(&data[i + 1..]));
    let sig = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()));
    check(&key, &format!("{input}.{sig}"));
});
