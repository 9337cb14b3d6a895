//! The PortSIP dialect, under `/api` (rest-dialects.md §1, the v22.2 OpenAPI file).
//!
//! * Tokens: `POST /api/auth/sign_in` (JSON) or `POST /api/login/oauth/token` (form, grant
//!   `password` or `refresh_token`) with a configured user's name or extension number; an
//!   access token lasts an hour, a refresh token a week. `Authorization: Bearer` on the rest.
//! * Roles: `admin` users are PortSIP's `Admin` (queues and queue servers), supervisors its
//!   `QueueManager`, agents `StandardUser`. Agent commands are decided by [`crate::access`].
//! * Ids are opaque strings: a queue's is its stable numeric id, a server's its `[[ami]]` id or
//!   the one given when it was added; a waiting call's `session_id` is the caller's Uniqueid.
//! * Errors: `{"errors":[{"code","message","detail"}]}` — `400 VALIDATE_FAILED` (bad id, body,
//!   query option or a field Asterisk cannot honour, named in `detail.fields`),
//!   `400 UNAUTHORIZED` (bad credentials), `401 UNAUTHORIZED` (no or bad token),
//!   `403 FORBIDDEN`, `404 NOT_FOUND`, `409 CONFLICT`, `503 UNAVAILABLE` (AMI link down),
//!   `504 TIMEOUT` (Asterisk did not confirm in time), `500 UNKNOWN` (Asterisk refused).

mod agents;
mod auth;
pub mod odata;
mod queue_config;
mod queue_fields;
mod queues;
mod servers;
pub mod wsi;

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::error::{internal, status_of};
use super::AppState;
use crate::command::{Code, CommandError};
use crate::queues_conf::ConfError;
use crate::servers::ServerError;

/// Lifetime of an access token (the get-started page's sample).
pub const ACCESS_TTL: Duration = Duration::from_secs(3600);
/// Lifetime of a refresh token.
pub const REFRESH_TTL: Duration = Duration::from_secs(7 * 86_400);
/// Live access tokens per user.
pub const TOKENS_PER_USER: usize = 100;
/// The fixed `client_id` of PortSIP's OAuth-style token endpoint.
pub const OAUTH_CLIENT_ID: &str = "9d806019-75b2-4b3d-bb8b-f5a3a412cc0a";

/// A PortSIP error response.
#[derive(Debug)]
pub struct Error {
    status: StatusCode,
    code: &'static str,
    message: String,
    detail: Option<Value>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut e = json!({ "code": self.code, "message": self.message });
        if let Some(d) = self.detail {
            e["detail"] = d;
        }
        (self.status, Json(json!({ "errors": [e] }))).into_response()
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Error {
    Error {
        status,
        code,
        message: message.into(),
        detail: None,
    }
}

/// `400 VALIDATE_FAILED`.
fn invalid(message: impl Into<String>) -> Error {
    error(StatusCode::BAD_REQUEST, "VALIDATE_FAILED", message)
}

/// `400 VALIDATE_FAILED` naming the fields in `detail.fields`.
fn invalid_fields(fields: &[&str], message: impl Into<String>) -> Error {
    Error {
        detail: Some(json!({ "fields": fields })),
        ..invalid(message)
    }
}

fn not_found(message: impl Into<String>) -> Error {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", message)
}

fn forbidden(message: impl Into<String>) -> Error {
    error(StatusCode::FORBIDDEN, "FORBIDDEN", message)
}

fn unauthorized(message: impl Into<String>) -> Error {
    error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
}

/// A command's failure: the status every API gives it ([`status_of`]), except where PortSIP's
/// file has no such status: a static member's logout is a `VALIDATE_FAILED` 400, Asterisk's
/// refusal its `UNKNOWN` 500.
fn command_error(e: CommandError) -> Error {
    let (status, code) = match e.code {
        Code::InvalidArgument => (status_of(e.code), "VALIDATE_FAILED"),
        Code::NotDynamic => (StatusCode::BAD_REQUEST, "VALIDATE_FAILED"),
        Code::Forbidden => (status_of(e.code), "FORBIDDEN"),
        Code::NoSuchServer | Code::NoSuchQueue | Code::NotMember | Code::NoSuchCaller => {
            (status_of(e.code), "NOT_FOUND")
        }
        Code::NotConnected | Code::Busy => (status_of(e.code), "UNAVAILABLE"),
        Code::Timeout => (status_of(e.code), "TIMEOUT"),
        Code::Refused => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
    };
    error(status, code, e.message)
}

fn conf_error(e: ConfError) -> Error {
    let (status, code) = match &e {
        ConfError::NotConnected(_) | ConfError::Busy(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
        }
        ConfError::Exists(_) => (StatusCode::CONFLICT, "CONFLICT"),
        ConfError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        ConfError::NotManaged(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
        ConfError::Refused { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        ConfError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "TIMEOUT"),
    };
    error(status, code, e.to_string())
}

fn server_error(e: ServerError) -> Error {
    let (status, code) = match &e {
        ServerError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        // A request the vendor's file answers with 400 (destroy documents 204, 400, 404).
        ServerError::Internal(_) => (StatusCode::BAD_REQUEST, "VALIDATE_FAILED"),
        ServerError::Duplicate(_) => (StatusCode::CONFLICT, "CONFLICT"),
        ServerError::TooMany => (StatusCode::BAD_REQUEST, "VALIDATE_FAILED"),
        ServerError::Persist(_) => {
            let message = internal("saving the queue servers", &e);
            return error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", message);
        }
    };
    error(status, code, e.to_string())
}

/// A JSON body, or VALIDATE_FAILED naming what is wrong with it.
fn body<T: DeserializeOwned>(body: Result<Json<T>, JsonRejection>) -> Result<T> {
    body.map(|Json(b)| b).map_err(|e| invalid(e.body_text()))
}

/// The `{count, items}` envelope of a paged collection, after the query options.
fn paged(
    params: &HashMap<String, String>,
    fields: &[odata::Field],
    items: Vec<Value>,
) -> Result<Json<Value>> {
    let query = odata::ListQuery::parse(params, fields).map_err(|odata::Invalid(m)| invalid(m))?;
    let (count, items) = query.apply(items, fields);
    Ok(Json(json!({ "count": count, "items": items })))
}

/// The `/api` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(auth::router())
        .merge(servers::router())
        .merge(queue_routes())
        .fallback(|| async { not_found("no such endpoint") })
}

/// Call queues, their waiting lists and agents (rest-dialects.md §1.7), and the per-user views.
fn queue_routes() -> Router<AppState> {
    Router::new()
        .route("/call_queues", get(queues::list).post(queue_config::create))
        .route(
            "/call_queues/{id}",
            get(queues::show).post(queue_config::update),
        )
        .route("/call_queues/{id}/status", get(queues::status))
        .route("/call_queues/{id}/destroy", post(queue_config::destroy))
        .route("/call_queues/{id}/waiting", get(queues::waiting))
        .route(
            "/call_queues/{id}/waiting/{session_id}/pickup",
            post(queues::pickup),
        )
        .route(
            "/call_queues/{id}/agents",
            get(agents::agents).post(agents::set_agents),
        )
        .route(
            "/call_queues/{id}/agents/{agent_number}",
            get(agents::agent).post(agents::set_agent_status),
        )
        .route("/user/call_queues", get(agents::own_queues))
        .route(
            "/user/call_queues/{id}/agent",
            get(agents::own_agent).post(agents::set_own_status),
        )
        .route("/users/{user}/call_queues", get(agents::user_queues))
        .route(
            "/users/{user}/call_queues/{id}/agent",
            get(agents::user_agent).post(agents::set_user_status),
        )
}
