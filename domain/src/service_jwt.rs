//! Inter-service auth JWTs (atproto "service auth"; reference `@atproto/xrpc-server`
//! `createServiceJwt` / `verifyJwt`): `{typ: "JWT", alg: ES256K | ES256}`,
//! `{iat, iss, aud, exp, lxm?, jti}`, signed with the issuing account's repo signing key
//! (compact low-S ECDSA over `b64url(header).b64url(payload)`).
//!
//! [`create`] mints one (what `com.atproto.server.getServiceAuth` returns); [`parse`] reads one
//! without trusting it (to learn `iss`, whose key the caller then resolves), and [`verify`] checks
//! it against that key, the expected audience and method, and the time passed in.
//!
//! Never performs I/O: the caller resolves the issuer's DID document.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::{Map, Value};

use crate::crypto::{KeyType, Keypair, PublicKey};

/// The reference's default lifetime when no `exp` is asked for: 60 seconds.
pub const DEFAULT_LIFETIME_SECS: i64 = 60;
/// Longest token `getServiceAuth` issues: one hour ahead.
pub const MAX_LIFETIME_SECS: i64 = 3600;
/// Longest token without `lxm`: one minute ahead.
pub const MAX_METHODLESS_LIFETIME_SECS: i64 = 60;
/// Longer tokens are refused unread.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a service token is refused. XRPC names (reference `verifyJwt`, all 401
/// `AuthRequiredError`): `BadJwt`, `JwtExpired`, `BadJwtAudience`, `BadJwtLexiconMethod`,
/// `BadJwtSignature`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceJwtError {
    #[error("poorly formatted jwt: {0}")]
    BadJwt(&'static str),
    #[error("jwt expired")]
    JwtExpired,
    #[error("jwt audience does not match service did")]
    BadJwtAudience,
    #[error("jwt lexicon method (\"lxm\") does not match")]
    BadJwtLexiconMethod,
    #[error("jwt signature does not match jwt issuer")]
    BadJwtSignature,
}

/// The claims of a parsed service token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceClaims {
    /// The issuing DID (a `#fragment`, if any, removed).
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: Option<i64>,
    pub lxm: Option<String>,
    pub jti: Option<String>,
}

/// A parsed, not yet verified, service token.
#[derive(Debug, Clone)]
pub struct ParsedServiceJwt {
    pub alg: KeyType,
    pub claims: ServiceClaims,
    signing_input: String,
    signature: Vec<u8>,
}

/// A token for `iss` (signed with its repo key), valid until `exp` (seconds).
pub fn create(key: &Keypair, iss: &str, aud: &str, lxm: Option<&str>, now_secs: i64, exp: i64) -> String {
    let header = serde_json::json!({ "typ": "JWT", "alg": key.key_type().jwt_alg() });
    let mut jti = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut jti);
    let jti: String = jti.iter().map(|b| format!("{b:02x}")).collect();
    let mut payload = serde_json::json!({ "iat": now_secs, "iss": iss, "aud": aud, "exp": exp, "jti": jti });
    if let Some(m) = lxm {
        payload["lxm"] = Value::String(m.to_owned());
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let sig = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn object(segment: &str) -> Option<Map<String, Value>> {
    match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).ok()?).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Reads a token's header and claims without checking its signature.
pub fn parse(token: &str) -> Result<ParsedServiceJwt, ServiceJwtError> {
    use ServiceJwtError::BadJwt as Bad;
    if token.len() > MAX_TOKEN_LEN {
        return Err(Bad("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Bad("not three segments"));
    };
    let header = object(h).ok_or(Bad("header"))?;
    // Session and DPoP tokens are never service tokens (reference `verifyJwt`).
    if let Some(Value::String(typ)) = header.get("typ") {
        if matches!(typ.as_str(), "at+jwt" | "refresh+jwt" | "dpop+jwt") {
            return Err(Bad("invalid jwt type"));
        }
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(KeyType::from_jwt_alg)
        .ok_or(Bad("unsupported alg"))?;
    let payload = object(p).ok_or(Bad("payload"))?;
    let text = |k: &str| payload.get(k).and_then(Value::as_str).map(str::to_owned);
    let iss = text("iss").ok_or(Bad("iss missing"))?;
    let iss = iss.split('#').next().unwrap_or_default().to_owned();
    if !crate::syntax::is_valid_did(&iss) {
        return Err(Bad("iss is not a DID"));
    }
    let aud = text("aud").ok_or(Bad("aud missing"))?;
    let exp = payload.get("exp").and_then(Value::as_i64).ok_or(Bad("exp missing"))?;
    let lxm = match payload.get("lxm") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(Bad("lxm is not a string")),
    };
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| Bad("signature"))?;
    Ok(ParsedServiceJwt {
        alg,
        claims: ServiceClaims { iss, aud, exp, iat: payload.get("iat").and_then(Value::as_i64), lxm, jti: text("jti") },
        signing_input: format!("{h}.{p}"),
        signature,
    })
}

/// Checks a parsed token: not expired at `now_secs`, for audience `aud`, for method `lxm` (when
/// the caller requires one, the token must name exactly it), signed by `key` (the issuer's current
/// `#atproto` key; its curve must match `alg`). Reference order: expiry, audience, method,
/// signature.
pub fn verify(
    parsed: &ParsedServiceJwt,
    key: &PublicKey,
    aud: &str,
    lxm: Option<&str>,
    now_secs: i64,
) -> Result<ServiceClaims, ServiceJwtError> {
    let c = &parsed.claims;
    if now_secs > c.exp {
        return Err(ServiceJwtError::JwtExpired);
    }
    if c.aud != aud {
        return Err(ServiceJwtError::BadJwtAudience);
    }
    if let Some(required) = lxm {
        if c.lxm.as_deref() != Some(required) {
            return Err(ServiceJwtError::BadJwtLexiconMethod);
        }
    }
    if key.key_type() != parsed.alg || key.verify(parsed.signing_input.as_bytes(), &parsed.signature).is_err() {
        return Err(ServiceJwtError::BadJwtSignature);
    }
    Ok(c.clone())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;
    const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
    const AUD: &str = "did:web:pds.example.com";
    const LXM: &str = "com.atproto.server.createAccount";

    #[test]
    fn a_token_we_mint_verifies_against_its_key_and_nothing_else() {
        for kt in [KeyType::K256, KeyType::P256] {
            let key = Keypair::generate(kt);
            let other = Keypair::generate(kt);
            let token = create(&key, DID, AUD, Some(LXM), NOW, NOW + 60);
            let parsed = parse(&token).unwrap();
            assert_eq!(parsed.claims.iss, DID);
            assert_eq!(parsed.claims.jti.as_deref().map(str::len), Some(32));
            let check = |k: &PublicKey, aud: &str, lxm: Option<&str>, now: i64| verify(&parsed, k, aud, lxm, now);
            let table: [(Result<ServiceClaims, ServiceJwtError>, Result<(), ServiceJwtError>); 6] = [
                (check(&key.public_key(), AUD, Some(LXM), NOW), Ok(())),
                (check(&key.public_key(), AUD, None, NOW), Ok(())),
                (check(&other.public_key(), AUD, Some(LXM), NOW), Err(ServiceJwtError::BadJwtSignature)),
                (check(&key.public_key(), "did:web:elsewhere", Some(LXM), NOW), Err(ServiceJwtError::BadJwtAudience)),
                (check(&key.public_key(), AUD, Some("com.atproto.repo.createRecord"), NOW), Err(ServiceJwtError::BadJwtLexiconMethod)),
                (check(&key.public_key(), AUD, Some(LXM), NOW + 61), Err(ServiceJwtError::JwtExpired)),
            ];
            for (i, (got, want)) in table.into_iter().enumerate() {
                assert_eq!(got.map(|_| ()), want, "case {i} ({kt:?})");
            }
        }
    }

    #[test]
    fn malformed_or_session_tokens_are_bad_jwts() {
        let session = crate::session_jwt::create_access_token(
            &crate::session_jwt::JwtKey::new(b"k").unwrap(),
            DID,
            AUD,
            crate::session_jwt::Scope::Access,
            NOW,
        );
        for (token, why) in [("a.b", "segments"), ("x.y.z", "garbage"), (session.as_str(), "at+jwt")] {
            assert!(matches!(parse(token), Err(ServiceJwtError::BadJwt(_))), "{why}");
        }
        let key = Keypair::generate(KeyType::K256);
        let methodless = create(&key, DID, AUD, None, NOW, NOW + 60);
        let parsed = parse(&methodless).unwrap();
        assert_eq!(verify(&parsed, &key.public_key(), AUD, Some(LXM), NOW), Err(ServiceJwtError::BadJwtLexiconMethod));
    }
}
