//! The stateless DPoP nonce (the reference `dpop-nonce.ts` scheme): `nonce(c) =
//! base64url(HMAC-SHA256(secret, u64be(c)))` with `c = floor(now_ms / rotation)`. The value
//! handed out is always `nonce(c + 1)`; `nonce(c - 1)`, `nonce(c)` and `nonce(c + 1)` are
//! accepted, so a nonce stays good for two to three rotations (3 minutes with the default 60 s),
//! on every node that shares `PDS_DPOP_SECRET`, and is never consumed — a client firing many
//! requests with one remembered nonce never sees a failure.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::b64url;

/// Default rotation interval (the reference's `DPOP_NONCE_MAX_AGE / 3`).
pub const ROTATION_MS: i64 = 60_000;

#[derive(Clone)]
pub struct NonceKey {
    mac: Hmac<Sha256>,
    rotation_ms: i64,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceKey").field("rotation_ms", &self.rotation_ms).finish_non_exhaustive()
    }
}

impl NonceKey {
    /// `secret` is `PDS_DPOP_SECRET`: 64 hex digits are used as the 32 bytes they spell (as the
    /// reference), anything else as its UTF-8 bytes.
    pub fn new(secret: &str, rotation_ms: i64) -> NonceKey {
        let bytes = decode_hex(secret).unwrap_or_else(|| secret.as_bytes().to_vec());
        // HMAC accepts keys of any length.
        let mac = match Hmac::<Sha256>::new_from_slice(&bytes) {
            Ok(m) => m,
            Err(_) => unreachable_mac(),
        };
        NonceKey { mac, rotation_ms: rotation_ms.max(1) }
    }

    fn at(&self, counter: i64) -> String {
        let mut m = self.mac.clone();
        m.update(&counter.to_be_bytes());
        b64url(&m.finalize().into_bytes())
    }

    fn counter(&self, now_ms: i64) -> i64 {
        now_ms.div_euclid(self.rotation_ms)
    }

    /// The nonce to send in `DPoP-Nonce` now.
    pub fn issue(&self, now_ms: i64) -> String {
        self.at(self.counter(now_ms) + 1)
    }

    /// Whether `nonce` is one of the accepted values now.
    pub fn accepts(&self, nonce: &str, now_ms: i64) -> bool {
        let c = self.counter(now_ms);
        (c - 1..=c + 1).any(|k| super::ct_eq(&self.at(k), nonce))
    }
}

fn unreachable_mac() -> Hmac<Sha256> {
    // `new_from_slice` never fails for HMAC; keep a fixed key rather than panic.
    #[allow(clippy::expect_used)]
    Hmac::<Sha256>::new_from_slice(b"0").expect("HMAC takes any key length")
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..32).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn given_a_nonce_issued_at_t_it_is_accepted_for_two_rotations_on_any_node() {
        let a = NonceKey::new(&"ab".repeat(32), ROTATION_MS);
        let b = NonceKey::new(&"ab".repeat(32), ROTATION_MS);
        let other = NonceKey::new(&"cd".repeat(32), ROTATION_MS);
        let t = 1_700_000_000_000;
        let n = a.issue(t);
        for (dt, ok) in [(0, true), (59_999, true), (60_000, true), (119_999, true), (150_000, true), (180_000, false), (-1, false)] {
            let now = t - t % ROTATION_MS + dt;
            assert_eq!(b.accepts(&n, now), ok, "dt {dt}");
        }
        assert!(!other.accepts(&n, t));
        assert!(!a.accepts("", t));
        assert_eq!(a.issue(t), b.issue(t + 1));
    }
}
