//! Keys and signatures: the two atproto curves (`k256` = secp256k1, `p256` = NIST P-256),
//! multikey / `did:key` encoding, and the strict signature rule (SHA-256 of the message, ECDSA,
//! 64-byte compact `r||s`, low-S only, never DER).
//!
//! Never reads a key from disk or the environment: bytes in, values out. Randomness is confined
//! to [`Keypair::generate`].

use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use sha2::{Digest, Sha256};

/// Multicodec varint prefix of a `secp256k1-pub` key (code 0xE7).
const K256_CODEC: [u8; 2] = [0xe7, 0x01];
/// Multicodec varint prefix of a `p256-pub` key (code 0x1200).
const P256_CODEC: [u8; 2] = [0x80, 0x24];
const DID_KEY_PREFIX: &str = "did:key:";

/// What went wrong with a key or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("not a did:key (expected prefix `did:key:`)")]
    NotDidKey,
    #[error("multibase key must start with `z` (base58btc)")]
    NotBase58btc,
    #[error("invalid base58btc: {0}")]
    Base58(String),
    #[error("unsupported multicodec key type (expected secp256k1-pub 0xe7 or p256-pub 0x1200)")]
    UnsupportedCodec,
    #[error("invalid {curve} public key point")]
    InvalidPublicKey { curve: &'static str },
    #[error(
        "invalid {curve} private key (expected 32 bytes, a non-zero scalar below the curve order)"
    )]
    InvalidPrivateKey { curve: &'static str },
    #[error("signature must be 64 bytes compact r||s, got {0} bytes")]
    SignatureLength(usize),
    #[error("signature is not a valid ECDSA r||s pair")]
    MalformedSignature,
    #[error("high-S signature: atproto requires low-S")]
    HighS,
    #[error("signature does not verify against this key")]
    BadSignature,
}

/// The two curves atproto supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    K256,
    P256,
}

impl KeyType {
    /// JOSE algorithm name: `ES256K` for k256, `ES256` for p256.
    pub fn jwt_alg(self) -> &'static str {
        match self {
            KeyType::K256 => "ES256K",
            KeyType::P256 => "ES256",
        }
    }

    /// The key type for a JOSE `alg` (`ES256K` / `ES256`).
    pub fn from_jwt_alg(alg: &str) -> Option<KeyType> {
        match alg {
            "ES256K" => Some(KeyType::K256),
            "ES256" => Some(KeyType::P256),
            _ => None,
        }
    }

    /// The key type named by a legacy DID document `verificationMethod.type`
    /// (`EcdsaSecp256k1VerificationKey2019` / `EcdsaSecp256r1VerificationKey2019`).
    pub fn from_legacy_suite(suite: &str) -> Option<KeyType> {
        match suite {
            "EcdsaSecp256k1VerificationKey2019" => Some(KeyType::K256),
            "EcdsaSecp256r1VerificationKey2019" => Some(KeyType::P256),
            _ => None,
        }
    }

    fn curve_name(self) -> &'static str {
        match self {
            KeyType::K256 => "k256",
            KeyType::P256 => "p256",
        }
    }
}

/// A private signing key on one of the two curves.
#[derive(Clone)]
pub enum Keypair {
    K256(k256::ecdsa::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

impl std::fmt::Debug for Keypair {
    // Never print private key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.public_key().to_did_key())
    }
}

impl Keypair {
    /// A fresh key from the operating system's random number generator.
    pub fn generate(kt: KeyType) -> Keypair {
        let mut rng = rand::rngs::OsRng;
        match kt {
            KeyType::K256 => Keypair::K256(k256::ecdsa::SigningKey::random(&mut rng)),
            KeyType::P256 => Keypair::P256(p256::ecdsa::SigningKey::random(&mut rng)),
        }
    }

    /// A key from its 32 raw private scalar bytes (big-endian).
    pub fn from_private_bytes(kt: KeyType, bytes: &[u8]) -> Result<Keypair, CryptoError> {
        let err = CryptoError::InvalidPrivateKey {
            curve: kt.curve_name(),
        };
        if bytes.len() != 32 {
            return Err(err);
        }
        match kt {
            KeyType::K256 => k256::ecdsa::SigningKey::from_slice(bytes)
                .map(Keypair::K256)
                .map_err(|_| err),
            KeyType::P256 => p256::ecdsa::SigningKey::from_slice(bytes)
                .map(Keypair::P256)
                .map_err(|_| err),
        }
    }

    /// The 32 raw private scalar bytes (big-endian).
    pub fn private_bytes(&self) -> Vec<u8> {
        match self {
            Keypair::K256(k) => k.to_bytes().to_vec(),
            Keypair::P256(k) => k.to_bytes().to_vec(),
        }
    }

    pub fn key_type(&self) -> KeyType {
        match self {
            Keypair::K256(_) => KeyType::K256,
            Keypair::P256(_) => KeyType::P256,
        }
    }

    pub fn public_key(&self) -> PublicKey {
        match self {
            Keypair::K256(k) => PublicKey::K256(*k.verifying_key()),
            Keypair::P256(k) => PublicKey::P256(*k.verifying_key()),
        }
    }

    /// Signs SHA-256(`msg`): deterministic ECDSA (RFC 6979), 64-byte compact `r||s`, low-S.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let digest = Sha256::digest(msg);
        let mut out = [0u8; 64];
        match self {
            Keypair::K256(k) => {
                // Signing a 32-byte prehash with a valid key cannot fail (the prehash length is
                // accepted and RFC 6979 nonces are retried internally); fall back to zeros never
                // reached, rather than panicking.
                if let Ok(sig) = PrehashSigner::<k256::ecdsa::Signature>::sign_prehash(k, &digest) {
                    let sig = sig.normalize_s().unwrap_or(sig);
                    out.copy_from_slice(&sig.to_bytes());
                }
            }
            Keypair::P256(k) => {
                if let Ok(sig) = PrehashSigner::<p256::ecdsa::Signature>::sign_prehash(k, &digest) {
                    let sig = sig.normalize_s().unwrap_or(sig);
                    out.copy_from_slice(&sig.to_bytes());
                }
            }
        }
        out
    }
}

/// A public key on one of the two curves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKey {
    K256(k256::ecdsa::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    pub fn key_type(&self) -> KeyType {
        match self {
            PublicKey::K256(_) => KeyType::K256,
            PublicKey::P256(_) => KeyType::P256,
        }
    }

    /// A key from SEC1 point bytes: 33-byte compressed or 65-byte uncompressed.
    pub fn from_sec1_bytes(kt: KeyType, bytes: &[u8]) -> Result<PublicKey, CryptoError> {
        let err = CryptoError::InvalidPublicKey {
            curve: kt.curve_name(),
        };
        match kt {
            KeyType::K256 => k256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                .map(PublicKey::K256)
                .map_err(|_| err),
            KeyType::P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                .map(PublicKey::P256)
                .map_err(|_| err),
        }
    }

    /// The 33-byte compressed SEC1 point.
    pub fn to_compressed_bytes(&self) -> Vec<u8> {
        match self {
            PublicKey::K256(k) => k.to_encoded_point(true).as_bytes().to_vec(),
            PublicKey::P256(k) => k.to_encoded_point(true).as_bytes().to_vec(),
        }
    }

    /// The 65-byte uncompressed SEC1 point.
    pub fn to_uncompressed_bytes(&self) -> Vec<u8> {
        match self {
            PublicKey::K256(k) => k.to_encoded_point(false).as_bytes().to_vec(),
            PublicKey::P256(k) => k.to_encoded_point(false).as_bytes().to_vec(),
        }
    }

    /// Parses `did:key:z…`.
    pub fn from_did_key(s: &str) -> Result<PublicKey, CryptoError> {
        let mk = s
            .strip_prefix(DID_KEY_PREFIX)
            .ok_or(CryptoError::NotDidKey)?;
        PublicKey::from_multikey(mk)
    }

    /// `did:key:` + the multikey (compressed point).
    pub fn to_did_key(&self) -> String {
        format!("{DID_KEY_PREFIX}{}", self.to_multikey())
    }

    /// Parses a multikey `z…`: base58btc of the multicodec varint followed by the point, which
    /// may be compressed (current) or uncompressed (older documents).
    pub fn from_multikey(s: &str) -> Result<PublicKey, CryptoError> {
        let bytes = decode_base58btc(s)?;
        if let Some(point) = bytes.strip_prefix(&K256_CODEC) {
            PublicKey::from_sec1_bytes(KeyType::K256, point)
        } else if let Some(point) = bytes.strip_prefix(&P256_CODEC) {
            PublicKey::from_sec1_bytes(KeyType::P256, point)
        } else {
            Err(CryptoError::UnsupportedCodec)
        }
    }

    /// The multikey `z…` (base58btc of codec varint + compressed point).
    pub fn to_multikey(&self) -> String {
        let codec: &[u8] = match self {
            PublicKey::K256(_) => &K256_CODEC,
            PublicKey::P256(_) => &P256_CODEC,
        };
        let mut bytes = codec.to_vec();
        bytes.extend_from_slice(&self.to_compressed_bytes());
        format!("z{}", bs58::encode(bytes).into_string())
    }

    /// Parses the deprecated `publicKeyMultibase` of a legacy `EcdsaSecp256{k,r}1VerificationKey2019`
    /// verification method: `z` + base58btc of the raw point with no codec; the curve comes from
    /// the method's type. Accepts uncompressed (as the spec describes) and compressed points
    /// (as seen in the wild and in the official fixtures).
    pub fn from_legacy_multibase(kt: KeyType, s: &str) -> Result<PublicKey, CryptoError> {
        let bytes = decode_base58btc(s)?;
        PublicKey::from_sec1_bytes(kt, &bytes)
    }

    /// Verifies a signature over SHA-256(`msg`). Accepts only the 64-byte compact `r||s` form
    /// with low S; DER and high-S signatures are rejected.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        if sig.len() != 64 {
            return Err(CryptoError::SignatureLength(sig.len()));
        }
        let digest = Sha256::digest(msg);
        match self {
            PublicKey::K256(k) => {
                let sig = k256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| CryptoError::MalformedSignature)?;
                if sig.normalize_s().is_some() {
                    return Err(CryptoError::HighS);
                }
                k.verify_prehash(&digest, &sig)
                    .map_err(|_| CryptoError::BadSignature)
            }
            PublicKey::P256(k) => {
                let sig = p256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| CryptoError::MalformedSignature)?;
                if sig.normalize_s().is_some() {
                    return Err(CryptoError::HighS);
                }
                k.verify_prehash(&digest, &sig)
                    .map_err(|_| CryptoError::BadSignature)
            }
        }
    }
}

fn decode_base58btc(s: &str) -> Result<Vec<u8>, CryptoError> {
    let body = s.strip_prefix('z').ok_or(CryptoError::NotBase58btc)?;
    bs58::decode(body)
        .into_vec()
        .map_err(|e| CryptoError::Base58(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::testing::read_fixture;
    use base64::Engine;
    use serde_json::Value;

    fn b64(s: &str) -> Vec<u8> {
        // Fixtures use standard alphabet without padding.
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(s.trim_end_matches('='))
            .unwrap()
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[track_caller]
    fn check_signature(case: &Value) {
        let s = |k: &str| case[k].as_str().unwrap().to_string();
        let msg = b64(&s("messageBase64"));
        let sig = b64(&s("signatureBase64"));
        let valid = case["validSignature"].as_bool().unwrap();
        let tags: Vec<&str> = case["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let kt = KeyType::from_jwt_alg(&s("algorithm")).unwrap();
        assert_eq!(KeyType::from_legacy_suite(&s("didDocSuite")), Some(kt));

        let key = PublicKey::from_did_key(&s("publicKeyDid")).unwrap();
        assert_eq!(key.key_type(), kt);
        assert_eq!(key.to_did_key(), s("publicKeyDid"), "did:key round trip");
        let legacy = PublicKey::from_legacy_multibase(kt, &s("publicKeyMultibase")).unwrap();
        assert_eq!(legacy, key, "legacy multibase names the same key");

        let result = key.verify(&msg, &sig);
        assert_eq!(result.is_ok(), valid, "{}: {result:?}", s("comment"));
        if tags.contains(&"high-s") {
            assert_eq!(result, Err(CryptoError::HighS));
        }
        if tags.contains(&"der-encoded") {
            assert!(matches!(result, Err(CryptoError::SignatureLength(_))));
        }
    }

    #[test]
    fn signature_fixtures() {
        let cases: Vec<Value> = serde_json::from_str(&read_fixture(
            "interop-tests/crypto/signature-fixtures.json",
        ))
        .unwrap();
        for case in &cases {
            check_signature(case);
        }
        assert_eq!(cases.len(), 6);
        let tagged = |t: &str| {
            cases
                .iter()
                .filter(|c| c["tags"].as_array().unwrap().iter().any(|x| x == t))
                .count()
        };
        assert_eq!(tagged("high-s"), 2);
        assert_eq!(tagged("der-encoded"), 2);
    }

    #[track_caller]
    fn check_didkey(kt: KeyType, private: &[u8], expected_did: &str) {
        let kp = Keypair::from_private_bytes(kt, private).unwrap();
        assert_eq!(kp.private_bytes(), private);
        assert_eq!(kp.public_key().to_did_key(), expected_did);
        let parsed = PublicKey::from_did_key(expected_did).unwrap();
        assert_eq!(parsed, kp.public_key());
        assert_eq!(parsed.key_type(), kt);
    }

    #[test]
    fn w3c_didkey_k256() {
        let cases: Vec<Value> =
            serde_json::from_str(&read_fixture("interop-tests/crypto/w3c_didkey_K256.json"))
                .unwrap();
        for c in &cases {
            let private = hex(c["privateKeyBytesHex"].as_str().unwrap());
            check_didkey(KeyType::K256, &private, c["publicDidKey"].as_str().unwrap());
        }
        assert_eq!(cases.len(), 5);
    }

    #[test]
    fn w3c_didkey_p256() {
        let cases: Vec<Value> =
            serde_json::from_str(&read_fixture("interop-tests/crypto/w3c_didkey_P256.json"))
                .unwrap();
        for c in &cases {
            let private = bs58::decode(c["privateKeyBytesBase58"].as_str().unwrap())
                .into_vec()
                .unwrap();
            check_didkey(KeyType::P256, &private, c["publicDidKey"].as_str().unwrap());
        }
        assert_eq!(cases.len(), 1);
    }

    #[test]
    fn spec_examples_parse() {
        for (s, kt) in [
            (
                "did:key:zDnaembgSGUhZULN2Caob4HLJPaxBh92N7rtH21TErzqf8HQo",
                KeyType::P256,
            ),
            (
                "did:key:zQ3shqwJEJyMBsBXCWyCBpUBMqxcon9oHB7mCvx4sSpMdLJwc",
                KeyType::K256,
            ),
        ] {
            assert_eq!(PublicKey::from_did_key(s).unwrap().key_type(), kt);
        }
        // did.md: the same K-256 key in legacy (uncompressed, codec-less) and multikey form.
        let legacy = PublicKey::from_legacy_multibase(
            KeyType::K256,
            "zQYEBzXeuTM9UR3rfvNag6L3RNAs5pQZyYPsomTsgQhsxLdEgCrPTLgFna8yqCnxPpNT7DBk6Ym3dgPKNu86vt9GR",
        )
        .unwrap();
        assert_eq!(
            legacy.to_multikey(),
            "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"
        );
    }

    #[test]
    fn multikey_accepts_uncompressed_point() {
        for kt in [KeyType::K256, KeyType::P256] {
            let pk = Keypair::generate(kt).public_key();
            let codec: &[u8] = if kt == KeyType::K256 {
                &K256_CODEC
            } else {
                &P256_CODEC
            };
            let mut bytes = codec.to_vec();
            bytes.extend_from_slice(&pk.to_uncompressed_bytes());
            let mk = format!("z{}", bs58::encode(bytes).into_string());
            assert_eq!(PublicKey::from_multikey(&mk).unwrap(), pk);
            assert_eq!(PublicKey::from_multikey(&pk.to_multikey()).unwrap(), pk);
        }
    }

    #[test]
    fn bad_keys_are_errors() {
        assert_eq!(
            PublicKey::from_did_key("did:web:x"),
            Err(CryptoError::NotDidKey)
        );
        assert_eq!(
            PublicKey::from_multikey("Q3sh"),
            Err(CryptoError::NotBase58btc)
        );
        assert!(matches!(
            PublicKey::from_multikey("z0OIl"),
            Err(CryptoError::Base58(_))
        ));
        assert_eq!(
            PublicKey::from_multikey("z"),
            Err(CryptoError::UnsupportedCodec)
        );
        assert!(matches!(
            PublicKey::from_multikey(&format!(
                "z{}",
                bs58::encode([0xe7u8, 0x01, 2, 3]).into_string()
            )),
            Err(CryptoError::InvalidPublicKey { .. })
        ));
        assert!(Keypair::from_private_bytes(KeyType::K256, &[0u8; 32]).is_err());
        assert!(Keypair::from_private_bytes(KeyType::P256, &[1u8; 31]).is_err());
        assert!(Keypair::from_private_bytes(KeyType::P256, &[0xffu8; 32]).is_err());
    }

    #[test]
    fn sign_verify_round_trip_is_low_s() {
        for kt in [KeyType::K256, KeyType::P256] {
            let kp = Keypair::generate(kt);
            let pk = kp.public_key();
            // Many messages, so a high-S result (about half of raw ECDSA outputs) would show up.
            for i in 0..64u32 {
                let msg = format!("message {i}");
                let sig = kp.sign(msg.as_bytes());
                pk.verify(msg.as_bytes(), &sig).unwrap();
                let low = match kt {
                    KeyType::K256 => k256::ecdsa::Signature::from_slice(&sig)
                        .unwrap()
                        .normalize_s()
                        .is_none(),
                    KeyType::P256 => p256::ecdsa::Signature::from_slice(&sig)
                        .unwrap()
                        .normalize_s()
                        .is_none(),
                };
                assert!(low, "{kt:?} signature must be low-S");
                assert_eq!(pk.verify(b"other", &sig), Err(CryptoError::BadSignature));
            }
            // Restored from bytes, the key signs identically (RFC 6979 is deterministic).
            let again = Keypair::from_private_bytes(kt, &kp.private_bytes()).unwrap();
            assert_eq!(again.sign(b"x"), kp.sign(b"x"));
        }
    }

    #[test]
    fn high_s_made_from_a_valid_signature_is_rejected() {
        let kp = Keypair::generate(KeyType::P256);
        let sig = kp.sign(b"m");
        let parsed = p256::ecdsa::Signature::from_slice(&sig).unwrap();
        let (r, s) = parsed.split_scalars();
        let high = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        assert_eq!(
            kp.public_key().verify(b"m", &high.to_bytes()),
            Err(CryptoError::HighS)
        );
    }
}
