//! `com.atproto.*`: one module per NSID namespace (`com.atproto.repo.*` → `repo/`, …).

pub mod admin;
pub mod identity;
pub mod repo;
pub mod server;
pub mod sync;
