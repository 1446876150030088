//! `com.atproto.sync.*`: repo reads (`repo.rs`), blobs (`blobs.rs`), the firehose
//! (`subscribe_repos.rs`).

pub mod blobs;
pub mod repo;
pub mod subscribe_repos;
