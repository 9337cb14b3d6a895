//! Telecom X's queues: a queue with its members and callers, its callers, its members, and
//! the app view of every visible queue.

use super::auth::SignedIn;
use super::{
    customer_id, date, err, flag, member_id, object_id, opt_date, queue_id, with_queue, Hosts,
    Params, Result,
};
use crate::access::extension_of;
use crate::access::Directory;
use crate::access::Principal;
use crate::access::User;
use crate::clock::now_secs;
use crate::http::error::internal;
use crate::http::AppState;
use crate::state::Member;
use crate::state::Queue;
use crate::view;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;
use serde_json::Value;
use std::sync::Arc;

/// Telecom X's strategy for Asterisk's.
pub(super) fn strategy(asterisk: &str) -> &'static str {
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
pub(super) fn extension_id(user: Option<&Arc<User>>, interface: &str) -> String {
    match user {
        Some(u) => object_id("extension", &u.name),
        None => object_id("interface", interface),
    }
}

/// A member object (§3.5.3); `day` = its answered calls today.
pub(super) fn member_json(
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

/// Callers waiting (`QUEUED`), then callers answered and still talking: `ANSWERED`, with
/// `answered` set (§3.5.2 defines only waiting states, so a client counting `QUEUED` counts
/// the callers waiting, as the spec means it).
pub(super) fn callers_json(directory: &Directory, hosts: &Hosts, q: &Queue) -> Vec<Value> {
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
pub(super) fn today() -> i64 {
    let now = now_secs();
    now - now.rem_euclid(86_400)
}

/// Members with today's counts from the call history.
pub(super) async fn members_of(app: &AppState, who: &Principal, id: &str) -> Result<Vec<Value>> {
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
            .map(|m| member_json(&directory, q, m, stats.get(m.interface.as_str())))
            .collect()
    })
}

/// `GET /pbx/queue/{id}?members=true&callers=true`
pub(super) async fn queue(
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
pub(super) async fn callers(
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
pub(super) async fn members(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(_): Params,
    SignedIn(me): SignedIn,
) -> Result<Json<Value>> {
    let who = Principal::User(me);
    Ok(Json(json!(members_of(&app, &who, &id).await?)))
}

/// `GET /pbx/app/queues[?all=true][&queue=<id>]`: the queues the user sees.
pub(super) async fn app_queues(
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
