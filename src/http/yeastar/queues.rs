//! Yeastar's queue queries: the list, a search, one queue, its calls and its agents' status.

use super::auth::SignedIn;
use super::{parameter_error, required, success, with_queue, Answer, Params};
use crate::access::extension_of;
use crate::access::Directory;
use crate::access::Principal;
use crate::clock::now_secs;
use crate::deadlines::Which;
use crate::http::AppState;
use crate::state::DeviceState;
use crate::state::Member;
use crate::state::Queue;
use crate::view;
use axum::extract::Query;
use axum::extract::State;
use serde_json::json;
use serde_json::Value;
use std::collections::HashMap;

/// Yeastar's `ring_strategy` for an Asterisk strategy (the closest of Yeastar's six).
pub(super) fn ring_strategy(strategy: &str) -> &'static str {
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
pub(super) fn device_call_status(status: DeviceState) -> i64 {
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
pub(super) fn identity(directory: &Directory, server: &str, member: &Member) -> (String, String) {
    let agent = view::Agent::of_member(directory, server, member);
    (agent.name, agent.number)
}

pub(super) fn list_item(name: &str, number: &str) -> Value {
    json!({ "text": name, "text2": number, "value": number, "type": "extension" })
}

/// One queue as `queue/list` shows it.
pub(super) fn queue_item(directory: &Directory, q: &Queue) -> Value {
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
pub(super) fn visible_queues(app: &AppState, who: &Principal) -> Vec<Value> {
    let directory = app.commands.access().directory();
    app.hub.read(|s| {
        s.queues()
            .filter(|q| who.can_see(q))
            .map(|q| queue_item(&directory, q))
            .collect()
    })
}

/// `page`, `page_size`, `sort_by`, `order_by` applied to list items.
pub(super) fn page(
    params: &HashMap<String, String>,
    mut items: Vec<Value>,
) -> Result<Value, Answer> {
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
pub(super) async fn queue_list(
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
pub(super) async fn queue_search(
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

/// `queue/get?id=3`
pub(super) async fn queue_get(
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
pub(super) async fn queue_query(
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
pub(super) fn call_lists(
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

pub(super) async fn call_status(
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
pub(super) async fn agent_status(
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
