//! PortSIP's tokens: `sign_in` (JSON), `refresh_token`, `sign_out`, `auth/user`, the OAuth
//! form (`login/oauth/token`, `revoke`); and the signed-in user (and admin) of every other
//! request, from `Authorization: Bearer`.

use super::{
    body, error, forbidden, invalid, invalid_fields, unauthorized, Error, Result, ACCESS_TTL,
    OAUTH_CLIENT_ID, REFRESH_TTL,
};
use crate::access::User;
use crate::http::auth;
use crate::http::auth::LoginError;
use crate::http::auth::Source;
use crate::http::AppState;
use crate::tokens::Kind;
use axum::extract::rejection::FormRejection;
use axum::extract::rejection::JsonRejection;
use axum::extract::Form;
use axum::extract::FromRequestParts;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;

/// The token endpoints.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/sign_in", post(sign_in))
        .route("/auth/refresh_token", post(refresh_token))
        .route("/auth/sign_out", post(sign_out))
        .route("/auth/user", get(auth_user))
        .route("/login/oauth/token", post(oauth_token))
        .route("/login/oauth/revoke", post(sign_out))
}

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
