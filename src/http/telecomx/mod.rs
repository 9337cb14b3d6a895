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

mod auth;
mod calls;
mod members;
mod queues;

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::status_of;
use super::AppState;
use crate::access::{Principal, User};
use crate::command::{Code, CommandError};
use crate::state::Queue;
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
        .route("/auth/login", get(auth::login_get).post(auth::login_post))
        .route("/auth/logout", get(auth::logout))
        .route("/auth/validateToken", get(auth::validate_token))
        .route("/pbx/app/queues", get(queues::app_queues))
        .route("/pbx/queue/{id}", get(queues::queue))
        .route("/pbx/queue/{id}/callers", get(queues::callers))
        .route("/pbx/queue/{id}/calls", get(calls::calls))
        .route(
            "/pbx/queue/{id}/member",
            get(queues::members).post(members::join_post),
        )
        .route("/pbx/queue/{id}/member/join", get(members::join_get))
        .route(
            "/pbx/queue/{id}/member/{member}",
            get(members::update_get)
                .post(members::update_post)
                .delete(members::leave),
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

/// A boolean given as JSON `true` or as the query string's `"true"`/`"1"`.
fn flexible_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::String(s) if s == "true" || s == "1" => Ok(true),
        Value::String(s) if s == "false" || s == "0" || s.is_empty() => Ok(false),
        other => Err(serde::de::Error::custom(format!("not a boolean: {other}"))),
    }
}

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

/// The Asterisk host name of each server: Telecom X's call ids are `<channel-id>-<hostname>`.
struct Hosts(std::collections::BTreeMap<String, String>);

impl Hosts {
    fn of(app: &AppState) -> Self {
        let servers = app.servers.list();
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

fn flag(params: &HashMap<String, String>, key: &str) -> Result<bool> {
    match params.get(key).map(String::as_str) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(v) => Err(bad_request(format!("{key}: not a boolean: {v:?}"))),
    }
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
