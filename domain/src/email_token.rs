//! Emailed tokens (reference `email-token.ts`): 10 base32 characters shown as `XXXXX-XXXXX`,
//! uppercase, accepted case-insensitively for 15 minutes. The log keeps only
//! [`hash`]: HMAC-SHA256 under the server's JWT secret, so a copy of the log does not let anyone
//! try the 2^50 possible tokens offline.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// How long a token is accepted: 15 minutes, in microseconds.
pub const LIFETIME_MICROS: i64 = 15 * 60 * 1_000_000;

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A fresh token, `XXXXX-XXXXX` (uppercase base32).
pub fn generate() -> String {
    let mut bytes = [0u8; 10];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let chars: String = bytes.iter().map(|b| char::from(ALPHABET[usize::from(b % 32)])).collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

/// The keyed hash the log keeps of `token` (compared uppercase and trimmed, as the reference
/// compares `token.toUpperCase()`).
pub fn hash(secret: &[u8], token: &str) -> String {
    // HMAC takes keys of any length: this `else` cannot run.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else { return String::new() };
    mac.update(token.trim().to_ascii_uppercase().as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_reference_shape_and_hash_case_insensitively() {
        let t = generate();
        assert_eq!(t.len(), 11);
        assert_eq!(&t[5..6], "-");
        assert!(t.bytes().all(|b| b == b'-' || ALPHABET.contains(&b)), "{t}");
        assert_ne!(generate(), t);
        let table = [
            (hash(b"s", &t), hash(b"s", &t.to_ascii_lowercase()), true),
            (hash(b"s", &t), hash(b"s", &format!(" {t} ")), true),
            (hash(b"s", &t), hash(b"other", &t), false),
            (hash(b"s", "AAAAA-AAAAA"), hash(b"s", "AAAAA-AAAAB"), false),
        ];
        for (i, (a, b, equal)) in table.into_iter().enumerate() {
            assert_eq!(a == b, equal, "case {i}");
        }
    }
}
