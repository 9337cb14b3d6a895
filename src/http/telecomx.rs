//! The Telecom X dialect, under `/auth` and `/pbx` (rest-dialects.md §3).
//!
//! * Tokens: `POST /auth/login` (or GET with query parameters) with a configured user's name and
//!   password; valid 15 minutes, or until logout with `persist`. Presented as `?token=` or as
//!   the `token` cookie (set by login with `cookie: true`).
//! * Ids are 24 hex digits, as Telecom X's: a queue's `_id` is its stable numeric id in hex; an
//!   employee's and an extension's are derived from the user's name; a member's from the queue
//!   and the interface. A caller's `_id` is `<uniqueid>-<server id>`.
//! * Access levels: a supervisor is `MANAGER`, an agent `PERSONAL`; what each may see and do is
//!   decided by [`crate::access`], as for every front end.
//! * Errors: the HTTP status with `{"error": "<key>", "message": "…"}` — `400 bad_request`,
//!   `401 credentials_invalid` (no token), `401 expired` (unknown, expired or revoked token),
//!   `403 access_denied`, `403 dynamic` (a permanent member cannot leave), `404 id` (no such
//!   queue), `404 member`, `500 internal_error`; and, for commands Asterisk did not carry out,
//!   `503 unavailable` (AMI link down) and `504 timeout`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{self, LoginError, Source};
use super::error::{internal, status_of};
use super::AppState;
use crate::access::{extension_of, Directory, Principal, User};
use crate::clock::now_secs;
use crate::command::{Code, Command, CommandError};
use crate::history::{CallRecord, Query as HistoryQuery};
use crate::state::{Member, Queue};
use crate::view;

/// Telecom X's token lifetime.
pub const TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// A persisted token lasts until logout (or a queuebridge restart).
const PERSIST_TTL: Duration = Duration::from_secs(10 * 365 * 86_400);
/// Live tokens per user (bounded memory); past this, login is refused.
pub const TOKENS_PER_USER: usize = 100;

/// A Telecom X error: an HTTP status and a message key.
#[derive(Debug)]
struct Error {
    status: StatusCode,
    key: &'static str,
    message: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.key, "message": self.message }));
        (self.status, body).into_response()
    }
}

fn err(status: StatusCode, key: &'static str, message: impl Into<String>) -> Error {
    Error {
        status,
        key,
        message: message.into(),
    }
}

fn bad_request(message: impl Into<String>) -> Error {
    err(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn access_denied(message: impl Into<String>) -> Error {
    err(StatusCode::FORBIDDEN, "access_denied", message)
}

fn no_queue() -> Error {
    err(StatusCode::NOT_FOUND, "id", "queue not found")
}

/// A command's failure: the status every API gives it ([`status_of`]), except that Telecom X
/// refuses removing a permanent member with 403 and reports Asterisk's refusal as its
/// `internal_error` (500); the key names what was wrong.
fn command_error(e: CommandError) -> Error {
    let (status, key) = match e.code {
        Code::InvalidArgument => (status_of(e.code), "bad_request"),
        Code::Forbidden => (status_of(e.code), "access_denied"),
        Code::NotDynamic => (StatusCode::FORBIDDEN, "dynamic"),
        Code::NoSuchServer | Code::NoSuchQueue => (status_of(e.code), "id"),
        Code::NotMember | Code::NoSuchCaller => (status_of(e.code), "member"),
        Code::NotConnected | Code::Busy => (status_of(e.code), "unavailable"),
        Code::Timeout => (status_of(e.code), "timeout"),
        Code::Refused => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
    };
    err(status, key, e.message)
}

type Result<T, E = Error> = std::result::Result<T, E>;
type Params = Query<HashMap<String, String>>;

/// The `/auth` and `/pbx` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(login_get).post(login_post))
        .route("/auth/logout", get(logout))
        .route("/auth/validateToken", get(validate_token))
        .route("/pbx/app/queues", get(app_queues))
        .route("/pbx/queue/{id}", get(queue))
        .route("/pbx/queue/{id}/callers", get(callers))
        .route("/pbx/queue/{id}/calls", get(calls))
        .route("/pbx/queue/{id}/member", get(members).post(join_post))
        .route("/pbx/queue/{id}/member/join", get(join_get))
        .route(
            "/pbx/queue/{id}/member/{member}",
            get(update_get).post(update_post).delete(leave),
        )
        // A queue path without its id is the client's mistake, not an unknown endpoint.
        .route("/pbx/queue", any(no_queue_id))
        .route("/pbx/queue/", any(no_queue_id))
        .route("/pbx/queue//{*rest}", any(no_queue_id))
}

async fn no_queue_id() -> Error {
    bad_request("the path needs a queue id: /pbx/queue/{QUEUE_ID}/…")
}

/// 24 hex digits from a name (employee and extension ids).
fn object_id(kind: &str, name: &str) -> String {
    let digest = Md5::new()
        .chain_update(kind)
        .chain_update([0])
        .chain_update(name)
        .finalize();
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

fn queue_id(q: &Queue) -> String {
    format!("{:024x}", q.id)
}

fn member_id(q: &Queue, interface: &str) -> String {
    object_id("member", &format!("{}\0{}\0{interface}", q.server, q.name))
}

fn customer_id() -> String {
    object_id("customer", "queuebridge")
}

/// 9999-12-31T23:59:59Z, the last second RFC 3339 can write (humantime panics beyond it).
const LAST_DATE: i64 = 253_402_300_799;

/// ISO-8601 with milliseconds, as Telecom X writes dates. Times come from Asterisk's figures
/// (`Wait`, `HoldTime` …), so they are clamped to what the format can hold instead of trusted.
fn date(epoch_secs: i64) -> Value {
    let secs = u64::try_from(epoch_secs.clamp(0, LAST_DATE)).unwrap_or(0);
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    json!(humantime::format_rfc3339_millis(t).to_string())
}

fn opt_date(epoch_secs: Option<i64>) -> Value {
    epoch_secs.map_or(Value::Null, date)
}

fn access_level(u: &User) -> &'static str {
    if u.supervisor {
        "MANAGER"
    } else {
        "PERSONAL"
    }
}

// ---- Authentication ------------------------------------------------------------------------

/// The token of a request: `?token=`, else the `token` cookie.
fn token_of(params: &HashMap<String, String>, headers: &HeaderMap) -> Option<String> {
    auth::query_or_cookie(params, headers, "token")
}

/// The user behind the request's token.
fn caller(
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
    auth::signed_in(app, &app.telecomx_tokens, &token).ok_or_else(expired)
}

/// The signed-in user of a request (`?token=` or the `token` cookie), as a handler argument:
/// 401 `credentials_invalid` without a token, `expired` for a dead one.
struct SignedIn(Arc<User>);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self> {
        let params = Params::try_from_uri(&parts.uri).map_or_else(|_| HashMap::new(), |q| q.0);
        caller(app, &params, &parts.headers).map(SignedIn)
    }
}

#[derive(Deserialize, Default)]
struct Login {
    username: Option<String>,
    password: Option<String>,
    #[serde(default, deserialize_with = "flexible_bool")]
    cookie: bool,
    #[serde(default, deserialize_with = "flexible_bool")]
    persist: bool,
}

/// A boolean given as JSON `true` or as the query string's `"true"`/`"1"`.
fn flexible_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::String(s) if s == "true" || s == "1" => Ok(true),
        Value::String(s) if s == "false" || s == "0" || s.is_empty() => Ok(false),
        other => Err(serde::de::Error::custom(format!("not a boolean: {other}"))),
    }
}

async fn login_post(
    State(app): State<AppState>,
    Source(source): Source,
    body: Result<Json<Login>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(l)) => login(app, source, l).await,
        Err(e) => bad_request(e.body_text()).into_response(),
    }
}

async fn login_get(
    State(app): State<AppState>,
    Source(source): Source,
    query: Result<Query<Login>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match query {
        Ok(Query(l)) => login(app, source, l).await,
        Err(e) => bad_request(e.body_text()).into_response(),
    }
}

async fn login(app: AppState, source: std::net::IpAddr, l: Login) -> Response {
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
                format!("too many logins; try again in {secs} s"),
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
async fn logout(
    State(app): State<AppState>,
    Query(_): Params,
    SignedIn(user): SignedIn,
) -> Result<Json<Value>> {
    app.telecomx_tokens.revoke_user(&user.name);
    Ok(Json(json!({ "success": true })))
}

/// `GET /auth/validateToken?token=…[&simple=true][&extend=true]`
async fn validate_token(
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

// ---- Queues --------------------------------------------------------------------------------

/// The queue of a 24-hex id, visible to `who`, read with `f`.
fn with_queue<R>(
    app: &AppState,
    who: &Principal,
    id: &str,
    f: impl FnOnce(&Queue) -> R,
) -> Result<R> {
    let numeric = (id.len() == 24)
        .then(|| u64::from_str_radix(id, 16).ok())
        .flatten()
        .ok_or_else(no_queue)?;
    app.hub.read(|s| match view::queue_by_id(s, who, numeric) {
        Err(view::Unseen::Missing) => Err(no_queue()),
        Err(view::Unseen::Hidden) => Err(access_denied("no access to this queue")),
        Ok(q) => Ok(f(q)),
    })
}

/// Telecom X's strategy for Asterisk's.
fn strategy(asterisk: &str) -> &'static str {
    match asterisk {
        "ringall" => "CONCURRENT",
        "linear" => "SEQUENTIAL",
        "leastrecent" => "LONGEST_IDLE",
        "fewestcalls" => "LEAST_CALLS",
        "random" | "wrandom" => "RANDOM",
        _ => "ROUND_ROBIN",
    }
}

/// The extension id of a member: its user's, else one derived from the interface.
fn extension_id(user: Option<&Arc<User>>, interface: &str) -> String {
    match user {
        Some(u) => object_id("extension", &u.name),
        None => object_id("interface", interface),
    }
}

/// A member object (§3.5.3); `day` = its answered calls today.
fn member_json(
    directory: &Directory,
    q: &Queue,
    m: &Member,
    day: Option<&crate::history::MemberDay>,
) -> Value {
    let user = directory.by_interface(&q.server, &m.interface);
    json!({
        "_id": member_id(q, &m.interface),
        "extension": extension_id(user, &m.interface),
        "number": Value::Null,
        "name": view::identity(user.map(|u| &**u), m).1,
        "priority": m.penalty + 1,
        "calls": day.map_or(0, |d| d.calls),
        "seconds": day.map_or(0, |d| d.talk_seconds),
        "lastCallEnded": opt_date(day.and_then(|d| d.last_ended)),
        "permanent": m.membership.is_static(),
    })
}

/// The Asterisk host name of each server: Telecom X's call ids are `<channel-id>-<hostname>`.
struct Hosts(std::collections::BTreeMap<String, String>);

impl Hosts {
    fn of(app: &AppState) -> Self {
        let servers = app.commands.servers().list();
        Self(
            servers
                .into_iter()
                .map(|s| (s.id.clone(), s.hostname()))
                .collect(),
        )
    }

    fn call_id(&self, server: &str, uniqueid: &str) -> String {
        let host = self.0.get(server).map_or(server, String::as_str);
        format!("{uniqueid}-{host}")
    }
}

/// Callers waiting (`QUEUED`), then callers answered and still talking: `ANSWERED`, with
/// `answered` set (§3.5.2 defines only waiting states, so a client counting `QUEUED` counts
/// the callers waiting, as the spec means it).
fn callers_json(directory: &Directory, hosts: &Hosts, q: &Queue) -> Vec<Value> {
    let caller_id = |uniqueid: &str| hosts.call_id(&q.server, uniqueid);
    let mut out: Vec<Value> = q
        .callers
        .iter()
        .map(|c| {
            json!({
                "_id": caller_id(&c.uniqueid),
                "state": "QUEUED",
                "number": c.caller_id_num,
                "name": c.caller_id_name,
                "privacy": c.privacy,
                "entered": date(c.entered),
                "answered": Value::Null,
                "presentation": c.dialled,
                "answeredByExtension": Value::Null,
                "answeredByNumber": Value::Null,
            })
        })
        .collect();
    for c in q.connected_calls.iter() {
        let user = directory.by_interface(&q.server, &c.interface);
        let number = user.map_or(extension_of(&c.interface), |u| u.number());
        out.push(json!({
            "_id": caller_id(&c.uniqueid),
            "state": "ANSWERED",
            "number": c.caller_id_num,
            "name": c.caller_id_name,
            "privacy": c.privacy,
            "entered": date(c.connected_at - c.hold_time),
            "answered": date(c.connected_at),
            "presentation": c.dialled,
            "answeredByExtension": extension_id(user, &c.interface),
            "answeredByNumber": number,
        }));
    }
    out
}

/// Start of today, UTC, epoch seconds.
fn today() -> i64 {
    let now = now_secs();
    now - now.rem_euclid(86_400)
}

/// Members with today's counts from the call history.
async fn members_of(app: &AppState, who: &Principal, id: &str) -> Result<Vec<Value>> {
    let (server, name) = with_queue(app, who, id, |q| (q.server.to_string(), q.name.to_string()))?;
    let stats = app
        .history
        .member_stats(&server, &name, today())
        .await
        .map_err(|e| {
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                internal("reading the call history", e),
            )
        })?;
    let directory = app.commands.access().directory();
    with_queue(app, who, id, |q| {
        q.members
            .values()
            .map(|m| member_json(&directory, q, m, stats.get(&m.interface)))
            .collect()
    })
}

fn flag(params: &HashMap<String, String>, key: &str) -> Result<bool> {
    match params.get(key).map(String::as_str) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(v) => Err(bad_request(format!("{key}: not a boolean: {v:?}"))),
    }
}

/// `GET /pbx/queue/{id}?members=true&callers=true`
async fn queue(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Result<Json<Value>> {
    let who = Principal::User(me);
    let (with_members, with_callers) = (flag(&params, "members")?, flag(&params, "callers")?);
    let members = if with_members {
        Some(members_of(&app, &who, &id).await?)
    } else {
        None
    };
    let directory = app.commands.access().directory();
    let hosts = Hosts::of(&app);
    let mut v = with_queue(&app, &who, &id, |q| {
        json!({
            "_id": queue_id(q),
            "type": "QUEUE",
            "customer": customer_id(),
            "name": &*q.name,
            "number": &*q.name,
            "startAudio": Value::Null,
            "redirect": "",
            "notes": "",
            "strategy": strategy(&q.stats.strategy),
            "musicOnHold": Value::Null,
            "serviceLevel": q.stats.service_level,
            "callers": with_callers.then(|| callers_json(&directory, &hosts, q)),
        })
    })?;
    if let Some(map) = v.as_object_mut() {
        if !with_callers {
            map.remove("callers");
        }
        if let Some(m) = members {
            map.insert("members".into(), json!(m));
        }
    }
    Ok(Json(v))
}

/// `GET /pbx/queue/{id}/callers`
async fn callers(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(_): Params,
    SignedIn(me): SignedIn,
) -> Result<Json<Value>> {
    let who = Principal::User(me);
    let directory = app.commands.access().directory();
    let hosts = Hosts::of(&app);
    with_queue(&app, &who, &id, |q| {
        Json(json!(callers_json(&directory, &hosts, q)))
    })
}

/// `GET /pbx/queue/{id}/member`
async fn members(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(_): Params,
    SignedIn(me): SignedIn,
) -> Result<Json<Value>> {
    let who = Principal::User(me);
    Ok(Json(json!(members_of(&app, &who, &id).await?)))
}

/// What a join or an update may carry, from a JSON body or a query string.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MemberRequest {
    extension: Option<String>,
    number: Option<String>,
    #[serde(default, deserialize_with = "flexible_int")]
    priority: Option<i64>,
    #[serde(default, deserialize_with = "flexible_opt_bool")]
    permanent: Option<bool>,
    /// Query-string token, accepted beside the fields.
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

fn flexible_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("priority must be an integer")),
        Value::String(s) => s.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("priority must be an integer, not {s:?}"))
        }),
        other => Err(serde::de::Error::custom(format!(
            "priority must be an integer, not {other}"
        ))),
    }
}

fn flexible_opt_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    flexible_bool(d).map(Some)
}

fn body_or_query(
    body: Option<Result<Json<MemberRequest>, JsonRejection>>,
    query: Option<HashMap<String, String>>,
) -> Result<MemberRequest> {
    match (body, query) {
        (Some(Ok(Json(r))), _) => Ok(r),
        (Some(Err(e)), _) => Err(bad_request(e.body_text())),
        (None, Some(q)) => {
            let v = serde_json::to_value(q).map_err(|e| bad_request(e.to_string()))?;
            serde_json::from_value(v).map_err(|e| bad_request(e.to_string()))
        }
        (None, None) => Ok(MemberRequest::default()),
    }
}

/// Telecom X priority 1–20 → Asterisk penalty 0–19.
fn penalty(priority: Option<i64>) -> Result<Option<i64>> {
    match priority {
        None => Ok(None),
        Some(p @ 1..=20) => Ok(Some(p - 1)),
        Some(p) => Err(bad_request(format!("priority must be 1–20, not {p}"))),
    }
}

async fn join_post(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
    body: Result<Json<MemberRequest>, JsonRejection>,
) -> Result<Json<Value>> {
    let request = body_or_query(Some(body), None)?;
    join(app, id, params, headers, request).await
}

async fn join_get(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Result<Json<Value>> {
    let request = body_or_query(None, Some(params.clone()))?;
    join(app, id, params, headers, request).await
}

/// The user of an extension id; the caller when none is given.
fn extension_user(app: &AppState, me: &Arc<User>, extension: Option<&str>) -> Result<Arc<User>> {
    let user = match extension {
        None => me.clone(),
        Some(ext) => app
            .commands
            .access()
            .directory()
            .users()
            .find(|u| object_id("extension", &u.name) == ext)
            .cloned()
            .ok_or_else(|| bad_request(format!("no extension {ext:?}")))?,
    };
    user.agent_interface().map_err(bad_request)?;
    Ok(user)
}

/// Join: log the extension in to the queue as a dynamic member.
async fn join(
    app: AppState,
    id: String,
    params: HashMap<String, String>,
    headers: HeaderMap,
    r: MemberRequest,
) -> Result<Json<Value>> {
    let me = caller(&app, &params, &headers)?;
    let who = Principal::User(me.clone());
    if r.number.is_some() {
        return Err(bad_request(
            "external numbers cannot join an Asterisk queue; give an extension",
        ));
    }
    if r.permanent == Some(true) {
        return Err(if me.supervisor {
            bad_request("permanent members are configured in Asterisk's queues.conf")
        } else {
            access_denied("permanent needs MANAGER")
        });
    }
    let penalty = penalty(r.priority)?;
    let agent = extension_user(&app, &me, r.extension.as_deref())?;
    let (server, queue) = with_queue(&app, &who, &id, |q| {
        (q.server.to_string(), q.name.to_string())
    })?;
    if server != agent.server {
        return Err(bad_request(
            "that extension works on another Asterisk server",
        ));
    }
    let command = Command::login(&agent, queue, penalty, None);
    app.commands
        .execute(&who, &server, command)
        .await
        .map_err(command_error)?;
    one_member(&app, &who, &id, &agent.interface).await
}

/// The member (array-wrapped, as Telecom X's samples) after a join or update.
async fn one_member(
    app: &AppState,
    who: &Principal,
    id: &str,
    interface: &str,
) -> Result<Json<Value>> {
    let member_key = with_queue(app, who, id, |q| member_id(q, interface))?;
    let all = members_of(app, who, id).await?;
    let found: Vec<Value> = all
        .into_iter()
        .filter(|m| m["_id"] == member_key.as_str())
        .collect();
    Ok(Json(json!(found)))
}

/// The (server, queue, interface) of a member id.
fn member_by_id(
    app: &AppState,
    who: &Principal,
    id: &str,
    member: &str,
) -> Result<(String, String, Member)> {
    with_queue(app, who, id, |q| {
        q.members
            .values()
            .find(|m| member_id(q, &m.interface) == member)
            .map(|m| (q.server.to_string(), q.name.to_string(), m.clone()))
    })?
    .ok_or_else(|| err(StatusCode::NOT_FOUND, "member", "member not found"))
}

async fn update_post(
    State(app): State<AppState>,
    Path((id, member)): Path<(String, String)>,
    Query(params): Params,
    headers: HeaderMap,
    body: Result<Json<MemberRequest>, JsonRejection>,
) -> Result<Json<Value>> {
    let request = body_or_query(Some(body), None)?;
    update(app, id, member, params, headers, request).await
}

async fn update_get(
    State(app): State<AppState>,
    Path((id, member)): Path<(String, String)>,
    Query(params): Params,
    headers: HeaderMap,
) -> Result<Json<Value>> {
    let request = body_or_query(None, Some(params.clone()))?;
    update(app, id, member, params, headers, request).await
}

/// Update: `priority` becomes the member's penalty; `permanent` cannot change through AMI.
async fn update(
    app: AppState,
    id: String,
    member: String,
    params: HashMap<String, String>,
    headers: HeaderMap,
    r: MemberRequest,
) -> Result<Json<Value>> {
    let who = Principal::User(caller(&app, &params, &headers)?);
    let (server, queue, m) = member_by_id(&app, &who, &id, &member)?;
    if r.extension.is_some() || r.number.is_some() {
        return Err(bad_request("a member's extension or number cannot change"));
    }
    if r.permanent.is_some_and(|p| p != m.membership.is_static()) {
        return Err(bad_request(
            "permanent is set in Asterisk's queues.conf, not through the API",
        ));
    }
    if let Some(penalty) = penalty(r.priority)? {
        let command = Command::Penalty {
            queue: Some(queue),
            interface: m.interface.clone(),
            penalty,
        };
        app.commands
            .execute(&who, &server, command)
            .await
            .map_err(command_error)?;
    }
    one_member(&app, &who, &id, &m.interface).await
}

/// `DELETE /pbx/queue/{id}/member/{member}`: leave (log out).
async fn leave(
    State(app): State<AppState>,
    Path((id, member)): Path<(String, String)>,
    Query(_): Params,
    SignedIn(me): SignedIn,
) -> Result<Json<Value>> {
    let who = Principal::User(me);
    let (server, queue, m) = member_by_id(&app, &who, &id, &member)?;
    if m.membership.is_static() {
        return Err(err(
            StatusCode::FORBIDDEN,
            "dynamic",
            "a permanent member cannot leave",
        ));
    }
    let command = Command::Logout {
        queue,
        interface: m.interface,
    };
    app.commands
        .execute(&who, &server, command)
        .await
        .map_err(command_error)?;
    Ok(Json(json!({ "success": true })))
}

// ---- History -------------------------------------------------------------------------------

/// Telecom X's call status for a history outcome.
fn call_status(outcome: &str) -> &'static str {
    match outcome {
        "answered" => "ANSWERED",
        "timeout" => "TIMEOUT",
        "no_members" => "NO_MEMBERS",
        "all_busy" => "ALL_BUSY",
        _ => "CANCELLED",
    }
}

/// The history outcomes of a Telecom X call status.
fn outcomes(status: &str) -> Option<&'static [&'static str]> {
    Some(match status {
        "ANSWERED" => &["answered"],
        "TIMEOUT" => &["timeout"],
        "NO_MEMBERS" => &["no_members"],
        "ALL_BUSY" => &["all_busy"],
        "CANCELLED" => &["abandoned", "withdrawn", "agent_dump", "unknown"],
        _ => return None,
    })
}

fn parse_date(key: &str, v: &str) -> Result<i64> {
    let full = if v.len() == 10 {
        format!("{v}T00:00:00Z")
    } else {
        v.to_owned()
    };
    humantime::parse_rfc3339_weak(&full)
        .map_err(|_| bad_request(format!("{key}: not a date: {v:?}")))?
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .map_err(|_| bad_request(format!("{key}: before 1970: {v:?}")))
}

fn number(
    params: &HashMap<String, String>,
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64> {
    match params.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                bad_request(format!(
                    "{key} must be {}–{}, not {v:?}",
                    range.start(),
                    range.end()
                ))
            }),
    }
}

/// `GET /pbx/queue/{id}/calls?from&to&status&reverse&offset&limit`
async fn calls(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Result<Json<Value>> {
    let who = Principal::User(me);
    let (server, queue, qid) = with_queue(&app, &who, &id, |q| {
        (q.server.to_string(), q.name.to_string(), queue_id(q))
    })?;
    let from = match params.get("from") {
        Some(v) => parse_date("from", v)?,
        None => today(),
    };
    let to = match params.get("to") {
        Some(v) => parse_date("to", v)?,
        None => today() + 86_399,
    };
    let mut q = HistoryQuery {
        server: server.clone(),
        queue,
        from,
        to,
        newest_first: flag(&params, "reverse")?,
        offset: number(&params, "offset", 0, 0..=u64::MAX)?,
        limit: number(&params, "limit", 50, 1..=500)?,
        ..HistoryQuery::default()
    };
    if let Some(status) = params.get("status") {
        let (negate, name) = match status.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, status.as_str()),
        };
        let list =
            outcomes(name).ok_or_else(|| bad_request(format!("status: unknown {name:?}")))?;
        let list: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        if negate {
            q.exclude = list;
        } else {
            q.outcomes = list;
        }
    }
    let (offset, limit) = (q.offset, q.limit);
    let (total, rows) = app.history.query(q).await.map_err(|e| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            internal("reading the call history", e),
        )
    })?;
    let directory = app.commands.access().directory();
    let hosts = Hosts::of(&app);
    let calls: Vec<Value> = rows
        .iter()
        .map(|r| call_json(&directory, &hosts, &qid, r))
        .collect();
    Ok(Json(
        json!({ "offset": offset, "limit": limit, "total": total, "calls": calls }),
    ))
}

fn call_json(directory: &Directory, hosts: &Hosts, queue_id: &str, r: &CallRecord) -> Value {
    let answered_by = (!r.member_interface.is_empty()).then(|| {
        let user = directory.by_interface(&r.server, &r.member_interface);
        match user {
            Some(u) => (
                extension_id(user, &r.member_interface),
                u.display_name.clone(),
            ),
            None => (
                extension_id(None, &r.member_interface),
                r.member_name.clone(),
            ),
        }
    });
    json!({
        "_id": hosts.call_id(&r.server, &r.uniqueid),
        "queue": queue_id,
        "pbxServer": r.server,
        "callId": r.uniqueid,
        "aNumber": r.caller_number,
        "aNumberName": r.caller_name,
        "presentation": r.dialled,
        "entered": date(r.entered),
        "answered": opt_date(r.answered),
        "ended": date(r.ended),
        "status": call_status(&r.outcome),
        "waitSeconds": r.wait_seconds,
        "talkSeconds": r.talk_seconds,
        "answeredByExtension": answered_by.as_ref().map(|a| a.0.clone()),
        "answeredByExtensionName": answered_by.map(|a| a.1),
    })
}

// ---- App view ------------------------------------------------------------------------------

/// `GET /pbx/app/queues[?all=true][&queue=<id>]`: the queues the user sees.
async fn app_queues(
    State(app): State<AppState>,
    Query(params): Params,
    SignedIn(me): SignedIn,
) -> Result<Json<Value>> {
    let who = Principal::User(me.clone());
    let all = flag(&params, "all")?;
    let only = params.get("queue").cloned();
    if let Some(id) = &only {
        with_queue(&app, &who, id, |_| ())?;
    }
    let directory = app.commands.access().directory();
    let hosts = Hosts::of(&app);
    let out: Vec<Value> = app.hub.read(|s| {
        s.queues()
            .filter(|q| who.can_see(q))
            .filter(|q| only.as_deref().is_none_or(|id| queue_id(q) == id))
            .map(|q| {
                let members: Value = if all {
                    json!(q.members.values().map(|m| member_json(&directory, q, m, None)).collect::<Vec<_>>())
                } else {
                    json!(q.members.len())
                };
                let callers: Value = if all { json!(callers_json(&directory, &hosts, q)) } else { json!(q.callers.len()) };
                json!({
                    "_id": queue_id(q),
                    "name": &*q.name,
                    "number": &*q.name,
                    "dynamic": me.supervisor || (*me.server == *q.server && me.queues.contains(&*q.name)),
                    "member": *me.server == *q.server && q.members.contains_key(&me.interface),
                    "members": members,
                    "callers": callers,
                    "serviceLevel": q.stats.service_level,
                    "serviceLevelCritical": Value::Null,
                    "priority": q.stats.weight,
                })
            })
            .collect()
    });
    Ok(Json(json!(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asterisk's `Wait`/`HoldTime` can put a time past the year 9999, where humantime panics.
    #[test]
    fn dates_past_the_year_9999_do_not_panic() {
        assert_eq!(date(i64::MAX), json!("9999-12-31T23:59:59.000Z"));
        assert_eq!(date(LAST_DATE + 1), json!("9999-12-31T23:59:59.000Z"));
        assert_eq!(date(-5), json!("1970-01-01T00:00:00.000Z"));
        assert_eq!(date(86_400), json!("1970-01-02T00:00:00.000Z"));
    }
}
