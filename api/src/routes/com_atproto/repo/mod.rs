//! `com.atproto.repo.*`: records (`records.rs`), blobs (`blobs.rs`) and `importRepo`
//! (`import.rs`).

pub mod blobs;
pub mod import;
pub mod records;
