//! OAuth access tokens: HS256 JWTs (`typ at+jwt`) as the reference PDS's stateful mode issues
//! them — `iss`, `sub` (DID), `aud` (the service DID), `jti` (the session's current token id),
//! `iat`, `exp`, `cnf.jkt`, `client_id`, `scope` — under a key derived from `PDS_JWT_SECRET`
//! that differs from the legacy session key, so one kind of token never passes for the other.
//! The resource server still checks `jti` against the session on every request (revocation is
//! immediate); the signature only keeps garbage away from the database.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{b64url, jws};

/// The reference's `TOKEN_MAX_AGE`: 60 minutes.
pub const LIFETIME_SECS: i64 = 3600;

#[derive(Clone)]
pub struct AccessKey(Hmac<Sha256>);

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessKey(..)")
    }
}

impl AccessKey {
    pub fn new(jwt_secret: &[u8]) -> AccessKey {
        let mut h = Sha256::new();
        h.update(b"atproto-oauth-access-token\0");
        h.update(jwt_secret);
        let k = h.finalize();
        #[allow(clippy::expect_used)]
        AccessKey(Hmac::<Sha256>::new_from_slice(&k).expect("HMAC takes any key length"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    pub jkt: String,
    pub client_id: String,
    pub scope: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessTokenError {
    #[error("Malformed token")]
    Malformed,
    #[error("Invalid token signature")]
    BadSignature,
    #[error("Token expired")]
    Expired,
    #[error("Invalid token audience")]
    WrongAudience,
}

pub fn sign(key: &AccessKey, c: &AccessClaims) -> String {
    let header = json!({"alg":"HS256","typ":"at+jwt"});
    let payload = json!({
        "iss": c.iss, "sub": c.sub, "aud": c.aud, "jti": c.jti, "iat": c.iat, "exp": c.exp,
        "cnf": {"jkt": c.jkt}, "client_id": c.client_id, "scope": c.scope,
    });
    let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(payload.to_string().as_bytes()));
    let mut m = key.0.clone();
    m.update(input.as_bytes());
    format!("{input}.{}", b64url(&m.finalize().into_bytes()))
}

pub fn verify(key: &AccessKey, token: &str, audience: &str, now_secs: i64) -> Result<AccessClaims, AccessTokenError> {
    let c = jws::parse(token).map_err(|_| AccessTokenError::Malformed)?;
    if c.header.get("alg").and_then(Value::as_str) != Some("HS256")
        || c.header.get("typ").and_then(Value::as_str) != Some("at+jwt")
    {
        return Err(AccessTokenError::Malformed);
    }
    let mut m = key.0.clone();
    m.update(c.signing_input.as_bytes());
    m.verify_slice(&c.signature).map_err(|_| AccessTokenError::BadSignature)?;
    let p = &c.payload;
    let s = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned).ok_or(AccessTokenError::Malformed);
    let n = |k: &str| p.get(k).and_then(Value::as_i64).ok_or(AccessTokenError::Malformed);
    let claims = AccessClaims {
        iss: s("iss")?,
        sub: s("sub")?,
        aud: s("aud")?,
        jti: s("jti")?,
        iat: n("iat")?,
        exp: n("exp")?,
        jkt: p.get("cnf").and_then(|c| c.get("jkt")).and_then(Value::as_str).ok_or(AccessTokenError::Malformed)?.to_owned(),
        client_id: s("client_id")?,
        scope: s("scope")?,
    };
    if claims.aud != audience {
        return Err(AccessTokenError::WrongAudience);
    }
    if claims.exp <= now_secs {
        return Err(AccessTokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let k = AccessKey::new(b"secret");
        let c = AccessClaims {
            iss: "https://pds".into(),
            sub: "did:plc:a".into(),
            aud: "did:web:pds".into(),
            jti: "tok-1".into(),
            iat: 100,
            exp: 200,
            jkt: "j".into(),
            client_id: "http://localhost".into(),
            scope: "atproto".into(),
        };
        let t = sign(&k, &c);
        assert_eq!(verify(&k, &t, "did:web:pds", 150), Ok(c));
        assert_eq!(verify(&k, &t, "did:web:pds", 200), Err(AccessTokenError::Expired));
        assert_eq!(verify(&k, &t, "did:web:other", 150), Err(AccessTokenError::WrongAudience));
        assert_eq!(verify(&AccessKey::new(b"other"), &t, "did:web:pds", 150), Err(AccessTokenError::BadSignature));
        // A legacy session token (same secret, plain HS256 key) does not verify.
        let legacy = crate::session_jwt::JwtKey::new(b"secret").unwrap();
        let lt = crate::session_jwt::create_access_token(&legacy, "did:plc:a", "did:web:pds", crate::session_jwt::Scope::Access, 100);
        assert!(verify(&k, &lt, "did:web:pds", 150).is_err());
    }
}
