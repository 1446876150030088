//! The successor of a refresh token, derived rather than drawn at random.
//!
//! The log keeps only hashes of refresh-token ids, yet a client that retries a refresh within
//! the grace period must get the same successor back (reference `rotateRefreshToken`). So the
//! successor's `jti` is a keyed function of the presented one: whoever presents the old token can
//! be given the successor again, and nobody without the server secret can compute it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const CONTEXT: &[u8] = b"pds refresh successor v1\0";

/// `base64url(HMAC-SHA256(secret, context || jti))`: 43 characters, the shape of
/// `session_jwt::generate_jti`. `secret` is the JWT secret (`PDS_JWT_SECRET`).
pub fn successor_jti(secret: &[u8], presented_jti: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(CONTEXT);
    mac.update(presented_jti.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}
