//! `com.atproto.*`: one module per NSID namespace (`com.atproto.repo.*` → `repo/`, …).

pub mod admin;
pub mod admin_email;
pub mod identity;
pub mod identity_resolve;
pub mod repo;
pub mod server;
pub mod sync;
pub mod temp;
