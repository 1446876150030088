//! DPoP proof verification (RFC 9449 as the reference `dpop-manager.ts` applies it): `typ
//! dpop+jwt`, ES256 over the embedded public JWK, `iat` within [now − 190 s, now + 180 s], a
//! `jti`, `htm` equal to the method, `htu` (query and fragment ignored) equal to the request URL
//! built from the configured public origin (never from Host headers), the nonce (any problem →
//! [`DpopError::UseNonce`], so clients retry), `ath` when a token is presented (and absent
//! otherwise); the result carries the key's RFC 7638 thumbprint (`jkt`).
//!
//! The `jti` replay check is the caller's (a shared store), and it runs after this, so a nonce
//! failure is always reported as such.

use serde_json::Value;

use super::jws;
use super::nonce::NonceKey;
use super::sha256_b64url;

/// How far in the past an `iat` may be (the reference: maxTokenAge 10 s + tolerance 180 s).
pub const MAX_AGE_SECS: i64 = 190;
/// How far in the future an `iat` may be (clock tolerance).
pub const MAX_SKEW_SECS: i64 = 180;
/// How long a proof's `jti` must be remembered: the whole accepted `iat` window.
pub const JTI_TTL_SECS: i64 = MAX_AGE_SECS + MAX_SKEW_SECS;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// `use_dpop_nonce`: missing, stale or unknown nonce.
    #[error("{0}")]
    UseNonce(&'static str),
    /// `invalid_dpop_proof`.
    #[error("{0}")]
    Invalid(String),
}

/// What the proof must match.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    pub method: &'a str,
    /// `public origin + path` of this request.
    pub url: &'a str,
    /// The access token of a resource request.
    pub access_token: Option<&'a str>,
    pub now_ms: i64,
    /// `None`: nonces not required.
    pub nonces: Option<&'a NonceKey>,
}

/// A valid proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub jti: String,
    /// RFC 7638 thumbprint of the proof key.
    pub jkt: String,
    pub iat: i64,
}

fn invalid(m: impl Into<String>) -> DpopError {
    DpopError::Invalid(m.into())
}

/// `scheme://host[:port]/path` with scheme and host lowercased, the default port dropped, and
/// query and fragment removed.
pub fn normalize_htu(url: &str) -> Option<String> {
    let url = url.split(['#', '?']).next().unwrap_or("");
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let mut authority = authority.to_ascii_lowercase();
    let default = if scheme == "https" { ":443" } else { ":80" };
    if let Some(stripped) = authority.strip_suffix(default) {
        authority = stripped.to_owned();
    }
    Some(format!("{scheme}://{authority}{path}"))
}

pub fn verify(proof: &str, expect: &Expect<'_>) -> Result<Proof, DpopError> {
    let c = jws::parse(proof).map_err(|e| invalid(format!("Invalid DPoP proof: {e}")))?;
    if c.header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(invalid("Invalid DPoP proof: typ must be dpop+jwt"));
    }
    let jwk = c.header.get("jwk").and_then(Value::as_object).ok_or_else(|| invalid("DPoP proof has no embedded jwk"))?;
    let key = jws::p256_key(jwk).map_err(|e| invalid(format!("Invalid DPoP proof: {e}")))?;
    jws::verify_es256(&c, &key).map_err(|e| invalid(format!("Invalid DPoP proof: {e}")))?;
    let p = &c.payload;
    let iat = p.get("iat").and_then(Value::as_i64).ok_or_else(|| invalid("DPoP proof has no iat"))?;
    let now = expect.now_ms.div_euclid(1000);
    if iat > now + MAX_SKEW_SECS {
        return Err(invalid("DPoP proof iat is in the future"));
    }
    if iat < now - MAX_AGE_SECS {
        return Err(invalid("DPoP proof is too old (iat)"));
    }
    let jti = match p.get("jti").and_then(Value::as_str) {
        Some(j) if !j.is_empty() && j.len() <= 256 => j.to_owned(),
        _ => return Err(invalid("DPoP proof has no valid jti")),
    };
    if p.get("htm").and_then(Value::as_str) != Some(expect.method) {
        return Err(invalid("DPoP htm mismatch"));
    }
    let htu = p.get("htu").and_then(Value::as_str).and_then(normalize_htu);
    if htu.is_none() || htu != normalize_htu(expect.url) {
        return Err(invalid("DPoP htu mismatch"));
    }
    if let Some(nonces) = expect.nonces {
        match p.get("nonce") {
            None => return Err(DpopError::UseNonce("Authorization server requires nonce in DPoP proof")),
            Some(Value::String(n)) if nonces.accepts(n, expect.now_ms) => {}
            Some(_) => return Err(DpopError::UseNonce("DPoP nonce mismatch")),
        }
    }
    match (expect.access_token, p.get("ath")) {
        (None, None) => {}
        (None, Some(_)) => return Err(invalid("DPoP ath not allowed without an access token")),
        (Some(_), None) => return Err(invalid("DPoP ath is required with an access token")),
        (Some(t), Some(ath)) => {
            if ath.as_str().is_none_or(|a| !super::ct_eq(a, &sha256_b64url(t))) {
                return Err(invalid("DPoP ath mismatch"));
            }
        }
    }
    let jkt = jws::thumbprint(jwk).map_err(|e| invalid(format!("Invalid DPoP proof: {e}")))?;
    Ok(Proof { jti, jkt, iat })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const URL: &str = "https://pds.example.com/oauth/token";
    const NOW: i64 = 1_700_000_000_000;

    fn proof(sk: &p256::ecdsa::SigningKey, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let mut h = json!({"alg":"ES256","typ":"dpop+jwt","jwk": jws::public_jwk(sk.verifying_key())});
        let nonce = NonceKey::new("s", 60_000).issue(NOW);
        let mut p = json!({"jti":"j1","htm":"POST","htu":URL,"iat":NOW/1000,"nonce":nonce});
        edit(&mut h, &mut p);
        jws::sign_es256(sk, &h, &p)
    }

    #[track_caller]
    fn check(edit: impl FnOnce(&mut Value, &mut Value), token: Option<&str>, expected: Result<(), DpopError>) {
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let key = NonceKey::new("s", 60_000);
        let e = Expect { method: "POST", url: URL, access_token: token, now_ms: NOW, nonces: Some(&key) };
        let got = verify(&proof(&sk, edit), &e).map(|p| {
            assert_eq!(p.jkt, jws::thumbprint(&jws::public_jwk(sk.verifying_key())).unwrap());
        });
        assert_eq!(got, expected);
    }

    fn inv(m: &str) -> Result<(), DpopError> {
        Err(DpopError::Invalid(m.into()))
    }

    #[test]
    fn proofs() {
        check(|_, _| {}, None, Ok(()));
        check(|_, p| p["htu"] = json!("https://PDS.example.com:443/oauth/token?x=1#f"), None, Ok(()));
        check(|h, _| h["typ"] = json!("jwt"), None, inv("Invalid DPoP proof: typ must be dpop+jwt"));
        check(|_, p| p["htm"] = json!("GET"), None, inv("DPoP htm mismatch"));
        check(|_, p| p["htm"] = json!("post"), None, inv("DPoP htm mismatch"));
        check(|_, p| p["htu"] = json!("https://evil.example.com/oauth/token"), None, inv("DPoP htu mismatch"));
        check(|_, p| p["htu"] = json!("https://pds.example.com/oauth/par"), None, inv("DPoP htu mismatch"));
        check(|_, p| p["iat"] = json!(NOW / 1000 - 600), None, inv("DPoP proof is too old (iat)"));
        check(|_, p| p["iat"] = json!(NOW / 1000 + 600), None, inv("DPoP proof iat is in the future"));
        check(|_, p| p["jti"] = json!(""), None, inv("DPoP proof has no valid jti"));
        check(|_, p| drop(p.as_object_mut().unwrap().remove("nonce")), None, Err(DpopError::UseNonce("Authorization server requires nonce in DPoP proof")));
        check(|_, p| p["nonce"] = json!("stale"), None, Err(DpopError::UseNonce("DPoP nonce mismatch")));
        check(|_, p| p["ath"] = json!(sha256_b64url("tok")), Some("tok"), Ok(()));
        check(|_, p| p["ath"] = json!(sha256_b64url("other")), Some("tok"), inv("DPoP ath mismatch"));
        check(|_, _| {}, Some("tok"), inv("DPoP ath is required with an access token"));
        check(|_, p| p["ath"] = json!("x"), None, inv("DPoP ath not allowed without an access token"));
    }

    #[test]
    fn a_proof_signed_by_another_key_than_its_jwk_is_refused() {
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let other = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let h = json!({"alg":"ES256","typ":"dpop+jwt","jwk": jws::public_jwk(other.verifying_key())});
        let t = jws::sign_es256(&sk, &h, &json!({"jti":"j","htm":"POST","htu":URL,"iat":NOW/1000}));
        let e = Expect { method: "POST", url: URL, access_token: None, now_ms: NOW, nonces: None };
        assert_eq!(verify(&t, &e), Err(DpopError::Invalid("Invalid DPoP proof: signature verification failed".into())));
    }
}
