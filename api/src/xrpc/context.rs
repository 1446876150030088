//! The command context of a request: `commands::Ctx` built from the server's state.

use commands::Ctx;

use super::{command_error, XrpcError};
use crate::server::AppState;

pub fn ctx(state: &AppState) -> Result<Ctx, XrpcError> {
    let c = &state.config;
    Ctx::new(
        state.appender.clone(),
        commands::Settings {
            jwt_secret: &c.secrets.jwt_secret,
            service_did: &c.service_did,
            public_url: &c.public_url,
            handle_domains: &c.service_handle_domains,
            invite_required: c.invite_required,
            plc_url: &c.did_plc_url,
            plc_embedded: c.embedded_plc,
            plc_rotation_key_hex: &c.secrets.plc_rotation_key_hex,
            key_encryption_key_hex: &c.secrets.key_encryption_key_hex,
        },
    )
    .map(|c| c.with_blobstore(state.blobstore.clone()))
    .map_err(command_error)
}
