//! `com.atproto.server.*`, one file per topic: `describe_server.rs`, `accounts.rs` (accounts and
//! sessions), `invites.rs`, `app_passwords.rs`, `account_status.rs`, `email.rs` (email and
//! password flows, account deletion), `service_auth.rs`, `reserve_signing_key.rs`.

pub mod account_status;
pub mod accounts;
pub mod app_passwords;
pub mod describe_server;
pub mod email;
pub mod invites;
pub mod reserve_signing_key;
pub mod service_auth;
