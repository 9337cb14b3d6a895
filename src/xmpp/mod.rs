//! The pascom "mobydick" XMPP front end: queuebridge as an external component (XEP-0114).
//!
//! * [`pascom`] — the command API on the wire (the seed's stanzas);
//! * [`events`] — the queue module's view of the state, and the events that keep it right;
//! * [`sessions`] — client sessions, subscriptions, and who gets an event;
//! * [`outbound`] — what the link writes, each event's headlines rendered to bytes once;
//! * [`capped`] — the link's socket, with a cap on what one stanza may take;
//! * `link.rs` — the component link; `commands.rs` — command dispatch; `fan_out.rs` — the
//!   fan-out (the three tasks below).
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
mod commands;
pub mod events;
mod fan_out;
mod link;
pub mod outbound;
pub mod pascom;
pub mod sessions;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::xmlstream::{FallibleStreamElement, XmlStream};
use tracing::warn;

use crate::access::Access;
use crate::command::Commands;
use crate::config::XmppConfig;
use crate::hub::Hub;

use self::capped::Capped;
use self::outbound::{Backlog, Outbound};
use self::pascom::Subscription;
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
    tasks.spawn(link::link(front.clone(), out_rx, shutdown.clone()));
    tasks.spawn(fan_out::fan_out(front.clone(), shutdown.clone()));
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
    use crate::state::{QueueIds, State};

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
