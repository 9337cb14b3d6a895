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

mod events;

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

use super::queues::queue_number;
use crate::access::{Principal, User};
use crate::http::auth::{LoginError, Source};
use crate::http::{push, AppState};

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
type MemberKey = (Arc<str>, Arc<str>, crate::state::Text);

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
}
