//! `private_key_jwt` client authentication (RFC 7523 as the atproto profile uses it): an ES256
//! JWT signed by one of the client's JWKS keys (by `kid` when given), `iss` = `sub` = the
//! client id, `aud` naming this authorization server (its issuer or the endpoint URL), `iat`
//! within 60 s, not expired, with a `jti` — whose single use the caller enforces in the replay
//! store, for [`Assertion::replay_ttl_secs`].

use serde_json::Value;

use super::jws;

/// How old (or how far ahead) an assertion's `iat` may be.
pub const MAX_AGE_SECS: i64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("Invalid client assertion: {0}")]
    Invalid(&'static str),
}

/// A verified assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    pub jti: String,
    pub exp: Option<i64>,
    /// Thumbprint of the key that signed it (must differ from the DPoP key).
    pub key_jkt: String,
}

impl Assertion {
    /// How long the `jti` must be remembered: until `exp` (at most an hour), else 66 s.
    pub fn replay_ttl_secs(&self, now: i64) -> i64 {
        self.exp.map(|e| (e - now).clamp(1, 3600)).unwrap_or(66)
    }
}

pub fn verify(assertion: &str, jwks: &Value, client_id: &str, audiences: &[&str], now: i64) -> Result<Assertion, AssertionError> {
    let bad = AssertionError::Invalid;
    let c = jws::parse(assertion).map_err(|_| bad("malformed JWT"))?;
    let kid = c.header.get("kid").and_then(Value::as_str);
    let keys = jwks.get("keys").and_then(Value::as_array).ok_or(bad("the client has no keys"))?;
    let key = keys
        .iter()
        .filter_map(Value::as_object)
        .filter(|k| kid.is_none() || k.get("kid").and_then(Value::as_str) == kid)
        .find(|k| jws::p256_key(k).is_ok_and(|key| jws::verify_es256(&c, &key).is_ok()))
        .ok_or(bad("no client key verifies its signature"))?;
    let p = &c.payload;
    let s = |k: &str| p.get(k).and_then(Value::as_str);
    if s("iss") != Some(client_id) || s("sub") != Some(client_id) {
        return Err(bad("iss and sub must be the client_id"));
    }
    let aud_ok = match p.get("aud") {
        Some(Value::String(a)) => audiences.contains(&a.as_str()),
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str().is_some_and(|x| audiences.contains(&x))),
        _ => false,
    };
    if !aud_ok {
        return Err(bad("aud must be this authorization server"));
    }
    let iat = p.get("iat").and_then(Value::as_i64).ok_or(bad("iat is required"))?;
    if iat < now - MAX_AGE_SECS || iat > now + MAX_AGE_SECS {
        return Err(bad("iat is too old or in the future"));
    }
    let exp = p.get("exp").and_then(Value::as_i64);
    if exp.is_some_and(|e| e <= now) {
        return Err(bad("expired"));
    }
    let jti = s("jti").filter(|j| !j.is_empty()).ok_or(bad("jti is required"))?.to_owned();
    let key_jkt = jws::thumbprint(key).map_err(|_| bad("invalid client key"))?;
    Ok(Assertion { jti, exp, key_jkt })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const CLIENT: &str = "https://app.example.com/client-metadata.json";
    const ISSUER: &str = "https://pds.example.com";
    const NOW: i64 = 1_700_000_000;

    #[track_caller]
    fn check(edit: impl FnOnce(&mut Value, &mut Value), signer_matches: bool, expected: Result<(), &str>) {
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let other = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let mut jwk = jws::public_jwk(if signer_matches { sk.verifying_key() } else { other.verifying_key() });
        jwk.insert("kid".into(), "k1".into());
        let jwks = json!({"keys": [jwk]});
        let mut h = json!({"alg": "ES256", "kid": "k1"});
        let mut p = json!({"iss": CLIENT, "sub": CLIENT, "aud": ISSUER, "iat": NOW, "exp": NOW + 60, "jti": "a1"});
        edit(&mut h, &mut p);
        let got = verify(&jws::sign_es256(&sk, &h, &p), &jwks, CLIENT, &[ISSUER, "https://pds.example.com/oauth/token"], NOW);
        assert_eq!(got.as_ref().map(|_| ()).map_err(|e| e.to_string()), expected.map_err(|m| format!("Invalid client assertion: {m}")));
        if let Ok(a) = got {
            assert_eq!(a.key_jkt, jws::thumbprint(&jws::public_jwk(sk.verifying_key())).unwrap());
        }
    }

    #[test]
    fn assertions() {
        check(|_, _| {}, true, Ok(()));
        check(|_, p| p["aud"] = json!(["x", "https://pds.example.com/oauth/token"]), true, Ok(()));
        check(|_, _| {}, false, Err("no client key verifies its signature"));
        check(|h, _| h["kid"] = json!("k2"), true, Err("no client key verifies its signature"));
        check(|_, p| p["sub"] = json!("https://evil.example.com/c.json"), true, Err("iss and sub must be the client_id"));
        check(|_, p| p["aud"] = json!("https://other.example.com"), true, Err("aud must be this authorization server"));
        check(|_, p| p["iat"] = json!(NOW - 61), true, Err("iat is too old or in the future"));
        check(|_, p| p["exp"] = json!(NOW), true, Err("expired"));
        check(|_, p| drop(p.as_object_mut().unwrap().remove("jti")), true, Err("jti is required"));
    }
}
