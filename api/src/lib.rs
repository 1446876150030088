//! `api`: the only crate that knows HTTP, XRPC JSON shapes and the command line.
//! It never decides domain rules itself: it parses, calls `domain`/`commands`, and renders.

pub mod admin;
pub mod admin_accounts;
pub mod admin_cli;
pub mod auth;
pub mod blob_routes;
pub mod car_tools;
pub mod cli;
pub mod config;
pub mod crawlers;
pub mod event_json;
pub mod firehose;
pub mod import_routes;
pub mod oauth_authorize_page;
pub mod oauth_resource;
pub mod oauth_routes;
pub mod oauth_runtime;
pub mod mail;
pub mod ops;
pub mod repo_routes;
pub mod secrets;
pub mod server;
pub mod server_account_status;
pub mod server_accounts;
pub mod server_app_passwords;
pub mod server_email;
pub mod server_identity;
pub mod server_invites;
pub mod sync_routes;
pub mod xrpc;
