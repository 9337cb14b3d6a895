//! PortSIP's event push (rest-dialects.md §1.8): the `/wsi` WebSocket.
//!
//! The client signs in with `{"command":"auth","username"|"extension_number","password"}`
//! (answered `{"command":"auth","id":…,"status":0}`, or `status` -1 with PortSIP's error text),
//! then subscribes: `{"command":"subscribe","topics":["queue_events"],"queues":["8001"]}` for
//! the queues' events (agents only their own queues, supervisors and admins any), and
//! `queue_management_events` (admins) for queues created, updated and destroyed through the
//! dialect. `unsubscribe` mirrors it. Each queue subscribed to first gets a `queue_status`
//! snapshot, then `queue_caller_status` (`enqueue`, `agent_answered`, `hangup`),
//! `queue_agent_status` and `queue_sla_breached` as they happen. Timestamps are Unix seconds as
//! strings; `tenant_id` is the `[[ami]]` id of the server.
//!
//! Every command is answered with its `command`, an `id` (the client's, else a counter) and a
//! `status`; a bad frame or an unknown command gets `status` -1 and an `error`, and the socket
//! stays. A socket is closed when it falls behind the state's change stream (reconnect and
//! subscribe again: the snapshot comes anew), when a frame cannot be written within
//! [`push::WRITE_TIMEOUT`], without a successful `auth` within [`AUTH_WITHIN`], and at
//! shutdown. A user has at most [`push::SOCKETS_PER_USER`] signed-in sockets; every socket takes one of
//! `[http] max_event_streams`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::agents::agent_status;
use super::queues::queue_number;
use crate::access::{Directory, Principal, User};
use crate::clock::now_secs;
use crate::http::auth::{LoginError, Source};
use crate::http::{push, AppState};
use crate::state::{ChangeKind, ConnectedCall, Queue, State as Model};

/// A socket that has not signed in by then is closed.
pub const AUTH_WITHIN: Duration = Duration::from_secs(30);
/// The longest frame a client may send.
pub const MAX_FRAME: usize = 16 * 1024;
/// How often waiting callers are checked against their queue's SLA.
const SLA_EVERY: Duration = Duration::from_secs(1);

/// Queues created, updated or destroyed through the dialect, for `queue_management_events`.
#[derive(Debug)]
pub struct Management {
    tx: broadcast::Sender<(&'static str, String, String)>,
    sockets: Arc<push::PerUser>,
}

impl Default for Management {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(64).0,
            sockets: Arc::default(),
        }
    }
}

impl Management {
    /// Tells the subscribed admins: `event` is `queue_created`, `queue_updated` or
    /// `queue_destroy`.
    pub fn publish(&self, event: &'static str, server: &str, number: &str) {
        let _ = self.tx.send((event, server.to_owned(), number.to_owned()));
    }
}

/// `GET /wsi`: the upgrade.
pub async fn upgrade(
    State(app): State<AppState>,
    Source(source): Source,
    ws: WebSocketUpgrade,
) -> Response {
    let Ok(permit) = app.streams.clone().try_acquire_owned() else {
        return super::error(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "TOO_MANY_CONNECTIONS",
            "too many event sockets and streams are open",
        )
        .into_response();
    };
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| async move {
            Wsi::new(app, source).run(socket).await;
            drop(permit);
        })
}

/// A member of a queue: (server, queue, interface).
type MemberKey = (Arc<str>, Arc<str>, String);

/// One socket's session.
struct Wsi {
    app: AppState,
    source: std::net::IpAddr,
    user: Option<(Arc<User>, push::Slot)>,
    /// Queues subscribed to, by (server, name).
    queues: BTreeSet<(Arc<str>, Arc<str>)>,
    management: bool,
    /// What each subscribed queue's agents were last told: (state, session id).
    told: HashMap<MemberKey, (&'static str, String)>,
    /// Callers already reported past their queue's SLA: (server, queue, uniqueid).
    breached: BTreeSet<MemberKey>,
    next_id: u64,
}

impl Wsi {
    fn new(app: AppState, source: std::net::IpAddr) -> Self {
        Self {
            app,
            source,
            user: None,
            queues: BTreeSet::new(),
            management: false,
            told: HashMap::new(),
            breached: BTreeSet::new(),
            next_id: 0,
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut tx, mut rx) = socket.split();
        let mut changes = self.app.hub.subscribe();
        let mut managed = self.app.portsip_events.tx.subscribe();
        let mut sla = tokio::time::interval(SLA_EVERY);
        let deadline = tokio::time::sleep(AUTH_WITHIN);
        tokio::pin!(deadline);
        let why = loop {
            let out: Vec<Value> = tokio::select! {
                _ = self.app.shutdown.cancelled() => break "queuebridge is stopping",
                _ = &mut deadline, if self.user.is_none() => break "no auth within 30 s",
                frame = rx.next() => match frame {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(Message::Text(text))) => self.command(text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => vec![self.failure("", None, "send JSON text frames")],
                    Some(Ok(_)) => continue,
                },
                batch = changes.recv() => match batch {
                    Ok(batch) => {
                        let app = self.app.clone();
                        app.hub.read(|s| {
                            let mut out = Vec::new();
                            for c in batch.iter() {
                                self.events(s, c, &mut out);
                            }
                            out
                        })
                    }
                    Err(RecvError::Lagged(_)) => break "fell behind the event stream",
                    Err(RecvError::Closed) => break "queuebridge is stopping",
                },
                m = managed.recv() => match m {
                    Ok((event, server, number)) if self.management => vec![json!({
                        "topic": "queue_management_events", "event_type": event,
                        "queue_number": number, "tenant_id": server,
                    })],
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break "queuebridge is stopping",
                },
                _ = sla.tick(), if !self.queues.is_empty() => {
                    let app = self.app.clone();
                    app.hub.read(|s| self.breaches(s))
                }
            };
            if !push::send_all(&mut tx, out.iter().map(Value::to_string)).await {
                return;
            }
        };
        push::close(&mut tx, why).await;
    }

    fn id(&mut self, given: Option<&Value>) -> Value {
        match given {
            Some(Value::String(s)) => json!(s),
            Some(Value::Number(n)) => json!(n.to_string()),
            _ => {
                self.next_id += 1;
                json!(self.next_id.to_string())
            }
        }
    }

    fn failure(&mut self, command: &str, id: Option<&Value>, error: &str) -> Value {
        json!({ "command": command, "error": error, "id": self.id(id), "status": -1 })
    }

    fn success(&mut self, command: &str, id: Option<&Value>) -> Value {
        json!({ "command": command, "id": self.id(id), "status": 0 })
    }

    /// Answers one text frame, with what follows it (the snapshots of a subscribe).
    async fn command(&mut self, text: &str) -> Vec<Value> {
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text) else {
            return vec![self.failure("", None, "invalid message: a JSON object is expected")];
        };
        let id = m.get("id").cloned();
        let id = id.as_ref();
        let command = m
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let field = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        match command.as_str() {
            "auth" => {
                let login = [field("username"), field("extension_number")]
                    .into_iter()
                    .find(|s| !s.is_empty())
                    .unwrap_or_default();
                let directory = self.app.commands.access().directory();
                let checked = self
                    .app
                    .logins
                    .check(directory, &login, field("password"), self.source)
                    .await;
                match checked {
                    Ok(user) => match self.app.portsip_events.sockets.claim(&user.name) {
                        Some(slot) => {
                            self.user = Some((user, slot));
                            vec![self.success("auth", id)]
                        }
                        None => {
                            vec![self.failure("auth", id, "too many event sockets for this user")]
                        }
                    },
                    Err(LoginError::Wrong) => vec![self.failure(
                        "auth",
                        id,
                        "access_token , username , domain or password error",
                    )],
                    Err(e) => vec![self.failure("auth", id, &e.to_string())],
                }
            }
            "subscribe" | "unsubscribe" => {
                let Some((user, _)) = &self.user else {
                    return vec![self.failure(&command, id, "not authenticated: send auth first")];
                };
                let user = user.clone();
                let topics: Vec<&str> = m
                    .get("topics")
                    .and_then(Value::as_array)
                    .map(|t| t.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if topics.is_empty() {
                    return vec![self.failure(
                        &command,
                        id,
                        "topics: a list of topic names is needed",
                    )];
                }
                if let Some(t) = topics
                    .iter()
                    .find(|t| !matches!(**t, "queue_events" | "queue_management_events"))
                {
                    return vec![self.failure(
                        &command,
                        id,
                        &format!("unknown or unsupported topic {t:?}"),
                    )];
                }
                let on = command == "subscribe";
                let mut resolved = Vec::new();
                if topics.contains(&"queue_events") {
                    let numbers: Vec<String> = m
                        .get("queues")
                        .and_then(Value::as_array)
                        .map(|q| {
                            q.iter()
                                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    if numbers.is_empty() {
                        return vec![self.failure(
                            &command,
                            id,
                            "queues: the queue numbers are needed",
                        )];
                    }
                    let who = Principal::User(user.clone());
                    let found = self.app.hub.read(|s| {
                        numbers
                            .iter()
                            .map(|n| {
                                s.queues()
                                    .find(|q| queue_number(q) == *n)
                                    .filter(|q| who.can_see(q))
                                    .map(|q| (q.server.clone(), q.name.clone()))
                                    .ok_or_else(|| n.clone())
                            })
                            .collect::<Vec<_>>()
                    });
                    for f in found {
                        match f {
                            Ok(q) => resolved.push(q),
                            Err(n) => {
                                return vec![self.failure(
                                    &command,
                                    id,
                                    &format!("no queue {n} that this user may subscribe to"),
                                )]
                            }
                        }
                    }
                }
                if topics.contains(&"queue_management_events") && !user.admin {
                    return vec![self.failure(
                        &command,
                        id,
                        "queue_management_events are for admins",
                    )];
                }
                let mut out = vec![self.success(&command, id)];
                if topics.contains(&"queue_management_events") {
                    self.management = on;
                }
                for key in resolved {
                    if on {
                        if self.queues.insert(key.clone()) {
                            out.extend(self.snapshot(&key).await);
                        }
                    } else {
                        self.queues.remove(&key);
                        self.told
                            .retain(|(s, q, _), _| !(*s == key.0 && *q == key.1));
                        self.breached
                            .retain(|(s, q, _)| !(*s == key.0 && *q == key.1));
                    }
                }
                out
            }
            "" => vec![self.failure("", id, "command: missing")],
            other => vec![self.failure(other, id, "unknown command")],
        }
    }

    /// The `queue_status` of one queue, remembering what its agents were told.
    async fn snapshot(&mut self, key: &(Arc<str>, Arc<str>)) -> Option<Value> {
        let defs = self.app.queues_conf.definitions(&key.0).await.ok();
        let name = |q: &Queue| {
            defs.as_ref()
                .and_then(|d| d.attributes.get(&*q.name)?.get("name").cloned())
                .unwrap_or_else(|| q.name.to_string())
        };
        let app = self.app.clone();
        let directory = app.commands.access().directory();
        app.hub.read(|s| {
            let q = s.queue(&key.0, &key.1)?;
            let waiting: Vec<Value> = q
                .waiting()
                .map(|w| {
                    json!({ "position": w.position, "session_id": w.caller.uniqueid,
                            "caller_number": w.caller.caller_id_num,
                            "caller_name": w.caller.caller_id_name,
                            "timestamp": w.caller.entered.to_string(), "type": "normal" })
                })
                .collect();
            let mut agents = Vec::new();
            for m in q.members.values() {
                let state = agent_status(q, Some(m));
                let call = call_of(q, &m.interface);
                let session = call.map_or_else(String::new, |c| c.uniqueid.clone());
                let view = agent_view(q, &directory, &m.interface, state, call);
                self.told.insert(
                    (key.0.clone(), key.1.clone(), m.interface.clone()),
                    (state, session),
                );
                agents.push(view);
            }
            Some(json!({
                "topic": "queue_events", "event_type": "queue_status",
                "tenant_id": &*q.server, "queue_id": q.id.to_string(),
                "queue_number": queue_number(q), "queue_name": name(q),
                "waiting_list": waiting, "agents": agents,
            }))
        })
    }

    /// The events one change makes for the queues subscribed to.
    fn events(&mut self, s: &Model, change: &crate::state::Change, out: &mut Vec<Value>) {
        let queue = match &change.kind {
            ChangeKind::CallerJoined { queue, .. }
            | ChangeKind::CallerLeft { queue, .. }
            | ChangeKind::MemberUpdated { queue, .. }
            | ChangeKind::MemberRemoved { queue, .. }
            | ChangeKind::CallConnected { queue, .. }
            | ChangeKind::CallCompleted { queue, .. } => queue,
            _ => return,
        };
        let key = (change.server.clone(), queue.clone());
        if !self.queues.contains(&key) {
            return;
        }
        let Some(q) = s.queue(&key.0, &key.1) else {
            return;
        };
        let head = |event: &str| {
            json!({ "topic": "queue_events", "event_type": event,
                    "tenant_id": &*q.server, "queue_id": q.id.to_string() })
        };
        let now = now_secs().to_string();
        match &change.kind {
            ChangeKind::CallerJoined { caller, .. } => {
                let mut v = head("queue_caller_status");
                v["updated_callers"] = json!([{
                    "position": caller.position, "session_id": caller.caller.uniqueid,
                    "caller_number": caller.caller.caller_id_num, "reason": "enqueue",
                    "timestamp": caller.caller.entered.to_string(), "type": "normal" }]);
                out.push(v);
            }
            ChangeKind::CallerLeft {
                uniqueid,
                position,
                abandoned,
                ..
            } => {
                self.breached
                    .remove(&(key.0.clone(), key.1.clone(), uniqueid.clone()));
                // Answered callers are connected by now; the number is on the call.
                let number = q
                    .connected_calls
                    .get(uniqueid)
                    .map_or_else(String::new, |c| c.caller_id_num.clone());
                let mut v = head("queue_caller_status");
                v["updated_callers"] = json!([{
                    "position": position, "session_id": uniqueid, "caller_number": number,
                    "reason": if *abandoned { "hangup" } else { "agent_answered" },
                    "timestamp": now, "type": "normal" }]);
                out.push(v);
            }
            ChangeKind::MemberRemoved { interface, .. } => {
                let k = (key.0.clone(), key.1.clone(), interface.clone());
                if self.told.remove(&k).is_some() {
                    let number = self
                        .app
                        .commands
                        .access()
                        .directory()
                        .agent_number(&q.server, interface);
                    let mut v = head("queue_agent_status");
                    v["updated_agents"] = json!([]);
                    v["removed_agents"] = json!([{ "agent_extension_number": number }]);
                    out.push(v);
                }
            }
            ChangeKind::MemberUpdated { member, .. } => self.agent(q, &member.interface, out),
            ChangeKind::CallConnected { call, .. } => self.agent(q, &call.interface, out),
            ChangeKind::CallCompleted { interface, .. } => self.agent(q, interface, out),
            _ => {}
        }
    }

    /// `queue_agent_status` when what the agent shows changed.
    fn agent(&mut self, q: &Queue, interface: &str, out: &mut Vec<Value>) {
        let Some(m) = q.members.get(interface) else {
            return;
        };
        let state = agent_status(q, Some(m));
        let call = call_of(q, interface);
        let session = call.map_or_else(String::new, |c| c.uniqueid.clone());
        let k = (q.server.clone(), q.name.clone(), interface.to_owned());
        if self.told.get(&k) == Some(&(state, session.clone())) {
            return;
        }
        self.told.insert(k, (state, session));
        let directory = self.app.commands.access().directory();
        let view = agent_view(q, &directory, interface, state, call);
        out.push(json!({
            "topic": "queue_events", "event_type": "queue_agent_status",
            "tenant_id": &*q.server, "queue_id": q.id.to_string(),
            "updated_agents": [view], "removed_agents": [],
        }));
    }

    /// `queue_sla_breached` for each caller who has now waited longer than the queue's
    /// service level (`sla_time`; none when 0), once per caller.
    fn breaches(&mut self, s: &Model) -> Vec<Value> {
        let now = now_secs();
        let mut out = Vec::new();
        for key in &self.queues {
            let Some(q) = s.queue(&key.0, &key.1) else {
                continue;
            };
            let sla = q.stats.service_level;
            if sla <= 0 {
                continue;
            }
            let over: Vec<_> = q.callers.iter().filter(|c| now - c.entered > sla).collect();
            for c in &over {
                if self
                    .breached
                    .insert((key.0.clone(), key.1.clone(), c.uniqueid.clone()))
                {
                    out.push(json!({
                        "topic": "queue_events", "event_type": "queue_sla_breached",
                        "tenant_id": &*q.server, "queue_id": q.id.to_string(),
                        "caller": c.caller_id_num, "total_callers_breached": over.len(),
                        "sla_time_secs": sla, "waiting_callers": q.callers.len(),
                        "timestamp": now.to_string(),
                    }));
                }
            }
        }
        out
    }
}

/// The queue call the member at `interface` is in, if any.
fn call_of<'a>(q: &'a Queue, interface: &str) -> Option<&'a ConnectedCall> {
    q.connected_calls.iter().find(|c| c.interface == interface)
}

/// An agent as `queue_status` and `queue_agent_status` show it; `call` is [`call_of`].
fn agent_view(
    q: &Queue,
    directory: &Directory,
    interface: &str,
    state: &'static str,
    call: Option<&ConnectedCall>,
) -> Value {
    json!({
        "state": state,
        "agent_extension_number": directory.agent_number(&q.server, interface),
        "session_id": call.map_or("", |c| c.uniqueid.as_str()),
        "caller_number": call.map_or("", |c| c.caller_id_num.as_str()),
        "caller_name": call.map_or("", |c| c.caller_id_name.as_str()),
        "timestamp": call.map_or_else(|| now_secs().to_string(), |c| c.connected_at.to_string()),
    })
}
