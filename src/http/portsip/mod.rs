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
pub mod odata;
mod queue_config;
mod queues;
mod servers;
pub mod wsi;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{Form, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{self, LoginError, Source};
use super::error::{internal, status_of};
use super::AppState;
use crate::access::User;
use crate::command::{Code, CommandError};
use crate::queues_conf::ConfError;
use crate::servers::ServerError;
use crate::tokens::Kind;

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
        .route("/auth/sign_in", post(sign_in))
        .route("/auth/refresh_token", post(refresh_token))
        .route("/auth/sign_out", post(sign_out))
        .route("/auth/user", get(auth_user))
        .route("/login/oauth/token", post(oauth_token))
        .route("/login/oauth/revoke", post(sign_out))
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

// ---- Authentication ------------------------------------------------------------------------

/// The signed-in user of a request.
fn caller(app: &AppState, headers: &HeaderMap) -> Result<Arc<User>> {
    let token = auth::bearer(headers).ok_or_else(|| unauthorized("missing bearer token"))?;
    auth::signed_in(app, &app.portsip_tokens, token)
        .ok_or_else(|| unauthorized("invalid or expired token"))
}

/// The signed-in user, who must be an admin.
fn admin(app: &AppState, headers: &HeaderMap) -> Result<Arc<User>> {
    let user = caller(app, headers)?;
    if user.admin {
        Ok(user)
    } else {
        Err(forbidden(format!(
            "{} is not an admin of queues and queue servers",
            user.name
        )))
    }
}

/// The signed-in user of a request, as a handler argument (401 `UNAUTHORIZED` without one).
pub(super) struct SignedIn(pub(super) Arc<User>);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self> {
        caller(app, &parts.headers).map(SignedIn)
    }
}

/// A signed-in admin, as a handler argument (403 `FORBIDDEN` for anyone else).
pub(super) struct Admin(pub(super) Arc<User>);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self> {
        admin(app, &parts.headers).map(Admin)
    }
}

fn role(u: &User) -> &'static str {
    if u.admin {
        "Admin"
    } else if u.supervisor {
        "QueueManager"
    } else {
        "StandardUser"
    }
}

/// Checks a password (bounded and throttled: [`crate::http::auth`]); the user may give their
/// name or extension number. Wrong credentials are `bad`; a login refused for load or
/// throttling is `429 TOO_MANY_REQUESTS` with `detail.retry_after` in seconds.
async fn authenticate(
    app: &AppState,
    source: IpAddr,
    username: &str,
    password: &str,
    bad: impl FnOnce() -> Error,
) -> Result<Arc<User>> {
    let directory = app.commands.access().directory();
    match app
        .logins
        .check(directory, username, password.to_owned(), source)
        .await
    {
        Ok(u) => Ok(u),
        Err(LoginError::Wrong) => Err(bad()),
        Err(e) => Err(Error {
            detail: Some(json!({ "retry_after": e.retry_after_secs() })),
            ..error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_REQUESTS",
                e.to_string(),
            )
        }),
    }
}

fn tokens_for(app: &AppState, user: &str) -> Result<Json<Value>> {
    let (access, refresh) = app
        .portsip_tokens
        .issue_pair(user, ACCESS_TTL, REFRESH_TTL)
        .map_err(|_| invalid("too many live tokens for this user: sign out first"))?;
    Ok(Json(json!({
        "token_type": "Bearer",
        "access_token": access,
        "refresh_token": refresh,
        "expires_in": ACCESS_TTL.as_secs(),
    })))
}

#[derive(Deserialize)]
struct SignIn {
    username: String,
    password: String,
    #[serde(default)]
    #[allow(dead_code)]
    domain: Option<String>,
}

async fn sign_in(
    State(app): State<AppState>,
    Source(source): Source,
    b: Result<Json<SignIn>, JsonRejection>,
) -> Result<Json<Value>> {
    let b = body(b)?;
    let user = authenticate(&app, source, &b.username, &b.password, || {
        unauthorized("Login failed, authentication error")
    })
    .await?;
    tokens_for(&app, &user.name)
}

#[derive(Deserialize)]
struct Refresh {
    refresh_token: String,
}

fn refresh(app: &AppState, token: &str) -> Result<Json<Value>> {
    let user = app
        .portsip_tokens
        .user(token, Kind::Refresh)
        .filter(|_| app.portsip_tokens.spend(token))
        .ok_or_else(|| unauthorized("invalid or expired refresh token"))?;
    tokens_for(app, &user)
}

async fn refresh_token(
    State(app): State<AppState>,
    b: Result<Json<Refresh>, JsonRejection>,
) -> Result<Json<Value>> {
    refresh(&app, &body(b)?.refresh_token)
}

async fn sign_out(State(app): State<AppState>, headers: HeaderMap) -> Result<StatusCode> {
    caller(&app, &headers)?;
    if let Some(t) = auth::bearer(&headers) {
        app.portsip_tokens.revoke(t);
    }
    Ok(StatusCode::OK)
}

async fn auth_user(SignedIn(user): SignedIn) -> Result<Json<Value>> {
    Ok(Json(json!({
        "role": role(&user),
        "password_verified": true,
        "password_force_reset": false,
    })))
}

#[derive(Deserialize)]
struct OAuthForm {
    grant_type: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    /// The live page's spelling in one version.
    #[serde(default)]
    clicent_id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    scope: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    domain: Option<String>,
}

/// `POST /api/login/oauth/token` (form-encoded). Bad credentials are `400 UNAUTHORIZED`, as
/// the page's sample shows.
async fn oauth_token(
    State(app): State<AppState>,
    Source(source): Source,
    form: Result<Form<OAuthForm>, FormRejection>,
) -> Result<Json<Value>> {
    let Form(f) = form.map_err(|e| invalid(e.body_text()))?;
    if f.client_id.or(f.clicent_id).as_deref() != Some(OAUTH_CLIENT_ID) {
        return Err(invalid_fields(&["client_id"], "unknown client_id"));
    }
    let login_failed = || {
        error(
            StatusCode::BAD_REQUEST,
            "UNAUTHORIZED",
            "Login failed, authentication error",
        )
    };
    match f.grant_type.as_str() {
        "password" => {
            let (Some(u), Some(p)) = (f.username, f.password) else {
                return Err(invalid_fields(
                    &["username", "password"],
                    "username and password are required",
                ));
            };
            let user = authenticate(&app, source, &u, &p, login_failed).await?;
            tokens_for(&app, &user.name)
        }
        "refresh_token" => {
            let token = f
                .refresh_token
                .ok_or_else(|| invalid_fields(&["refresh_token"], "refresh_token is required"))?;
            refresh(&app, &token)
                .map_err(|_| error(StatusCode::BAD_REQUEST, "UNKNOWN", "unknown error"))
        }
        other => Err(invalid_fields(
            &["grant_type"],
            format!("unsupported grant_type {other:?} (password, refresh_token)"),
        )),
    }
}
