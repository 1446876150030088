//! `domain::session_jwt::verify` (the legacy HS256 access/refresh tokens). Two inputs from one
//! byte string: the bytes as a token (almost always refused early), and — so the checks after the
//! signature run too — header and claims JSON taken from the bytes (split at the first NUL) and
//! signed with the verifier's own key. Oracle: never panics; an accepted token has the expected
//! audience and an `exp` in the future.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use domain::session_jwt::{verify, JwtKey, TokenType};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-secret";
const AUD: &str = "did:web:pds.example";
const NOW: i64 = 1_700_000_000;

fn check(key: &JwtKey, token: &str) {
    for kind in [TokenType::Access, TokenType::Refresh] {
        if let Ok(claims) = verify(key, token, kind, AUD, NOW) {
            assert_eq!(claims.aud, AUD, "accepted a token for another audience");
            assert!(claims.exp > NOW, "accepted an expired token");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(key) = JwtKey::new(SECRET) else { return };
    check(&key, &String::from_utf8_lossy(data));
    let (h, p) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => return,
    };
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(h), URL_SAFE_NO_PAD.encode(p));
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(SECRET) else { return };
    mac.update(input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    check(&key, &format!("{input}.{sig}"));
});
