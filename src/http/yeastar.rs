//! The Yeastar P-Series OpenAPI dialect, under `/openapi/v1.0` (rest-dialects.md §2).
//!
//! Every answer is HTTP 200 with `errcode`/`errmsg`, as Yeastar's. Tokens are Yeastar's: an
//! access token of 1800 s and a refresh token of 86400 s, at most 8 live access tokens per user,
//! passed as `?access_token=`; `username`/`password` are a configured user's. A request without a
//! `User-Agent` header is refused, as the PBX does.
//!
//! Yeastar's own error-code table is not published; these are queuebridge's, documented in
//! README:
//!
//! | errcode | errmsg | when |
//! |---|---|---|
//! | 0 | SUCCESS | |
//! | -1 | FAILURE | wrong username or password (`invalid_param_list` as Yeastar's sample) |
//! | 10004 | TOKEN EXPIRED | unknown, expired or revoked access or refresh token |
//! | 10005 | TOO MANY TOKENS | the user already has 8 live access tokens |
//! | 20001 | PERMISSION DENIED | the user may not act on that agent or queue |
//! | 40002 | PARAMETER ERROR | missing or invalid parameter (`invalid_param_list`) |
//! | 40004 | RESOURCE NOT FOUND | no such queue id or extension id |
//! | 50001 | PBX UNAVAILABLE | the AMI link is down or busy: nothing was done |
//! | 50002 | OPERATION TIMEOUT | Asterisk did not confirm in time: the outcome is unknown |
//! | 50003 | OPERATION FAILED | Asterisk refused; its text in `submsg` |
//!
//! Agents are addressed by extension ID; queuebridge's extension ID is the user's `extension`.
//! Queues are addressed by their stable numeric id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::AppState;
use crate::access::{Principal, User};
use crate::command::{Code, Command, CommandError};
use crate::tokens::Kind;

/// Yeastar's lifetimes and cap.
pub const ACCESS_TTL: Duration = Duration::from_secs(1800);
pub const REFRESH_TTL: Duration = Duration::from_secs(86_400);
pub const TOKENS_PER_USER: usize = 8;

/// A Yeastar answer: always HTTP 200, the outcome in the body.
struct Answer(Value);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

fn success(mut payload: Value) -> Answer {
    if let Some(map) = payload.as_object_mut() {
        map.insert("errcode".into(), json!(0));
        map.insert("errmsg".into(), json!("SUCCESS"));
    }
    Answer(payload)
}

fn error(errcode: i64, errmsg: &str) -> Answer {
    Answer(json!({ "errcode": errcode, "errmsg": errmsg }))
}

fn parameter_error(field: &str, problem: &str) -> Answer {
    let detail = if problem == "required" {
        json!({ "field": field, "validation_type": "required" })
    } else {
        json!({ "field": field, "value": problem })
    };
    Answer(json!({ "errcode": 40002, "errmsg": "PARAMETER ERROR", "invalid_param_list": [detail] }))
}

fn token_expired() -> Answer {
    error(10004, "TOKEN EXPIRED")
}

fn command_error(e: &CommandError) -> Answer {
    let (errcode, errmsg) = match e.code {
        // The only argument a Yeastar request passes through unchecked is the pause reason.
        Code::InvalidArgument if e.message.contains("reason") => {
            return parameter_error("reason", &e.message)
        }
        Code::InvalidArgument => return parameter_error("parameter", &e.message),
        Code::Forbidden => (20001, "PERMISSION DENIED"),
        Code::NoSuchServer | Code::NoSuchQueue | Code::NotMember => (40004, "RESOURCE NOT FOUND"),
        Code::NotConnected | Code::Busy => (50001, "PBX UNAVAILABLE"),
        Code::Timeout => (50002, "OPERATION TIMEOUT"),
        Code::NotDynamic | Code::Refused => (50003, "OPERATION FAILED"),
    };
    Answer(json!({ "errcode": errcode, "errmsg": errmsg, "submsg": e.message }))
}

/// The dialect's routes, to be nested under `/openapi/v1.0`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/get_token", post(get_token))
        .route("/refresh_token", post(refresh_token))
        .route("/del_token", get(del_token))
        .route("/queue_pause_reason/list", get(pause_reasons))
        .route("/queue/agent_pause", get(queue_agent_pause))
        .route("/agent/pause", get(agent_pause))
        .fallback(|| async { error(40004, "RESOURCE NOT FOUND") })
        .layer(middleware::from_fn(require_user_agent))
}

async fn require_user_agent(req: Request, next: Next) -> Response {
    if req.headers().get(header::USER_AGENT).is_none() {
        return parameter_error("User-Agent", "required").into_response();
    }
    next.run(req).await
}

type Params = Query<HashMap<String, String>>;

/// The user behind `?access_token=`, resolved in the current directory.
fn caller(app: &AppState, params: &HashMap<String, String>) -> Result<Arc<User>, Answer> {
    let token = params.get("access_token").ok_or_else(token_expired)?;
    let name = app
        .yeastar_tokens
        .user(token, Kind::Access)
        .ok_or_else(token_expired)?;
    app.commands
        .access()
        .directory()
        .user(&name)
        .cloned()
        .ok_or_else(token_expired)
}

fn issue_pair(app: &AppState, user: &str) -> Answer {
    let tokens = &app.yeastar_tokens;
    let Ok(access) = tokens.issue_access(user, ACCESS_TTL) else {
        return error(10005, "TOO MANY TOKENS");
    };
    let refresh = tokens.issue_refresh(user, REFRESH_TTL);
    success(json!({
        "access_token_expire_time": ACCESS_TTL.as_secs(),
        "access_token": access,
        "refresh_token_expire_time": REFRESH_TTL.as_secs(),
        "refresh_token": refresh,
    }))
}

#[derive(Deserialize)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

async fn get_token(
    State(app): State<AppState>,
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
    // argon2 is deliberately slow: keep it off the reactor.
    let name = username.clone();
    let user = tokio::task::spawn_blocking(move || directory.authenticate(&name, &password))
        .await
        .ok()
        .flatten();
    match user {
        Some(u) => issue_pair(&app, &u.name),
        None => Answer(json!({
            "errcode": -1,
            "errmsg": "FAILURE",
            "invalid_param_list": [{ "field": "username or password", "value": "error" }],
        })),
    }
}

#[derive(Deserialize)]
struct Refresh {
    refresh_token: Option<String>,
}

async fn refresh_token(
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
    if app.commands.access().directory().user(&user).is_none() {
        return token_expired();
    }
    app.yeastar_tokens.revoke(&token);
    issue_pair(&app, &user)
}

async fn del_token(State(app): State<AppState>, Query(params): Params) -> Answer {
    match params.get("access_token") {
        Some(t) if app.yeastar_tokens.revoke(t) => success(json!({})),
        _ => token_expired(),
    }
}

async fn pause_reasons(State(app): State<AppState>, Query(params): Params) -> Answer {
    if let Err(a) = caller(&app, &params) {
        return a;
    }
    let directory = app.commands.access().directory();
    success(json!({ "data": directory.pause_reasons() }))
}

/// `operation`: `pause` → true, `unpause` → false.
fn operation(params: &HashMap<String, String>) -> Result<bool, Answer> {
    match params.get("operation").map(String::as_str) {
        Some("pause") => Ok(true),
        Some("unpause") => Ok(false),
        Some(other) => Err(parameter_error("operation", other)),
        None => Err(parameter_error("operation", "required")),
    }
}

/// Auto-unpause after a delay is not done yet: refuse rather than silently ignore it.
fn no_threshold(params: &HashMap<String, String>) -> Result<(), Answer> {
    match params
        .get("max_threshold_for_pause_time")
        .map(String::as_str)
    {
        None | Some("") | Some("0") => Ok(()),
        Some(v) => Err(parameter_error("max_threshold_for_pause_time", v)),
    }
}

/// The user whose extension ID this is.
fn agent(app: &AppState, ext_id: &str) -> Result<Arc<User>, Answer> {
    let directory = app.commands.access().directory();
    let found = directory
        .users()
        .find(|u| !u.extension.is_empty() && u.extension == ext_id.trim())
        .cloned();
    found.ok_or_else(|| error(40004, "RESOURCE NOT FOUND"))
}

/// (server, queue name) of a numeric queue id.
fn queue_by_id(app: &AppState, id: &str) -> Result<(String, String), Answer> {
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| parameter_error("queue_id", id))?;
    app.hub
        .read(|s| {
            s.queues()
                .find(|q| q.id == id)
                .map(|q| (q.server.to_string(), q.name.to_string()))
        })
        .ok_or_else(|| error(40004, "RESOURCE NOT FOUND"))
}

async fn pause(
    app: &AppState,
    who: &Principal,
    agent: &User,
    queue: Option<String>,
    paused: bool,
    reason: &str,
) -> Result<(), Answer> {
    let command = Command::Pause {
        queue,
        interface: agent.interface.clone(),
        paused,
        reason: if paused {
            reason.to_owned()
        } else {
            String::new()
        },
    };
    app.commands
        .execute(who, &agent.server, command)
        .await
        .map(|_| ())
        .map_err(|e| command_error(&e))
}

/// `queue/agent_pause?ext_ids=73,85&queue_id=2&operation=pause&reason=*01`
async fn queue_agent_pause(State(app): State<AppState>, Query(params): Params) -> Answer {
    match queue_agent_pause_inner(&app, &params).await {
        Ok(()) => success(json!({})),
        Err(a) => a,
    }
}

async fn queue_agent_pause_inner(
    app: &AppState,
    params: &HashMap<String, String>,
) -> Result<(), Answer> {
    let who = Principal::User(caller(app, params)?);
    let paused = operation(params)?;
    no_threshold(params)?;
    let ext_ids = params
        .get("ext_ids")
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| parameter_error("ext_ids", "required"))?;
    let queue_id = params
        .get("queue_id")
        .ok_or_else(|| parameter_error("queue_id", "required"))?;
    let (_, queue) = queue_by_id(app, queue_id)?;
    let reason = params.get("reason").map_or("", String::as_str);
    // Resolve every agent before acting, so a bad id changes nothing.
    let agents = ext_ids
        .split(',')
        .map(|id| agent(app, id))
        .collect::<Result<Vec<_>, _>>()?;
    for a in &agents {
        pause(app, &who, a, Some(queue.clone()), paused, reason).await?;
    }
    Ok(())
}

/// `agent/pause?ext_id=85&queue_ids=1,2&operation=pause&reason=*01` (no queue_ids = all).
async fn agent_pause(State(app): State<AppState>, Query(params): Params) -> Answer {
    match agent_pause_inner(&app, &params).await {
        Ok(()) => success(json!({})),
        Err(a) => a,
    }
}

async fn agent_pause_inner(app: &AppState, params: &HashMap<String, String>) -> Result<(), Answer> {
    let who = Principal::User(caller(app, params)?);
    let paused = operation(params)?;
    no_threshold(params)?;
    let ext_id = params
        .get("ext_id")
        .ok_or_else(|| parameter_error("ext_id", "required"))?;
    if ext_id.trim().parse::<u64>().is_err() {
        return Err(parameter_error("ext_id", ext_id));
    }
    let agent = agent(app, ext_id)?;
    let reason = params.get("reason").map_or("", String::as_str);
    let queues: Vec<String> = match params.get("queue_ids").filter(|v| !v.trim().is_empty()) {
        None => return pause(app, &who, &agent, None, paused, reason).await,
        Some(ids) => ids
            .split(',')
            .map(|id| queue_by_id(app, id).map(|(_, q)| q))
            .collect::<Result<_, _>>()?,
    };
    for q in queues {
        pause(app, &who, &agent, Some(q), paused, reason).await?;
    }
    Ok(())
}
