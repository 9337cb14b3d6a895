//! Yeastar's tokens: `get_token` (a password check), `refresh_token`, `del_token`, and the
//! signed-in user of every other request (`?access_token=`).

use super::{
    error, parameter_error, success, token_expired, Answer, Params, ACCESS_TTL, REFRESH_TTL,
};
use crate::access::User;
use crate::http::auth::LoginError;
use crate::http::auth::Source;
use crate::http::AppState;
use crate::tokens::Kind;
use axum::extract::rejection::JsonRejection;
use axum::extract::FromRequestParts;
use axum::extract::Query;
use axum::extract::State;
use axum::http::request::Parts;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// The user behind `?access_token=`, resolved in the current directory.
pub(super) fn caller(
    app: &AppState,
    params: &HashMap<String, String>,
) -> Result<Arc<User>, Answer> {
    let token = params.get("access_token").ok_or_else(token_expired)?;
    crate::http::auth::signed_in(app, &app.yeastar_tokens, token).ok_or_else(token_expired)
}

/// The signed-in user of a request (`?access_token=`), as a handler argument: a request
/// without a live token is answered `TOKEN EXPIRED`.
pub(super) struct SignedIn(pub(super) Arc<User>);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Answer;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Answer> {
        let Query(params) = Params::try_from_uri(&parts.uri).map_err(|_| token_expired())?;
        caller(app, &params).map(SignedIn)
    }
}

/// [`caller`] for the event push: the user, or `None` (answer `TOKEN EXPIRED`).
pub(super) fn caller_of(app: &AppState, params: &HashMap<String, String>) -> Option<Arc<User>> {
    caller(app, params).ok()
}

pub(super) fn issue_pair(app: &AppState, user: &str) -> Answer {
    let tokens = &app.yeastar_tokens;
    let Ok((access, refresh)) = tokens.issue_pair(user, ACCESS_TTL, REFRESH_TTL) else {
        return error(10005, "TOO MANY TOKENS");
    };
    success(json!({
        "access_token_expire_time": ACCESS_TTL.as_secs(),
        "access_token": access,
        "refresh_token_expire_time": REFRESH_TTL.as_secs(),
        "refresh_token": refresh,
    }))
}

#[derive(Deserialize)]
pub(super) struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

pub(super) async fn get_token(
    State(app): State<AppState>,
    Source(source): Source,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Answer {
    let Ok(Json(c)) = body else {
        return parameter_error("body", "not a JSON object");
    };
    let Some(username) = c.username.filter(|u| !u.is_empty()) else {
        return parameter_error("username", "required");
    };
    let Some(password) = c.password.filter(|p| !p.is_empty()) else {
        return parameter_error("password", "required");
    };
    let directory = app.commands.access().directory();
    match app
        .logins
        .check(directory, &username, password, source)
        .await
    {
        Ok(u) => issue_pair(&app, &u.name),
        Err(LoginError::Wrong) => Answer(json!({
            "errcode": -1,
            "errmsg": "FAILURE",
            "invalid_param_list": [{ "field": "username or password", "value": "error" }],
        })),
        Err(e) => Answer(json!({
            "errcode": 10006,
            "errmsg": "TRY AGAIN LATER",
            "submsg": e.to_string(),
        })),
    }
}

#[derive(Deserialize)]
pub(super) struct Refresh {
    refresh_token: Option<String>,
}

pub(super) async fn refresh_token(
    State(app): State<AppState>,
    body: Result<Json<Refresh>, JsonRejection>,
) -> Answer {
    let Ok(Json(r)) = body else {
        return parameter_error("body", "not a JSON object");
    };
    let Some(token) = r.refresh_token.filter(|t| !t.is_empty()) else {
        return parameter_error("refresh_token", "required");
    };
    let Some(user) = app.yeastar_tokens.user(&token, Kind::Refresh) else {
        return token_expired();
    };
    // Spent once: of two requests racing with the same token, one gets a new pair.
    if app.commands.access().directory().user(&user).is_none() || !app.yeastar_tokens.spend(&token)
    {
        return token_expired();
    }
    issue_pair(&app, &user)
}

pub(super) async fn del_token(State(app): State<AppState>, Query(params): Params) -> Answer {
    match params.get("access_token") {
        Some(t) if app.yeastar_tokens.revoke(t) => success(json!({})),
        _ => token_expired(),
    }
}
