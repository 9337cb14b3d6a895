//! Telecom X's members: join, read, update (priority, pause) and leave a queue.

use super::auth::{caller, SignedIn};
use super::queues::members_of;
use super::{
    access_denied, bad_request, command_error, err, flexible_bool, member_id, object_id,
    with_queue, Params, Result,
};
use crate::access::Principal;
use crate::access::User;
use crate::command::Command;
use crate::http::AppState;
use crate::state::Member;
use axum::extract::rejection::JsonRejection;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// What a join or an update may carry, from a JSON body or a query string.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct MemberRequest {
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

pub(super) fn flexible_int<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<i64>, D::Error> {
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

pub(super) fn flexible_opt_bool<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<bool>, D::Error> {
    flexible_bool(d).map(Some)
}

pub(super) fn body_or_query(
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
pub(super) fn penalty(priority: Option<i64>) -> Result<Option<i64>> {
    match priority {
        None => Ok(None),
        Some(p @ 1..=20) => Ok(Some(p - 1)),
        Some(p) => Err(bad_request(format!("priority must be 1–20, not {p}"))),
    }
}

pub(super) async fn join_post(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
    body: Result<Json<MemberRequest>, JsonRejection>,
) -> Result<Json<Value>> {
    let request = body_or_query(Some(body), None)?;
    join(app, id, params, headers, request).await
}

pub(super) async fn join_get(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Result<Json<Value>> {
    let request = body_or_query(None, Some(params.clone()))?;
    join(app, id, params, headers, request).await
}

/// The user of an extension id; the caller when none is given.
pub(super) fn extension_user(
    app: &AppState,
    me: &Arc<User>,
    extension: Option<&str>,
) -> Result<Arc<User>> {
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
pub(super) async fn join(
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
pub(super) async fn one_member(
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
pub(super) fn member_by_id(
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

pub(super) async fn update_post(
    State(app): State<AppState>,
    Path((id, member)): Path<(String, String)>,
    Query(params): Params,
    headers: HeaderMap,
    body: Result<Json<MemberRequest>, JsonRejection>,
) -> Result<Json<Value>> {
    let request = body_or_query(Some(body), None)?;
    update(app, id, member, params, headers, request).await
}

pub(super) async fn update_get(
    State(app): State<AppState>,
    Path((id, member)): Path<(String, String)>,
    Query(params): Params,
    headers: HeaderMap,
) -> Result<Json<Value>> {
    let request = body_or_query(None, Some(params.clone()))?;
    update(app, id, member, params, headers, request).await
}

/// Update: `priority` becomes the member's penalty; `permanent` cannot change through AMI.
pub(super) async fn update(
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
            interface: m.interface.to_string(),
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
pub(super) async fn leave(
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
        interface: m.interface.into(),
    };
    app.commands
        .execute(&who, &server, command)
        .await
        .map_err(command_error)?;
    Ok(Json(json!({ "success": true })))
}
