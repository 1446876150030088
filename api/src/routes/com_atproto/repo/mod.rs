//! `com.atproto.repo.*`: records (`records.rs`) and blobs (`blobs.rs`).

pub mod blobs;
pub mod records;
