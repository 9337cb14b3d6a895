//! Yeastar's event push (rest-dialects.md §2.5): `GET /openapi/v1.0/subscribe?access_token=…`
//! upgraded to a WebSocket.
//!
//! The client sends `{"topic_list":[30011,30025,30026,30029]}` (answered `{"errcode":0,
//! "errmsg":"SUCCESS"}`) and the text `heartbeat` (answered `heartbeat response`); it gets the
//! events of its topics in Yeastar's envelope `{"type":…,"sn":…,"msg":{…}}`:
//!
//! * 30011 Call Status Changed — a queue call's caller and agent, as it waits, rings an agent,
//!   is answered and ends ([`call_events`]).
//! * 30029 Agent Status Changed — a member logged in (`Available`, or `Paused` with its reason),
//!   paused, unpaused or logged out (`Logged Out`). `queue_number` carries Yeastar's `queue-`
//!   prefix, as the vendor's sample does.
//! * 30026 Agent Ringing Timeout — a member was rung for a caller and did not answer
//!   (AgentRingNoAnswer).
//! * 30025 Agent Auto Pause — Asterisk's autopause paused the member (reason `Auto-Pause`), with
//!   the calls it missed since it last answered or was paused.
//!
//! `sn`, the PBX serial number, is the `[[ami]]` id of the Asterisk server. A socket carries
//! only the queues its user may see. It is closed after [`IDLE`] without anything from the
//! client, once its access token expires or is deleted, when it falls behind the state's change
//! stream (it has no snapshot to catch up with; the client reconnects and reads the lists), and
//! when a frame cannot be written within [`push::WRITE_TIMEOUT`]. A user has at most
//! [`push::SOCKETS_PER_USER`] sockets; all of them share the SSE streams' permits
//! (`[http] max_event_streams`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::access::{Directory, Principal, User};
use crate::http::{push, AppState};
use crate::state::{ChangeKind, Member, State as Model, Text};
use crate::tokens::Kind;

/// Closed after this long without a frame from the client (Yeastar's 60 s).
pub const IDLE: Duration = Duration::from_secs(60);
/// The longest frame a client may send (topic lists and heartbeats are a few bytes).
pub const MAX_FRAME: usize = 4096;
/// Queue calls one socket follows at most (more than any Asterisk carries at once).
const MAX_CALLS: usize = 100_000;
/// How often the token and the idle time are checked.
const CHECK_EVERY: Duration = Duration::from_secs(2);

// The event ids this push sends.
const CALL_STATUS: u64 = 30011;
const AUTO_PAUSE: u64 = 30025;
const RINGING_TIMEOUT: u64 = 30026;
const STATUS_CHANGED: u64 = 30029;

/// `GET /openapi/v1.0/subscribe?access_token=…`: the upgrade, or Yeastar's error answer.
pub async fn subscribe(
    State(app): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Some(user) = super::auth::caller_of(&app, &params) else {
        return super::error_answer(10004, "TOKEN EXPIRED");
    };
    let Ok(ws) = ws else {
        return super::error_answer(40002, "PARAMETER ERROR: a WebSocket upgrade is needed");
    };
    let Some(slot) = app.yeastar_sockets.claim(&user.name) else {
        return super::error_answer(10005, "TOO MANY CONNECTIONS");
    };
    let Ok(permit) = app.streams.clone().try_acquire_owned() else {
        return super::error_answer(10005, "TOO MANY CONNECTIONS");
    };
    let token = params.get("access_token").cloned().unwrap_or_default();
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| async move {
            run(app, user, token, socket).await;
            drop((slot, permit));
        })
        .into_response()
}

/// What the socket last told (or, at the start, would have told) of each member.
type Key = (Arc<str>, Arc<str>, Text);

/// A member's Yeastar status and reason.
fn status(m: &Member) -> (&'static str, String) {
    if m.paused {
        ("Paused", m.paused_reason.to_string())
    } else {
        ("Available", String::new())
    }
}

async fn run(app: AppState, user: Arc<User>, token: String, socket: WebSocket) {
    let (mut tx, mut rx) = socket.split();
    // Subscribe before reading the state, so nothing falls between the two.
    let mut changes = app.hub.subscribe();
    let who = Principal::User(user.clone());
    let mut told: HashMap<Key, (&'static str, String)> = app.hub.read(|s| {
        s.queues()
            .filter(|q| who.can_see(q))
            .flat_map(|q| {
                q.members.values().map(|m| {
                    (
                        (q.server.clone(), q.name.clone(), m.interface.clone()),
                        status(m),
                    )
                })
            })
            .collect()
    });
    let mut missed: HashMap<Key, Vec<Value>> = HashMap::new();
    let mut calls: HashMap<Text, Call> = HashMap::new();
    let mut topics: BTreeSet<u64> = BTreeSet::new();
    let mut heard = Instant::now();
    let mut check = tokio::time::interval(CHECK_EVERY);
    let why = loop {
        let out: Vec<String> = tokio::select! {
            _ = app.shutdown.cancelled() => break "queuebridge is stopping",
            _ = check.tick() => {
                if heard.elapsed() >= IDLE {
                    break "no traffic for 60 s";
                }
                if app.yeastar_tokens.user(&token, Kind::Access).is_none() {
                    break "the access token expired";
                }
                continue;
            }
            frame = rx.next() => match frame {
                None | Some(Err(_)) => return,
                Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                    heard = Instant::now();
                    continue;
                }
                Some(Ok(Message::Text(text))) => {
                    heard = Instant::now();
                    vec![answer(text.as_str(), &mut topics)]
                }
                Some(Ok(Message::Binary(_))) => {
                    heard = Instant::now();
                    vec![error(40002, "PARAMETER ERROR")]
                }
            },
            batch = changes.recv() => match batch {
                Ok(batch) => app.hub.read(|s| {
                    let directory = app.commands.access().directory();
                    let mut out = Vec::new();
                    for change in batch.iter() {
                        let mut emit = |t, msg| {
                            if topics.contains(&t) {
                                out.push(envelope(t, &change.server, msg));
                            }
                        };
                        call_events(s, &who, &directory, change, &mut calls, &mut emit);
                        events(s, &who, &directory, change, &mut told, &mut missed, &mut emit);
                    }
                    out
                }),
                Err(RecvError::Lagged(_)) => break "fell behind the event stream",
                Err(RecvError::Closed) => break "queuebridge is stopping",
            },
        };
        if !push::send_all(&mut tx, out).await {
            return;
        }
    };
    push::close(&mut tx, why).await;
}

fn error(errcode: i64, errmsg: &str) -> String {
    json!({ "errcode": errcode, "errmsg": errmsg }).to_string()
}

/// The answer to a client's text frame: a heartbeat or a topic list.
fn answer(text: &str, topics: &mut BTreeSet<u64>) -> String {
    if text.trim() == "heartbeat" {
        return "heartbeat response".into();
    }
    let list = serde_json::from_str::<Value>(text).ok().and_then(|v| {
        v.get("topic_list")?
            .as_array()?
            .iter()
            .map(Value::as_u64)
            .collect::<Option<BTreeSet<u64>>>()
    });
    match list {
        Some(list) => {
            // Ids this push does not send are taken, and never sent.
            *topics = list;
            error(0, "SUCCESS")
        }
        None => error(40002, "PARAMETER ERROR"),
    }
}

fn envelope(topic: u64, server: &str, msg: Value) -> String {
    json!({ "type": topic, "sn": server, "msg": msg }).to_string()
}

/// What a socket knows of a queue call, to tell its end.
struct Call {
    queue: Arc<str>,
    from: String,
    channel: String,
    agent: Option<(String, String)>,
}

/// 30011 Call Status Changed for one change of a call through a queue the user sees: `call_id`
/// (the caller's Uniqueid) and `members` — the `inbound` caller (`from`, `to` the queue,
/// `channel_id`, `member_status`) and, once one is rung, the `extension` (`number`,
/// `channel_id`, `member_status`). Statuses: the caller `RING` while waiting, `ANSWERED` once
/// connected, `BYE` when gone; the agent `ALERT` while rung, `ANSWERED`, `BYE`.
fn call_events(
    s: &Model,
    who: &Principal,
    directory: &Directory,
    change: &crate::state::Change,
    calls: &mut HashMap<Text, Call>,
    emit: &mut impl FnMut(u64, Value),
) {
    let server = &change.server;
    let (queue, uniqueid) = match &change.kind {
        ChangeKind::CallerJoined { queue, caller } => (queue, &caller.caller.uniqueid),
        ChangeKind::AgentCalled {
            queue, uniqueid, ..
        }
        | ChangeKind::CallCompleted {
            queue, uniqueid, ..
        } => (queue, uniqueid),
        ChangeKind::CallerLeft {
            queue,
            uniqueid,
            abandoned: true,
            ..
        } => (queue, uniqueid),
        ChangeKind::CallConnected { queue, call } => (queue, &call.uniqueid),
        _ => return,
    };
    let Some(q) = s.queue(server, queue).filter(|q| who.can_see(q)) else {
        calls.remove(uniqueid);
        return;
    };
    let number = |interface: &str| directory.agent_number(server, interface);
    if calls.len() >= MAX_CALLS && !calls.contains_key(uniqueid) {
        // Calls whose end this socket missed (a resync in between): start afresh.
        calls.clear();
    }
    let call = calls.entry(uniqueid.clone()).or_insert_with(|| {
        let waiting = q
            .callers
            .get(uniqueid)
            .map(|c| (&c.caller_id_num, &c.channel));
        let talking = q
            .connected_calls
            .get(uniqueid)
            .map(|c| (&c.caller_id_num, &c.channel));
        let (from, channel) = waiting
            .or(talking)
            .map_or_else(Default::default, |(n, c)| (n.to_string(), c.to_string()));
        Call {
            queue: queue.clone(),
            from,
            channel,
            agent: None,
        }
    });
    let (caller, agent) = match &change.kind {
        ChangeKind::CallerJoined { .. } => ("RING", None),
        ChangeKind::AgentCalled { interface, .. } => {
            call.agent = Some((number(interface), String::new()));
            ("RING", Some("ALERT"))
        }
        ChangeKind::CallConnected { call: c, .. } => {
            call.agent = Some((number(&c.interface), c.agent_channel.to_string()));
            ("ANSWERED", Some("ANSWERED"))
        }
        _ => ("BYE", Some("BYE")),
    };
    let mut members = vec![json!({ "inbound": {
        "from": call.from, "to": &*call.queue, "trunk_name": "", "channel_id": call.channel,
        "member_status": caller, "call_path": "" } })];
    if let (Some((n, channel)), Some(status)) = (&call.agent, agent) {
        members.push(json!({ "extension": {
            "number": n, "channel_id": channel, "member_status": status, "call_path": "" } }));
    }
    emit(
        CALL_STATUS,
        json!({ "call_id": uniqueid, "members": members }),
    );
    if caller == "BYE" {
        calls.remove(uniqueid);
    }
}

/// The Yeastar events one change makes, given to `emit` as (event id, msg).
fn events(
    s: &Model,
    who: &Principal,
    directory: &Directory,
    change: &crate::state::Change,
    told: &mut HashMap<Key, (&'static str, String)>,
    missed: &mut HashMap<Key, Vec<Value>>,
    emit: &mut impl FnMut(u64, Value),
) {
    let server = &change.server;
    let (queue, interface) = match &change.kind {
        ChangeKind::MemberUpdated { queue, member } => (queue, &member.interface),
        ChangeKind::MemberRemoved { queue, interface } => (queue, interface),
        ChangeKind::AgentRingNoAnswer {
            queue, interface, ..
        } => (queue, interface),
        ChangeKind::CallConnected { queue, call } => (queue, &call.interface),
        _ => return,
    };
    let key: Key = (server.clone(), queue.clone(), interface.clone());
    let Some(q) = s.queue(server, queue).filter(|q| who.can_see(q)) else {
        // Gone with its queue, or not the user's to see: nothing to tell, nothing to keep.
        told.remove(&key);
        missed.remove(&key);
        return;
    };
    let agent = directory.agent_number(server, interface);
    match &change.kind {
        ChangeKind::MemberUpdated { member, .. } => {
            let now = status(member);
            if told.get(&key) == Some(&now) {
                return;
            }
            let was_paused = told.get(&key).is_some_and(|(s, _)| *s == "Paused");
            told.insert(key.clone(), now.clone());
            emit(
                STATUS_CHANGED,
                json!({ "queue_number": format!("queue-{queue}"), "agent_number": agent,
                        "status": now.0, "reason": now.1 }),
            );
            if member.paused && !was_paused {
                let calls = missed.remove(&key).unwrap_or_default();
                if member.paused_reason == "Auto-Pause" {
                    emit(
                        AUTO_PAUSE,
                        json!({ "queue_number": &**queue, "agent_number": agent, "calls": calls }),
                    );
                }
            }
        }
        ChangeKind::MemberRemoved { .. } => {
            missed.remove(&key);
            if told.remove(&key).is_some() {
                emit(
                    STATUS_CHANGED,
                    json!({ "queue_number": format!("queue-{queue}"), "agent_number": agent,
                            "status": "Logged Out", "reason": "" }),
                );
            }
        }
        ChangeKind::AgentRingNoAnswer { uniqueid, .. } => {
            let caller = q
                .callers
                .get(uniqueid)
                .map_or_else(String::new, |c| c.caller_id_num.to_string());
            missed
                .entry(key)
                .or_default()
                .push(json!({ "caller_number": caller, "call_id": uniqueid }));
            emit(
                RINGING_TIMEOUT,
                json!({ "queue_number": &**queue, "agent_number": agent,
                        "caller_number": caller, "call_id": uniqueid }),
            );
        }
        ChangeKind::CallConnected { .. } => {
            missed.remove(&key);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_and_topic_lists_are_answered_anything_else_is_an_error() {
        let mut topics = BTreeSet::new();
        assert_eq!(answer("heartbeat", &mut topics), "heartbeat response");
        assert_eq!(
            answer(r#"{"topic_list":[30029,30026]}"#, &mut topics),
            r#"{"errcode":0,"errmsg":"SUCCESS"}"#
        );
        assert_eq!(topics, BTreeSet::from([30026, 30029]));
        for bad in [
            "",
            "hello",
            r#"{"topic_list":"30029"}"#,
            r#"{"topic_list":[-1]}"#,
            "{}",
        ] {
            assert_eq!(
                answer(bad, &mut topics),
                r#"{"errcode":40002,"errmsg":"PARAMETER ERROR"}"#,
                "{bad}"
            );
        }
        assert_eq!(
            topics,
            BTreeSet::from([30026, 30029]),
            "a bad frame changes nothing"
        );
    }
}
