//! Syntax of atproto identifiers and Lexicon string formats: DID, handle, NSID, TID, record key,
//! AT-URI, at-identifier, datetime, CID, language, URI.
//!
//! Each format has an `is_valid_*(&str) -> bool` check; the identifiers that the rest of the
//! PDS passes around also have a validated newtype (`Did`, `Handle`, `Nsid`, `RecordKey`,
//! `AtUri`, `Datetime`, `Language`) whose `parse` returns a [`SyntaxError`] naming the kind
//! and the reason. Hand-written checks, no regex; never panics on any input.
//!
//! Never resolves anything: whether a DID method is supported or a handle's TLD may be
//! registered is the caller's business (see [`Handle::has_disallowed_tld`]).

mod datetime;
mod formats;
mod identifiers;
mod language;

pub use datetime::{civil_from_days, is_valid_datetime, is_valid_datetime_syntax, Datetime};
pub use formats::{is_valid_cid, is_valid_uri};
pub use identifiers::{
    is_valid_at_identifier, is_valid_at_uri, is_valid_did, is_valid_handle, is_valid_nsid,
    is_valid_record_key, is_valid_tid, AtIdentifier, AtUri, Did, Handle, Nsid, RecordKey,
};
pub use language::{is_valid_language, is_valid_language_parse, Language};

/// Which format failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("invalid DID: {0}")]
    Did(&'static str),
    #[error("invalid handle: {0}")]
    Handle(&'static str),
    #[error("invalid NSID: {0}")]
    Nsid(&'static str),
    #[error("invalid TID: {0}")]
    Tid(&'static str),
    #[error("invalid record key: {0}")]
    RecordKey(&'static str),
    #[error("invalid AT-URI: {0}")]
    AtUri(&'static str),
    #[error("invalid at-identifier: {0}")]
    AtIdentifier(&'static str),
    #[error("invalid datetime: {0}")]
    Datetime(&'static str),
    #[error("invalid CID string: {0}")]
    Cid(&'static str),
    #[error("invalid language tag: {0}")]
    Language(&'static str),
    #[error("invalid URI: {0}")]
    Uri(&'static str),
}

/// Implements `as_str`, `Display`, `AsRef<str>`, `FromStr` and `TryFrom<&str>` for a
/// `struct X(String)` newtype with an associated `parse`.
macro_rules! string_newtype {
    ($t:ident) => {
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl std::str::FromStr for $t {
            type Err = $crate::syntax::SyntaxError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $t::parse(s)
            }
        }
        impl TryFrom<&str> for $t {
            type Error = $crate::syntax::SyntaxError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                $t::parse(s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
    };
}
pub(crate) use string_newtype;

#[cfg(test)]
pub(crate) mod test_support {
    use crate::testing::fixture_lines;

    /// Runs `check` on every case of `interop-tests/syntax/{file}` and asserts the case count.
    #[track_caller]
    pub fn each_case(file: &str, expected_count: usize, mut check: impl FnMut(&str)) {
        let lines = fixture_lines(&format!("interop-tests/syntax/{file}"));
        for line in &lines {
            check(line);
        }
        assert_eq!(lines.len(), expected_count, "case count of {file}");
    }
}
