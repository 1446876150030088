//! `api`: the only crate that knows HTTP, XRPC JSON shapes and the command line.
//! It never decides domain rules itself: it parses, calls `domain`/`commands`, and renders.
//!
//! `xrpc/` is the kernel (method table mounting, checks, auth, errors); `routes/` holds the route
//! modules by namespace and THE method table (`routes::methods`); `cli/` the `pds` subcommands.

pub mod appview;
pub mod blob_cleaner;
pub mod cli;
pub mod config;
pub mod crawlers;
pub mod event_json;
pub mod mail;
pub mod oauth_runtime;
pub mod proxy;
pub mod read_after_write;
pub mod routes;
pub mod secrets;
pub mod server;
pub mod xrpc;
