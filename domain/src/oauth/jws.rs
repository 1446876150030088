//! Compact JWS on P-256 (ES256) with an embedded or given JWK, and RFC 7638 JWK thumbprints.
//! Only `EC`/`P-256` keys are supported (ES256 is the algorithm atproto requires; others are
//! refused with [`JwsError::UnsupportedAlg`]).

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde_json::{Map, Value};

use super::{b64url, b64url_decode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("malformed JWT: {0}")]
    Malformed(&'static str),
    #[error("unsupported algorithm {0:?} (ES256 only)")]
    UnsupportedAlg(String),
    #[error("invalid JWK: {0}")]
    InvalidJwk(&'static str),
    #[error("signature verification failed")]
    BadSignature,
}

/// A parsed (not yet verified) compact JWS.
#[derive(Debug, Clone)]
pub struct Compact {
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
    pub signing_input: String,
    pub signature: Vec<u8>,
}

pub fn parse(token: &str) -> Result<Compact, JwsError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwsError::Malformed("expected three parts"));
    };
    let json = |part: &str, what: &'static str| -> Result<Map<String, Value>, JwsError> {
        let bytes = b64url_decode(part).ok_or(JwsError::Malformed(what))?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(JwsError::Malformed(what)),
        }
    };
    Ok(Compact {
        header: json(h, "header")?,
        payload: json(p, "payload")?,
        signing_input: format!("{h}.{p}"),
        signature: b64url_decode(s).ok_or(JwsError::Malformed("signature"))?,
    })
}

/// The P-256 verifying key of a public JWK (`kty EC`, `crv P-256`, `x`, `y`). A JWK carrying a
/// private part (`d`) is refused.
pub fn p256_key(jwk: &Map<String, Value>) -> Result<VerifyingKey, JwsError> {
    if jwk.get("kty").and_then(Value::as_str) != Some("EC") || jwk.get("crv").and_then(Value::as_str) != Some("P-256") {
        return Err(JwsError::InvalidJwk("expected kty EC and crv P-256"));
    }
    if jwk.contains_key("d") {
        return Err(JwsError::InvalidJwk("private key material in a public JWK"));
    }
    let coord = |k: &str| -> Result<[u8; 32], JwsError> {
        let v = jwk.get(k).and_then(Value::as_str).and_then(b64url_decode).ok_or(JwsError::InvalidJwk("x/y"))?;
        v.try_into().map_err(|_| JwsError::InvalidJwk("x/y must be 32 bytes"))
    };
    let (x, y) = (coord("x")?, coord("y")?);
    let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
    VerifyingKey::from_encoded_point(&point).map_err(|_| JwsError::InvalidJwk("not a point on P-256"))
}

/// Verifies an ES256 signature of `c` with `key` (high-S accepted, as JOSE libraries do).
pub fn verify_es256(c: &Compact, key: &VerifyingKey) -> Result<(), JwsError> {
    match c.header.get("alg").and_then(Value::as_str) {
        Some("ES256") => {}
        other => return Err(JwsError::UnsupportedAlg(other.unwrap_or("").to_owned())),
    }
    let sig = Signature::from_slice(&c.signature).map_err(|_| JwsError::BadSignature)?;
    key.verify(c.signing_input.as_bytes(), &sig).map_err(|_| JwsError::BadSignature)
}

/// RFC 7638 thumbprint (SHA-256, base64url) of an EC JWK: `{"crv","kty","x","y"}` in that order.
pub fn thumbprint(jwk: &Map<String, Value>) -> Result<String, JwsError> {
    let s = |k: &str| jwk.get(k).and_then(Value::as_str).ok_or(JwsError::InvalidJwk("missing member"));
    let canonical = format!(
        r#"{{"crv":{},"kty":{},"x":{},"y":{}}}"#,
        Value::from(s("crv")?),
        Value::from(s("kty")?),
        Value::from(s("x")?),
        Value::from(s("y")?)
    );
    use sha2::{Digest, Sha256};
    Ok(b64url(&Sha256::digest(canonical.as_bytes())))
}

/// The public JWK of a P-256 key (tests and clients).
pub fn public_jwk(key: &VerifyingKey) -> Map<String, Value> {
    let p = key.to_encoded_point(false);
    let mut m = Map::new();
    m.insert("kty".into(), "EC".into());
    m.insert("crv".into(), "P-256".into());
    m.insert("x".into(), b64url(p.x().map(|x| &x[..]).unwrap_or_default()).into());
    m.insert("y".into(), b64url(p.y().map(|y| &y[..]).unwrap_or_default()).into());
    m
}

/// Signs `header.payload` with ES256 (tests and clients).
pub fn sign_es256(key: &p256::ecdsa::SigningKey, header: &Value, payload: &Value) -> String {
    use p256::ecdsa::signature::Signer;
    let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(payload.to_string().as_bytes()));
    let sig: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64url(&sig.to_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7638_example_shape_and_round_trip() {
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let jwk = public_jwk(sk.verifying_key());
        let token = sign_es256(&sk, &json!({"alg":"ES256","typ":"dpop+jwt","jwk":jwk}), &json!({"a":1}));
        let c = parse(&token).unwrap();
        let key = p256_key(c.header["jwk"].as_object().unwrap()).unwrap();
        verify_es256(&c, &key).unwrap();
        let mut bad = c.clone();
        bad.signing_input.push('x');
        assert_eq!(verify_es256(&bad, &key), Err(JwsError::BadSignature));
        // Member order does not change the thumbprint.
        let mut shuffled = Map::new();
        for k in ["y", "x", "kty", "crv"] {
            shuffled.insert(k.to_owned(), jwk[k].clone());
        }
        assert_eq!(thumbprint(&jwk).unwrap(), thumbprint(&shuffled).unwrap());
        assert_eq!(thumbprint(&jwk).unwrap().len(), 43);
    }

    #[test]
    fn refuses_other_keys_and_algs() {
        let mut m = Map::new();
        m.insert("kty".into(), "RSA".into());
        assert!(p256_key(&m).is_err());
        assert!(parse("a.b").is_err());
        assert!(parse("a.b.c.d").is_err());
    }
}
