//! The emailed-token flows over XRPC, as the reference: `com.atproto.server.{
//! requestEmailConfirmation, confirmEmail, requestEmailUpdate, updateEmail,
//! requestPasswordReset, resetPassword, requestAccountDelete, deleteAccount}`. The `request*`
//! handlers deliver the command's [`commands::Mail`] through `mail.rs` (the dev mail sink).
//! Session-authenticated ones need standard access (no takendown session). `updateEmail` with
//! `emailAuthFactor` switches email two-factor login (`createSession` then answers 401
//! `AuthFactorTokenRequired` and mails a sign-in code until `authFactorToken` carries it).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use domain::account::EmailTokenPurpose;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::xrpc::prelude::*;

fn send(state: &AppState, mail: Option<commands::Mail>) -> Result<(), XrpcError> {
    match mail {
        Some(m) => crate::mail::deliver(&state.config, &m).map_err(|e| XrpcError::internal(&e)),
        None => Ok(()),
    }
}

async fn request(state: &AppState, auth: &AccessAuth, purpose: EmailTokenPurpose) -> Result<bool, XrpcError> {
    let ctx = ctx(state)?;
    let mail = commands::request_email_token(&ctx, &auth.did, purpose).await.map_err(command_error)?;
    let sent = mail.is_some();
    send(state, mail)?;
    Ok(sent)
}

pub async fn request_email_confirmation(State(state): State<AppState>, auth: AccessAuth) -> Result<StatusCode, XrpcError> {
    request(&state, &auth, EmailTokenPurpose::ConfirmEmail).await?;
    Ok(StatusCode::OK)
}

pub async fn request_email_update(State(state): State<AppState>, auth: AccessAuth) -> Result<Json<Value>, XrpcError> {
    let token_required = request(&state, &auth, EmailTokenPurpose::UpdateEmail).await?;
    Ok(Json(json!({ "tokenRequired": token_required })))
}

pub async fn request_account_delete(State(state): State<AppState>, auth: AccessAuth) -> Result<StatusCode, XrpcError> {
    request(&state, &auth, EmailTokenPurpose::DeleteAccount).await?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct ConfirmBody {
    email: String,
    token: String,
}

pub async fn confirm_email(State(state): State<AppState>, auth: AccessAuth, bytes: Bytes) -> Result<StatusCode, XrpcError> {
    let b: ConfirmBody = body(&bytes)?;
    let ctx = ctx(&state)?;
    commands::confirm_email(&ctx, &auth.did, &b.email, &b.token).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateBody {
    email: String,
    token: Option<String>,
    email_auth_factor: Option<bool>,
}

pub async fn update_email(State(state): State<AppState>, auth: AccessAuth, bytes: Bytes) -> Result<StatusCode, XrpcError> {
    let b: UpdateBody = body(&bytes)?;
    let ctx = ctx(&state)?;
    commands::update_email(&ctx, &auth.did, &b.email, b.token.as_deref(), b.email_auth_factor).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct ResetRequestBody {
    email: String,
}

pub async fn request_password_reset(State(state): State<AppState>, bytes: Bytes) -> Result<StatusCode, XrpcError> {
    let b: ResetRequestBody = body(&bytes)?;
    let ctx = ctx(&state)?;
    let mail = commands::request_password_reset(&ctx, &b.email).await.map_err(command_error)?;
    send(&state, mail)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct ResetBody {
    token: String,
    password: String,
}

pub async fn reset_password(State(state): State<AppState>, bytes: Bytes) -> Result<StatusCode, XrpcError> {
    let b: ResetBody = body(&bytes)?;
    let ctx = ctx(&state)?;
    commands::reset_password(&ctx, &b.token, b.password).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct DeleteBody {
    did: String,
    password: String,
    token: String,
}

pub async fn delete_account(State(state): State<AppState>, bytes: Bytes) -> Result<StatusCode, XrpcError> {
    let b: DeleteBody = body(&bytes)?;
    if !domain::syntax::is_valid_did(&b.did) {
        return Err(XrpcError::invalid_request("did must be a valid did"));
    }
    let ctx = ctx(&state)?;
    commands::delete_account(&ctx, &b.did, b.password, &b.token).await.map_err(command_error)?;
    Ok(StatusCode::OK)
}
