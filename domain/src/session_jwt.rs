//! Legacy session tokens, compatible with the reference PDS (`account-manager/helpers/auth.ts`):
//! compact JWS, HS256 under `PDS_JWT_SECRET` (its UTF-8 bytes, as the reference uses them).
//!
//! - access: header `{"typ":"at+jwt","alg":"HS256"}`, claims `{scope, aud, sub, iat, exp}`,
//!   120 minutes;
//! - refresh: header `{"typ":"refresh+jwt","alg":"HS256"}`, claims
//!   `{scope: "com.atproto.refresh", aud, sub, jti, iat, exp}`, 90 days.
//!
//! Claims are written in the order the reference's `jose` writes them. The clock is a parameter
//! (seconds since the UNIX epoch). Only [`refresh_token_hash`] of a refresh token's `jti` may go
//! into the log (DESIGN invariant 5); the tokens themselves go only to the client.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Access token lifetime (reference: `'120mins'`).
pub const ACCESS_LIFETIME_SECS: i64 = 120 * 60;
/// Refresh token lifetime (reference: `'90days'`).
pub const REFRESH_LIFETIME_SECS: i64 = 90 * 24 * 60 * 60;
/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The reference's `AuthScope` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `com.atproto.access`: full access (password login).
    Access,
    /// `com.atproto.appPass`: app-password login.
    AppPass,
    /// `com.atproto.appPassPrivileged`: app-password login with the privileged flag.
    AppPassPrivileged,
    /// `com.atproto.refresh`: only in refresh tokens.
    Refresh,
    /// `com.atproto.takendown`: a taken-down account's session (`allowTakendown`).
    Takendown,
    /// `com.atproto.signupQueued`: an account waiting in the signup queue.
    SignupQueued,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Access,
        Scope::AppPass,
        Scope::AppPassPrivileged,
        Scope::Refresh,
        Scope::Takendown,
        Scope::SignupQueued,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Access => "com.atproto.access",
            Scope::AppPass => "com.atproto.appPass",
            Scope::AppPassPrivileged => "com.atproto.appPassPrivileged",
            Scope::Refresh => "com.atproto.refresh",
            Scope::Takendown => "com.atproto.takendown",
            Scope::SignupQueued => "com.atproto.signupQueued",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|sc| sc.as_str() == s)
    }

    /// The reference's `ACCESS_STANDARD`: access, appPassPrivileged, appPass.
    pub fn is_standard_access(self) -> bool {
        matches!(
            self,
            Scope::Access | Scope::AppPass | Scope::AppPassPrivileged
        )
    }
}

/// Which kind of token a caller expects (the JWS `typ` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Access,
    Refresh,
}

impl TokenType {
    pub fn typ(self) -> &'static str {
        match self {
            TokenType::Access => "at+jwt",
            TokenType::Refresh => "refresh+jwt",
        }
    }
}

/// The verified claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub scope: Scope,
    /// The account's DID.
    pub sub: String,
    /// The service DID the token was issued for.
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    /// Refresh tokens: the token id whose [`refresh_token_hash`] the server stores. Access
    /// tokens from [`create_session_access_token`]: that hash (their session).
    pub jti: Option<String>,
}

/// Why a token is refused. XRPC names (mapped in `api`): `ExpiredToken` and `InvalidToken`,
/// both 400 in the reference's bearer auth.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// An authentic token whose `exp` has passed.
    #[error("Token has expired")]
    ExpiredToken,
    /// Anything else: malformed, wrong algorithm or type, bad signature, wrong audience,
    /// missing claims. The detail is for logs, not for clients.
    #[error("Token could not be verified: {0}")]
    InvalidToken(&'static str),
    /// `PDS_JWT_SECRET` is empty.
    #[error("the JWT secret is empty")]
    EmptySecret,
}

/// The HMAC key of session tokens, prepared once from `PDS_JWT_SECRET`.
#[derive(Clone)]
pub struct JwtKey(Hmac<Sha256>);

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey(..)")
    }
}

impl JwtKey {
    /// `secret` is used as bytes, exactly as given (the reference does `Buffer.from(secret)`).
    pub fn new(secret: &[u8]) -> Result<JwtKey, JwtError> {
        if secret.is_empty() {
            return Err(JwtError::EmptySecret);
        }
        Hmac::<Sha256>::new_from_slice(secret)
            .map(JwtKey)
            .map_err(|_| JwtError::EmptySecret)
    }

    fn sign(&self, signing_input: &str) -> Vec<u8> {
        let mut mac = self.0.clone();
        mac.update(signing_input.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// An access token for `did`, issued by the service `aud`, valid from `now_secs` for
/// [`ACCESS_LIFETIME_SECS`].
pub fn create_access_token(
    key: &JwtKey,
    did: &str,
    aud: &str,
    scope: Scope,
    now_secs: i64,
) -> String {
    let claims = format!(
        r#"{{"scope":{},"aud":{},"sub":{},"iat":{now_secs},"exp":{}}}"#,
        json_str(scope.as_str()),
        json_str(aud),
        json_str(did),
        now_secs.saturating_add(ACCESS_LIFETIME_SECS),
    );
    encode(key, TokenType::Access, &claims)
}

/// An access token like [`create_access_token`] that also names its session: `jti` is the
/// [`refresh_token_hash`] of the refresh token issued with it, so the server can refuse it as soon
/// as that refresh token is revoked (logout, app-password revocation, password change, takedown).
/// The hash reveals nothing usable: a refresh needs the `jti` itself.
pub fn create_session_access_token(
    key: &JwtKey,
    did: &str,
    aud: &str,
    scope: Scope,
    session: &str,
    now_secs: i64,
) -> String {
    let claims = format!(
        r#"{{"scope":{},"aud":{},"sub":{},"jti":{},"iat":{now_secs},"exp":{}}}"#,
        json_str(scope.as_str()),
        json_str(aud),
        json_str(did),
        json_str(session),
        now_secs.saturating_add(ACCESS_LIFETIME_SECS),
    );
    encode(key, TokenType::Access, &claims)
}

/// A refresh token for `did` with token id `jti` (see [`generate_jti`]), valid from `now_secs`
/// for [`REFRESH_LIFETIME_SECS`].
pub fn create_refresh_token(
    key: &JwtKey,
    did: &str,
    aud: &str,
    jti: &str,
    now_secs: i64,
) -> String {
    let claims = format!(
        r#"{{"scope":{},"aud":{},"sub":{},"jti":{},"iat":{now_secs},"exp":{}}}"#,
        json_str(Scope::Refresh.as_str()),
        json_str(aud),
        json_str(did),
        json_str(jti),
        now_secs.saturating_add(REFRESH_LIFETIME_SECS),
    );
    encode(key, TokenType::Refresh, &claims)
}

/// A fresh refresh-token id: 32 random bytes, base64url without padding.
pub fn generate_jti() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the log and the sessions table keep instead of a refresh token id: lowercase hex
/// SHA-256 of the `jti`.
pub fn refresh_token_hash(jti: &str) -> String {
    Sha256::digest(jti.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn json_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn encode(key: &JwtKey, typ: TokenType, claims_json: &str) -> String {
    let header = format!(r#"{{"typ":"{}","alg":"HS256"}}"#, typ.typ());
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims_json)
    );
    let sig = URL_SAFE_NO_PAD.encode(key.sign(&signing_input));
    format!("{signing_input}.{sig}")
}

/// Verifies a session token: HS256 only, the expected `typ`, a valid signature (compared in
/// constant time), the audience `aud`, and `exp > now_secs`. An access token's scope may be
/// anything but `com.atproto.refresh`; a refresh token's must be it, with a `jti`.
///
/// Checks run in the order `jose` runs them, so an expired token with a bad signature, type or
/// audience is [`JwtError::InvalidToken`], and only an authentic, well-formed token for this
/// audience can be [`JwtError::ExpiredToken`].
pub fn verify(
    key: &JwtKey,
    token: &str,
    expected: TokenType,
    aud: &str,
    now_secs: i64,
) -> Result<Claims, JwtError> {
    use JwtError::InvalidToken as Bad;
    if token.len() > MAX_TOKEN_LEN {
        return Err(Bad("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Bad("not three dot-separated segments"));
    };

    let header = decode_object(h64).ok_or(Bad("header is not base64url JSON object"))?;
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "HS256" => {}
        _ => return Err(Bad("alg is not HS256")),
    }
    if header.contains_key("crit") {
        return Err(Bad("unsupported crit header"));
    }

    let sig = URL_SAFE_NO_PAD
        .decode(s64)
        .map_err(|_| Bad("signature is not base64url"))?;
    let mut mac = key.0.clone();
    mac.update(&token.as_bytes()[..h64.len() + 1 + p64.len()]);
    mac.verify_slice(&sig).map_err(|_| Bad("bad signature"))?;

    match header.get("typ") {
        Some(Value::String(t)) if t == expected.typ() => {}
        _ => return Err(Bad("wrong token type")),
    }

    let claims = decode_object(p64).ok_or(Bad("payload is not base64url JSON object"))?;
    let sub = match claims.get("sub") {
        Some(Value::String(s)) if s.starts_with("did:") => s.clone(),
        _ => return Err(Bad("sub is not a DID")),
    };
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == aud,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(aud)),
        _ => false,
    };
    if !aud_ok {
        return Err(Bad("wrong audience"));
    }
    let iat = numeric_date(claims.get("iat")).ok_or(Bad("iat missing or not a number"))?;
    if let Some(nbf) = claims.get("nbf") {
        let nbf = numeric_date(Some(nbf)).ok_or(Bad("nbf is not a number"))?;
        if nbf > now_secs {
            return Err(Bad("not yet valid"));
        }
    }
    let exp = numeric_date(claims.get("exp")).ok_or(Bad("exp missing or not a number"))?;
    if exp <= now_secs {
        return Err(JwtError::ExpiredToken);
    }

    let scope = match claims.get("scope") {
        Some(Value::String(s)) => Scope::parse(s).ok_or(Bad("unknown scope"))?,
        _ => return Err(Bad("scope missing")),
    };
    let jti = match claims.get("jti") {
        Some(Value::String(j)) => Some(j.clone()),
        None => None,
        Some(_) => return Err(Bad("jti is not a string")),
    };
    match expected {
        TokenType::Access if scope == Scope::Refresh => {
            return Err(Bad("refresh scope in an access token"))
        }
        TokenType::Refresh if scope != Scope::Refresh => {
            return Err(Bad("refresh token without refresh scope"))
        }
        TokenType::Refresh if jti.as_deref().is_none_or(str::is_empty) => {
            return Err(Bad("refresh token without jti"))
        }
        _ => {}
    }
    Ok(Claims {
        scope,
        sub,
        aud: aud.to_string(),
        iat,
        exp,
        jti,
    })
}

fn decode_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A JWT NumericDate: an integer, or a finite number rounded down.
fn numeric_date(v: Option<&Value>) -> Option<i64> {
    let n = match v? {
        Value::Number(n) => n,
        _ => return None,
    };
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    (f.is_finite() && f.abs() < 9.0e15).then(|| f.floor() as i64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-jwt-secret";
    const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
    const AUD: &str = "did:web:pds.test";
    const NOW: i64 = 1_700_000_000;
    const JTI: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"; // bytes 0..32

    /// Computed independently with Python's `hmac`/`hashlib`/`base64` (compact JSON, claims in
    /// the order below, secret `test-jwt-secret`).
    const KAT_ACCESS: &str = "eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJIUzI1NiJ9.eyJzY29wZSI6ImNvbS5hdHByb3RvLmFjY2VzcyIsImF1ZCI6ImRpZDp3ZWI6cGRzLnRlc3QiLCJzdWIiOiJkaWQ6cGxjOmV3dmk3bnh6eW91bjZ6aHhyaHM2NG9peiIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDA3MjAwfQ.cxm3tQ5El0NRoF6TYew9VBlaWudPx8dswNYQochRYDU";
    const KAT_REFRESH: &str = "eyJ0eXAiOiJyZWZyZXNoK2p3dCIsImFsZyI6IkhTMjU2In0.eyJzY29wZSI6ImNvbS5hdHByb3RvLnJlZnJlc2giLCJhdWQiOiJkaWQ6d2ViOnBkcy50ZXN0Iiwic3ViIjoiZGlkOnBsYzpld3ZpN254enlvdW42emh4cmhzNjRvaXoiLCJqdGkiOiJBQUVDQXdRRkJnY0lDUW9MREEwT0R4QVJFaE1VRlJZWEdCa2FHeHdkSGg4IiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDc3NzYwMDB9.vD9oAvejL1jnP35NglNAOrXsWBk80wyAvniVgJ8JiC8";
    const KAT_JTI_HASH: &str = "ea866a757e4c38babfa8127cbe9a409d3e1f93a00ff1488ff735fcf917afffd0";

    fn key() -> JwtKey {
        JwtKey::new(SECRET).unwrap()
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    /// A token with any header and payload, correctly signed with `secret`.
    fn forge(secret: &[u8], header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig = URL_SAFE_NO_PAD.encode(JwtKey::new(secret).unwrap().sign(&input));
        format!("{input}.{sig}")
    }

    const H_AT: &str = r#"{"typ":"at+jwt","alg":"HS256"}"#;
    const H_RT: &str = r#"{"typ":"refresh+jwt","alg":"HS256"}"#;

    fn payload(scope: &str, exp: i64) -> String {
        format!(r#"{{"scope":"{scope}","aud":"{AUD}","sub":"{DID}","iat":{NOW},"exp":{exp}}}"#)
    }

    #[test]
    fn known_answers() {
        assert_eq!(
            create_access_token(&key(), DID, AUD, Scope::Access, NOW),
            KAT_ACCESS
        );
        assert_eq!(
            create_refresh_token(&key(), DID, AUD, JTI, NOW),
            KAT_REFRESH
        );
        assert_eq!(refresh_token_hash(JTI), KAT_JTI_HASH);
    }

    #[test]
    fn round_trips() {
        for scope in [
            Scope::Access,
            Scope::AppPass,
            Scope::AppPassPrivileged,
            Scope::Takendown,
            Scope::SignupQueued,
        ] {
            let t = create_access_token(&key(), DID, AUD, scope, NOW);
            let c = verify(&key(), &t, TokenType::Access, AUD, NOW + 1).unwrap();
            assert_eq!(
                c,
                Claims {
                    scope,
                    sub: DID.into(),
                    aud: AUD.into(),
                    iat: NOW,
                    exp: NOW + 7200,
                    jti: None
                }
            );
        }
        let jti = generate_jti();
        assert_eq!(URL_SAFE_NO_PAD.decode(&jti).unwrap().len(), 32);
        assert_ne!(jti, generate_jti());
        let t = create_refresh_token(&key(), DID, AUD, &jti, NOW);
        let c = verify(
            &key(),
            &t,
            TokenType::Refresh,
            AUD,
            NOW + REFRESH_LIFETIME_SECS - 1,
        )
        .unwrap();
        assert_eq!(c.scope, Scope::Refresh);
        assert_eq!(c.jti.as_deref(), Some(jti.as_str()));
        assert_eq!(c.exp, NOW + 90 * 86400);
    }

    #[test]
    fn scopes_round_trip() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert_eq!(Scope::parse("com.atproto.Access"), None);
        assert!(Scope::AppPass.is_standard_access() && !Scope::Takendown.is_standard_access());
    }

    #[test]
    fn empty_secret_is_refused() {
        assert_eq!(JwtKey::new(b"").unwrap_err(), JwtError::EmptySecret);
    }

    #[test]
    fn refused_tokens() {
        use TokenType::{Access as A, Refresh as R};
        const EXPIRED: &str = "ExpiredToken";
        const INVALID: &str = "InvalidToken";
        let access = KAT_ACCESS.to_string();
        let refresh = KAT_REFRESH.to_string();
        let (h, p, s) = {
            let v: Vec<&str> = KAT_ACCESS.split('.').collect();
            (v[0].to_string(), v[1].to_string(), v[2].to_string())
        };
        let refresh_payload = KAT_REFRESH.split('.').nth(1).unwrap().to_string();
        let mut flipped_sig = s.clone().into_bytes();
        flipped_sig[0] = if flipped_sig[0] == b'A' { b'B' } else { b'A' };
        let flipped_sig = String::from_utf8(flipped_sig).unwrap();
        let live = payload("com.atproto.access", NOW + 7200);

        // (name, token, expected type, audience, now, expected outcome)
        let cases: Vec<(&str, String, TokenType, &str, i64, &str)> = vec![
            ("valid access", access.clone(), A, AUD, NOW, "ok"),
            ("valid refresh", refresh.clone(), R, AUD, NOW, "ok"),
            (
                "last valid second",
                access.clone(),
                A,
                AUD,
                NOW + 7199,
                "ok",
            ),
            (
                "expired at exp",
                access.clone(),
                A,
                AUD,
                NOW + 7200,
                EXPIRED,
            ),
            (
                "expired long ago",
                access.clone(),
                A,
                AUD,
                NOW + 10_000_000,
                EXPIRED,
            ),
            (
                "refresh expired",
                refresh.clone(),
                R,
                AUD,
                NOW + 90 * 86400,
                EXPIRED,
            ),
            (
                "refresh used as access",
                refresh.clone(),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "access used as refresh",
                access.clone(),
                R,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "wrong audience",
                access.clone(),
                A,
                "did:web:other.test",
                NOW,
                INVALID,
            ),
            (
                "expired and wrong audience",
                access.clone(),
                A,
                "did:web:other.test",
                NOW + 7200,
                INVALID,
            ),
            (
                "other secret",
                forge(b"other-secret", H_AT, &live),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "other secret, expired",
                forge(b"other-secret", H_AT, &live),
                A,
                AUD,
                NOW + 7200,
                INVALID,
            ),
            (
                "signature flipped",
                format!("{h}.{p}.{flipped_sig}"),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "signature cut",
                format!("{h}.{p}.{}", &s[..s.len() - 2]),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            ("signature empty", format!("{h}.{p}."), A, AUD, NOW, INVALID),
            (
                "signature padded",
                format!("{h}.{p}.{s}="),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "payload swapped",
                format!("{h}.{refresh_payload}.{s}"),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "payload edited",
                format!(
                    "{h}.{}.{s}",
                    b64(&payload("com.atproto.access", NOW + 99_999))
                ),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "alg none, no signature",
                format!("{}.{p}.", b64(r#"{"typ":"at+jwt","alg":"none"}"#)),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "alg none, signed anyway",
                forge(SECRET, r#"{"typ":"at+jwt","alg":"none"}"#, &live),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "alg HS512",
                forge(SECRET, r#"{"typ":"at+jwt","alg":"HS512"}"#, &live),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "alg hs256",
                forge(SECRET, r#"{"typ":"at+jwt","alg":"hs256"}"#, &live),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "alg ES256K",
                forge(SECRET, r#"{"typ":"at+jwt","alg":"ES256K"}"#, &live),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "alg missing",
                forge(SECRET, r#"{"typ":"at+jwt"}"#, &live),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "typ missing",
                forge(SECRET, r#"{"alg":"HS256"}"#, &live),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "typ JWT",
                forge(SECRET, r#"{"typ":"JWT","alg":"HS256"}"#, &live),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "typ dpop+jwt",
                forge(SECRET, r#"{"typ":"dpop+jwt","alg":"HS256"}"#, &live),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "crit header",
                forge(
                    SECRET,
                    r#"{"typ":"at+jwt","alg":"HS256","crit":["x"],"x":1}"#,
                    &live,
                ),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "refresh scope in at+jwt",
                forge(SECRET, H_AT, &payload("com.atproto.refresh", NOW + 60)),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "access scope in refresh+jwt",
                forge(SECRET, H_RT, &payload("com.atproto.access", NOW + 60)),
                R,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "refresh without jti",
                forge(SECRET, H_RT, &payload("com.atproto.refresh", NOW + 60)),
                R,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "unknown scope",
                forge(SECRET, H_AT, &payload("com.atproto.admin", NOW + 60)),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "scope missing",
                forge(
                    SECRET,
                    H_AT,
                    &format!(
                        r#"{{"aud":"{AUD}","sub":"{DID}","iat":{NOW},"exp":{}}}"#,
                        NOW + 60
                    ),
                ),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "sub not a DID",
                forge(
                    SECRET,
                    H_AT,
                    &format!(
                        r#"{{"scope":"com.atproto.access","aud":"{AUD}","sub":"alice.test","iat":{NOW},"exp":{}}}"#,
                        NOW + 60
                    ),
                ),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "exp missing",
                forge(
                    SECRET,
                    H_AT,
                    &format!(
                        r#"{{"scope":"com.atproto.access","aud":"{AUD}","sub":"{DID}","iat":{NOW}}}"#
                    ),
                ),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "exp a string",
                forge(
                    SECRET,
                    H_AT,
                    &format!(
                        r#"{{"scope":"com.atproto.access","aud":"{AUD}","sub":"{DID}","iat":{NOW},"exp":"9999999999"}}"#
                    ),
                ),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "iat missing",
                forge(
                    SECRET,
                    H_AT,
                    &format!(
                        r#"{{"scope":"com.atproto.access","aud":"{AUD}","sub":"{DID}","exp":{}}}"#,
                        NOW + 60
                    ),
                ),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "nbf in the future",
                forge(
                    SECRET,
                    H_AT,
                    &format!(
                        r#"{{"scope":"com.atproto.access","aud":"{AUD}","sub":"{DID}","iat":{NOW},"nbf":{},"exp":{}}}"#,
                        NOW + 30,
                        NOW + 60
                    ),
                ),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "aud list containing ours",
                forge(
                    SECRET,
                    H_AT,
                    &format!(
                        r#"{{"scope":"com.atproto.access","aud":["x","{AUD}"],"sub":"{DID}","iat":{NOW},"exp":{}}}"#,
                        NOW + 60
                    ),
                ),
                A,
                AUD,
                NOW,
                "ok",
            ),
            (
                "fractional exp",
                forge(
                    SECRET,
                    H_AT,
                    &format!(
                        r#"{{"scope":"com.atproto.access","aud":"{AUD}","sub":"{DID}","iat":{NOW},"exp":{}.5}}"#,
                        NOW
                    ),
                ),
                A,
                AUD,
                NOW,
                EXPIRED,
            ),
            (
                "payload a JSON array",
                forge(SECRET, H_AT, "[1,2]"),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "payload not JSON",
                forge(SECRET, H_AT, "scope=access"),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "header not JSON",
                forge(SECRET, "HS256", &live),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            ("empty", String::new(), A, AUD, NOW, INVALID),
            ("garbage", "garbage".into(), A, AUD, NOW, INVALID),
            ("two segments", format!("{h}.{p}"), A, AUD, NOW, INVALID),
            (
                "four segments",
                format!("{access}.{s}"),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            ("only dots", "..".into(), A, AUD, NOW, INVALID),
            (
                "standard base64 chars",
                format!("{h}.{p}.{}", s.replace('-', "+").replace('_', "/") + "+"),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            ("non-ascii", format!("{h}.{p}.{s}é"), A, AUD, NOW, INVALID),
            (
                "too long",
                format!("{h}.{}.{s}", "A".repeat(MAX_TOKEN_LEN)),
                A,
                AUD,
                NOW,
                INVALID,
            ),
            (
                "bearer prefix kept",
                format!("Bearer {access}"),
                A,
                AUD,
                NOW,
                INVALID,
            ),
        ];
        assert!(cases.len() > 40);
        for (name, token, typ, aud, now, expected) in &cases {
            let got = match verify(&key(), token, *typ, aud, *now) {
                Ok(_) => "ok",
                Err(JwtError::ExpiredToken) => EXPIRED,
                Err(JwtError::InvalidToken(_)) => INVALID,
                Err(JwtError::EmptySecret) => "EmptySecret",
            };
            assert_eq!(
                got,
                *expected,
                "{name}: {:?}",
                verify(&key(), token, *typ, aud, *now)
            );
        }
    }
}
