//! Yeastar's agent commands: pause and unpause (with `max_threshold_for_pause_time`), log in and
//! out (with `max_threshold_for_logout_time`), by agent or by queue; and the pause reasons.

use super::auth::SignedIn;
use super::{
    command_error, error, flag, parameter_error, queue_name, required, success, Answer, Params,
};
use crate::access::Principal;
use crate::access::User;
use crate::deadlines::MIN_SECONDS;
use crate::http::AppState;
use crate::timed::Timed;
use axum::extract::Query;
use axum::extract::State;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

pub(super) async fn pause_reasons(
    State(app): State<AppState>,
    Query(_): Params,
    _: SignedIn,
) -> Answer {
    let directory = app.commands.access().directory();
    success(json!({ "data": directory.pause_reasons() }))
}

/// `operation`: `pause` → true, `unpause` → false.
pub(super) fn operation(params: &HashMap<String, String>) -> Result<bool, Answer> {
    match params.get("operation").map(String::as_str) {
        Some("pause") => Ok(true),
        Some("unpause") => Ok(false),
        Some(other) => Err(parameter_error("operation", other)),
        None => Err(parameter_error("operation", "required")),
    }
}

/// A threshold parameter: absent or 0 = none, else at least [`MIN_SECONDS`] seconds.
pub(super) fn threshold(params: &HashMap<String, String>, key: &str) -> Result<u64, Answer> {
    match params.get(key).map(|v| v.trim()) {
        None | Some("") => Ok(0),
        Some(v) => match v.parse::<u64>() {
            Ok(0) => Ok(0),
            Ok(n) if n >= MIN_SECONDS => Ok(n),
            _ => Err(parameter_error(key, v)),
        },
    }
}

/// The agent whose extension ID this is: the number agent lists show for them (`extension`,
/// else the number in the interface).
pub(super) fn agent(app: &AppState, ext_id: &str) -> Result<Arc<User>, Answer> {
    let directory = app.commands.access().directory();
    let found = directory
        .users()
        .find(|u| u.is_agent() && u.number() == ext_id.trim())
        .cloned();
    found.ok_or_else(|| error(40004, "RESOURCE NOT FOUND"))
}

/// What a login or logout asks, beyond who and where.
pub(super) struct LoginRequest {
    login: bool,
    paused: bool,
    reason: String,
    unpause_after: u64,
    relogin_after: u64,
}

impl LoginRequest {
    fn parse(params: &HashMap<String, String>) -> Result<Self, Answer> {
        let login = match params.get("operation").map(String::as_str) {
            Some("login") => true,
            Some("logout") => false,
            Some(other) => return Err(parameter_error("operation", other)),
            None => return Err(parameter_error("operation", "required")),
        };
        Ok(Self {
            login,
            paused: flag(params, "is_paused")?,
            reason: params.get("reason").cloned().unwrap_or_default(),
            unpause_after: threshold(params, "max_threshold_for_pause_time")?,
            relogin_after: threshold(params, "max_threshold_for_logout_time")?,
        })
    }
}

/// What a pause or unpause asks, beyond who and where.
struct PauseRequest {
    paused: bool,
    reason: String,
    unpause_after: u64,
}

impl PauseRequest {
    fn parse(params: &HashMap<String, String>) -> Result<Self, Answer> {
        Ok(Self {
            paused: operation(params)?,
            reason: params.get("reason").cloned().unwrap_or_default(),
            unpause_after: threshold(params, "max_threshold_for_pause_time")?,
        })
    }
}

/// Pauses or unpauses `agent` in `queues` (all of them: `None`), with the threshold asked for.
async fn pause(
    app: &AppState,
    who: &Principal,
    agent: &User,
    queues: Option<Vec<String>>,
    r: &PauseRequest,
) -> Result<(), Answer> {
    timed(app)
        .pause(who, agent, queues, r.paused, &r.reason, r.unpause_after)
        .await
        .map_err(|e| command_error(&e))
}

/// The timed commands over this request's state.
fn timed(app: &AppState) -> Timed<'_> {
    Timed {
        commands: &app.commands,
        hub: &app.hub,
        deadlines: &app.deadlines,
    }
}

/// Logs `agent` in to or out of `queue` as a dynamic member, with the thresholds asked for.
pub(super) async fn login(
    app: &AppState,
    who: &Principal,
    agent: &User,
    queue: &str,
    r: &LoginRequest,
) -> Result<(), Answer> {
    let t = timed(app);
    let done = if r.login {
        let paused = r.paused.then(|| r.reason.clone());
        t.login(who, agent, queue, paused, r.unpause_after).await
    } else {
        t.logout(who, agent, queue, r.relogin_after).await
    };
    done.map_err(|e| command_error(&e))
}

/// Every agent of a comma-separated id list, resolved before anything is done, so a bad id
/// changes nothing.
pub(super) fn agents(app: &AppState, ids: &str) -> Result<Vec<Arc<User>>, Answer> {
    ids.split(',').map(|id| agent(app, id)).collect()
}

/// `ext_id`: an integer extension ID of a configured agent.
pub(super) fn ext_id(
    app: &AppState,
    params: &HashMap<String, String>,
) -> Result<Arc<User>, Answer> {
    let id = required(params, "ext_id")?;
    if id.parse::<u64>().is_err() {
        return Err(parameter_error("ext_id", id));
    }
    agent(app, id)
}

/// `queue_ids`: the queue names of a comma-separated id list, or `None` when absent.
pub(super) fn queue_ids(
    app: &AppState,
    who: &Principal,
    params: &HashMap<String, String>,
) -> Result<Option<Vec<String>>, Answer> {
    match params.get("queue_ids").filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(ids) => ids
            .split(',')
            .map(|id| queue_name(app, who, id, "queue_ids"))
            .collect::<Result<_, _>>()
            .map(Some),
    }
}

/// Wraps a handler's `Result` into the answer: `{errcode: 0}` on success.
pub(super) fn done(result: Result<(), Answer>) -> Answer {
    match result {
        Ok(()) => success(json!({})),
        Err(a) => a,
    }
}

/// `queue/agent_pause?ext_ids=73,85&queue_id=2&operation=pause&reason=*01`
pub(super) async fn queue_agent_pause(
    State(app): State<AppState>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Answer {
    done(
        async {
            let who = Principal::User(me);
            let request = PauseRequest::parse(&params)?;
            let ext_ids = required(&params, "ext_ids")?;
            let queue = queue_name(&app, &who, required(&params, "queue_id")?, "queue_id")?;
            for a in &agents(&app, ext_ids)? {
                pause(&app, &who, a, Some(vec![queue.clone()]), &request).await?;
            }
            Ok(())
        }
        .await,
    )
}

/// `agent/pause?ext_id=85&queue_ids=1,2&operation=pause&reason=*01` (no queue_ids = all).
pub(super) async fn agent_pause(
    State(app): State<AppState>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Answer {
    done(
        async {
            let who = Principal::User(me);
            let request = PauseRequest::parse(&params)?;
            let agent = ext_id(&app, &params)?;
            let queues = queue_ids(&app, &who, &params)?;
            pause(&app, &who, &agent, queues, &request).await
        }
        .await,
    )
}

/// `queue/agent_login?ext_ids=21,24&queue_id=1&operation=login&is_paused=1&…`
pub(super) async fn queue_agent_login(
    State(app): State<AppState>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Answer {
    done(
        async {
            let who = Principal::User(me);
            let request = LoginRequest::parse(&params)?;
            let ext_ids = required(&params, "ext_ids")?;
            let queue = queue_name(&app, &who, required(&params, "queue_id")?, "queue_id")?;
            for a in &agents(&app, ext_ids)? {
                login(&app, &who, a, &queue, &request).await?;
            }
            Ok(())
        }
        .await,
    )
}

/// `agent/login?ext_id=85&queue_ids=1,2&operation=login` — no queue_ids: log in to every
/// queue the agent may join (its `queues`), or out of every queue it is a dynamic member of.
pub(super) async fn agent_login(
    State(app): State<AppState>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Answer {
    done(
        async {
            let who = Principal::User(me);
            let request = LoginRequest::parse(&params)?;
            let agent = ext_id(&app, &params)?;
            let queues = match queue_ids(&app, &who, &params)? {
                Some(qs) => qs,
                None if request.login => agent.queues.iter().cloned().collect(),
                None => timed(&app).member_queues(&agent.server, &agent.interface, true),
            };
            for q in &queues {
                login(&app, &who, &agent, q, &request).await?;
            }
            Ok(())
        }
        .await,
    )
}
