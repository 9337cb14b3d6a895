//! Telecom X's tokens: login (POST, or GET with query parameters), logout, validation.

use super::{
    access_level, bad_request, customer_id, err, flexible_bool, object_id, Error, Params, Result,
    PERSIST_TTL, TOKEN_TTL,
};
use crate::access::User;
use crate::http::auth::LoginError;
use crate::http::auth::Source;
use crate::http::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::FromRequestParts;
use axum::extract::Query;
use axum::extract::State;
use axum::http::header;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// The token of a request: `?token=`, else the `token` cookie.
pub(super) fn token_of(params: &HashMap<String, String>, headers: &HeaderMap) -> Option<String> {
    crate::http::auth::query_or_cookie(params, headers, "token")
}

/// The user behind the request's token.
pub(super) fn caller(
    app: &AppState,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Arc<User>> {
    let token = token_of(params, headers).ok_or_else(|| {
        err(
            StatusCode::UNAUTHORIZED,
            "credentials_invalid",
            "authorization required",
        )
    })?;
    let expired = || err(StatusCode::UNAUTHORIZED, "expired", "session expired");
    crate::http::auth::signed_in(app, &app.telecomx_tokens, &token).ok_or_else(expired)
}

/// The signed-in user of a request (`?token=` or the `token` cookie), as a handler argument:
/// 401 `credentials_invalid` without a token, `expired` for a dead one.
pub(super) struct SignedIn(pub(super) Arc<User>);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self> {
        let params = Params::try_from_uri(&parts.uri).map_or_else(|_| HashMap::new(), |q| q.0);
        caller(app, &params, &parts.headers).map(SignedIn)
    }
}

#[derive(Deserialize, Default)]
pub(super) struct Login {
    username: Option<String>,
    password: Option<String>,
    #[serde(default, deserialize_with = "flexible_bool")]
    cookie: bool,
    #[serde(default, deserialize_with = "flexible_bool")]
    persist: bool,
}

pub(super) async fn login_post(
    State(app): State<AppState>,
    Source(source): Source,
    body: Result<Json<Login>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(l)) => login(app, source, l).await,
        Err(e) => bad_request(e.body_text()).into_response(),
    }
}

pub(super) async fn login_get(
    State(app): State<AppState>,
    Source(source): Source,
    query: Result<Query<Login>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match query {
        Ok(Query(l)) => login(app, source, l).await,
        Err(e) => bad_request(e.body_text()).into_response(),
    }
}

pub(super) async fn login(app: AppState, source: std::net::IpAddr, l: Login) -> Response {
    let (Some(username), Some(password)) = (
        l.username.filter(|u| !u.is_empty()),
        l.password.filter(|p| !p.is_empty()),
    ) else {
        return bad_request("username and password are required").into_response();
    };
    let directory = app.commands.access().directory();
    let user = match app
        .logins
        .check(directory, &username, password, source)
        .await
    {
        Ok(u) => u,
        Err(LoginError::Wrong) => {
            return err(
                StatusCode::UNAUTHORIZED,
                "credentials_invalid",
                "wrong username or password",
            )
            .into_response()
        }
        Err(e) => {
            let secs = e.retry_after_secs();
            let body = err(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                e.to_string(),
            );
            return ([(header::RETRY_AFTER, secs.to_string())], body).into_response();
        }
    };
    let ttl = if l.persist { PERSIST_TTL } else { TOKEN_TTL };
    let Ok(token) = app.telecomx_tokens.issue_access(&user.name, ttl) else {
        return bad_request("too many live tokens for this user: log out first").into_response();
    };
    let body = Json(json!({
        "token": token,
        "expiresInMinutes": if l.persist { -1 } else { (TOKEN_TTL.as_secs() / 60) as i64 },
        "employee": object_id("employee", &user.name),
        "customer": customer_id(),
        "accessLevel": access_level(&user),
        "name": user.display_name,
    }));
    if l.cookie {
        let max_age = if l.persist {
            String::new()
        } else {
            format!("; Max-Age={}", TOKEN_TTL.as_secs())
        };
        let cookie = format!("token={token}; Path=/; HttpOnly; SameSite=Strict{max_age}");
        return ([(header::SET_COOKIE, cookie)], body).into_response();
    }
    body.into_response()
}

/// `GET /auth/logout`: every token of the user ends.
pub(super) async fn logout(
    State(app): State<AppState>,
    Query(_): Params,
    SignedIn(user): SignedIn,
) -> Result<Json<Value>> {
    app.telecomx_tokens.revoke_user(&user.name);
    Ok(Json(json!({ "success": true })))
}

/// `GET /auth/validateToken?token=…[&simple=true][&extend=true]`
pub(super) async fn validate_token(
    State(app): State<AppState>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    let simple = params
        .get("simple")
        .is_some_and(|v| v == "true" || v == "1");
    let user = match caller(&app, &params, &headers) {
        Ok(u) => u,
        Err(_) if simple => return StatusCode::FORBIDDEN.into_response(),
        Err(e) => return e.into_response(),
    };
    if params
        .get("extend")
        .is_some_and(|v| v == "true" || v == "1")
    {
        if let Some(token) = token_of(&params, &headers) {
            app.telecomx_tokens.extend(&token, TOKEN_TTL);
        }
    }
    if simple {
        return StatusCode::OK.into_response();
    }
    Json(json!({
        "success": true,
        "employee": object_id("employee", &user.name),
        "customer": customer_id(),
        "accessLevel": access_level(&user),
        "name": user.display_name,
    }))
    .into_response()
}
