//! `domain`: the atproto data model and the PDS's pure rules.
//!
//! Never performs I/O, never awaits, never touches a database or HTTP: state in, values out.
//! Everything here is deterministic given its inputs (randomness and clocks are passed in or
//! isolated in `tid::TidClock` and key generation).

pub mod account;
pub mod blob;
pub mod car;
pub mod cbor;
pub mod commit;
pub mod crypto;
pub mod did_doc;
pub mod email_token;
pub mod handle_rules;
pub mod invite;
pub mod json;
pub mod key_encryption;
pub mod lexicon;
pub mod mst;
pub mod notification;
pub mod notification_prefs;
pub mod oauth;
pub mod password;
pub mod plc;
pub mod plc_directory;
pub mod repo;
pub mod reserved_key;
pub mod service_jwt;
pub mod session_jwt;
pub mod syntax;
pub mod tid;

#[cfg(test)]
pub(crate) mod testing;
