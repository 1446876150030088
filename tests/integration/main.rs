//! One integration test binary: drives the real `pds` binary (HTTP in, files and exit codes out).
//! `scripts/test` builds the binary first; the harness finds it next to this test executable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod car_cli;
mod serve;
mod plc;
mod plc_directory;
mod projections;
mod firehose;
mod accounts;
mod interop;
mod invites;
mod app_passwords;
mod account_status;
mod records;
mod admin_accounts;
mod sync;
mod sync_interop;
mod conformance;
mod oauth;
mod identity;
mod email;
mod blobs;
mod repos;
mod preferences;
mod proxy;
mod bsky_app;
mod import;
mod import_interop;
