//! `domain::oauth::dpop::verify` (DPoP proofs, RFC 9449 as atproto profiles it). The bytes as a
//! proof, and — so the checks after the signature run — header and payload JSON from the bytes
//! (split at the first NUL) with the header's `jwk` replaced by a fixed key's, signed ES256 by it.
//! Oracle: never panics; an accepted proof has the expected `htm`/`htu`, and its `jkt` is the
//! thumbprint of the key that signed it.
#![no_main]

use domain::oauth::dpop::{verify, Expect};
use domain::oauth::jws;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const NOW_MS: i64 = 1_700_000_000_000;
const URL: &str = "https://pds.example/xrpc/com.atproto.server.getSession";

fn expect(access: Option<&str>) -> Expect<'_> {
    Expect { method: "GET", url: URL, access_token: access, now_ms: NOW_MS, nonces: None }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = verify(&text, &expect(None));
    let Some(i) = data.iter().position(|b| *b == 0) else { return };
    let (Ok(Value::Object(mut header)), Ok(payload)) =
        (serde_json::from_slice::<Value>(&data[..i]), serde_json::from_slice::<Value>(&data[i + 1..]))
    else {
        return;
    };
    let Ok(key) = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]) else { return };
    let jwk = jws::public_jwk(key.verifying_key());
    let Ok(jkt) = jws::thumbprint(&jwk) else { return };
    header.insert("jwk".into(), Value::Object(jwk));
    let proof = jws::sign_es256(&key, &Value::Object(header), &payload);
    for access in [None, Some("an-access-token")] {
        if let Ok(p) = verify(&proof, &expect(access)) {
            assert_eq!(p.jkt, jkt, "accepted proof bound to another key");
            assert_eq!(payload.get("htm").and_then(Value::as_str), Some("GET"));
        }
    }
});
