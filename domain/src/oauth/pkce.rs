//! PKCE (RFC 7636), S256 only: `plain` and a missing challenge are refused at PAR; at the token
//! endpoint the verifier (43–128 unreserved characters) must hash to the challenge.

use super::{ct_eq, sha256_b64url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_challenge is required")]
    MissingChallenge,
    #[error("code_challenge_method must be S256")]
    UnsupportedMethod,
    #[error("invalid code_challenge")]
    InvalidChallenge,
    #[error("code_verifier is required")]
    MissingVerifier,
    #[error("code_verifier must be 43 to 128 unreserved characters")]
    InvalidVerifier,
    #[error("code_verifier does not match code_challenge")]
    Mismatch,
}

/// The PAR side: a challenge with method `S256` (the default `plain` is refused).
pub fn check_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<(), PkceError> {
    let challenge = challenge.ok_or(PkceError::MissingChallenge)?;
    if method != Some("S256") {
        return Err(PkceError::UnsupportedMethod);
    }
    if challenge.len() != 43 || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(PkceError::InvalidChallenge);
    }
    Ok(())
}

/// The token side.
pub fn verify(challenge: &str, verifier: Option<&str>) -> Result<(), PkceError> {
    let v = verifier.ok_or(PkceError::MissingVerifier)?;
    if !(43..=128).contains(&v.len())
        || !v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        return Err(PkceError::InvalidVerifier);
    }
    if !ct_eq(&sha256_b64url(v), challenge) {
        return Err(PkceError::Mismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(challenge: Option<&str>, method: Option<&str>, expected: Result<(), PkceError>) {
        assert_eq!(check_challenge(challenge, method), expected);
    }

    #[test]
    fn challenges() {
        // RFC 7636 appendix B.
        let c = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        check(Some(c), Some("S256"), Ok(()));
        check(Some(c), Some("plain"), Err(PkceError::UnsupportedMethod));
        check(Some(c), None, Err(PkceError::UnsupportedMethod));
        check(None, Some("S256"), Err(PkceError::MissingChallenge));
        check(Some("short"), Some("S256"), Err(PkceError::InvalidChallenge));
        assert_eq!(verify(c, Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")), Ok(()));
        assert_eq!(verify(c, Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx")), Err(PkceError::Mismatch));
        assert_eq!(verify(c, Some("tooshort")), Err(PkceError::InvalidVerifier));
        assert_eq!(verify(c, None), Err(PkceError::MissingVerifier));
    }
}
