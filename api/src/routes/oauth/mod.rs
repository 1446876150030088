//! The OAuth authorization server: metadata, PAR, token, revoke (`server.rs`) and the sign-in
//! and consent page (`authorize_page.rs`). The resource-server side is in the kernel
//! (`xrpc/oauth.rs`).

pub mod authorize_page;
pub mod server;
