//! One resilient AMI connection per Asterisk server.
//!
//! [`run`] connects, logs in (plaintext or MD5 challenge, ami.md §1.10), and then reads without
//! pause (§1.12: a reader that stalls for 100 ms is dropped by Asterisk) while it
//!
//! * answers actions submitted through an [`AmiHandle`], correlated by ActionID, with a timeout;
//! * pings on an interval and drops a link whose Ping goes unanswered (half-open TCP);
//! * resyncs with a full `QueueStatus` after login (`FullyBooted`), after `Reload`/`Load` of
//!   app_queue, and periodically, because some values change with no event at all (§2.5);
//! * refreshes one queue shortly after events that imply silent changes (AgentComplete →
//!   CallsTaken, LastCall; QueueCallerJoin → the caller's priority);
//! * forwards queue events and snapshots to the state task as [`Input`]s, never waiting for
//!   room: when the state task's queue is full the input is dropped, counted and a full resync
//!   requested, so a stalled consumer can neither stop the reader nor leave the state wrong.
//!
//! When the link ends it reports the server down and reconnects with capped exponential backoff
//! and jitter. Actions submitted while the link is down fail at once: never a hang, never a
//! success that Asterisk did not confirm.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use md5::{Digest, Md5};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};

use super::demux::{Demux, Reply, Routed, MAX_LIST_ITEMS};
use super::event::{is_queue_event, queue_result};
use super::input::{Events, Input, LinkChange, QueueStatus, Scope, What};
use super::{AmiCodec, Frame, Message};
use crate::clock::now_ms;
use crate::metrics;

/// Actions queued for one connection; past this, `send` waits (bounded, never unbounded).
pub const REQUEST_QUEUE: usize = 256;
/// Bytes read from the socket at once: one read brings about 75 events of a busy link (events
/// keep the chunk they were read into alive until folded, within the bounded input queue).
const READ_BUFFER: usize = 32 * 1024;
/// Messages handled per wake-up of the reader before the other work of the link (actions,
/// the keepalive, timers) gets its turn.
const READ_BATCH: usize = 256;
/// Frames queued for the socket writer; past this the link is considered stuck and dropped.
const WRITE_QUEUE: usize = 512;
/// Actions awaiting their answer at once on one link.
pub const MAX_IN_FLIGHT: usize = 1024;
/// Of [`MAX_IN_FLIGHT`] and of the writer's queue, what is kept for the client's own actions
/// (the keepalive Ping, QueueStatus): front ends beyond the rest get [`ActionError::Busy`]
/// (nothing sent), so front-end load can never leave the keepalive without room and drop the
/// link.
pub const RESERVED_FOR_LINK: usize = 64;
/// Wait after an event that implies silent changes before reading the queue back, so that a
/// burst of events costs one QueueStatus.
const REFRESH_DELAY: Duration = Duration::from_millis(150);
/// Up to this many queues a server is re-read whole at every reconciliation.
pub const FULL_RECONCILE_MAX_QUEUES: usize = 1000;
/// At a bigger server, one reconciliation in this many is a full QueueStatus; at the others
/// only the queues that had events since the one before are re-read, each on its own.
pub const FULL_RECONCILE_EVERY: u32 = 15;
/// Targeted QueueStatus refreshes sent at once; the rest follow after [`REFRESH_DELAY`].
const REFRESH_BATCH: usize = 64;
/// How long to wait for `FullyBooted` after login before resyncing anyway (a user whose
/// `read=` lacks `system` never gets it).
const BOOT_WAIT: Duration = Duration::from_secs(3);
/// Shortest and longest pause between reconnects.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// A `Member:` filter that matches no member: QueueStatus then lists parameters and callers
/// only (checked against Asterisk 22.10.1).
const NO_MEMBER: &str = "queuebridge:no-member";

/// How to log in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    /// `Action: Challenge` then `Login` with `AuthType: MD5` — the secret never crosses the wire.
    #[default]
    Md5,
    /// `Login` with `Secret`.
    Plain,
}

/// Settings of one connection.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub id: Arc<str>,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub secret: String,
    pub auth: Auth,
    pub max_frame: usize,
    pub connect_timeout: Duration,
    pub action_timeout: Duration,
    pub ping_interval: Duration,
    pub reconcile_interval: Duration,
    pub backoff_max: Duration,
}

/// Why an action got no reply from Asterisk.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("AMI link to {server} is down: {reason}")]
    NotConnected { server: String, reason: String },
    #[error("no answer from Asterisk within the action timeout")]
    Timeout,
    #[error("the AMI link was lost before Asterisk answered")]
    ConnectionLost,
    #[error("too many actions in flight on this link")]
    Busy,
}

/// A submitted action and where its answer goes.
#[derive(Debug)]
pub struct Request {
    pub action: Message,
    pub reply: oneshot::Sender<Result<Reply, ActionError>>,
}

/// Submits actions to one server's connection. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AmiHandle {
    server: Arc<str>,
    tx: mpsc::Sender<Request>,
}

impl AmiHandle {
    /// A handle and the receiving end that [`run`] consumes.
    pub fn new(server: Arc<str>) -> (Self, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        (Self { server, tx }, rx)
    }

    /// The server this handle talks to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends an action (its `ActionID` is set here) and waits for Asterisk's answer: the
    /// response, with the list items if it was a list action.
    pub async fn send(&self, action: Message) -> Result<Reply, ActionError> {
        let (reply, rx) = oneshot::channel();
        let gone = || ActionError::NotConnected {
            server: self.server.to_string(),
            reason: "queuebridge is shutting down".into(),
        };
        self.tx
            .send(Request { action, reply })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| ActionError::ConnectionLost)?
    }
}

/// Runs one server's connection until `shutdown`, reconnecting as needed.
pub async fn run(
    cfg: ClientConfig,
    mut requests: mpsc::Receiver<Request>,
    sink: mpsc::Sender<Input>,
    shutdown: CancellationToken,
) {
    let span = info_span!("ami", server = %cfg.id, addr = %format!("{}:{}", cfg.host, cfg.port));
    async move {
        let mut backoff = BACKOFF_MIN;
        loop {
            let mut session = Session::new(&cfg, &sink);
            let end = session.run(&mut requests, &shutdown).await;
            let reason = match end {
                End::Shutdown => {
                    session.report_down("queuebridge stopped".into()).await;
                    return;
                }
                End::Failed(reason) => reason,
            };
            if session.synced {
                backoff = BACKOFF_MIN;
            }
            session.report_down(reason.clone()).await;
            // Full jitter in [d/2, d]: many daemons restarted together do not reconnect in step.
            let delay = backoff.mul_f64(0.5 + fastrand::f64() * 0.5);
            backoff = (backoff * 2).min(cfg.backoff_max.max(BACKOFF_MIN));
            warn!(%reason, retry_in_ms = delay.as_millis() as u64, "ami link down");
            let until = Instant::now() + delay;
            loop {
                tokio::select! {
                    _ = sleep_until(until) => break,
                    _ = shutdown.cancelled() => return,
                    req = requests.recv() => match req {
                        Some(req) => {
                            let _ = req.reply.send(Err(ActionError::NotConnected {
                                server: cfg.id.to_string(),
                                reason: reason.clone(),
                            }));
                        }
                        None => return,
                    },
                }
            }
        }
    }
    .instrument(span)
    .await
}

enum End {
    Shutdown,
    Failed(String),
}

/// Who is waiting for an answer.
enum Waiter {
    External(oneshot::Sender<Result<Reply, ActionError>>),
    Status(Scope),
    Ping,
}

struct Pending {
    waiter: Waiter,
    sent: Instant,
    /// When the answer is given up on. A list still arriving moves it on (see `expire`).
    deadline: Instant,
    /// List items received by the last check of the deadline.
    items_seen: usize,
}

struct Session<'a> {
    cfg: &'a ClientConfig,
    sink: &'a mpsc::Sender<Input>,
    next_id: u64,
    demux: Demux,
    pending: HashMap<String, Pending>,
    writer: Option<mpsc::Sender<Message>>,
    synced: bool,
    full_in_flight: bool,
    full_again: bool,
    /// Queues to read back, with whether members are needed too.
    dirty: BTreeMap<String, bool>,
    refresh_at: Option<Instant>,
    /// Queues listed by the last full QueueStatus.
    queues_known: usize,
    event_counters: metrics::EventCounters,
    /// At a server of more than [`FULL_RECONCILE_MAX_QUEUES`]: the queues that had events
    /// since the last reconciliation.
    active: std::collections::BTreeSet<String>,
    /// Reconciliations so far.
    reconciliations: u32,
    /// A link change the state task's queue had no room for, sent before anything else.
    unsent_link: Option<LinkChange>,
    /// Inputs dropped for want of room since the last warning was logged.
    dropping: bool,
    /// When the reader woke up to what it is handling, in milliseconds since the epoch: the
    /// arrival time of every input of one read.
    arrived_ms: u64,
    /// Events read and not yet handed on: sent as one input at the end of the read.
    events: Vec<Message>,
    /// Events of this link queued for the state task (see [`Events`]).
    queued: Arc<AtomicUsize>,
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

impl<'a> Session<'a> {
    fn new(cfg: &'a ClientConfig, sink: &'a mpsc::Sender<Input>) -> Self {
        Self {
            cfg,
            sink,
            next_id: 0,
            demux: Demux::default(),
            pending: HashMap::new(),
            writer: None,
            synced: false,
            full_in_flight: false,
            full_again: false,
            dirty: BTreeMap::new(),
            refresh_at: None,
            queues_known: 0,
            event_counters: metrics::EventCounters::new(&cfg.id, super::event::is_counted),
            active: Default::default(),
            reconciliations: 0,
            unsent_link: None,
            dropping: false,
            arrived_ms: 0,
            events: Vec::new(),
            queued: Events::budget(),
        }
    }

    /// Hands an input to the state task without ever waiting: the reader must keep reading
    /// (ami.md §1.12). When the state task's queue is full the input is dropped, counted, and
    /// a full resync requested (again after one in flight, whose snapshot may predate the
    /// drop), so the state is exact again once the state task has caught up. The link's `Up`
    /// is never dropped: when it does not fit it is kept and sent before anything newer.
    fn report(&mut self, what: What) {
        if !matches!(what, What::Events(_)) {
            // Whatever comes next comes after the events read before it.
            self.flush_events();
        }
        let count = what.events() as u64;
        if let Some(link) = self.unsent_link.take() {
            if !self.offer(What::Link(link.clone())) {
                self.unsent_link = Some(link);
                self.dropped(count);
                return;
            }
        }
        let link = match &what {
            What::Link(link) => Some(link.clone()),
            _ => None,
        };
        if !self.offer(what) {
            self.unsent_link = link;
            self.dropped(count);
        }
        if self.dropping && !self.half_full() {
            self.dropping = false;
            info!("the state task caught up; the resync requested corrects the state");
        }
    }

    /// Hands on the events read so far as one input; when they would take the link past its
    /// share of the state task's queue (as many events as the queue holds inputs) they are
    /// dropped like an input that does not fit.
    fn flush_events(&mut self) {
        if self.events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.events);
        match Events::counted(events, &self.queued, self.sink.max_capacity()) {
            Ok(events) => self.report(What::Events(events)),
            Err(events) => self.dropped(events.len() as u64),
        }
    }

    /// The state task's queue, or this link's share of it, is more than half full.
    fn half_full(&self) -> bool {
        let max = self.sink.max_capacity();
        self.sink.capacity() * 2 < max || self.queued.load(Ordering::Relaxed) * 2 > max
    }

    /// When the state task's queue is more than half full, gives up the rest of this thread's
    /// time slice (`sched_yield`): not a wait — the reader stays runnable, and where a core is
    /// free it carries straight on — but where the reader and the state task share one core
    /// the state task runs first and catches up before the queue overflows.
    fn make_way(&self) {
        if self.half_full() {
            std::thread::yield_now();
        }
    }

    /// Reports the link down once the session is over (nothing is read any more, so this may
    /// wait for room); it supersedes a link change still unsent.
    async fn report_down(&mut self, reason: String) {
        self.flush_events();
        self.unsent_link = None;
        let input = Input {
            server: self.cfg.id.clone(),
            at_ms: now_ms(),
            what: What::Link(LinkChange::Down(reason)),
        };
        // The state task only goes away at shutdown; then nothing is left to tell.
        let _ = self.sink.send(input).await;
    }

    /// True when the input was queued (or the state task is gone: shutdown).
    fn offer(&self, what: What) -> bool {
        let input = Input {
            server: self.cfg.id.clone(),
            at_ms: self.arrived_ms,
            what,
        };
        !matches!(
            self.sink.try_send(input),
            Err(mpsc::error::TrySendError::Full(_))
        )
    }

    fn dropped(&mut self, inputs: u64) {
        metrics::ami_input_dropped(&self.cfg.id, inputs);
        if !self.dropping {
            self.dropping = true;
            warn!(
                queue = self.sink.max_capacity(),
                "the state task is behind and its queue is full: dropping AMI input and resyncing"
            );
        }
        self.request_full_resync();
    }

    fn action_id(&mut self, suffix: &str) -> String {
        self.next_id += 1;
        format!("qb{}{}", self.next_id, suffix)
    }

    /// Queues an action for the writer; false when the link is stuck or gone.
    fn write(&mut self, action: Message) -> bool {
        match &self.writer {
            Some(w) => w.try_send(action).is_ok(),
            None => false,
        }
    }

    /// Whether a front end's action fits beside the room kept for the link's own.
    fn room_for_front_ends(&self) -> bool {
        let external = self
            .pending
            .values()
            .filter(|p| matches!(p.waiter, Waiter::External(_)))
            .count();
        let writable = self
            .writer
            .as_ref()
            .is_some_and(|w| w.capacity() > RESERVED_FOR_LINK);
        external < MAX_IN_FLIGHT - RESERVED_FOR_LINK && writable
    }

    fn submit(&mut self, mut action: Message, suffix: &str, waiter: Waiter) -> Result<(), Waiter> {
        if self.pending.len() >= MAX_IN_FLIGHT
            || matches!(waiter, Waiter::External(_)) && !self.room_for_front_ends()
        {
            return Err(waiter);
        }
        let id = self.action_id(suffix);
        action.push("ActionID", &id);
        if !self.write(action) {
            return Err(waiter);
        }
        let sent = Instant::now();
        let deadline = sent + self.cfg.action_timeout;
        self.pending.insert(
            id,
            Pending {
                waiter,
                sent,
                deadline,
                items_seen: 0,
            },
        );
        Ok(())
    }

    fn request_full_resync(&mut self) {
        if self.full_in_flight {
            self.full_again = true;
            return;
        }
        if self
            .submit(
                Message::action("QueueStatus"),
                ".all",
                Waiter::Status(Scope::All),
            )
            .is_ok()
        {
            self.full_in_flight = true;
        }
    }

    fn mark_dirty(&mut self, queue: &str, with_members: bool) {
        // Most events are of a queue already marked: no copy of its name for those.
        match self.dirty.get_mut(queue) {
            Some(members) => *members |= with_members,
            None => {
                self.dirty.insert(queue.to_owned(), with_members);
            }
        }
        self.refresh_at
            .get_or_insert_with(|| Instant::now() + REFRESH_DELAY);
    }

    /// Re-reads the dirty queues, [`REFRESH_BATCH`] at a time: the rest (and any the
    /// in-flight window had no room for) stay dirty for the next round.
    fn refresh_dirty(&mut self) {
        self.refresh_at = None;
        for _ in 0..REFRESH_BATCH {
            let Some((queue, with_members)) = self.dirty.pop_first() else {
                break;
            };
            let mut action = Message::action("QueueStatus").with("Queue", &queue);
            let (suffix, scope) = if with_members {
                (".q", Scope::Queue(queue))
            } else {
                action.push("Member", NO_MEMBER);
                (".qc", Scope::Callers(queue))
            };
            if let Err(Waiter::Status(scope)) = self.submit(action, suffix, Waiter::Status(scope)) {
                let (Scope::Queue(queue) | Scope::Callers(queue)) = scope else {
                    break;
                };
                self.dirty.insert(queue, with_members);
                break;
            }
        }
        if !self.dirty.is_empty() {
            self.refresh_at = Some(Instant::now() + REFRESH_DELAY);
        }
    }

    /// The periodic reconciliation: a full QueueStatus, or at a server of more than
    /// [`FULL_RECONCILE_MAX_QUEUES`] queues, one in [`FULL_RECONCILE_EVERY`] and the queues
    /// with events since the last one in between.
    fn reconcile(&mut self) {
        self.reconciliations = self.reconciliations.wrapping_add(1);
        if self.queues_known <= FULL_RECONCILE_MAX_QUEUES
            || self.reconciliations % FULL_RECONCILE_EVERY == 0
        {
            self.active.clear();
            self.request_full_resync();
            return;
        }
        for queue in std::mem::take(&mut self.active) {
            self.mark_dirty(&queue, true);
        }
    }

    async fn run(
        &mut self,
        requests: &mut mpsc::Receiver<Request>,
        shutdown: &CancellationToken,
    ) -> End {
        let addr = format!("{}:{}", self.cfg.host, self.cfg.port);
        let stream = match timeout(self.cfg.connect_timeout, TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return End::Failed(format!("connect to {addr}: {e}")),
            Err(_) => return End::Failed(format!("connect to {addr}: timed out")),
        };
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let mut reader =
            FramedRead::with_capacity(rd, AmiCodec::new(self.cfg.max_frame), READ_BUFFER);
        let (wtx, mut wrx) = mpsc::channel::<Message>(WRITE_QUEUE);
        self.writer = Some(wtx);
        // The writer has its own task, so a slow socket write never delays reading.
        let writer = tokio::spawn(async move {
            let mut out = FramedWrite::new(wr, AmiCodec::default());
            while let Some(m) = wrx.recv().await {
                if out.send(m).await.is_err() {
                    break;
                }
            }
        });
        let end = self.session(&mut reader, requests, shutdown).await;
        self.writer = None;
        // Dropping the sender ends the writer after it flushed what is queued (a Logoff).
        let _ = timeout(Duration::from_secs(1), writer).await;
        for (_, p) in self.pending.drain() {
            if let Waiter::External(tx) = p.waiter {
                let _ = tx.send(Err(ActionError::ConnectionLost));
            }
        }
        self.demux.clear();
        end
    }

    async fn login(
        &mut self,
        reader: &mut FramedRead<tokio::net::tcp::OwnedReadHalf, AmiCodec>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + self.cfg.action_timeout;
        match timeout_at(deadline, reader.next()).await {
            Some(Some(Ok(Frame::Banner(b)))) => debug!(banner = %b, "connected"),
            Some(Some(Ok(other))) => return Err(format!("expected the AMI banner, got {other:?}")),
            Some(Some(Err(e))) => return Err(format!("reading banner: {e}")),
            Some(None) => return Err("closed before the banner (authlimit reached?)".into()),
            None => return Err("no AMI banner within the action timeout".into()),
        }
        let mut login = Message::action("Login").with("Username", &self.cfg.username);
        if self.cfg.auth == Auth::Md5 {
            let id = self.action_id(".auth");
            let challenge = Message::action("Challenge")
                .with("AuthType", "MD5")
                .with("ActionID", &id);
            self.write(challenge);
            let reply = self.await_reply(reader, &id, deadline).await?;
            let Some(challenge) = reply
                .response
                .get("Challenge")
                .filter(|_| reply.is_success())
            else {
                return Err(format!("MD5 challenge refused: {}", reply.message()));
            };
            let key = Md5::digest(format!("{challenge}{}", self.cfg.secret));
            login.push("AuthType", "MD5");
            login.push("Key", &format!("{key:x}"));
        } else {
            login.push("Secret", &self.cfg.secret);
        }
        // Only what the fold reads: agent (Queue*, Agent*) and system (FullyBooted, Reload).
        login.push("Events", "agent,system,call");
        let id = self.action_id(".auth");
        login.push("ActionID", &id);
        self.write(login);
        let reply = self.await_reply(reader, &id, deadline).await?;
        if !reply.is_success() {
            return Err(format!(
                "login as {:?} refused: {}",
                self.cfg.username,
                reply.message()
            ));
        }
        Ok(())
    }

    /// Reads until the reply to `id` (login phase only: nothing else is in flight).
    async fn await_reply(
        &mut self,
        reader: &mut FramedRead<tokio::net::tcp::OwnedReadHalf, AmiCodec>,
        id: &str,
        deadline: Instant,
    ) -> Result<Reply, String> {
        loop {
            match timeout_at(deadline, reader.next()).await {
                None => return Err("no answer to login within the action timeout".into()),
                Some(None) => return Err("connection closed during login".into()),
                Some(Some(Err(e))) => return Err(format!("reading: {e}")),
                Some(Some(Ok(Frame::Message(m)))) => {
                    if let Routed::Reply { action_id, reply } = self.demux.push(m) {
                        if action_id == id {
                            return Ok(reply);
                        }
                    }
                }
                Some(Some(Ok(_))) => {}
            }
        }
    }

    async fn session(
        &mut self,
        reader: &mut FramedRead<tokio::net::tcp::OwnedReadHalf, AmiCodec>,
        requests: &mut mpsc::Receiver<Request>,
        shutdown: &CancellationToken,
    ) -> End {
        if let Err(reason) = self.login(reader).await {
            error!(%reason, user = %self.cfg.username, "ami login failed");
            return End::Failed(reason);
        }
        info!("ami logged in");
        self.arrived_ms = now_ms();
        self.report(What::Link(LinkChange::Up));
        let mut boot_deadline = Some(Instant::now() + BOOT_WAIT);
        let mut ping = tokio::time::interval(self.cfg.ping_interval);
        ping.tick().await;
        let mut reconcile = tokio::time::interval(self.cfg.reconcile_interval);
        reconcile.tick().await;
        let mut housekeeping = tokio::time::interval(Duration::from_millis(250));
        loop {
            let refresh_at = self.refresh_at.unwrap_or_else(far_future);
            let boot_at = boot_deadline.unwrap_or_else(far_future);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    self.write(Message::action("Logoff"));
                    return End::Shutdown;
                }
                frame = reader.next() => {
                    // Everything one wake-up finds already read is handled here, not one
                    // message per turn of this loop; the other arms wait at most a batch.
                    self.arrived_ms = now_ms();
                    let mut frame = frame;
                    let mut handled = 0;
                    loop {
                        if let Err(reason) = self.on_frame(frame, &mut boot_deadline) {
                            return End::Failed(reason);
                        }
                        handled += 1;
                        if handled == READ_BATCH {
                            break;
                        }
                        match reader.next().now_or_never() {
                            Some(next) => frame = next,
                            None => break,
                        }
                    }
                    self.flush_events();
                    self.make_way();
                }
                req = requests.recv() => match req {
                    Some(Request { action, reply }) => {
                        if let Err(Waiter::External(reply)) =
                            self.submit(action, "", Waiter::External(reply))
                        {
                            let _ = reply.send(Err(ActionError::Busy));
                        }
                    }
                    None => return End::Shutdown,
                },
                _ = ping.tick() => {
                    if self.submit(Message::action("Ping"), ".ping", Waiter::Ping).is_err() {
                        return End::Failed("cannot queue a keepalive Ping: link stuck".into());
                    }
                }
                _ = reconcile.tick() => if self.synced { self.reconcile() },
                _ = sleep_until(refresh_at) => self.refresh_dirty(),
                _ = sleep_until(boot_at) => {
                    boot_deadline = None;
                    if !self.synced && !self.full_in_flight {
                        info!("no FullyBooted after login; resyncing anyway");
                        self.request_full_resync();
                    }
                }
                _ = housekeeping.tick() => {
                    if let Some(reason) = self.expire() {
                        return End::Failed(reason);
                    }
                }
            }
        }
    }

    /// Fails actions past their deadline; a lost Ping or resync ends the link. A list that is
    /// still arriving is not lost, only long (a full QueueStatus of 40,000 queues takes
    /// Asterisk seconds), and Asterisk answers actions in order, so everything sent after it
    /// waits for its end: while any list grows, every deadline is kept at least
    /// `action_timeout` away.
    fn expire(&mut self) -> Option<String> {
        let now = Instant::now();
        let mut growing = false;
        for (id, p) in &mut self.pending {
            if let Some(n) = self.demux.items(id) {
                growing |= n > p.items_seen;
                p.items_seen = n;
            }
        }
        if growing {
            let later = now + self.cfg.action_timeout;
            for p in self.pending.values_mut() {
                p.deadline = p.deadline.max(later);
            }
            return None;
        }
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.demux.cancel(&id);
            let Some(p) = self.pending.remove(&id) else {
                continue;
            };
            match p.waiter {
                Waiter::External(tx) => {
                    let _ = tx.send(Err(ActionError::Timeout));
                }
                Waiter::Ping => return Some("keepalive Ping unanswered: link half-open".into()),
                Waiter::Status(scope) => {
                    return Some(format!("QueueStatus ({scope:?}) unanswered"));
                }
            }
        }
        None
    }

    /// Handles what the reader produced; `Err(reason)` ends the link.
    fn on_frame(
        &mut self,
        frame: Option<std::io::Result<Frame>>,
        boot: &mut Option<Instant>,
    ) -> Result<(), String> {
        match frame {
            Some(Ok(Frame::Message(m))) => match self.on_message(m, boot) {
                Some(reason) => Err(reason),
                None => Ok(()),
            },
            Some(Ok(Frame::Skipped(skip))) => {
                metrics::ami_malformed(&self.cfg.id);
                warn!(reason = skip.reason(), ?skip, "ami message skipped");
                Ok(())
            }
            Some(Ok(Frame::Banner(b))) => {
                debug!(banner = %b, "unexpected second banner");
                Ok(())
            }
            Some(Err(e)) => Err(format!("reading: {e}")),
            None => Err("connection closed by Asterisk".into()),
        }
    }

    /// Handles one message; `Some(reason)` ends the link.
    fn on_message(&mut self, m: Message, boot: &mut Option<Instant>) -> Option<String> {
        match self.demux.push(m) {
            Routed::Pending => None,
            Routed::Reply { action_id, reply } => {
                let p = self.pending.remove(&action_id)?;
                metrics::action_duration(&self.cfg.id, p.sent.elapsed());
                match p.waiter {
                    Waiter::External(tx) => {
                        let _ = tx.send(Ok(reply));
                    }
                    Waiter::Ping => {}
                    Waiter::Status(scope) => {
                        let full = scope == Scope::All;
                        if !reply.is_success() {
                            return Some(format!("QueueStatus refused: {}", reply.message()));
                        }
                        if reply.items.len() >= MAX_LIST_ITEMS {
                            // Cut short: folding it would remove every queue not listed.
                            error!(
                                items = MAX_LIST_ITEMS,
                                ?scope,
                                "QueueStatus cut short at the item limit: not folded"
                            );
                            self.full_in_flight &= !full;
                            return None;
                        }
                        let listed = reply
                            .items
                            .iter()
                            .filter(|m| m.event_name() == Some("QueueParams"))
                            .count();
                        self.report(What::Snapshot(QueueStatus {
                            scope,
                            items: reply.items,
                        }));
                        if full {
                            self.queues_known = listed;
                            metrics::resync_duration(&self.cfg.id, p.sent.elapsed());
                            self.full_in_flight = false;
                            if !self.synced {
                                info!("ami synced");
                            }
                            self.synced = true;
                            if std::mem::take(&mut self.full_again) {
                                self.request_full_resync();
                            }
                        }
                    }
                }
                None
            }
            Routed::Event(m) => {
                let name = m.event_name().unwrap_or_default();
                self.event_counters.count(name);
                match name {
                    "FullyBooted" => {
                        *boot = None;
                        self.request_full_resync();
                    }
                    "Reload" | "Load" | "Unload" => {
                        let module = m.get("Module").unwrap_or_default();
                        let queue_module =
                            module.starts_with("app_queue") || module.eq_ignore_ascii_case("All");
                        if queue_module && (name == "Unload" || m.get("Status") != Some("1")) {
                            self.request_full_resync();
                        }
                    }
                    "Shutdown" => info!(
                        shutdown = m.get("Shutdown").unwrap_or_default(),
                        "asterisk is shutting down"
                    ),
                    _ if is_queue_event(name) => {
                        let with_members = match name {
                            "QueueCallerJoin" | "Join" => Some(false),
                            "AgentConnect" | "AgentComplete" | "AgentDump"
                            | "QueueCallerAbandon" => Some(true),
                            _ => None,
                        };
                        let queue = m.get("Queue").unwrap_or_default();
                        if let Some(with_members) = with_members {
                            self.mark_dirty(queue, with_members);
                        }
                        if self.queues_known > FULL_RECONCILE_MAX_QUEUES
                            && !self.active.contains(queue)
                        {
                            self.active.insert(queue.to_owned());
                        }
                        self.events.push(m);
                    }
                    "Hangup" if queue_result(&m).is_some() => self.events.push(m),
                    _ => {}
                }
                None
            }
        }
    }
}

async fn timeout_at<F: std::future::Future>(deadline: Instant, f: F) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, f).await.ok()
}

/// The scope of a QueueStatus reply from its ActionID, for folding captures (`replay`).
pub fn scope_of(action_id: &str, items: &[Message]) -> Scope {
    let queue = || {
        items
            .iter()
            .find(|m| m.event_name() == Some("QueueParams"))
            .and_then(|m| m.get("Queue"))
            .map(str::to_owned)
    };
    if action_id.starts_with("qb") && action_id.ends_with(".all") {
        return Scope::All;
    }
    if action_id.starts_with("qb") && action_id.ends_with(".qc") {
        if let Some(q) = queue() {
            return Scope::Callers(q);
        }
    }
    if action_id.starts_with("qb") && action_id.ends_with(".q") {
        if let Some(q) = queue() {
            return Scope::Queue(q);
        }
    }
    Scope::Merge
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClientConfig {
        ClientConfig {
            id: Arc::from("pbx1"),
            host: "127.0.0.1".into(),
            port: 1,
            username: "u".into(),
            secret: "s".into(),
            auth: Auth::Plain,
            max_frame: crate::ami::DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_secs(1),
            action_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(10),
            reconcile_interval: Duration::from_secs(60),
            backoff_max: Duration::from_secs(1),
        }
    }

    fn front_end(s: &mut Session<'_>) -> bool {
        let (tx, _rx) = oneshot::channel();
        s.submit(Message::action("QueuePause"), "", Waiter::External(tx))
            .is_ok()
    }

    /// A server that refuses the connection is retried with a delay that doubles from
    /// BACKOFF_MIN up to `backoff_max`, each with jitter in [d/2, d]; every failure is reported
    /// down, and an action submitted meanwhile fails at once, never waits for the link.
    #[tokio::test(start_paused = true)]
    async fn a_refused_link_is_retried_with_capped_doubling_backoff_and_actions_fail_at_once() {
        let mut cfg = config();
        cfg.backoff_max = Duration::from_secs(4);
        let (sink, mut inputs) = mpsc::channel(64);
        let (handle, requests) = AmiHandle::new(cfg.id.clone());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(cfg, requests, sink, shutdown.clone()));
        let mut downs = Vec::new();
        while downs.len() < 7 {
            let input = inputs.recv().await.expect("the client reports");
            if let What::Link(LinkChange::Down(reason)) = input.what {
                assert!(!reason.is_empty());
                downs.push(Instant::now());
            }
        }
        let mut d = BACKOFF_MIN;
        for gap in downs.windows(2).map(|w| w[1] - w[0]) {
            assert!(
                gap >= d / 2 && gap <= d + Duration::from_millis(50),
                "{gap:?} for {d:?}"
            );
            d = (d * 2).min(Duration::from_secs(4));
        }
        let asked = Instant::now();
        let answer = handle.send(Message::action("Ping")).await;
        assert!(
            matches!(answer, Err(ActionError::NotConnected { .. })),
            "{answer:?}"
        );
        assert_eq!(
            Instant::now(),
            asked,
            "no wait at all (the clock is paused)"
        );
        shutdown.cancel();
        task.await.expect("the client stops");
    }

    /// Asterisk answers in order: a Ping sent during a 40,000-queue QueueStatus is answered
    /// after the list, seconds later. While the list grows nothing expires; once it stops, the
    /// deadlines run out as usual.
    #[tokio::test(start_paused = true)]
    async fn a_long_list_still_arriving_keeps_every_answer_behind_it_waiting() {
        let cfg = config();
        let (sink, _inputs) = mpsc::channel(8);
        let mut s = Session::new(&cfg, &sink);
        let (writer, _socket) = mpsc::channel(WRITE_QUEUE);
        s.writer = Some(writer);
        s.request_full_resync();
        assert!(s
            .submit(Message::action("Ping"), ".ping", Waiter::Ping)
            .is_ok());
        let id = "qb1.all";
        let start = Message::new()
            .with("Response", "Success")
            .with("ActionID", id)
            .with("EventList", "start")
            .with("Message", "Queue status will follow");
        assert!(matches!(s.demux.push(start), Routed::Pending));
        for round in 0..5 {
            tokio::time::advance(cfg.action_timeout).await;
            let item = Message::new()
                .with("Event", "QueueParams")
                .with("Queue", &format!("q{round}"))
                .with("ActionID", id);
            assert!(matches!(s.demux.push(item), Routed::Pending));
            assert_eq!(s.expire(), None, "round {round}");
        }
        tokio::time::advance(cfg.action_timeout * 2).await;
        assert!(s.expire().is_some(), "a list that stopped is lost");
    }

    /// A QueueStatus cut short at MAX_LIST_ITEMS would remove every queue it cut off: it is
    /// not folded, the link stays up, and the next resync may be asked for.
    #[tokio::test]
    async fn a_queue_status_past_the_item_limit_is_not_folded() {
        let cfg = config();
        let (sink, mut inputs) = mpsc::channel(8);
        let mut s = Session::new(&cfg, &sink);
        let (writer, _socket) = mpsc::channel(WRITE_QUEUE);
        s.writer = Some(writer);
        s.request_full_resync();
        let id = "qb1.all";
        let start = Message::new()
            .with("Response", "Success")
            .with("ActionID", id)
            .with("EventList", "start")
            .with("Message", "Queue status will follow");
        assert!(matches!(s.demux.push(start), Routed::Pending));
        let item = Message::new()
            .with("Event", "QueueParams")
            .with("Queue", "q")
            .with("ActionID", id);
        for _ in 0..MAX_LIST_ITEMS + 10 {
            s.demux.push(item.clone());
        }
        let done = Message::new()
            .with("Event", "QueueStatusComplete")
            .with("ActionID", id)
            .with("EventList", "Complete");
        let mut boot = None;
        assert_eq!(s.on_message(done, &mut boot), None, "the link stays up");
        assert!(inputs.try_recv().is_err(), "nothing folded");
        assert!(!s.full_in_flight, "a later resync can be asked for");
    }

    /// A small server is re-read whole at every reconciliation; a big one only one time in
    /// FULL_RECONCILE_EVERY, and in between the queues that had events, a batch at a time.
    #[tokio::test]
    async fn a_big_server_is_reconciled_queue_by_queue_between_full_reads() {
        let cfg = config();
        let (sink, _inputs) = mpsc::channel(8);
        let mut s = Session::new(&cfg, &sink);
        let (writer, mut socket) = mpsc::channel(WRITE_QUEUE);
        s.writer = Some(writer);
        let sent = |socket: &mut mpsc::Receiver<Message>| {
            let mut queues = Vec::new();
            while let Ok(m) = socket.try_recv() {
                queues.push(m.get("Queue").unwrap_or("*all*").to_owned());
            }
            queues
        };
        s.queues_known = 10;
        s.reconcile();
        assert_eq!(sent(&mut socket), ["*all*"]);
        s.full_in_flight = false;

        s.queues_known = FULL_RECONCILE_MAX_QUEUES + 1;
        s.reconciliations = 0;
        for q in 0..100 {
            s.active.insert(format!("q{q:03}"));
        }
        s.reconcile();
        assert!(
            sent(&mut socket).is_empty(),
            "refreshes wait for REFRESH_DELAY"
        );
        s.refresh_dirty();
        assert_eq!(sent(&mut socket).len(), REFRESH_BATCH);
        assert!(s.refresh_at.is_some(), "the rest follow");
        s.refresh_dirty();
        assert_eq!(sent(&mut socket).len(), 100 - REFRESH_BATCH);
        for _ in 1..FULL_RECONCILE_EVERY - 1 {
            s.reconcile();
        }
        s.refresh_dirty();
        assert!(
            sent(&mut socket).is_empty(),
            "no events, nothing to re-read"
        );
        s.reconcile();
        assert_eq!(sent(&mut socket), ["*all*"]);
    }

    /// The QueueStatus actions written so far.
    fn resyncs(socket: &mut mpsc::Receiver<Message>) -> usize {
        std::iter::from_fn(|| socket.try_recv().ok())
            .filter(|m| m.get("Action") == Some("QueueStatus"))
            .count()
    }

    /// A state task that falls behind never makes the reader wait: what does not fit is
    /// dropped, one full resync is asked for (and one more after it, since its snapshot may
    /// predate later drops), and the link's Up, kept, goes first once there is room.
    #[tokio::test]
    async fn a_full_state_queue_drops_input_and_resyncs_instead_of_waiting() {
        let cfg = config();
        let (sink, mut inputs) = mpsc::channel(4);
        let mut s = Session::new(&cfg, &sink);
        let (writer, mut socket) = mpsc::channel(WRITE_QUEUE);
        s.writer = Some(writer);
        let event = |n: u32| {
            What::Event(
                Message::new()
                    .with("Event", "QueueCallerJoin")
                    .with("Uniqueid", &n.to_string()),
            )
        };
        for n in 0..4 {
            s.report(event(n));
        }
        s.report(What::Link(LinkChange::Up));
        s.report(event(4));
        s.report(event(5));
        assert_eq!(resyncs(&mut socket), 1, "one resync however many drops");
        assert!(s.full_in_flight && s.full_again);
        while inputs.try_recv().is_ok() {}
        s.report(event(6));
        let next = |rx: &mut mpsc::Receiver<Input>| rx.try_recv().map(|i| i.what);
        assert!(matches!(next(&mut inputs), Ok(What::Link(LinkChange::Up))));
        assert!(matches!(next(&mut inputs), Ok(What::Event(m)) if m.get("Uniqueid") == Some("6")));
    }

    /// The events of one read reach the state task as one input, in order, before anything
    /// that came after them; while queued they count against the link's share of the queue,
    /// and a read that would pass it is dropped and resynced like an input that does not fit.
    #[tokio::test]
    async fn a_reads_events_travel_as_one_input_counted_until_folded() {
        let cfg = config();
        let (sink, mut inputs) = mpsc::channel(8);
        let mut s = Session::new(&cfg, &sink);
        let (writer, mut socket) = mpsc::channel(WRITE_QUEUE);
        s.writer = Some(writer);
        let join = |n: usize| {
            Message::new()
                .with("Event", "QueueCallerJoin")
                .with("Queue", "q")
                .with("Uniqueid", &n.to_string())
        };
        let mut boot = None;
        for n in 0..5 {
            assert_eq!(s.on_message(join(n), &mut boot), None);
        }
        assert!(
            inputs.try_recv().is_err(),
            "nothing before the read is over"
        );
        s.report(What::Link(LinkChange::Up));
        let Ok(Input {
            what: What::Events(events),
            ..
        }) = inputs.try_recv()
        else {
            panic!("the events first, as one input");
        };
        let ids: Vec<_> = events
            .messages()
            .iter()
            .map(|m| m.get("Uniqueid").unwrap_or_default().to_owned())
            .collect();
        assert_eq!(ids, ["0", "1", "2", "3", "4"]);
        assert!(matches!(
            inputs.try_recv().map(|i| i.what),
            Ok(What::Link(LinkChange::Up))
        ));
        assert_eq!(s.queued.load(Ordering::Relaxed), 5, "counted while queued");
        drop(events);
        assert_eq!(
            s.queued.load(Ordering::Relaxed),
            0,
            "room given back once folded"
        );

        for n in 0..9 {
            assert_eq!(s.on_message(join(n), &mut boot), None);
        }
        s.flush_events();
        assert!(
            inputs.try_recv().is_err(),
            "9 events do not fit a share of 8"
        );
        assert_eq!(s.queued.load(Ordering::Relaxed), 0);
        assert_eq!(resyncs(&mut socket), 1, "dropped, and a resync asked for");
    }

    /// Front-end load filled the in-flight window and the writer's queue, and the keepalive
    /// Ping that then could not be queued dropped the link.
    #[tokio::test]
    async fn front_end_load_never_leaves_the_keepalive_without_room() {
        let cfg = config();
        let (sink, _inputs) = mpsc::channel(8);
        let mut s = Session::new(&cfg, &sink);
        let (writer, mut socket) = mpsc::channel(WRITE_QUEUE);
        s.writer = Some(writer);
        // The socket does not drain: front ends get the writer's queue less the reserve.
        let taken = (0..MAX_IN_FLIGHT).filter(|_| front_end(&mut s)).count();
        assert_eq!(taken, WRITE_QUEUE - RESERVED_FOR_LINK);
        assert!(s
            .submit(Message::action("Ping"), ".ping", Waiter::Ping)
            .is_ok());
        assert!(s
            .submit(
                Message::action("QueueStatus"),
                ".all",
                Waiter::Status(Scope::All)
            )
            .is_ok());
        // The socket drains, the answers do not come: front ends get the window less the
        // reserve.
        let mut total = taken;
        for _ in 0..4 {
            while socket.try_recv().is_ok() {}
            total += (0..MAX_IN_FLIGHT).filter(|_| front_end(&mut s)).count();
        }
        assert_eq!(total, MAX_IN_FLIGHT - RESERVED_FOR_LINK);
        while socket.try_recv().is_ok() {}
        assert!(!front_end(&mut s), "busy");
        assert!(s
            .submit(Message::action("Ping"), ".ping", Waiter::Ping)
            .is_ok());
    }
}
