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
use std::time::Duration;

use axum::extract::{Query, Request};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

mod agents;
mod auth;
mod queues;
mod subscribe;

use super::AppState;
use crate::access::Principal;
use crate::command::{Code, CommandError};
use crate::state::Queue;
use crate::view;

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
        Code::NoSuchServer | Code::NoSuchQueue | Code::NotMember | Code::NoSuchCaller => {
            (40004, "RESOURCE NOT FOUND")
        }
        Code::NotConnected | Code::Busy => (50001, "PBX UNAVAILABLE"),
        Code::Timeout => (50002, "OPERATION TIMEOUT"),
        Code::NotDynamic | Code::Refused => (50003, "OPERATION FAILED"),
    };
    Answer(json!({ "errcode": errcode, "errmsg": errmsg, "submsg": e.message }))
}

/// The dialect's routes, to be nested under `/openapi/v1.0`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/get_token", post(auth::get_token))
        .route("/refresh_token", post(auth::refresh_token))
        .route("/del_token", get(auth::del_token))
        .route("/queue_pause_reason/list", get(agents::pause_reasons))
        .route("/queue/list", get(queues::queue_list))
        .route("/queue/search", get(queues::queue_search))
        .route("/queue/get", get(queues::queue_get))
        .route("/queue/query", get(queues::queue_query))
        .route("/queue/call_status", get(queues::call_status))
        .route("/queue/agent_status", get(queues::agent_status))
        .route("/queue/agent_login", get(agents::queue_agent_login))
        .route("/queue/agent_pause", get(agents::queue_agent_pause))
        .route("/agent/login", get(agents::agent_login))
        .route("/agent/pause", get(agents::agent_pause))
        .route("/subscribe", get(subscribe::subscribe))
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

/// Yeastar's error answer, for the event push.
pub(super) fn error_answer(errcode: i64, errmsg: &str) -> Response {
    error(errcode, errmsg).into_response()
}

/// A 0/1 flag parameter, 0 when absent.
fn flag(params: &HashMap<String, String>, key: &str) -> Result<bool, Answer> {
    match params.get(key).map(|v| v.trim()) {
        None | Some("") | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(v) => Err(parameter_error(key, v)),
    }
}

/// The name of the queue with numeric id `id` (parameter `key`), if `who` may see it.
fn queue_name(app: &AppState, who: &Principal, id: &str, key: &str) -> Result<String, Answer> {
    with_queue(app, who, id, key, |q| q.name.to_string())
}

fn required<'p>(params: &'p HashMap<String, String>, key: &str) -> Result<&'p str, Answer> {
    params
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| parameter_error(key, "required"))
}

/// A visible queue by `id`, read with `f`.
fn with_queue<R>(
    app: &AppState,
    who: &Principal,
    id: &str,
    key: &str,
    f: impl FnOnce(&Queue) -> R,
) -> Result<R, Answer> {
    let id: u64 = id.trim().parse().map_err(|_| parameter_error(key, id))?;
    app.hub.read(|s| match view::queue_by_id(s, who, id) {
        Err(view::Unseen::Missing) => Err(error(40004, "RESOURCE NOT FOUND")),
        Err(view::Unseen::Hidden) => Err(error(20001, "PERMISSION DENIED")),
        Ok(q) => Ok(f(q)),
    })
}
