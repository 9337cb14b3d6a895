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
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

mod subscribe;

use super::auth::{self, LoginError, Source};
use super::AppState;
use crate::access::{extension_of, Directory, Principal, User};
use crate::clock::now_secs;
use crate::command::{Code, Command, CommandError};
use crate::deadlines::{Due, Which, MIN_SECONDS};
use crate::state::{DeviceState, Member, Queue};
use crate::tokens::Kind;
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
        .route("/get_token", post(get_token))
        .route("/refresh_token", post(refresh_token))
        .route("/del_token", get(del_token))
        .route("/queue_pause_reason/list", get(pause_reasons))
        .route("/queue/list", get(queue_list))
        .route("/queue/search", get(queue_search))
        .route("/queue/get", get(queue_get))
        .route("/queue/query", get(queue_query))
        .route("/queue/call_status", get(call_status))
        .route("/queue/agent_status", get(agent_status))
        .route("/queue/agent_login", get(queue_agent_login))
        .route("/queue/agent_pause", get(queue_agent_pause))
        .route("/agent/login", get(agent_login))
        .route("/agent/pause", get(agent_pause))
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

/// The user behind `?access_token=`, resolved in the current directory.
fn caller(app: &AppState, params: &HashMap<String, String>) -> Result<Arc<User>, Answer> {
    let token = params.get("access_token").ok_or_else(token_expired)?;
    auth::signed_in(app, &app.yeastar_tokens, token).ok_or_else(token_expired)
}

/// The signed-in user of a request (`?access_token=`), as a handler argument: a request
/// without a live token is answered `TOKEN EXPIRED`.
struct SignedIn(Arc<User>);

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

/// Yeastar's error answer, for the event push.
pub(super) fn error_answer(errcode: i64, errmsg: &str) -> Response {
    error(errcode, errmsg).into_response()
}

fn issue_pair(app: &AppState, user: &str) -> Answer {
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
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

async fn get_token(
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
            "submsg": format!("too many logins; try again in {} s", e.retry_after_secs()),
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
    // Spent once: of two requests racing with the same token, one gets a new pair.
    if app.commands.access().directory().user(&user).is_none() || !app.yeastar_tokens.spend(&token)
    {
        return token_expired();
    }
    issue_pair(&app, &user)
}

async fn del_token(State(app): State<AppState>, Query(params): Params) -> Answer {
    match params.get("access_token") {
        Some(t) if app.yeastar_tokens.revoke(t) => success(json!({})),
        _ => token_expired(),
    }
}

async fn pause_reasons(State(app): State<AppState>, Query(_): Params, _: SignedIn) -> Answer {
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

/// A threshold parameter: absent or 0 = none, else at least [`MIN_SECONDS`] seconds.
fn threshold(params: &HashMap<String, String>, key: &str) -> Result<u64, Answer> {
    match params.get(key).map(|v| v.trim()) {
        None | Some("") => Ok(0),
        Some(v) => match v.parse::<u64>() {
            Ok(0) => Ok(0),
            Ok(n) if n >= MIN_SECONDS => Ok(n),
            _ => Err(parameter_error(key, v)),
        },
    }
}

/// A 0/1 flag parameter, 0 when absent.
fn flag(params: &HashMap<String, String>, key: &str) -> Result<bool, Answer> {
    match params.get(key).map(|v| v.trim()) {
        None | Some("") | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(v) => Err(parameter_error(key, v)),
    }
}

/// The agent whose extension ID this is: the number agent lists show for them (`extension`,
/// else the number in the interface).
fn agent(app: &AppState, ext_id: &str) -> Result<Arc<User>, Answer> {
    let directory = app.commands.access().directory();
    let found = directory
        .users()
        .find(|u| u.is_agent() && u.number() == ext_id.trim())
        .cloned();
    found.ok_or_else(|| error(40004, "RESOURCE NOT FOUND"))
}

/// The name of the queue with numeric id `id` (parameter `key`), if `who` may see it.
fn queue_name(app: &AppState, who: &Principal, id: &str, key: &str) -> Result<String, Answer> {
    with_queue(app, who, id, key, |q| q.name.to_string())
}

/// The state's sequence number now: changes after it are news to a deadline set now.
fn seq(app: &AppState) -> u64 {
    app.hub.read(|s| s.seq)
}

/// Runs one command for `who` on `agent`'s server, as a Yeastar answer.
async fn run(
    app: &AppState,
    who: &Principal,
    agent: &User,
    command: Command,
) -> Result<(), Answer> {
    app.commands
        .execute(who, &agent.server, command)
        .await
        .map(|_| ())
        .map_err(|e| command_error(&e))
}

/// The queues `interface` is a member of on `server` (all of them when `dynamic_only` is false).
fn member_queues(app: &AppState, server: &str, interface: &str, dynamic_only: bool) -> Vec<String> {
    app.hub.read(|s| {
        s.servers.get(server).map_or_else(Vec::new, |srv| {
            srv.queues
                .values()
                .filter(|q| {
                    q.members
                        .get(interface)
                        .is_some_and(|m| !dynamic_only || !m.membership.is_static())
                })
                .map(|q| q.name.to_string())
                .collect()
        })
    })
}

/// Pauses or unpauses `agent` in `queues` (`None`: every queue it is a member of), then sets or
/// clears the auto-unpause deadline of each.
async fn pause(
    app: &AppState,
    who: &Principal,
    agent: &User,
    queues: Option<Vec<String>>,
    paused: bool,
    reason: &str,
    unpause_after: u64,
) -> Result<(), Answer> {
    let command = |queue| Command::Pause {
        queue,
        interface: agent.interface.clone(),
        paused,
        reason: if paused {
            reason.to_owned()
        } else {
            String::new()
        },
    };
    let queues = match queues {
        Some(qs) => {
            for q in &qs {
                run(app, who, agent, command(Some(q.clone()))).await?;
            }
            qs
        }
        None => {
            run(app, who, agent, command(None)).await?;
            member_queues(app, &agent.server, &agent.interface, false)
        }
    };
    let seq = seq(app);
    for q in &queues {
        if paused && unpause_after > 0 {
            let (server, iface) = (&agent.server, &agent.interface);
            app.deadlines
                .set(server, q, iface, Due::Unpause, unpause_after, seq);
        } else {
            app.deadlines
                .cancel(&agent.server, q, &agent.interface, Which::Pause);
        }
    }
    Ok(())
}

/// What a login or logout asks, beyond who and where.
struct LoginRequest {
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

/// Logs `agent` in to or out of `queue` as a dynamic member, with the thresholds asked for.
async fn login(
    app: &AppState,
    who: &Principal,
    agent: &User,
    queue: &str,
    r: &LoginRequest,
) -> Result<(), Answer> {
    let (server, iface) = (agent.server.as_str(), agent.interface.as_str());
    if r.login {
        let command = Command::login(agent, queue, None, r.paused.then(|| r.reason.clone()));
        run(app, who, agent, command).await?;
        app.deadlines.cancel(server, queue, iface, Which::Logout);
        if r.paused && r.unpause_after > 0 {
            let seq = seq(app);
            app.deadlines
                .set(server, queue, iface, Due::Unpause, r.unpause_after, seq);
        }
        return Ok(());
    }
    // Log back in as the member was: name, state interface and penalty.
    let member = app
        .hub
        .read(|s| s.queue(server, queue)?.members.get(iface).cloned());
    let relogin = Due::Relogin {
        member_name: member
            .as_ref()
            .map_or(agent.display_name.clone(), |m| m.name.clone()),
        state_interface: member
            .as_ref()
            .map_or(agent.state_interface.clone(), |m| m.state_interface.clone()),
        penalty: member.as_ref().map_or(0, |m| m.penalty),
    };
    let command = Command::Logout {
        queue: queue.to_owned(),
        interface: iface.to_owned(),
    };
    run(app, who, agent, command).await?;
    app.deadlines.cancel(server, queue, iface, Which::Pause);
    if r.relogin_after > 0 {
        let seq = seq(app);
        app.deadlines
            .set(server, queue, iface, relogin, r.relogin_after, seq);
    }
    Ok(())
}

/// Every agent of a comma-separated id list, resolved before anything is done, so a bad id
/// changes nothing.
fn agents(app: &AppState, ids: &str) -> Result<Vec<Arc<User>>, Answer> {
    ids.split(',').map(|id| agent(app, id)).collect()
}

fn required<'p>(params: &'p HashMap<String, String>, key: &str) -> Result<&'p str, Answer> {
    params
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| parameter_error(key, "required"))
}

/// `ext_id`: an integer extension ID of a configured agent.
fn ext_id(app: &AppState, params: &HashMap<String, String>) -> Result<Arc<User>, Answer> {
    let id = required(params, "ext_id")?;
    if id.parse::<u64>().is_err() {
        return Err(parameter_error("ext_id", id));
    }
    agent(app, id)
}

/// `queue_ids`: the queue names of a comma-separated id list, or `None` when absent.
fn queue_ids(
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
fn done(result: Result<(), Answer>) -> Answer {
    match result {
        Ok(()) => success(json!({})),
        Err(a) => a,
    }
}

/// `queue/agent_pause?ext_ids=73,85&queue_id=2&operation=pause&reason=*01`
async fn queue_agent_pause(
    State(app): State<AppState>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Answer {
    done(
        async {
            let who = Principal::User(me);
            let paused = operation(&params)?;
            let unpause_after = threshold(&params, "max_threshold_for_pause_time")?;
            let ext_ids = required(&params, "ext_ids")?;
            let queue = queue_name(&app, &who, required(&params, "queue_id")?, "queue_id")?;
            let reason = params.get("reason").map_or("", String::as_str);
            for a in &agents(&app, ext_ids)? {
                let qs = Some(vec![queue.clone()]);
                pause(&app, &who, a, qs, paused, reason, unpause_after).await?;
            }
            Ok(())
        }
        .await,
    )
}

/// `agent/pause?ext_id=85&queue_ids=1,2&operation=pause&reason=*01` (no queue_ids = all).
async fn agent_pause(
    State(app): State<AppState>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Answer {
    done(
        async {
            let who = Principal::User(me);
            let paused = operation(&params)?;
            let unpause_after = threshold(&params, "max_threshold_for_pause_time")?;
            let agent = ext_id(&app, &params)?;
            let queues = queue_ids(&app, &who, &params)?;
            let reason = params.get("reason").map_or("", String::as_str);
            pause(&app, &who, &agent, queues, paused, reason, unpause_after).await
        }
        .await,
    )
}

/// `queue/agent_login?ext_ids=21,24&queue_id=1&operation=login&is_paused=1&…`
async fn queue_agent_login(
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
async fn agent_login(
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
                None => member_queues(&app, &agent.server, &agent.interface, true),
            };
            for q in &queues {
                login(&app, &who, &agent, q, &request).await?;
            }
            Ok(())
        }
        .await,
    )
}

// ---- Queries -------------------------------------------------------------------------------

/// Yeastar's `ring_strategy` for an Asterisk strategy (the closest of Yeastar's six).
fn ring_strategy(strategy: &str) -> &'static str {
    match strategy {
        "leastrecent" => "least_recent",
        "fewestcalls" => "fewest_calls",
        "random" | "wrandom" => "random",
        "rrmemory" | "rrordered" | "roundrobin" => "rrmemory",
        "linear" => "linear",
        _ => "ring_all",
    }
}

/// Yeastar's `call_status` of a member, from its device state (ami.md §2.1): 0 unknown,
/// 1 idle, 2 in a call, 3 ringing, 4 ringing while in a call, 5 on hold "held by the caller".
///
/// Asterisk's On Hold is the state of the *held* device: a hold is indicated to the channel
/// on the far side of the bridge, whose hold state makes its device On Hold. So an agent's
/// device is On Hold exactly when the caller put the agent on hold (5); when the agent holds
/// the caller, the agent's channel stays up and the device In use (2) — Yeastar's "if the
/// agent holds, the value stays 2".
fn device_call_status(status: DeviceState) -> i64 {
    match status {
        DeviceState::NotInUse => 1,
        DeviceState::InUse | DeviceState::Busy => 2,
        DeviceState::Ringing => 3,
        DeviceState::RingInUse => 4,
        DeviceState::OnHold => 5,
        _ => 0,
    }
}

/// (name, extension number) of a member: the configured user's, else Asterisk's.
fn identity(directory: &Directory, server: &str, member: &Member) -> (String, String) {
    let agent = view::Agent::of_member(directory, server, member);
    (agent.name, agent.number)
}

fn list_item(name: &str, number: &str) -> Value {
    json!({ "text": name, "text2": number, "value": number, "type": "extension" })
}

/// One queue as `queue/list` shows it.
fn queue_item(directory: &Directory, q: &Queue) -> Value {
    let server = &*q.server;
    let mut dynamic = Vec::new();
    let mut listed = std::collections::BTreeSet::new();
    let mut statics = Vec::new();
    for m in q.members.values() {
        let (name, number) = identity(directory, server, m);
        listed.insert(m.interface.as_str());
        if m.membership.is_static() {
            statics.push(list_item(&name, &number));
        } else {
            dynamic.push(list_item(&name, &number));
        }
    }
    let mut managers = Vec::new();
    for u in directory.users().filter(|u| u.server == server) {
        let number = u.number();
        if u.queues.contains(&*q.name) && !listed.contains(u.interface.as_str()) {
            dynamic.push(list_item(&u.display_name, number));
        }
        if u.supervisor {
            managers.push(list_item(&u.display_name, number));
        }
    }
    json!({
        "id": q.id,
        "number": &*q.name,
        "name": &*q.name,
        "ring_strategy": ring_strategy(&q.stats.strategy),
        "dynamic_agent_list": dynamic,
        "static_agent_list": statics,
        "manager_list": managers,
    })
}

/// The queues `who` may see, as `queue/list` items.
fn visible_queues(app: &AppState, who: &Principal) -> Vec<Value> {
    let directory = app.commands.access().directory();
    app.hub.read(|s| {
        s.queues()
            .filter(|q| who.can_see(q))
            .map(|q| queue_item(&directory, q))
            .collect()
    })
}

/// `page`, `page_size`, `sort_by`, `order_by` applied to list items.
fn page(params: &HashMap<String, String>, mut items: Vec<Value>) -> Result<Value, Answer> {
    let number = |key: &str| -> Result<Option<usize>, Answer> {
        match params.get(key).map(|v| v.trim()) {
            None | Some("") => Ok(None),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Some(n)),
                _ => Err(parameter_error(key, v)),
            },
        }
    };
    let page = number("page")?.unwrap_or(1);
    let size = number("page_size")?;
    let key = match params.get("sort_by").map(String::as_str) {
        None | Some("") => "id",
        Some(k @ ("id" | "number" | "name" | "ring_strategy")) => k,
        Some(other) => return Err(parameter_error("sort_by", other)),
    };
    let descending = match params.get("order_by").map(String::as_str) {
        None | Some("") | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(parameter_error("order_by", other)),
    };
    items.sort_by(|a, b| {
        let order = match (a[key].as_u64(), b[key].as_u64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => a[key].as_str().cmp(&b[key].as_str()),
        };
        if descending {
            order.reverse()
        } else {
            order
        }
    });
    let total = items.len();
    let shown: Vec<Value> = match size {
        Some(size) => items
            .into_iter()
            .skip((page - 1).saturating_mul(size))
            .take(size)
            .collect(),
        None => items,
    };
    Ok(json!({ "total_number": total, "queue_list": shown }))
}

/// `queue/list?page=&page_size=&sort_by=&order_by=`
async fn queue_list(
    State(app): State<AppState>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Answer {
    let who = Principal::User(me);
    match page(&params, visible_queues(&app, &who)) {
        Ok(v) => success(v),
        Err(a) => a,
    }
}

/// `queue/search?search_value=…` — a case-insensitive match on number or name.
async fn queue_search(
    State(app): State<AppState>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Answer {
    let who = Principal::User(me);
    let needle = params
        .get("search_value")
        .map(|v| v.trim().to_lowercase())
        .unwrap_or_default();
    let found = visible_queues(&app, &who)
        .into_iter()
        .filter(|q| {
            ["number", "name"].iter().any(|k| {
                q[*k]
                    .as_str()
                    .is_some_and(|v| v.to_lowercase().contains(&needle))
            })
        })
        .collect();
    match page(&params, found) {
        Ok(v) => success(v),
        Err(a) => a,
    }
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

/// `queue/get?id=3`
async fn queue_get(
    State(app): State<AppState>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Answer {
    let result = (|| {
        let who = Principal::User(me);
        let directory = app.commands.access().directory();
        with_queue(&app, &who, required(&params, "id")?, "id", |q| {
            queue_item(&directory, q)
        })
    })();
    match result {
        Ok(data) => success(json!({ "data": data })),
        Err(a) => a,
    }
}

/// `queue/query?ids=1,2`
async fn queue_query(
    State(app): State<AppState>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Answer {
    let result = (|| {
        let who = Principal::User(me);
        let directory = app.commands.access().directory();
        required(&params, "ids")?
            .split(',')
            .map(|id| with_queue(&app, &who, id.trim(), "ids", |q| queue_item(&directory, q)))
            .collect::<Result<Vec<_>, _>>()
    })();
    match result {
        Ok(data) => success(json!({ "data": data })),
        Err(a) => a,
    }
}

/// `queue/call_status?id=3`: waiting, ringing and connected calls.
fn call_lists(
    app: &AppState,
    who: &Principal,
    params: &HashMap<String, String>,
) -> Result<Value, Answer> {
    let directory = app.commands.access().directory();
    let now = now_secs();
    with_queue(app, who, required(params, "id")?, "id", |q| {
        let waiting: Vec<Value> = q
            .callers
            .iter()
            .map(|c| {
                json!({
                    "call_id": c.uniqueid,
                    "caller_number": c.caller_id_num,
                    "caller_display_name": c.caller_id_name,
                    "callee_number": &*q.name,
                    "callee_display_name": &*q.name,
                    "duration": (now - c.entered).max(0),
                })
            })
            .collect();
        let member = |interface: &str| -> (String, String) {
            match q.members.get(interface) {
                Some(m) => identity(&directory, &q.server, m),
                None => (interface.to_owned(), extension_of(interface).to_owned()),
            }
        };
        let ringing: Vec<Value> = q
            .ringing()
            .filter_map(|r| {
                let c = q.callers.get(r.uniqueid)?;
                let (name, number) = member(r.interface);
                Some(json!({
                    "call_id": c.uniqueid,
                    "caller_number": c.caller_id_num,
                    "caller_display_name": c.caller_id_name,
                    "callee_number": number,
                    "callee_display_name": name,
                    "duration": (now - r.since).max(0),
                }))
            })
            .collect();
        let active: Vec<Value> = q
            .connected_calls
            .iter()
            .map(|c| {
                let (name, number) = member(&c.interface);
                json!({
                    "call_id": c.uniqueid,
                    "caller_number": c.caller_id_num,
                    "caller_display_name": c.caller_id_name,
                    "callee_number": number,
                    "callee_display_name": name,
                    "duration": (now - c.connected_at).max(0),
                })
            })
            .collect();
        json!({
            "waiting_calls": waiting.len(),
            "waiting_list": waiting,
            "ringing_calls": ringing.len(),
            "ringing_list": ringing,
            "active_calls": active.len(),
            "active_list": active,
        })
    })
}

async fn call_status(
    State(app): State<AppState>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Answer {
    match call_lists(&app, &Principal::User(me), &params) {
        Ok(v) => success(v),
        Err(a) => a,
    }
}

/// `queue/agent_status?id=3`: every member, and every configured dynamic agent of the queue
/// who is logged out (`is_login` 0).
async fn agent_status(
    State(app): State<AppState>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Answer {
    let result = (|| {
        let who = Principal::User(me);
        let directory = app.commands.access().directory();
        let deadlines = &app.deadlines;
        with_queue(&app, &who, required(&params, "id")?, "id", |q| {
            let server = &*q.server;
            let thresholds = |interface: &str| {
                (
                    deadlines.threshold(server, &q.name, interface, Which::Pause),
                    deadlines.threshold(server, &q.name, interface, Which::Logout),
                )
            };
            let mut data = Vec::new();
            for m in q.members.values() {
                let (name, number) = identity(&directory, server, m);
                let (pause, logout) = thresholds(&m.interface);
                data.push(json!({
                    "name": name,
                    "number": number,
                    "is_login": 1,
                    "is_pause": i64::from(m.paused),
                    "call_status": device_call_status(m.status),
                    "pause_reason": if m.paused { m.paused_reason.as_str() } else { "" },
                    "agent_type": if m.membership.is_static() { "static" } else { "dynamic" },
                    "max_threshold_for_pause_time": pause,
                    "max_threshold_for_logout_time": logout,
                }));
            }
            for u in directory.users().filter(|u| {
                u.server == server
                    && u.queues.contains(&*q.name)
                    && !q.members.contains_key(&u.interface)
            }) {
                let (pause, logout) = thresholds(&u.interface);
                data.push(json!({
                    "name": u.display_name,
                    "number": u.number(),
                    "is_login": 0,
                    "is_pause": 0,
                    "call_status": 0,
                    "pause_reason": "",
                    "agent_type": "dynamic",
                    "max_threshold_for_pause_time": pause,
                    "max_threshold_for_logout_time": logout,
                }));
            }
            data
        })
    })();
    match result {
        Ok(data) => success(json!({ "total_number": data.len(), "data": data })),
        Err(a) => a,
    }
}
