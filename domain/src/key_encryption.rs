//! Signing keys at rest: AES-256-GCM under a key derived by HKDF-SHA256 from the configured
//! key-encryption key (`PDS_KEY_ENCRYPTION_KEY`, 32 bytes), with the account's DID as associated
//! data, so an encrypted key can enter the log (DESIGN invariant 5) and cannot be moved to
//! another account's events without failing to decrypt.
//!
//! Blob layout: `version (1 byte) || nonce (12 random bytes) || ciphertext || tag (16 bytes)`.
//! Version 1 = HKDF-SHA256(salt none, ikm = KEK, info = `pds signing key v1`) → AES-256-GCM.
//! A new scheme gets a new version byte and its own `info`; old blobs stay readable.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The one scheme written today.
pub const VERSION_1: u8 = 1;
const INFO_V1: &[u8] = b"pds signing key v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyEncryptionError {
    #[error("encrypted key is {0} bytes, shorter than a header and a tag")]
    Truncated(usize),
    #[error("encrypted key has unknown version {0}")]
    UnknownVersion(u8),
    /// Wrong key-encryption key, wrong DID, or altered bytes: AES-GCM does not say which.
    #[error(
        "encrypted key does not authenticate (wrong key-encryption key, wrong DID, or altered)"
    )]
    Unauthentic,
    #[error("key encryption failed")]
    Encrypt,
    #[error("key-encryption key must be 64 hex characters (32 bytes)")]
    BadKek,
}

/// Parses `PDS_KEY_ENCRYPTION_KEY` (64 hex characters, either case).
pub fn parse_kek_hex(hex: &str) -> Result<Zeroizing<[u8; 32]>, KeyEncryptionError> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return Err(KeyEncryptionError::BadKek);
    }
    let mut out = Zeroizing::new([0u8; 32]);
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let hi = hex_digit(pair[0]).ok_or(KeyEncryptionError::BadKek)?;
        let lo = hex_digit(pair[1]).ok_or(KeyEncryptionError::BadKek)?;
        *byte = (hi << 4) | lo;
    }
    Ok(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn cipher_v1(kek: &[u8; 32]) -> Result<Aes256Gcm, KeyEncryptionError> {
    cipher(kek, INFO_V1)
}

fn cipher(kek: &[u8; 32], info: &[u8]) -> Result<Aes256Gcm, KeyEncryptionError> {
    let mut okm = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, kek)
        .expand(info, okm.as_mut())
        .map_err(|_| KeyEncryptionError::Encrypt)?;
    Aes256Gcm::new_from_slice(okm.as_ref()).map_err(|_| KeyEncryptionError::Encrypt)
}

/// Encrypts `plaintext` (a private key's bytes) for the account `did`, with a fresh random
/// nonce. Fails only if the cipher refuses (inputs beyond 64 GiB).
pub fn encrypt_key(
    kek: &[u8; 32],
    did: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, KeyEncryptionError> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    encrypt_with_nonce(kek, did, plaintext, nonce)
}

fn encrypt_with_nonce(
    kek: &[u8; 32],
    did: &str,
    plaintext: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, KeyEncryptionError> {
    let sealed = cipher_v1(kek)?
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: did.as_bytes(),
            },
        )
        .map_err(|_| KeyEncryptionError::Encrypt)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(VERSION_1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The same scheme for other secrets at rest: AES-256-GCM under HKDF(KEK, `info`), `aad` bound,
/// blob layout `version || nonce || ciphertext || tag` with version [`VERSION_1`]. A distinct
/// `info` per use keeps the derived keys apart (a sealed notification cannot be opened as a key).
pub fn seal(kek: &[u8; 32], info: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyEncryptionError> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let sealed = cipher(kek, info)?
        .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad })
        .map_err(|_| KeyEncryptionError::Encrypt)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(VERSION_1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a blob from [`seal`] with the same `info` and `aad`.
pub fn open(kek: &[u8; 32], info: &[u8], aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyEncryptionError> {
    let Some((&version, rest)) = blob.split_first() else {
        return Err(KeyEncryptionError::Truncated(0));
    };
    if version != VERSION_1 {
        return Err(KeyEncryptionError::UnknownVersion(version));
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(KeyEncryptionError::Truncated(blob.len()));
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeyEncryptionError::Truncated(blob.len()))?;
    cipher(kek, info)?
        .decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad })
        .map(Zeroizing::new)
        .map_err(|_| KeyEncryptionError::Unauthentic)
}

/// Decrypts a blob from [`encrypt_key`] for `did`. The plaintext is wiped when dropped.
pub fn decrypt_key(
    kek: &[u8; 32],
    did: &str,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyEncryptionError> {
    let Some((&version, rest)) = blob.split_first() else {
        return Err(KeyEncryptionError::Truncated(0));
    };
    if version != VERSION_1 {
        return Err(KeyEncryptionError::UnknownVersion(version));
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(KeyEncryptionError::Truncated(blob.len()));
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| KeyEncryptionError::Truncated(blob.len()))?;
    cipher_v1(kek)?
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: sealed,
                aad: did.as_bytes(),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| KeyEncryptionError::Unauthentic)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const KEK: [u8; 32] = [7u8; 32];
    const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";

    #[test]
    fn round_trip() {
        for plaintext in [
            &[][..],
            &[1u8; 32][..],
            &[0xAB; 65][..],
            &(0..=255).collect::<Vec<u8>>()[..],
        ] {
            let blob = encrypt_key(&KEK, DID, plaintext).unwrap();
            assert_eq!(blob.len(), 1 + 12 + plaintext.len() + 16);
            assert_eq!(blob[0], VERSION_1);
            assert_eq!(decrypt_key(&KEK, DID, &blob).unwrap().as_slice(), plaintext);
        }
    }

    #[test]
    fn round_trip_a_real_signing_key() {
        use crate::crypto::{KeyType, Keypair};
        for kt in [KeyType::K256, KeyType::P256] {
            let kp = Keypair::generate(kt);
            let blob = encrypt_key(&KEK, DID, &kp.private_bytes()).unwrap();
            let back =
                Keypair::from_private_bytes(kt, &decrypt_key(&KEK, DID, &blob).unwrap()).unwrap();
            assert_eq!(back.public_key(), kp.public_key());
        }
    }

    #[test]
    fn nonces_differ() {
        let a = encrypt_key(&KEK, DID, b"key").unwrap();
        let b = encrypt_key(&KEK, DID, b"key").unwrap();
        assert_ne!(a[1..13], b[1..13]);
        assert_ne!(a, b);
    }

    #[test]
    fn tampering_is_detected() {
        let blob = encrypt_key(&KEK, DID, &[0x42; 32]).unwrap();
        let mut other_kek = KEK;
        other_kek[31] ^= 1;
        type Case<'a> = (String, [u8; 32], &'a str, Vec<u8>, KeyEncryptionError);
        let mut cases: Vec<Case> = vec![
            (
                "wrong kek".into(),
                other_kek,
                DID,
                blob.clone(),
                KeyEncryptionError::Unauthentic,
            ),
            (
                "wrong did".into(),
                KEK,
                "did:plc:ewvi7nxzyoun6zhxrhs64oia",
                blob.clone(),
                KeyEncryptionError::Unauthentic,
            ),
            (
                "empty did".into(),
                KEK,
                "",
                blob.clone(),
                KeyEncryptionError::Unauthentic,
            ),
            (
                "empty".into(),
                KEK,
                DID,
                vec![],
                KeyEncryptionError::Truncated(0),
            ),
            (
                "header only".into(),
                KEK,
                DID,
                blob[..13].to_vec(),
                KeyEncryptionError::Truncated(13),
            ),
            (
                "no tag".into(),
                KEK,
                DID,
                blob[..28].to_vec(),
                KeyEncryptionError::Truncated(28),
            ),
            (
                "tag cut".into(),
                KEK,
                DID,
                blob[..blob.len() - 1].to_vec(),
                KeyEncryptionError::Unauthentic,
            ),
            (
                "appended".into(),
                KEK,
                DID,
                [&blob[..], &[0]].concat(),
                KeyEncryptionError::Unauthentic,
            ),
        ];
        let mut version = blob.clone();
        version[0] = 2;
        cases.push((
            "version 2".into(),
            KEK,
            DID,
            version,
            KeyEncryptionError::UnknownVersion(2),
        ));
        for bit in [8, 8 * 5 + 3, 8 * 13, 8 * 30 + 7, blob.len() * 8 - 1] {
            let mut flipped = blob.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            cases.push((
                format!("bit {bit} flipped"),
                KEK,
                DID,
                flipped,
                KeyEncryptionError::Unauthentic,
            ));
        }
        for (name, kek, did, bytes, expected) in &cases {
            assert_eq!(
                decrypt_key(kek, did, bytes).unwrap_err(),
                *expected,
                "{name}"
            );
        }
        assert_eq!(
            decrypt_key(&KEK, DID, &blob).unwrap().as_slice(),
            &[0x42; 32]
        );
    }

    #[test]
    fn known_answer_with_fixed_nonce() {
        // Pins the scheme (HKDF info, AAD, layout): a change here makes stored keys unreadable.
        let blob = encrypt_with_nonce(&KEK, DID, b"signing key bytes", [9u8; 12]).unwrap();
        assert_eq!(to_hex(&blob), KAT_V1);
        assert_eq!(
            decrypt_key(&KEK, DID, &blob).unwrap().as_slice(),
            b"signing key bytes"
        );
    }
    /// Computed independently with Python `cryptography` 48 (HKDF(SHA256, salt=None,
    /// info=b"pds signing key v1") over the KEK, then AESGCM.encrypt(nonce, msg, did)).
    const KAT_V1: &str = "01090909090909090909090909118b392e87c1b14dc6957ef343972c417c967caa1e54ce50c964b90442c2d05089";

    fn to_hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn kek_hex() {
        let k = parse_kek_hex(&"0aF1".repeat(16)).unwrap();
        assert_eq!(k[0], 0x0a);
        assert_eq!(k[1], 0xf1);
        for bad in [
            "",
            "00",
            &"0".repeat(63),
            &"0".repeat(65),
            &format!("{}g", "0".repeat(63)),
        ] {
            assert_eq!(
                parse_kek_hex(bad).unwrap_err(),
                KeyEncryptionError::BadKek,
                "{bad}"
            );
        }
    }
}
