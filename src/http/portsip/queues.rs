//! Call queues, their waiting lists and agents (rest-dialects.md §1.7).
//!
//! A queue's `extension_number` is its Asterisk name (the number callers dial into
//! `Queue(${EXTEN})`); its `name` is a display name kept in AstDB, the queue's name when none
//! was given. Definitions are read from queues.conf with GetConfig and changed with UpdateConfig
//! (see [`crate::queues_conf`]); every PortSIP field maps onto a queues.conf option or AstDB, and
//! a field Asterisk cannot honour is refused by name (`queue_config.rs`). Agents are in
//! `agents.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use tracing::warn;

use super::auth::SignedIn;
use super::odata::{Field, Type};
use super::{command_error, forbidden, invalid, not_found, paged, Result};
use crate::access::{Principal, User};
use crate::clock::now_secs;
use crate::http::AppState;
use crate::queues_conf::{Attribute, Attributes, Definitions, QueueConf};
use crate::state::Queue;
use crate::view;

const FIELDS: &[Field] = &[
    ("id", Type::Text),
    ("name", Type::Text),
    ("extension_number", Type::Text),
    ("ring_time", Type::Number),
    ("polling_strategy", Type::Text),
];

/// app_queue's ring time when queues.conf sets none.
const DEFAULT_TIMEOUT: i64 = 15;

/// The queue with this PortSIP id, if the user may see it.
pub(super) fn find(app: &AppState, who: &Arc<User>, id: &str) -> Result<Queue> {
    let n: u64 = id
        .parse()
        .map_err(|_| invalid("Invalid call queue ID supplied"))?;
    let principal = Principal::User(who.clone());
    // A queue the user may not see is not found, as PortSIP answers.
    app.hub
        .read(|s| view::queue_by_id(s, &principal, n).ok().cloned())
        .ok_or_else(|| not_found("Call queue not found"))
}

/// What Asterisk keeps of a server's queues: definitions and AstDB attributes. Empty when the
/// link cannot tell (the state still lists the queues).
async fn definitions(app: &AppState, server: &str) -> Arc<Definitions> {
    app.queues_conf
        .definitions(server)
        .await
        .unwrap_or_else(|err| {
            warn!(server, %err, "cannot read the queue definitions");
            Arc::default()
        })
}

fn display_name(q: &Queue, attrs: &Attributes) -> String {
    attrs
        .get(&*q.name)
        .and_then(|a| a.get(Attribute::Name.key()))
        .cloned()
        .unwrap_or_else(|| q.name.to_string())
}

fn strategy_name(asterisk: &str) -> &'static str {
    match asterisk {
        "linear" => "PRIORITIZED_HUNT",
        "rrmemory" | "rrordered" | "roundrobin" => "CYCLIC_HUNT",
        "leastrecent" | "fewestcalls" => "LEAST_WORKED_HUNT",
        // ringall, and random/wrandom which PortSIP has no name for.
        _ => "RING_SIMULTANEOUSLY",
    }
}

fn num(conf: Option<&QueueConf>, key: &str, default: i64) -> i64 {
    conf.and_then(|c| c.get(key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A queue's `extension_number`, which PortSIP's schema makes 3 to 64 digits: its Asterisk
/// name when that is such a number (every queue made through this dialect), else — a queue
/// named in queues.conf, `sales` — its numeric id, zero-padded to three digits (`001`).
pub(super) fn queue_number(q: &Queue) -> String {
    if (3..=64).contains(&q.name.len()) && q.name.bytes().all(|c| c.is_ascii_digit()) {
        q.name.to_string()
    } else {
        format!("{:03}", q.id)
    }
}

fn summary(q: &Queue, conf: Option<&QueueConf>, attrs: &Attributes) -> Value {
    json!({
        "id": q.id.to_string(),
        "name": display_name(q, attrs),
        "extension_number": queue_number(q),
        "ring_time": num(conf, "timeout", DEFAULT_TIMEOUT),
        "polling_strategy": strategy_name(&q.stats.strategy),
    })
}

/// Whether app_queue lets callers join (and stay in) a queue without available members:
/// `joinempty` parsed as app_queue does, no condition = wait.
fn waits_when_empty(conf: Option<&QueueConf>) -> bool {
    let Some(v) = conf.and_then(|c| c.get("joinempty")) else {
        return true;
    };
    v.split(',').map(str::trim).all(|o| {
        matches!(
            o.to_ascii_lowercase().as_str(),
            "yes" | "true" | "y" | "t" | "1" | "on" | ""
        )
    })
}

fn detail(q: &Queue, conf: Option<&QueueConf>, attrs: &Attributes) -> Value {
    let mut v = summary(q, conf, attrs);
    let announce = conf
        .and_then(|c| c.get("announce-position"))
        .is_some_and(|p| {
            !matches!(
                p.to_ascii_lowercase().as_str(),
                "no" | "false" | "0" | "off"
            )
        });
    let frequency = num(conf, "announce-frequency", 0);
    let max_wait: i64 = attrs
        .get(&*q.name)
        .and_then(|a| a.get(Attribute::MaxWaitingTime.key()))
        .and_then(|v| v.parse().ok())
        .filter(|w| *w > 0)
        // No limit (a queue of queues.conf, or 0 set by hand): the schema's largest value.
        .unwrap_or(65_535);
    // Fields PortSIP has and Asterisk does not (prompt files, language, forwarding rules,
    // callback prefix) are absent: the schema types them string, number or object, never null.
    let extra = json!({
        "max_callers": q.stats.max,
        "intro_type": "DISABLE",
        "max_waiting_time": max_wait,
        "wait_when_no_agents_online": waits_when_empty(conf),
        "inform_position": if announce && frequency > 0 { "ON_CONNECTED" } else { "DISABLE" },
        "inform_position_interval": if frequency > 0 { frequency } else { 10 },
        "agent_auto_ready": true,
        "agent_auto_not_ready_after_non_acd_call": true,
        "sla_time": q.stats.service_level,
        "enable_callback": false,
        "callback_mode": "ACTIVE",
        "callback_timeout": 600,
        "outbound_caller_ids": [],
        "enable_sticky_routing": false,
        "sticky_routing_duration": 30,
        "enable_paid": false,
        "enable_prid": false,
        "extension_number_as_to_header": false,
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    v
}

pub(super) async fn list(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>> {
    paged(
        &params,
        FIELDS,
        visible_summaries(&app, &user, |_| true).await,
    )
}

/// Summaries of the queues `user` may see and `keep` selects, server by server.
pub(super) async fn visible_summaries(
    app: &AppState,
    user: &Arc<User>,
    keep: impl Fn(&Queue) -> bool,
) -> Vec<Value> {
    let principal = Principal::User(user.clone());
    let queues: Vec<Queue> = app.hub.read(|s| {
        s.queues()
            .filter(|q| principal.can_see(q) && keep(q))
            .cloned()
            .collect()
    });
    let mut by_server: BTreeMap<Arc<str>, Vec<Queue>> = BTreeMap::new();
    for q in queues {
        by_server.entry(q.server.clone()).or_default().push(q);
    }
    let mut items = Vec::new();
    for (server, queues) in by_server {
        let d = definitions(app, &server).await;
        items.extend(
            queues
                .iter()
                .map(|q| summary(q, d.queues.get(&*q.name), &d.attributes)),
        );
    }
    items
}

pub(super) async fn show(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let q = find(&app, &user, &id)?;
    let d = definitions(&app, &q.server).await;
    Ok(Json(detail(&q, d.queues.get(&*q.name), &d.attributes)))
}

pub(super) async fn status(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let q = find(&app, &user, &id)?;
    let online = app.hub.read(|s| view::link_up(s, &q.server));
    Ok(Json(
        json!({ "status": if online { "ONLINE" } else { "OFFLINE" } }),
    ))
}

pub(super) async fn waiting(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let q = find(&app, &user, &id)?;
    let now = now_secs();
    let items: Vec<Value> = q
        .callers
        .iter()
        .map(|c| {
            json!({
                "session_id": c.uniqueid,
                "extension_number": if c.privacy { "" } else { c.caller_id_num.as_str() },
                "display_name": c.caller_id_name,
                "waiting_time": (now - c.entered).max(0),
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn pickup(
    State(app): State<AppState>,
    SignedIn(user): SignedIn,
    Path((id, session)): Path<(String, String)>,
) -> Result<StatusCode> {
    let q = find(&app, &user, &id)?;
    if user.server != *q.server {
        return Err(forbidden(format!(
            "{}'s phone is on server {}, not on {}",
            user.name, user.server, q.server
        )));
    }
    app.commands
        .pickup(
            &Principal::User(user.clone()),
            &q.server,
            &q.name,
            &session,
            &user.interface,
        )
        .await
        .map_err(command_error)?;
    Ok(StatusCode::OK)
}
