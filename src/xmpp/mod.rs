//! The pascom "mobydick" XMPP front end: queuebridge as an external component (XEP-0114).
//!
//! * [`pascom`] — the command API on the wire (the seed's stanzas);
//! * [`events`] — the queue module's view of the state, and the events that keep it right;
//! * [`sessions`] — client sessions, subscriptions, and who gets an event;
//! * [`outbound`] — what the link writes, each event's headlines rendered to bytes once;
//! * [`capped`] — the link's socket, with a cap on what one stanza may take.
//!
//! Three tasks: the **link** owns the component stream — it logs in, reads stanzas, writes the
//! outbound queue, pings the server when the link is quiet, and reconnects with backoff; the
//! **fan-out** turns state changes into events and queues a headline for every subscribed
//! session; and each **command** runs in its own task, so a command waiting for Asterisk never
//! holds up another user.
//!
//! The link reads with tokio-xmpp's lower-level [`XmppStream`], which reports a stanza it cannot
//! parse as an item, not as the end of the stream: one user's malformed stanza is logged (and an
//! IQ answered with `bad-request`), and everyone else carries on. The high-level `Component`
//! would end the stream instead.

pub mod capped;
pub mod events;
pub mod outbound;
pub mod pascom;
pub mod sessions;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::{broadcast::error::RecvError, mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::component::Handshake;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::Type as PresenceType;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::xmlstream::{
    initiate_stream, FallibleStreamElement, ReadError, StreamElementError, StreamHeader, Timeouts,
    XmlStream, XmppStreamElement,
};
use tokio_xmpp::Stanza;
use tracing::{debug, info, warn};

use crate::access::{Access, Principal, User};
use crate::command::{Command, Commands};
use crate::config::XmppConfig;
use crate::hub::Hub;
use crate::state::{Queue, State};

use self::capped::{Budget, Capped};
use self::events::Published;
use self::outbound::{Backlog, Outbound, Payload, Renderer};
use self::pascom::{failure, Identity, QueueRef, Request, Subscription};
use self::sessions::Sessions;

/// Stanzas and chunks of headlines queued for the link (the headlines' bytes are bounded by
/// [`outbound::BACKLOG_BYTES`]). The fan-out waits when either is full (and catches up from
/// the state if it falls behind the change stream); the AMI reader never waits for it.
pub const OUTBOUND_QUEUE: usize = 8192;
/// Commands running at once; more are answered with `base.Failure` at once.
pub const MAX_COMMANDS: usize = 256;
/// Commands of one user running at once, over all their sessions (resources), so one user
/// cannot take every slot, however many resources they open.
pub const MAX_COMMANDS_PER_USER: usize = 8;
/// The longest a command may take before its answer is a `base.Failure` (Asterisk's action
/// timeout and the confirmation wait fit inside).
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(20);
/// The longest a connect and handshake may take.
const LOGIN_DEADLINE: Duration = Duration::from_secs(10);
/// Stanzas written before the link flushes.
const WRITE_BATCH: usize = 256;
/// The longest a write to the XMPP server may take: a server that stops reading is a lost link
/// (reconnect), not a wedged one that also holds up the shutdown.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

type Stream = XmlStream<BufStream<Capped<TcpStream>>, FallibleStreamElement>;

/// The XMPP front end's shared state.
pub struct Front {
    config: XmppConfig,
    component: Jid,
    component_str: Arc<str>,
    hub: Arc<Hub>,
    access: Arc<Access>,
    commands: Commands,
    sessions: Mutex<Sessions>,
    out: mpsc::Sender<Outbound>,
    /// The bytes of headlines queued on `out`, bounded.
    backlog: Backlog,
    /// Whether the component link is up.
    connected: watch::Sender<bool>,
    commands_in_flight: Arc<Semaphore>,
    /// Set when a shutdown begins: new commands are refused.
    draining: AtomicBool,
    /// Commands running per user (bare JID).
    session_commands: Mutex<HashMap<BareJid, usize>>,
}

/// A running command's place: one of [`MAX_COMMANDS`] and one of its user's
/// [`MAX_COMMANDS_PER_USER`], given back when dropped.
struct Slot {
    front: Arc<Front>,
    user: BareJid,
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    fn take(front: &Arc<Front>, from: &FullJid) -> Option<Self> {
        let permit = front.commands_in_flight.clone().try_acquire_owned().ok()?;
        let user = from.to_bare();
        let mut running = front.session_commands();
        let n = running.entry(user.clone()).or_default();
        if *n >= MAX_COMMANDS_PER_USER {
            return None;
        }
        *n += 1;
        Some(Slot {
            front: front.clone(),
            user,
            _permit: permit,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.front.session_commands();
        if let Some(n) = running.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.user);
            }
        }
    }
}

/// Starts the link and the fan-out; they stop when `shutdown` is cancelled.
pub fn start(
    config: &XmppConfig,
    hub: Arc<Hub>,
    commands: Commands,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<Front>> {
    let (front, out_rx) = Front::new(config, hub, commands)?;
    tasks.spawn(link(front.clone(), out_rx, shutdown.clone()));
    tasks.spawn(fan_out(front.clone(), shutdown.clone()));
    Ok(front)
}

impl Front {
    /// The front end and the receiving end of its outbound queue, for the link.
    fn new(
        config: &XmppConfig,
        hub: Arc<Hub>,
        commands: Commands,
    ) -> anyhow::Result<(Arc<Self>, mpsc::Receiver<Outbound>)> {
        let component = Jid::new(&config.component).context("xmpp.component")?;
        let (out, out_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let front = Arc::new(Self {
            config: config.clone(),
            component_str: Arc::from(component.as_str()),
            component,
            hub,
            access: commands.access().clone(),
            commands,
            sessions: Mutex::new(Sessions::new(config.max_sessions_per_user)),
            out,
            backlog: Backlog::default(),
            connected: watch::Sender::new(false),
            commands_in_flight: Arc::new(Semaphore::new(MAX_COMMANDS)),
            draining: AtomicBool::new(false),
            session_commands: Mutex::new(HashMap::new()),
        });
        Ok((front, out_rx))
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn session_commands(&self) -> MutexGuard<'_, HashMap<BareJid, usize>> {
        self.session_commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes `jid` (user `user`) as `ClientInfo` would; for benches.
    pub fn subscribe(&self, jid: &FullJid, user: &str, subs: Vec<Subscription>) {
        let supervisor = self
            .access
            .directory()
            .user(user)
            .is_some_and(|u| u.supervisor);
        let mut sessions = self.sessions();
        let session = sessions.touch(jid, user);
        session.subscriptions.clear();
        if let Err(e) = sessions::add(&mut session.subscriptions, subs, supervisor) {
            warn!("{e}");
        }
    }

    /// Handles one stanza from the server. Never blocks: commands run in their own tasks.
    fn inbound(self: &Arc<Self>, stanza: Stanza) {
        match stanza {
            Stanza::Iq(Iq::Get {
                from, id, payload, ..
            })
            | Stanza::Iq(Iq::Set {
                from, id, payload, ..
            }) => {
                let Some(from) = from.and_then(|f| f.try_into_full().ok()) else {
                    debug!(id, "IQ without a full sender JID ignored");
                    return;
                };
                if payload.is("ping", ns::PING) {
                    self.reply(&from, &id, None);
                } else if payload.has_ns(pascom::NS) {
                    self.command(from, id, payload);
                } else {
                    self.reply_error(
                        from.into(),
                        id,
                        DefinedCondition::ServiceUnavailable,
                        "this component speaks the pascom mobydick API only",
                    );
                }
            }
            Stanza::Presence(p) if p.type_ == PresenceType::Unavailable => {
                if let Some(from) = p.from.and_then(|f| f.try_into_full().ok()) {
                    if self.sessions().remove(&from) {
                        debug!(%from, "session ended");
                    }
                }
            }
            // Pongs and errors for our pings, other presences and messages: nothing to do.
            _ => {}
        }
    }

    /// A stanza the link could not parse: logged; an IQ request gets `bad-request`.
    fn malformed(&self, error: StreamElementError) {
        if let StreamElementError::InvalidStanza { header, error, .. } = &error {
            let request = matches!(header.type_.as_deref(), Some("get") | Some("set"));
            if let (true, Some(from), Some(id)) = (request, &header.from, &header.id) {
                if let Ok(from) = Jid::new(from) {
                    self.reply_error(
                        from,
                        id.clone(),
                        DefinedCondition::BadRequest,
                        &format!("malformed stanza: {error}"),
                    );
                }
            }
        }
        warn!(%error, "malformed stanza skipped");
    }

    /// At shutdown: refuses new commands from now on and waits until the running ones have
    /// queued their answers (the link writes them before it closes).
    pub async fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let all = u32::try_from(MAX_COMMANDS).unwrap_or(u32::MAX);
        let _idle = self.commands_in_flight.acquire_many(all).await;
    }

    fn command(self: &Arc<Self>, from: FullJid, id: String, payload: Element) {
        if self.draining.load(Ordering::SeqCst) {
            self.reply(&from, &id, Some(failure("queuebridge is shutting down")));
            return;
        }
        let Some(slot) = Slot::take(self, &from) else {
            self.reply(
                &from,
                &id,
                Some(failure("too many commands in progress, try again")),
            );
            return;
        };
        let front = self.clone();
        tokio::spawn(async move {
            let answer =
                match tokio::time::timeout(COMMAND_DEADLINE, front.answer(&from, &payload)).await {
                    Ok(answer) => answer,
                    Err(_) => failure(&format!(
                        "no answer from the PBX within {} s",
                        COMMAND_DEADLINE.as_secs()
                    )),
                };
            front.reply_sent(&from, &id, Some(answer)).await;
            drop(slot);
        });
    }

    fn result(&self, to: &FullJid, id: &str, payload: Option<Element>) -> Stanza {
        Stanza::Iq(Iq::Result {
            from: Some(self.component.clone()),
            to: Some(to.clone().into()),
            id: id.to_owned(),
            payload,
        })
    }

    /// Queues an IQ result without waiting; dropped (and logged) if the queue is full.
    fn reply(&self, to: &FullJid, id: &str, payload: Option<Element>) {
        if self
            .out
            .try_send(Outbound::Stanza(Box::new(self.result(to, id, payload))))
            .is_err()
        {
            warn!(%to, id, "outbound queue full: reply dropped");
        }
    }

    async fn reply_sent(&self, to: &FullJid, id: &str, payload: Option<Element>) {
        let _ = self
            .out
            .send(Outbound::Stanza(Box::new(self.result(to, id, payload))))
            .await;
    }

    fn reply_error(&self, to: Jid, id: String, condition: DefinedCondition, text: &str) {
        let kind = match condition {
            DefinedCondition::BadRequest => ErrorType::Modify,
            _ => ErrorType::Cancel,
        };
        let stanza = Stanza::Iq(Iq::Error {
            from: Some(self.component.clone()),
            to: Some(to),
            id,
            error: StanzaError::new(kind, condition, "en", pascom::xml_safe(text)),
            payload: None,
        });
        if self
            .out
            .try_send(Outbound::Stanza(Box::new(stanza)))
            .is_err()
        {
            warn!("outbound queue full: error reply dropped");
        }
    }

    /// The configured user `jid` is, if it is one.
    fn user_of(&self, jid: &BareJid) -> Option<Arc<User>> {
        if jid.domain().as_str() != self.config.domain {
            return None;
        }
        self.access.directory().user(jid.node()?.as_str()).cloned()
    }

    /// The answer to one command: its response, `base.Success` or `base.Failure`.
    async fn answer(&self, from: &FullJid, payload: &Element) -> Element {
        let request = match pascom::parse_request(payload) {
            Ok(r) => r,
            Err(e) => return failure(&e),
        };
        let Some(user) = self.user_of(&from.to_bare()) else {
            return failure(&format!("{} is not a user of this PBX", from.to_bare()));
        };
        match self.run(from, &user, &request).await {
            Ok(e) => e,
            Err(reason) => failure(&reason),
        }
    }

    async fn run(
        &self,
        from: &FullJid,
        user: &Arc<User>,
        req: &Request,
    ) -> Result<Element, String> {
        match (req.module.as_str(), req.name.as_str()) {
            ("xmppuser", "ClientInfo") => {
                let subs = match req.body.children().find(|c| c.name() == "AddSubscription") {
                    Some(list) => Subscription::parse_list(list)?,
                    None => Vec::new(),
                };
                let subs = {
                    let mut sessions = self.sessions();
                    let session = sessions.touch(from, &user.name);
                    session.subscriptions.clear();
                    sessions::add(&mut session.subscriptions, subs, user.supervisor)?;
                    session.subscriptions.clone()
                };
                Ok(self.user_info(user, &subs))
            }
            ("xmppuser", "FindUserInfo") => {
                let asked = req.attr("jid").trim();
                let other = if asked.is_empty() {
                    user.clone()
                } else {
                    let jid =
                        BareJid::new(asked).map_err(|e| format!("invalid jid {asked:?}: {e}"))?;
                    self.user_of(&jid)
                        .ok_or_else(|| format!("{asked} is not a user of this PBX"))?
                };
                if other.name != user.name && !user.supervisor {
                    return Err("only a supervisor may ask about other users".into());
                }
                let subs = if other.name == user.name {
                    let mut sessions = self.sessions();
                    sessions.touch(from, &user.name).subscriptions.clone()
                } else {
                    Vec::new()
                };
                Ok(self.user_info(&other, &subs))
            }
            ("event", "AddSubscription" | "RemoveSubscription") => {
                let list = Subscription::parse_list(&req.body)?;
                let mut sessions = self.sessions();
                let session = sessions.touch(from, &user.name);
                if req.name == "AddSubscription" {
                    sessions::add(&mut session.subscriptions, list, user.supervisor)?;
                } else {
                    sessions::remove(&mut session.subscriptions, list, user.supervisor);
                }
                Ok(pascom::cmd(
                    "event",
                    pascom::subscription_list(&session.subscriptions),
                ))
            }
            ("queue", name) => {
                self.sessions().touch(from, &user.name);
                self.queue_command(user, name, req).await
            }
            _ => Err(format!("unknown command {}", req.full_name())),
        }
    }

    fn user_info(&self, user: &User, subs: &[Subscription]) -> Element {
        let mut roles = Vec::new();
        if user.admin {
            roles.push(("admin".to_owned(), true));
        } else if user.supervisor {
            roles.push(("supervisor".to_owned(), true));
        }
        let who = Identity {
            name: user.name.clone(),
            full_name: user.display_name.clone(),
            extension: user.number().to_owned(),
            roles,
        };
        let states = self.hub.read(|s| events::own_states(s, user));
        pascom::user_info(&who, &states, subs)
    }

    async fn queue_command(
        &self,
        user: &Arc<User>,
        name: &str,
        req: &Request,
    ) -> Result<Element, String> {
        let who = Principal::User(user.clone());
        let dir = self.access.directory();
        match name {
            "FindOwnState" => self.hub.read(|s| {
                link_up(s, &user.server)?;
                let states = events::own_states(s, user);
                Ok(pascom::cmd("queue", pascom::member_states(&states)))
            }),
            "FindQueueState" => self.hub.read(|s| {
                let q = find_queue(s, user, req.attr("name"))?;
                link_up(s, &q.server)?;
                if !who.can_see(q) {
                    return Err(format!("{} is not a member of queue {}", user.name, q.name));
                }
                let calls: Vec<_> = q
                    .waiting()
                    .map(|w| events::call_entry(w.position, w.caller))
                    .collect();
                let members = events::queue_members(&dir, q);
                let qref = QueueRef {
                    id: q.id,
                    name: q.name.to_string(),
                };
                Ok(pascom::queue_state(
                    &qref,
                    &calls,
                    &members,
                    dir.pause_reasons(),
                ))
            }),
            "AgentLogin" | "AgentLogout" | "AgentPause" | "AgentUnpause" => {
                let (queue, command) = self.hub.read(|s| {
                    let q = find_queue(s, user, req.attr("queue"))?;
                    link_up(s, &q.server)?;
                    agent_command(user, q, name, req)
                })?;
                let server = user.server.clone();
                match self.commands.execute(&who, &server, command).await {
                    Ok(_) => Ok(pascom::success()),
                    Err(e) => Err(format!(
                        "{} in queue {queue}: {}",
                        req.full_name(),
                        e.message
                    )),
                }
            }
            _ => Err(format!("unknown command {}", req.full_name())),
        }
    }
}

/// `Err` with the reason when the server's AMI link is down: nothing is answered from a state
/// that may be stale, and nothing is sent.
fn link_up(state: &State, server: &str) -> Result<(), String> {
    let link = state.servers.get(server).map(|s| &s.link);
    match link {
        Some(l) if l.connected => Ok(()),
        Some(l) => Err(format!(
            "the PBX is unreachable: AMI link to {server} is down ({})",
            l.reason.as_deref().unwrap_or("not connected")
        )),
        None => Err(format!("the PBX is unreachable: no AMI link to {server}")),
    }
}

/// The queue a user means by `name`: on their own server first, exactly or ignoring case as
/// Asterisk does; supervisors also on other servers.
fn find_queue<'s>(state: &'s State, user: &User, name: &str) -> Result<&'s Queue, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("no queue given".into());
    }
    let own = state.servers.get(user.server.as_str()).into_iter();
    let others = state
        .servers
        .values()
        .filter(|s| user.supervisor && *s.id != *user.server);
    for server in own.chain(others) {
        if let Some(q) = server.queues.get(name) {
            return Ok(q);
        }
        if let Some(q) = server
            .queues
            .values()
            .find(|q| q.name.eq_ignore_ascii_case(name))
        {
            return Ok(q);
        }
    }
    Err(format!("no queue {name}"))
}

/// The command-layer command for an agent command of the queue module, with the seed's
/// preconditions: log in only when not logged in, log out and pause only when logged in (or
/// static), unpause only when paused. Who may do what is the command layer's decision.
fn agent_command(
    user: &User,
    q: &Queue,
    name: &str,
    req: &Request,
) -> Result<(String, Command), String> {
    user.agent_interface()?;
    if *q.server != *user.server {
        return Err(format!("queue {} is not on {}'s PBX", q.name, user.name));
    }
    let queue = q.name.to_string();
    let member = q.members.get(&user.interface);
    let command = match (name, member) {
        ("AgentLogin", Some(_)) => {
            return Err(format!(
                "{} is already logged in to queue {queue}",
                user.name
            ))
        }
        ("AgentLogin", None) => {
            let penalty =
                match req.attr("penalty").trim() {
                    "" => None,
                    p => Some(p.parse::<i64>().ok().filter(|p| *p >= 0).ok_or_else(|| {
                        format!("invalid penalty {p:?}: a whole number, 0 or more")
                    })?),
                };
            Command::login(user, queue.clone(), penalty, None)
        }
        (_, None) => return Err(format!("{} is not logged in to queue {queue}", user.name)),
        ("AgentLogout", Some(_)) => Command::Logout {
            queue: queue.clone(),
            interface: user.interface.clone(),
        },
        ("AgentUnpause", Some(m)) if !m.paused => {
            return Err(format!("{} is not paused in queue {queue}", user.name))
        }
        (_, Some(_)) => Command::Pause {
            queue: Some(queue.clone()),
            interface: user.interface.clone(),
            paused: name == "AgentPause",
            reason: req.attr("reason").to_owned(),
        },
    };
    Ok((queue, command))
}

/// Turns state changes into events and queues them for every subscribed session.
///
/// While the component link is down nothing can reach a client, so changes are not taken into
/// the published picture; when it is back, the clients get exactly the differences between
/// what they were told and the state now.
async fn fan_out(front: Arc<Front>, shutdown: CancellationToken) {
    let mut changes = front.hub.subscribe();
    let mut link = front.connected.subscribe();
    let mut published = front
        .hub
        .read(|s| Published::of(s, &front.access.directory()));
    let mut behind = false;
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            up = link.changed() => match up {
                Ok(()) => None,
                Err(_) => return,
            },
            next = changes.recv() => Some(next),
        };
        let dir = front.access.directory();
        let up = *link.borrow_and_update();
        let events = match next {
            Some(Err(RecvError::Closed)) => return,
            _ if !up => {
                behind = true;
                continue;
            }
            None if !behind => continue,
            None => {
                info!("XMPP link back: sending the clients what changed meanwhile");
                behind = false;
                front.hub.read(|s| published.catch_up(s, &dir))
            }
            Some(Ok(batch)) if !behind => batch
                .iter()
                .flat_map(|c| published.apply(c, &dir))
                .collect(),
            Some(Ok(_)) | Some(Err(RecvError::Lagged(_))) => {
                if !behind {
                    warn!("XMPP fan-out fell behind; catching up from the state");
                }
                behind = false;
                front.hub.read(|s| published.catch_up(s, &dir))
            }
        };
        front.deliver(&events, &published).await;
    }
}

impl Front {
    /// Queues one headline per event for every session that gets it (each at most once),
    /// rendered in chunks; waits while the link's backlog is full.
    pub async fn deliver(&self, events: &[events::Event], published: &Published) {
        if events.is_empty() || !*self.connected.borrow() {
            return;
        }
        let dir = self.access.directory();
        let mut headlines = Renderer::new(&self.component_str, &self.backlog);
        for event in events {
            let recipients = self.sessions().recipients(event, &dir, published);
            if recipients.is_empty() {
                continue;
            }
            let payload = match Payload::new(&event.element()) {
                Ok(p) => p,
                Err(e) => {
                    warn!(%e, "event not serializable");
                    continue;
                }
            };
            for to in recipients {
                if !headlines.add(to.as_str(), &payload) {
                    warn!(%to, "address not serializable: headline skipped");
                }
                if let Some(chunk) = headlines.chunk(false).await {
                    if self.out.send(Outbound::Headlines(chunk)).await.is_err() {
                        return;
                    }
                }
            }
        }
        if let Some(chunk) = headlines.chunk(true).await {
            let _ = self.out.send(Outbound::Headlines(chunk)).await;
        }
    }
}

/// Keeps the component logged in, forever, with backoff between attempts.
async fn link(
    front: Arc<Front>,
    mut out_rx: mpsc::Receiver<Outbound>,
    shutdown: CancellationToken,
) {
    let config = &front.config;
    let first = Duration::from_millis(500);
    let max = Duration::from_secs_f64(config.reconnect_max).max(first);
    let mut backoff = first;
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(LOGIN_DEADLINE, connect(config)) => r,
        };
        match attempt {
            Ok(Ok((stream, budget))) => {
                info!(server = %config.server, component = %config.component, "XMPP component connected");
                backoff = first;
                front.connected.send_replace(true);
                let end = serve(&front, stream, &budget, &mut out_rx, &shutdown).await;
                front.connected.send_replace(false);
                if shutdown.is_cancelled() {
                    return;
                }
                warn!(server = %config.server, "XMPP link lost: {end}");
            }
            Ok(Err(e)) => warn!(server = %config.server, "XMPP component login failed: {e:#}"),
            Err(_) => warn!(server = %config.server, "XMPP component login timed out"),
        }
        // Wait, dropping what is queued: nothing can reach a client while the link is down.
        let wait = backoff.mul_f64(0.75 + fastrand::f64() / 2.0);
        let until = tokio::time::sleep(wait);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = &mut until => break,
                s = out_rx.recv() => if s.is_none() { return },
            }
        }
        backoff = (backoff * 2).min(max);
    }
}

/// Connects and performs the component handshake (XEP-0114).
async fn connect(config: &XmppConfig) -> anyhow::Result<(Stream, Budget)> {
    let jid = Jid::new(&config.component)?;
    let ping = Duration::from_secs_f64(config.ping_interval);
    let timeouts = Timeouts {
        read_timeout: ping,
        response_timeout: ping.clamp(Duration::from_secs(5), Duration::from_secs(60)),
    };
    // tokio-xmpp connects to an IP address only: resolve a host name (a compose service …) here.
    let addr = tokio::net::lookup_host(&config.server)
        .await
        .with_context(|| format!("resolving {}", config.server))?
        .next()
        .ok_or_else(|| anyhow!("{} resolves to no address", config.server))?;
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let budget = Budget::default();
    let header = StreamHeader {
        to: Some(Cow::Borrowed(jid.domain().as_str())),
        from: None,
        id: None,
    };
    let io = BufStream::new(Capped::new(tcp, budget.clone()));
    let mut pending = initiate_stream(io, ns::COMPONENT, header, timeouts).await?;
    let header = pending.take_header();
    let stream_id = header
        .id
        .ok_or_else(|| anyhow!("the server sent no stream id"))?
        .into_owned();
    let mut stream: Stream = pending.skip_features();
    let handshake = Handshake::from_stream_id_and_password(stream_id, &config.secret);
    stream
        .send(&XmppStreamElement::ComponentHandshake(handshake))
        .await?;
    loop {
        match stream.next().await {
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::ComponentHandshake(_)))) => {
                return Ok((stream, budget))
            }
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                return Err(anyhow!("the server refused the component: {e:?}"))
            }
            Some(Err(ReadError::SoftTimeout)) => {}
            Some(Ok(other)) => {
                return Err(anyhow!("unexpected answer to the handshake: {other:?}"))
            }
            Some(Err(e)) => return Err(anyhow!("handshake: {e}")),
            None => return Err(anyhow!("the server closed the stream during the handshake")),
        }
    }
}

/// Serves one connected stream until it ends; returns why.
async fn serve(
    front: &Arc<Front>,
    mut stream: Stream,
    budget: &Budget,
    out_rx: &mut mpsc::Receiver<Outbound>,
    shutdown: &CancellationToken,
) -> String {
    let mut pings = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // The answers of the last commands are queued: write them, then close.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Ok(stanza) = out_rx.try_recv() {
                        write_batch(&mut stream, stanza, out_rx).await?;
                    }
                    SinkExt::<&XmppStreamElement>::close(&mut stream).await
                })
                .await;
                return "shutting down".into();
            }
            stanza = out_rx.recv() => {
                let Some(stanza) = stanza else { return "outbound queue closed".into() };
                match tokio::time::timeout(WRITE_TIMEOUT, write_batch(&mut stream, stanza, out_rx)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return format!("write failed: {e}"),
                    Err(_) => return format!("write timed out after {} s: the server stopped reading", WRITE_TIMEOUT.as_secs()),
                }
            }
            item = stream.next() => {
                // A stanza (or an element skipped whole) arrived: the next one starts from an
                // empty budget. A quiet link does not reset it, so a stanza trickled in slowly
                // is capped all the same.
                if !matches!(item, Some(Err(ReadError::SoftTimeout))) {
                    budget.reset();
                }
                match item {
                    Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Stanza(s)))) => front.inbound(s),
                    Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                        return format!("stream error from the server: {e:?}");
                    }
                    Some(Ok(FallibleStreamElement::Ok(other))) => debug!(?other, "unexpected nonza ignored"),
                    Some(Ok(FallibleStreamElement::Err(e))) => front.malformed(e),
                    Some(Err(ReadError::ParseError(e))) => warn!(%e, "unparseable element skipped"),
                    Some(Err(ReadError::SoftTimeout)) => {
                        // Quiet link: ask the server for an answer before the hard timeout.
                        pings += 1;
                        let ping = Iq::Get {
                            from: Some(front.component.clone()),
                            to: Jid::new(&front.config.domain).ok(),
                            id: format!("qb-ping-{pings}"),
                            payload: Element::bare("ping", ns::PING),
                        };
                        let sent = tokio::time::timeout(WRITE_TIMEOUT, stream.send(&XmppStreamElement::Stanza(Stanza::Iq(ping)))).await;
                        match sent {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return format!("ping failed: {e}"),
                            Err(_) => return "ping write timed out: the server stopped reading".into(),
                        }
                    }
                    Some(Err(ReadError::HardError(e))) => return format!("read failed: {e}"),
                    Some(Err(ReadError::StreamFooterReceived)) => return "the server closed the stream".into(),
                    None => return "the connection closed".into(),
                }
            }
        }
    }
}

/// Writes `first` and whatever else is queued (up to [`WRITE_BATCH`]), then flushes.
///
/// Stanzas go through the XML stream's encoder; rendered headlines are complete stanzas and
/// go to the socket as they are, after what the encoder holds (between two top-level stanzas
/// the stream's encoder has nothing open, so the bytes fit in as one more stanza).
async fn write_batch(
    stream: &mut Stream,
    first: Outbound,
    out_rx: &mut mpsc::Receiver<Outbound>,
) -> std::io::Result<()> {
    let mut next = Some(first);
    let mut written = 0;
    let mut fed = false;
    while let Some(item) = next.take() {
        if let Err(e) = item.check() {
            // Skipped alone: written, it would break the stream for every client.
            warn!(%e, "stanza not serializable: skipped");
        } else {
            match item {
                Outbound::Stanza(s) => {
                    stream.feed(&XmppStreamElement::Stanza(*s)).await?;
                    fed = true;
                }
                Outbound::Headlines(h) => {
                    if std::mem::take(&mut fed) {
                        SinkExt::<&XmppStreamElement>::flush(stream).await?;
                    }
                    write_raw(stream, &h.bytes).await?;
                }
            }
        }
        written += 1;
        if written < WRITE_BATCH {
            next = out_rx.try_recv().ok();
        }
    }
    SinkExt::<&XmppStreamElement>::flush(stream).await
}

/// Writes `bytes` to the link's socket, past the XML stream (which must have nothing
/// buffered).
async fn write_raw(stream: &Stream, mut bytes: &[u8]) -> std::io::Result<()> {
    let socket = stream.get_stream().get_ref().get_ref();
    while !bytes.is_empty() {
        socket.writable().await?;
        match socket.try_write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Link up, client sessions, and their subscriptions, for the metrics.
impl crate::metrics::SessionGauges for Front {
    fn session_gauges(&self) -> (bool, usize, usize) {
        let sessions = self.sessions();
        (
            *self.connected.borrow(),
            sessions.len(),
            sessions.subscription_count(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Directory;
    use crate::config::Config;
    use crate::servers::Servers;
    use crate::state::QueueIds;

    fn front() -> Arc<Front> {
        let config = Config::parse(
            r#"
state_dir = "/nonexistent"
[[ami]]
id = "pbx1"
host = "127.0.0.1"
username = "u"
secret = "s"
[http]
listen = "127.0.0.1:0"
token = "0123456789abcdef"
[xmpp]
server = "127.0.0.1:5347"
component = "pbx.example.test"
secret = "s"
domain = "example.test"
"#,
            "test",
        )
        .expect("config");
        let hub = Hub::new(State::new(["pbx1"], QueueIds::default()));
        let (inputs, _) = mpsc::channel(1);
        let servers = Servers::load(
            vec![("pbx1".into(), config.ami[0].client())],
            None,
            inputs,
            CancellationToken::new(),
        )
        .expect("servers");
        let commands = Commands::new(hub.clone(), servers, Access::new(Directory::default()));
        let xmpp = config.xmpp.expect("xmpp");
        Front::new(&xmpp, hub, commands).expect("front").0
    }

    #[test]
    fn one_user_cannot_take_every_command_slot_with_many_resources() {
        let front = front();
        let a = FullJid::new("anna@example.test/a").expect("jid");
        let b = FullJid::new("boss@example.test/b").expect("jid");
        let mut slots: Vec<Slot> = (0..MAX_COMMANDS_PER_USER)
            .map(|i| {
                let resource = FullJid::new(&format!("anna@example.test/r{i}")).expect("jid");
                Slot::take(&front, &resource).expect("a slot")
            })
            .collect();
        assert!(Slot::take(&front, &a).is_none());
        let other = Slot::take(&front, &b).expect("another session's slot");
        slots.pop();
        assert!(Slot::take(&front, &a).is_some());
        drop((slots, other));
        assert!(front.session_commands().is_empty());
        assert_eq!(front.commands_in_flight.available_permits(), MAX_COMMANDS);
    }
}
