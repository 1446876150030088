//! Passwords and app passwords, hashed with argon2id (OWASP parameters: 19 MiB, 2 passes, 1
//! lane) into PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`). Only these hashes
//! ever enter the log (DESIGN invariant 5); a plaintext password never leaves the request.
//!
//! The reference PDS stores scrypt (`salt_hex:hash_hex`); importing such hashes is not handled
//! here. Its length rules are kept: a new password is at most 256 characters, a login attempt
//! at most 512 (counted in UTF-16 code units, as JavaScript's `length` does).
//!
//! Randomness: salts and app passwords come from the operating system's generator.

use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Longest password accepted when setting one (reference `NEW_PASSWORD_MAX_LENGTH`).
pub const NEW_PASSWORD_MAX: usize = 256;
/// Longest password accepted at login (reference: createSession).
pub const LOGIN_PASSWORD_MAX: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password is empty")]
    Empty,
    #[error("password too long: {len} characters, at most {max} allowed")]
    TooLong { len: usize, max: usize },
    /// The hasher refused its input (cannot happen with the fixed parameters; kept typed so no
    /// caller needs to panic).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Checks a password about to be set (createAccount, resetPassword, admin update).
pub fn check_new_password(password: &str) -> Result<(), PasswordError> {
    check_len(password, NEW_PASSWORD_MAX)
}

/// Checks a password offered at login; a longer one is rejected before any hashing.
pub fn check_login_password(password: &str) -> Result<(), PasswordError> {
    check_len(password, LOGIN_PASSWORD_MAX)
}

fn check_len(password: &str, max: usize) -> Result<(), PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    let len = password.encode_utf16().count();
    if len > max {
        return Err(PasswordError::TooLong { len, max });
    }
    Ok(())
}

/// The production parameters: argon2id v19, m = 19456 KiB, t = 2, p = 1, 32-byte output.
const PARAMS: Params = Params::DEFAULT;

/// Hashes a new password (after [`check_new_password`]) with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    hash_with(&PARAMS, password, &SaltString::generate(&mut OsRng))
}

/// argon2id v19 of `password` with `params`, as a PHC string.
fn hash_with(params: &Params, password: &str, salt: &SaltString) -> Result<String, PasswordError> {
    let err = |e: argon2::password_hash::Error| PasswordError::Hash(e.to_string());
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_buf).map_err(err)?;
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = with_memory(params.block_count(), |blocks| {
        Output::init_with(output_len, |out| {
            argon.hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, blocks).map_err(Into::into)
        })
    })
    .map_err(err)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(err)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// True if `password` matches the argon2id PHC string `phc`. The comparison of hash outputs is
/// constant-time (`Output`'s equality); the cost is that of the parameters stored in `phc`. A
/// malformed `phc`, or one for another algorithm, is simply `false`.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm != Algorithm::Argon2id.ident() || parsed.version.is_some_and(|v| v != 0x13) {
        return false;
    }
    let (Ok(params), Some(salt), Some(expected)) = (Params::try_from(&parsed), parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let computed = with_memory(params.block_count(), |blocks| {
        Output::init_with(expected.len(), |out| {
            argon.hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, blocks).map_err(Into::into)
        })
    });
    computed.is_ok_and(|c| c == expected)
}

/// How many argon2 work areas (19 MiB each with the production parameters) the process keeps.
///
/// glibc does not hand a freed 19 MiB buffer back to the OS: after the first one its dynamic mmap
/// threshold rises above that size, so later buffers come from per-thread arenas and stay there.
/// Allocating one per hash made a server that had created 65 accounts hold ~1 GB (BENCHMARKS.md).
/// So the work areas are allocated once and reused, and a hash waits for a free one: at most this
/// many hashes run at once (on 2 cores more would not finish sooner anyway). Callers run hashes on
/// blocking threads, where waiting is fine.
const WORK_AREAS: usize = 2;

struct Pool {
    /// Free work areas, and how many exist.
    state: Mutex<(Vec<Vec<Block>>, usize)>,
    freed: Condvar,
}

static POOL: Pool = Pool { state: Mutex::new((Vec::new(), 0)), freed: Condvar::new() };

/// Gives the work area back to the pool even if the hash panicked.
struct Lease(Vec<Block>);

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = POOL.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0.push(std::mem::take(&mut self.0));
        POOL.freed.notify_one();
    }
}

/// Runs `f` with a work area of `blocks` argon2 blocks from the pool, waiting for one if all are
/// in use.
fn with_memory<R>(blocks: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
    let mut lease = {
        let mut state = POOL.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(area) = state.0.pop() {
                break Lease(area);
            }
            if state.1 < WORK_AREAS {
                state.1 += 1;
                break Lease(Vec::new());
            }
            state = POOL.freed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    };
    if lease.0.len() < blocks {
        lease.0.resize(blocks, Block::new());
    }
    f(&mut lease.0[..blocks])
}

/// Spends what a real verification costs, for a login naming no account (or an account without
/// a password), so response times don't tell which identifiers exist. Always `false`.
pub fn dummy_verify(password: &str) -> bool {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("dummy password for unknown accounts").ok());
    match dummy {
        Some(phc) => {
            let _ = verify_password(password, phc);
        }
        None => {
            let _ = hash_password(password);
        }
    }
    false
}

// ---- app passwords ---------------------------------------------------------------------------

const APP_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A fresh app password, `xxxx-xxxx-xxxx-xxxx`: 16 characters of lowercase base32
/// (`a-z2-7`, 80 bits), as the reference generates them. Shown to the user once.
pub fn generate_app_password() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    let mut out = String::with_capacity(19);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        // 32 divides 256, so taking the low five bits is unbiased.
        out.push(char::from(APP_ALPHABET[usize::from(b & 31)]));
    }
    out
}

/// True if `s` has the shape of an app password (`xxxx-xxxx-xxxx-xxxx`, `a-z2-7`), so login
/// can try the app passwords only when the offered password could be one.
pub fn is_app_password_format(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| {
            if i % 5 == 4 {
                *c == b'-'
            } else {
                APP_ALPHABET.contains(c)
            }
        })
}

/// Hashes an app password for `did` with argon2id. The salt is derived from the DID (the first
/// 16 bytes of `sha256(did)`, as the reference derives its scrypt salt), so the hash is the same
/// every time: a login computes it once and looks it up among the account's app passwords,
/// instead of running one verification per app password. App passwords are random (80 bits), so
/// the fixed per-account salt costs nothing against guessing.
pub fn hash_app_password(did: &str, app_password: &str) -> Result<String, PasswordError> {
    hash_with(&PARAMS, app_password, &app_password_salt(did)?)
}

fn app_password_salt(did: &str) -> Result<SaltString, PasswordError> {
    let digest = Sha256::digest(did.as_bytes());
    SaltString::encode_b64(&digest[..16]).map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Constant-time equality of two stored hashes (e.g. [`hash_app_password`] output against the
/// stored ones).
pub fn hashes_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Cheap parameters so the debug-build tests run fast; verification reads the parameters
    /// from the PHC string, so the code under test is the production path.
    fn cheap_hash(password: &str) -> String {
        let params = Params::new(64, 1, 1, None).unwrap();
        hash_with(&params, password, &SaltString::generate(&mut OsRng)).unwrap()
    }

    /// Our PHC strings are the argon2 crate's own: each side verifies the other's (hashes made
    /// before the work-area pool existed still verify).
    #[test]
    fn phc_strings_interoperate_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(64, 1, 1, None).unwrap());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = argon.hash_password(b"hunter2", &salt).unwrap().to_string();
        let ours = hash_with(&Params::new(64, 1, 1, None).unwrap(), "hunter2", &salt).unwrap();
        assert_eq!(ours, theirs);
        assert!(verify_password("hunter2", &theirs));
        assert!(argon.verify_password(b"hunter2", &PasswordHash::new(&ours).unwrap()).is_ok());
        assert!(argon.verify_password(b"hunter3", &PasswordHash::new(&ours).unwrap()).is_err());
    }

    /// More hashes at once than there are work areas: every one still finishes and verifies.
    #[test]
    fn concurrent_hashes_share_the_work_areas() {
        let threads: Vec<_> = (0..8)
            .map(|i| std::thread::spawn(move || (i, cheap_hash(&format!("password {i}")))))
            .collect();
        for t in threads {
            let (i, phc) = t.join().unwrap();
            assert!(verify_password(&format!("password {i}"), &phc));
            assert!(!verify_password(&format!("password {}", i + 1), &phc));
        }
    }

    #[test]
    fn default_parameters_are_owasp() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery staple", &phc));
        assert!(!verify_password("correct horse battery stapler", &phc));
    }

    #[test]
    fn verify_right_and_wrong() {
        // (stored password, attempt, expected)
        let cases: &[(&str, &str, bool)] = &[
            ("hunter2", "hunter2", true),
            ("hunter2", "Hunter2", false),
            ("hunter2", "hunter2 ", false),
            ("hunter2", "hunter", false),
            ("hunter2", "", false),
            ("pässwörd ✓", "pässwörd ✓", true),
            ("pässwörd ✓", "passwörd ✓", false),
            (&"x".repeat(256), &"x".repeat(256), true),
            (&"x".repeat(256), &"x".repeat(255), false),
        ];
        for (stored, attempt, expected) in cases {
            let phc = cheap_hash(stored);
            assert_eq!(
                verify_password(attempt, &phc),
                *expected,
                "{stored:?} vs {attempt:?}"
            );
        }
        assert!(!cases.is_empty());
    }

    #[test]
    fn malformed_or_foreign_hashes_never_verify() {
        for phc in [
            "",
            "hunter2",
            "$argon2id$",
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$",
            "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$dGVzdHRlc3R0ZXN0dGVzdA",
            "0123456789abcdef:0123456789abcdef", // reference scrypt format
        ] {
            assert!(!verify_password("hunter2", phc), "{phc}");
        }
        // argon2i of the right password is refused too
        use argon2::password_hash::PasswordHasher;
        let argon = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        );
        let phc = argon.hash_password(b"hunter2", &SaltString::generate(&mut OsRng)).unwrap().to_string();
        assert!(phc.starts_with("$argon2i$"), "{phc}");
        assert!(!verify_password("hunter2", &phc));
    }

    #[test]
    fn salts_differ() {
        let a = cheap_hash("same");
        let b = cheap_hash("same");
        assert_ne!(a, b);
        assert!(verify_password("same", &a) && verify_password("same", &b));
    }

    #[test]
    fn dummy_verify_is_false_and_repeatable() {
        assert!(!dummy_verify("anything"));
        assert!(!dummy_verify("dummy password for unknown accounts"));
    }

    #[test]
    fn length_limits() {
        // (password, new ok, login ok)
        type Case = (String, Result<(), PasswordError>, Result<(), PasswordError>);
        let cases: Vec<Case> = vec![
            ("a".into(), Ok(()), Ok(())),
            (
                String::new(),
                Err(PasswordError::Empty),
                Err(PasswordError::Empty),
            ),
            ("a".repeat(256), Ok(()), Ok(())),
            (
                "a".repeat(257),
                Err(PasswordError::TooLong { len: 257, max: 256 }),
                Ok(()),
            ),
            (
                "a".repeat(512),
                Err(PasswordError::TooLong { len: 512, max: 256 }),
                Ok(()),
            ),
            (
                "a".repeat(513),
                Err(PasswordError::TooLong { len: 513, max: 256 }),
                Err(PasswordError::TooLong { len: 513, max: 512 }),
            ),
            // 'é' is one UTF-16 unit, 2 UTF-8 bytes: 256 of them still fit
            ("é".repeat(256), Ok(()), Ok(())),
            // '😀' is two UTF-16 units (JavaScript length 2): 129 of them are 258
            (
                "😀".repeat(129),
                Err(PasswordError::TooLong { len: 258, max: 256 }),
                Ok(()),
            ),
        ];
        for (pw, new, login) in &cases {
            assert_eq!(&check_new_password(pw), new, "new {}", pw.len());
            assert_eq!(&check_login_password(pw), login, "login {}", pw.len());
        }
    }

    #[test]
    fn app_password_format() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let p = generate_app_password();
            assert!(is_app_password_format(&p), "{p}");
            assert!(seen.insert(p));
        }
        for (s, ok) in [
            ("abcd-efgh-ijkl-mnop", true),
            ("2345-67ab-cdef-ghij", true),
            ("abcd-efgh-ijkl-mno1", false), // 1 is not base32
            ("abcd-efgh-ijkl-mno8", false),
            ("ABCD-EFGH-IJKL-MNOP", false),
            ("abcdefghijklmnop", false),
            ("abcd-efgh-ijkl-mnopq", false),
            ("abcd_efgh-ijkl-mnop", false),
            ("abcd-efgh-ijkl-mno", false),
            ("", false),
        ] {
            assert_eq!(is_app_password_format(s), ok, "{s}");
        }
    }

    #[test]
    fn app_password_hash_is_deterministic_per_did() {
        let pw = "abcd-efgh-ijkl-mnop";
        let a = hash_app_password("did:plc:alice", pw).unwrap();
        let b = hash_app_password("did:plc:alice", pw).unwrap();
        let other_did = hash_app_password("did:plc:bob", pw).unwrap();
        let other_pw = hash_app_password("did:plc:alice", "abcd-efgh-ijkl-mnoq").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(hashes_equal(&a, &b));
        assert!(!hashes_equal(&a, &other_did));
        assert!(!hashes_equal(&a, &other_pw));
        assert!(!hashes_equal(&a, &a[..a.len() - 1]));
        assert!(verify_password(pw, &a));
    }
}
