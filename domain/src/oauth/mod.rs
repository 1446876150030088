//! atproto OAuth 2.1 (authorization server + resource server rules), pure: DPoP proofs, the
//! stateless DPoP nonce, PKCE, scopes and granular permissions, client metadata and redirect-URI
//! rules, the HS256 access token, and the OAuth aggregate (stream `oauth/<request id>`, which
//! becomes the session once a code is exchanged).
//!
//! No I/O, no clock: the caller passes `now` in. The only outside contact is the OS random
//! generator (ids, codes, refresh tokens).

pub mod access_token;
pub mod aggregate;
pub mod client;
pub mod client_assertion;
pub mod dpop;
pub mod jws;
pub mod nonce;
pub mod pkce;
pub mod scope;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.as_bytes()).ok()
}

/// `base64url(sha256(s))`: the `ath` of an access token, the S256 PKCE challenge, and the hash
/// under which codes and refresh tokens enter the log.
pub fn sha256_b64url(s: &str) -> String {
    b64url(&Sha256::digest(s.as_bytes()))
}

/// `prefix` + 32 random bytes as hex (`req-…`, `cod-…`, `ref-…`, `tok-…`, `dev-…`).
pub fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let mut out = String::with_capacity(prefix.len() + 64);
    out.push_str(prefix);
    for x in b {
        out.push_str(&format!("{x:02x}"));
    }
    out
}

/// Constant-time string equality.
pub fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
