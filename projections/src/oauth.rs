//! `oauth` (inline, `oauth.*` events of the `oauth/<request id>` streams, `domain::oauth::aggregate`):
//! `oauth_requests` (client, expiry; after approval the DID, granted scope and code hash),
//! `oauth_code_uses` (one row per consumed code: a second consumption violates the primary key
//! even if two nodes decided at once), `oauth_sessions` (current token id and refresh hash,
//! DPoP key, revocation) and `oauth_used_refresh_tokens` (rotated hashes, for reuse detection).
//! Lookups: a request by code hash or refresh hash, a session by access-token id.
//!
//! Never reads the clock and never holds a secret: times and hashes come from the events.

use domain::oauth::aggregate::{OAuthEvent, EVENT_TYPES};
use eventlog::{Envelope, EventLog, ReadPool, Tx};
use futures_util::future::BoxFuture;
use sqlx::Row;

use crate::sql::{exec, numbered, Arg};
use crate::{Kind, ProjectionError, Projector, Table};

pub const NAME: &str = "oauth";

pub const PROJECTOR: Projector = Projector {
    name: NAME,
    kind: Kind::Inline,
    handles: &EVENT_TYPES,
    tables: &[
        Table {
            name: "oauth_requests",
            columns: &["request_id", "client_id", "expires_at", "created_at", "did", "scope", "code_hash"],
        },
        Table { name: "oauth_code_uses", columns: &["code_hash", "request_id", "used_at"] },
        Table {
            name: "oauth_sessions",
            columns: &["request_id", "token_id", "refresh_hash", "dpop_jkt", "created_at", "refreshed_at", "revoked_at"],
        },
        Table { name: "oauth_used_refresh_tokens", columns: &["refresh_hash", "request_id"] },
    ],
    apply,
};

fn apply<'a>(mut tx: Tx<'a>, events: &'a [&'a Envelope]) -> BoxFuture<'a, Result<(), ProjectionError>> {
    Box::pin(async move {
        for e in events {
            let fail = |message: String| ProjectionError::Apply { projector: NAME, position: e.position, message };
            let event = OAuthEvent::from_payload(&e.event_type, e.event_version, &e.payload)
                .map_err(|err| fail(err.to_string()))?;
            let id = e.stream.strip_prefix("oauth/").ok_or_else(|| fail(format!("stream {} is not oauth/…", e.stream)))?;
            let id = Arg::from(id);
            match &event {
                OAuthEvent::Requested(r) => {
                    exec(
                        &mut tx,
                        "INSERT INTO oauth_requests (request_id, client_id, expires_at, created_at) VALUES (?, ?, ?, ?)",
                        &[id, r.client_id.clone().into(), r.expires_at.into(), r.at.into()],
                    )
                    .await?;
                }
                // The device binding matters to the write side only.
                OAuthEvent::DeviceBound { .. } => {}
                OAuthEvent::CodeIssued { did, scope, code_hash, .. } => {
                    exec(
                        &mut tx,
                        "UPDATE oauth_requests SET did = ?, scope = ?, code_hash = ? WHERE request_id = ?",
                        &[did.clone().into(), scope.clone().into(), code_hash.clone().into(), id],
                    )
                    .await?;
                }
                OAuthEvent::CodeConsumed { code_hash, at } => {
                    exec(
                        &mut tx,
                        "INSERT INTO oauth_code_uses (code_hash, request_id, used_at) VALUES (?, ?, ?)",
                        &[code_hash.clone().into(), id, (*at).into()],
                    )
                    .await?;
                }
                OAuthEvent::TokenIssued { token_id, refresh_hash, dpop_jkt, at } => {
                    exec(
                        &mut tx,
                        "INSERT INTO oauth_sessions (request_id, token_id, refresh_hash, dpop_jkt, created_at, refreshed_at) \
                         VALUES (?, ?, ?, ?, ?, ?)",
                        &[id, token_id.clone().into(), refresh_hash.clone().into(), dpop_jkt.clone().into(), (*at).into(), (*at).into()],
                    )
                    .await?;
                }
                OAuthEvent::TokenRotated { token_id, refresh_hash, previous_refresh_hash, at } => {
                    exec(
                        &mut tx,
                        "INSERT INTO oauth_used_refresh_tokens (refresh_hash, request_id) VALUES (?, ?)",
                        &[previous_refresh_hash.clone().into(), id.clone()],
                    )
                    .await?;
                    exec(
                        &mut tx,
                        "UPDATE oauth_sessions SET token_id = ?, refresh_hash = ?, refreshed_at = ? WHERE request_id = ?",
                        &[token_id.clone().into(), refresh_hash.clone().into(), (*at).into(), id],
                    )
                    .await?;
                }
                OAuthEvent::Revoked { at, .. } => {
                    exec(
                        &mut tx,
                        "UPDATE oauth_sessions SET revoked_at = ? WHERE request_id = ? AND revoked_at IS NULL",
                        &[(*at).into(), id],
                    )
                    .await?;
                }
            }
        }
        Ok(())
    })
}

async fn text(log: &EventLog, sql: &str, arg: &str) -> Result<Option<String>, ProjectionError> {
    Ok(crate::sql::fetch_text(log.read_pool(), sql, &[arg.into()]).await?)
}

/// Every OAuth request (and so session) of `did`: the `oauth/<request id>` streams erasure purges.
pub async fn request_ids_of(log: &EventLog, did: &str) -> Result<Vec<String>, ProjectionError> {
    let sql = "SELECT request_id FROM oauth_requests WHERE did = ? ORDER BY request_id";
    let rows: Vec<(String,)> = match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query_as(sql).bind(did).fetch_all(p).await?,
        ReadPool::Postgres(p) => sqlx::query_as(&numbered(sql)).bind(did).fetch_all(p).await?,
    };
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// The request whose code hashes to `code_hash`.
pub async fn request_by_code_hash(log: &EventLog, code_hash: &str) -> Result<Option<String>, ProjectionError> {
    text(log, "SELECT request_id FROM oauth_requests WHERE code_hash = ?", code_hash).await
}

/// The session whose current or any rotated refresh token hashes to `refresh_hash`.
pub async fn request_by_refresh_hash(log: &EventLog, refresh_hash: &str) -> Result<Option<String>, ProjectionError> {
    if let Some(id) = text(log, "SELECT request_id FROM oauth_sessions WHERE refresh_hash = ?", refresh_hash).await? {
        return Ok(Some(id));
    }
    text(log, "SELECT request_id FROM oauth_used_refresh_tokens WHERE refresh_hash = ?", refresh_hash).await
}

/// The session whose current access token id is `token_id`.
pub async fn request_by_token_id(log: &EventLog, token_id: &str) -> Result<Option<String>, ProjectionError> {
    text(log, "SELECT request_id FROM oauth_sessions WHERE token_id = ?", token_id).await
}

/// What the resource server checks on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveToken {
    pub request_id: String,
    pub did: String,
    pub client_id: String,
    pub scope: String,
    pub dpop_jkt: String,
    pub revoked: bool,
}

/// The session whose *current* access token id is `token_id` (a rotated-away id is not found).
pub async fn active_token(log: &EventLog, token_id: &str) -> Result<Option<ActiveToken>, ProjectionError> {
    const SQL: &str = "SELECT s.request_id, r.did, r.client_id, r.scope, s.dpop_jkt, s.revoked_at \
                       FROM oauth_sessions s JOIN oauth_requests r ON r.request_id = s.request_id \
                       WHERE s.token_id = ?";
    let row = match log.read_pool() {
        ReadPool::Sqlite(p) => sqlx::query(SQL).bind(token_id).fetch_optional(p).await?.map(|r| {
            (r.get::<String, _>(0), r.get::<Option<String>, _>(1), r.get::<String, _>(2), r.get::<Option<String>, _>(3), r.get::<String, _>(4), r.get::<Option<i64>, _>(5))
        }),
        ReadPool::Postgres(p) => sqlx::query(&numbered(SQL)).bind(token_id).fetch_optional(p).await?.map(|r| {
            (r.get::<String, _>(0), r.get::<Option<String>, _>(1), r.get::<String, _>(2), r.get::<Option<String>, _>(3), r.get::<String, _>(4), r.get::<Option<i64>, _>(5))
        }),
    };
    Ok(row.map(|(request_id, did, client_id, scope, dpop_jkt, revoked)| ActiveToken {
        request_id,
        did: did.unwrap_or_default(),
        client_id,
        scope: scope.unwrap_or_default(),
        dpop_jkt,
        revoked: revoked.is_some(),
    }))
}
