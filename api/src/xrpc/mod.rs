//! The XRPC kernel: everything route modules share, and nothing that belongs to one namespace.
//!
//! - `methods.rs` — [`Method`]: one row of the method table (NSID, handler, [`Auth`] kind, OAuth
//!   [`Permission`], [`BodyLimit`]) and [`router`], which mounts the table's rows under
//!   `/xrpc/<nsid>`, runs each row's checks before its handler, and sends every other
//!   `/xrpc/<nsid>` to one fallback (the seam for the proxy).
//! - `error.rs` — [`XrpcError`] (the one `{"error","message"}` body), [`command_error`] (the one
//!   mapping of `commands::CommandError`), and the rewrite of axum's plain-text rejections.
//! - `auth.rs` — [`AccessAuth`] (Bearer access JWTs; OAuth/DPoP through `oauth.rs`),
//!   [`bearer_token`], the scope levels and the admin Basic check.
//! - `oauth.rs` — the OAuth resource server: DPoP-bound tokens and per-method permissions.
//! - `dpop.rs` — DPoP proof checks shared with the authorization server (`routes/oauth/`).
//! - `input.rs` — JSON bodies and query parameters → `InvalidRequest` when malformed.
//! - `context.rs` — [`ctx`]: the `commands::Ctx` of a request.
//! - `availability.rs` — the reference's `assertRepoAvailability`.
//!
//! Route modules (`crate::routes::…`) import from here and never from each other.

pub mod auth;
pub mod availability;
pub mod context;
pub mod dpop;
pub mod error;
pub mod input;
pub mod methods;
pub mod oauth;

pub use auth::{bearer_token, require_admin, require_full_access, require_standard_access, AccessAuth};
pub use context::ctx;
pub use error::{command_error, plain_rejections_as_xrpc, XrpcError};
pub use input::{body, params, required, JSON_LIMIT};
pub use methods::{router, Auth, BodyLimit, Method};
pub use oauth::Permission;

/// What a route module usually needs, in one import.
pub mod prelude {
    pub use super::{
        bearer_token, body, command_error, ctx, params, require_admin, require_full_access, require_standard_access,
        required, AccessAuth, XrpcError, JSON_LIMIT,
    };
    pub use crate::server::AppState;
}
