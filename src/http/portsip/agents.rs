//! A queue's agents through PortSIP: members and configured users allowed to log in, with
//! `extension_number` the user's number (else the one in the member interface) and
//! `skill_level` Asterisk's penalty + 1; their status, set through the command layer; and the
//! per-user views (`/user/…`, `/users/{user}/…`).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Admin, SignedIn};
use super::{
    body, command_error, conf_error, forbidden, invalid, invalid_fields, not_found, Result,
};
use crate::access::{Principal, User};
use crate::command::{Command, Done};
use crate::http::AppState;
use crate::queues_conf::StaticMember;
use crate::state::{Member, Queue};
use crate::view::{self, Agent};

use super::queue_config::managed_exclusively;
use super::queues::{find, visible_summaries};

/// The agents of a queue (a copy read from the hub, so the borrow is the caller's).
pub(super) fn agents_of<'q>(app: &AppState, q: &'q Queue) -> Vec<Agent<'q>> {
    view::agents(&app.commands.access().directory(), q)
}

/// The status PortSIP shows for what Asterisk reports of a member.
pub(super) fn agent_status(q: &Queue, member: Option<&Member>) -> &'static str {
    let Some(m) = member else {
        return "LOGGED_OUT";
    };
    // On Hold (8) is not in the schema's status enum: the held agent is still in their call,
    // so it reads as QUEUE_CALL or OTHER_CALL below.
    if m.status.unreachable() {
        return "OFFLINE";
    }
    if q.connected_calls.iter().any(|c| c.interface == m.interface) {
        return "QUEUE_CALL";
    }
    if m.in_call || m.status.in_call() {
        return "OTHER_CALL";
    }
    if m.paused {
        // Whoever paused the member, and in whatever case (a catalogue's "Lunch" is LUNCH).
        let reason = m.paused_reason.as_str();
        return ["WRAP_UP", "BREAK", "LUNCH"]
            .into_iter()
            .find(|s| s.eq_ignore_ascii_case(reason))
            .unwrap_or("NOT_READY");
    }
    "READY"
}

pub(super) fn agent_view(q: &Queue, a: &Agent, with_status: bool) -> Value {
    let mut v = json!({
        "extension_number": a.number,
        "display_name": a.name,
        "skill_level": a.member.map_or(1, |m| (m.penalty + 1).clamp(1, 100)),
    });
    if with_status {
        v["status"] = json!(agent_status(q, a.member));
    }
    v
}

pub(super) async fn agents(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let q = find(&app, &user, &id)?;
    let items: Vec<Value> = agents_of(&app, &q)
        .iter()
        .map(|a| agent_view(&q, a, false))
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentItem {
    extension_number: String,
    #[serde(default)]
    skill_level: Option<i64>,
    /// What `GET …/agents` shows; taken so its list can be posted back, and not used (an
    /// agent's name is the configured user's, or Asterisk's).
    #[serde(default, rename = "display_name")]
    _display_name: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentList {
    items: Vec<AgentItem>,
}

/// `POST /call_queues/{id}/agents`: the queue's static members become exactly the listed ones
/// that are not dynamic. A listed dynamic agent (logged in or not) stays dynamic, a listed
/// static member keeps its queues.conf line with the new skill level, anyone else listed must be
/// a configured agent and becomes a static member. So posting back what `GET …/agents` gave
/// changes nothing.
pub(super) async fn set_agents(
    State(app): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<String>,
    b: Result<Json<AgentList>, JsonRejection>,
) -> Result<StatusCode> {
    let q = find(&app, &user, &id)?;
    let list = body(b)?;
    let directory = app.commands.access().directory();
    let current = agents_of(&app, &q);
    let (one, mut conf) = managed_exclusively(&app, &q).await?;
    let mut members: Vec<StaticMember> = Vec::new();
    let mut problems = Vec::new();
    for (i, item) in list.items.iter().enumerate() {
        if item.skill_level.is_some_and(|l| !(1..=100).contains(&l)) {
            problems.push(format!("items[{i}].skill_level: must be from 1 to 100"));
            continue;
        }
        let listed = current.iter().find(|a| a.number == item.extension_number);
        let member = match listed.map(|a| (a.member, a.user.as_ref())) {
            // Dynamic: a member who logged in, or a configured agent who may.
            Some((Some(m), _)) if !m.membership.is_static() => continue,
            Some((None, Some(_))) => continue,
            Some((Some(m), _)) => conf
                .members
                .iter()
                .find(|s| s.interface == m.interface)
                .cloned()
                .unwrap_or_else(|| StaticMember {
                    interface: m.interface.to_string(),
                    penalty: m.penalty,
                    name: m.name.to_string(),
                    state_interface: m.state_interface.to_string(),
                }),
            _ => {
                let Some(u) = directory.users().find(|u| {
                    u.is_agent() && u.server == *q.server && u.number() == item.extension_number
                }) else {
                    problems.push(format!(
                        "items[{i}].extension_number: no agent with extension {:?} on server {}",
                        item.extension_number, q.server
                    ));
                    continue;
                };
                StaticMember {
                    interface: u.interface.clone(),
                    penalty: 0,
                    name: u.display_name.clone(),
                    state_interface: u.state_interface.clone(),
                }
            }
        };
        if members.iter().any(|m| m.interface == member.interface) {
            problems.push(format!("items[{i}].extension_number: listed twice"));
            continue;
        }
        // Without a skill level a member keeps its penalty (a new one gets 0: level 1).
        members.push(StaticMember {
            penalty: item.skill_level.map_or(member.penalty, |l| l - 1),
            ..member
        });
    }
    if !problems.is_empty() {
        return Err(invalid_fields(&["items"], problems.join("; ")));
    }
    conf.members = members;
    app.queues_conf
        .replace(&one, &q.server, &q.name, &conf, &[])
        .await
        .map_err(conf_error)?;
    Ok(StatusCode::OK)
}

pub(super) fn agent_number(n: &str) -> Result<&str> {
    if (3..=64).contains(&n.len()) && n.bytes().all(|c| c.is_ascii_digit()) {
        Ok(n)
    } else {
        Err(invalid("the agent number must be 3 to 64 digits"))
    }
}

pub(super) fn find_agent<'q>(app: &AppState, q: &'q Queue, number: &str) -> Result<Agent<'q>> {
    agents_of(app, q)
        .into_iter()
        .find(|a| a.number == number)
        .ok_or_else(|| not_found(format!("no agent {number} in queue {}", q.name)))
}

pub(super) async fn agent(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path((id, number)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let q = find(&app, &user, &id)?;
    let a = find_agent(&app, &q, agent_number(&number)?)?;
    Ok(Json(agent_view(&q, &a, true)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusBody {
    status: String,
}

/// Sets an agent's status through the command layer (which decides who may).
pub(super) async fn set_status(
    app: &AppState,
    who: Arc<User>,
    q: &Queue,
    a: &Agent<'_>,
    status: &str,
) -> Result<Done> {
    let interface = match (a.member, &a.user) {
        (Some(m), _) => m.interface.to_string(),
        (None, Some(u)) => u.interface.clone(),
        (None, None) => return Err(not_found("no such agent")),
    };
    let login = |paused: Option<String>| -> Result<Command> {
        let u = a.user.as_ref().ok_or_else(|| {
            invalid(format!(
                "agent {} is not a configured user and cannot log in",
                a.number
            ))
        })?;
        Ok(Command::login(u, &*q.name, None, paused))
    };
    let command = match status {
        "LOGGED_IN" => login(None)?,
        "LOGGED_OUT" => Command::Logout {
            queue: q.name.to_string(),
            interface,
        },
        "READY" | "NOT_READY" | "WRAP_UP" | "BREAK" | "LUNCH" => {
            let paused = status != "READY";
            let reason = if paused {
                status.to_owned()
            } else {
                String::new()
            };
            if a.member.is_some() {
                Command::Pause {
                    queue: Some(q.name.to_string()),
                    interface,
                    paused,
                    reason,
                }
            } else {
                login(paused.then_some(reason))?
            }
        }
        other => {
            return Err(invalid_fields(
                &["status"],
                format!(
                    "unknown status {other:?} (READY, NOT_READY, WRAP_UP, BREAK, LUNCH, \
                     LOGGED_IN, LOGGED_OUT)"
                ),
            ))
        }
    };
    app.commands
        .execute(&Principal::User(who), &q.server, command)
        .await
        .map_err(command_error)
}

pub(super) async fn set_agent_status(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path((id, number)): Path<(String, String)>,
    b: Result<Json<StatusBody>, JsonRejection>,
) -> Result<StatusCode> {
    let q = find(&app, &user, &id)?;
    let a = find_agent(&app, &q, agent_number(&number)?)?;
    let b = body(b)?;
    set_status(&app, user, &q, &a, &b.status).await?;
    Ok(StatusCode::OK)
}

/// The user named in the path, whom `who` may look at: themselves, or anyone for a supervisor.
pub(super) fn subject(app: &AppState, who: &User, name: &str) -> Result<Arc<User>> {
    let directory = app.commands.access().directory();
    let u = directory
        .user(name)
        .cloned()
        .ok_or_else(|| not_found(format!("no user {name:?}")))?;
    if who.supervisor || who.name == u.name {
        Ok(u)
    } else {
        Err(forbidden(format!(
            "{} may only see their own queues",
            who.name
        )))
    }
}

/// The queues `u` is an agent of: a member, or allowed to log in.
pub(super) async fn queues_of(app: &AppState, u: &Arc<User>) -> Json<Value> {
    let items = visible_summaries(app, u, |q| {
        *q.server == *u.server
            && (u.queues.contains(&*q.name) || q.members.contains_key(&u.interface))
    })
    .await
    .into_iter()
    .map(|s| json!({ "id": s["id"], "name": s["name"], "extension_number": s["extension_number"] }))
    .collect::<Vec<_>>();
    Json(json!({ "items": items }))
}

pub(super) fn own_agent_entry<'q>(app: &AppState, u: &User, q: &'q Queue) -> Result<Agent<'q>> {
    agents_of(app, q)
        .into_iter()
        .find(|a| a.user.as_ref().is_some_and(|x| x.name == u.name))
        .ok_or_else(|| not_found(format!("{} is not an agent of queue {}", u.name, q.name)))
}

pub(super) async fn own_queues(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
) -> Result<Json<Value>> {
    Ok(queues_of(&app, &user).await)
}

pub(super) async fn user_queues(
    State(app): State<AppState>,
    SignedIn(who): SignedIn,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    let u = subject(&app, &who, &name)?;
    Ok(queues_of(&app, &u).await)
}

pub(super) async fn own_agent(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let q = find(&app, &user, &id)?;
    let a = own_agent_entry(&app, &user, &q)?;
    Ok(Json(agent_view(&q, &a, true)))
}

pub(super) async fn user_agent(
    State(app): State<AppState>,
    SignedIn(who): SignedIn,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let u = subject(&app, &who, &name)?;
    let q = find(&app, &who, &id)?;
    let a = own_agent_entry(&app, &u, &q)?;
    Ok(Json(agent_view(&q, &a, true)))
}

pub(super) async fn set_own_status(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
    b: Result<Json<StatusBody>, JsonRejection>,
) -> Result<StatusCode> {
    let q = find(&app, &user, &id)?;
    let a = own_agent_entry(&app, &user, &q)?;
    let b = body(b)?;
    set_status(&app, user, &q, &a, &b.status).await?;
    Ok(StatusCode::OK)
}

pub(super) async fn set_user_status(
    State(app): State<AppState>,
    SignedIn(who): SignedIn,
    Path((name, id)): Path<(String, String)>,
    b: Result<Json<StatusBody>, JsonRejection>,
) -> Result<StatusCode> {
    let u = subject(&app, &who, &name)?;
    let q = find(&app, &who, &id)?;
    let a = own_agent_entry(&app, &u, &q)?;
    let b = body(b)?;
    set_status(&app, who, &q, &a, &b.status).await?;
    Ok(StatusCode::OK)
}
