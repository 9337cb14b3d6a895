//! The systemd service protocol (`sd_notify`), for `Type=notify` and `WatchdogSec=`.
//!
//! * `READY=1` is sent once, when every enabled AMI link has logged in and folded its first
//!   full QueueStatus: from then on what queuebridge publishes is Asterisk's state.
//! * `WATCHDOG=1` comes from the state task's own loop ([`crate::hub::run`]), after it has
//!   taken the state lock: if that loop or the lock is wedged, the keepalives stop and systemd
//!   restarts the service. A timer of its own would keep pinging a daemon that no longer works.
//! * `STATUS=` tells `systemctl status` how each AMI link is: after every login, logoff and
//!   QueueStatus snapshot, and at each keepalive.
//! * `STOPPING=1` when a shutdown begins.
//!
//! Outside systemd (no `NOTIFY_SOCKET`) all of it is silent.

use std::fmt::Write;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::warn;

use crate::hub::Liveness;
use crate::state::State;

type Sink = Box<dyn FnMut(&[NotifyState<'_>]) + Send>;

/// Tells the service manager what the state task sees; owned by that task.
pub struct Notifier {
    sink: Option<Sink>,
    watchdog: Option<Duration>,
    ready: bool,
    status: String,
}

impl Notifier {
    /// From what systemd sets in the environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`,
    /// `WATCHDOG_PID`); silent when it set nothing.
    pub fn from_env() -> Self {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return Self::silent();
        }
        Self::to(Box::new(send), sd_notify::watchdog_enabled())
    }

    /// Sends nothing: for a daemon that is not a systemd service.
    pub fn silent() -> Self {
        Notifier {
            sink: None,
            watchdog: None,
            ready: false,
            status: String::new(),
        }
    }

    /// Sends every notification to `sink`, keeping alive within `watchdog`.
    pub fn to(sink: Sink, watchdog: Option<Duration>) -> Self {
        Notifier {
            sink: Some(sink),
            watchdog,
            ready: false,
            status: String::new(),
        }
    }
}

impl Liveness for Notifier {
    /// How often the state task must say it is alive: half the watchdog period, as systemd
    /// recommends; `None` without a watchdog.
    fn keepalive_every(&self) -> Option<Duration> {
        self.watchdog
            .map(|w| (w / 2).max(Duration::from_millis(100)))
    }

    /// After a fold that moved a link: `STATUS=` when the line changed, `READY=1` the first
    /// time all links are synced.
    fn observe(&mut self, state: &State) {
        if self.sink.is_none() {
            return;
        }
        let status = status(state);
        let ready = !self.ready && state.all_synced();
        if status == self.status && !ready {
            return;
        }
        self.status = status;
        self.ready |= ready;
        let mut states = vec![NotifyState::Status(&self.status)];
        if ready {
            states.insert(0, NotifyState::Ready);
        }
        if let Some(sink) = &mut self.sink {
            sink(&states);
        }
    }

    /// From the state task's keepalive tick, with the state lock held.
    fn alive(&mut self, state: &State) {
        self.observe(state);
        if let Some(sink) = &mut self.sink {
            sink(&[NotifyState::Watchdog]);
        }
    }
}

/// `STOPPING=1`, when a shutdown begins.
pub fn stopping() {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        warn!(%err, "cannot notify systemd");
    }
}

/// One line for `systemctl status`: each AMI link and its queues.
fn status(state: &State) -> String {
    let mut line = String::new();
    for server in state.servers.values() {
        if !line.is_empty() {
            line.push_str("; ");
        }
        let _ = match (&server.link, server.link.reason.as_deref()) {
            (l, _) if l.synced => write!(line, "{}: {} queues", server.id, server.queues.len()),
            (l, _) if l.connected => write!(line, "{}: syncing", server.id),
            (_, Some(reason)) => write!(line, "{} down: {reason}", server.id),
            (_, None) => write!(line, "{}: connecting", server.id),
        };
    }
    if line.is_empty() {
        line.push_str("no AMI servers enabled");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn recording() -> (Notifier, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let sink: Sink = Box::new(move |states: &[NotifyState<'_>]| {
            let line = states.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            log.lock().unwrap().push(line.join("\n"));
        });
        (Notifier::to(sink, Some(Duration::from_secs(10))), seen)
    }

    #[test]
    fn ready_once_every_link_synced_and_status_on_change() {
        let (mut n, seen) = recording();
        let mut st = State::new(["pbx1", "pbx2"], Default::default());
        n.observe(&st);
        n.observe(&st);
        for id in ["pbx1", "pbx2"] {
            for synced in [false, true] {
                if let Some(server) = st.servers.get_mut(id) {
                    server.link.connected = true;
                    server.link.synced = synced;
                }
                n.observe(&st);
            }
        }
        n.alive(&st);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                "STATUS=pbx1 down: not connected yet; pbx2 down: not connected yet",
                "STATUS=pbx1: syncing; pbx2 down: not connected yet",
                "STATUS=pbx1: 0 queues; pbx2 down: not connected yet",
                "STATUS=pbx1: 0 queues; pbx2: syncing",
                "READY=1\nSTATUS=pbx1: 0 queues; pbx2: 0 queues",
                "WATCHDOG=1",
            ]
        );
        assert_eq!(n.keepalive_every(), Some(Duration::from_secs(5)));
    }

    #[test]
    fn silent_outside_systemd() {
        let mut n = Notifier::silent();
        n.alive(&State::new(["pbx1"], Default::default()));
        assert_eq!(n.keepalive_every(), None);
    }
}
