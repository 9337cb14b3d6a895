//! Timed agent actions: Yeastar's `max_threshold_for_pause_time` (unpause a paused agent after
//! so many seconds) and `max_threshold_for_logout_time` (log a logged-out dynamic agent back in).
//!
//! Deadlines are kept in `state_dir/deadlines.json`, rewritten on every change, so a restart of
//! queuebridge keeps them: one that fell due while queuebridge was down fires as soon as the
//! AMI link is back. A deadline is dropped once it is moot, whoever made it so — an unpause
//! deadline when the member is unpaused or removed, a relogin deadline when the member is back —
//! as seen in the state's change stream, so a change made from the Asterisk CLI counts too.
//! Firing goes through the command layer as the service principal, like any front end.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::access::Principal;
use crate::clock::now_ms;
use crate::command::{Code, Command, Commands};
use crate::hub::Hub;
use crate::state::{Change, ChangeKind};

/// File name under `state_dir`.
pub const FILE: &str = "deadlines.json";
/// Shortest threshold Yeastar accepts (0 = none).
pub const MIN_SECONDS: u64 = 10;
/// Retry delay when the link is down or Asterisk did not confirm.
const RETRY: Duration = Duration::from_secs(5);

/// What happens when a deadline falls due.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Due {
    Unpause,
    Relogin {
        member_name: String,
        state_interface: String,
        penalty: i64,
    },
}

impl Due {
    fn same_kind(&self, other: &Due) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// One pending timed action on a member entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    pub server: String,
    pub queue: String,
    pub interface: String,
    #[serde(flatten)]
    pub due: Due,
    /// The threshold as requested, seconds (what `agent_status` reports).
    pub seconds: u64,
    /// Epoch milliseconds.
    pub at_ms: u64,
    /// The state's sequence number when set: only later changes can make it moot.
    pub after_seq: u64,
}

/// Which threshold is asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Pause,
    Logout,
}

/// The pending deadlines, shared by the HTTP front ends and the firing task.
pub struct Deadlines {
    pending: Mutex<Vec<Deadline>>,
    path: Option<PathBuf>,
    wake: Notify,
}

impl Deadlines {
    /// Loads the deadlines kept under `state_dir` (none when absent); `None` keeps them in
    /// memory only.
    pub fn load(state_dir: Option<&Path>) -> anyhow::Result<Arc<Self>> {
        let path = state_dir.map(|d| d.join(FILE));
        let pending = match &path {
            Some(p) if p.exists() => {
                let text = std::fs::read_to_string(p)?;
                serde_json::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{} is not a deadline file: {e}", p.display()))?
            }
            _ => Vec::new(),
        };
        Ok(Arc::new(Self {
            pending: Mutex::new(pending),
            path,
            wake: Notify::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Deadline>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the file; called with the lock held so writes keep their order.
    fn save(&self, pending: &[Deadline]) {
        let Some(path) = &self.path else { return };
        let result = serde_json::to_vec_pretty(pending)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::persist::write_atomic(path, &bytes, false));
        if let Err(err) = result {
            warn!(%err, path = %path.display(), "cannot persist deadlines");
        }
    }

    /// Sets a deadline `seconds` from now, replacing one of the same kind on the same entry.
    pub fn set(
        &self,
        server: &str,
        queue: &str,
        interface: &str,
        due: Due,
        seconds: u64,
        seq: u64,
    ) {
        let deadline = Deadline {
            server: server.into(),
            queue: queue.into(),
            interface: interface.into(),
            seconds,
            at_ms: now_ms() + seconds * 1000,
            after_seq: seq,
            due,
        };
        let mut pending = self.lock();
        pending.retain(|d| !d.on(server, queue, interface) || !d.due.same_kind(&deadline.due));
        pending.push(deadline);
        self.save(&pending);
        drop(pending);
        self.wake.notify_one();
    }

    /// Drops the entry's deadline of that kind (an explicit command supersedes it).
    pub fn cancel(&self, server: &str, queue: &str, interface: &str, which: Which) {
        let mut pending = self.lock();
        let before = pending.len();
        pending.retain(|d| !(d.on(server, queue, interface) && d.is(which)));
        if pending.len() != before {
            self.save(&pending);
        }
    }

    /// The pending threshold of that kind on the entry, seconds; 0 when none.
    pub fn threshold(&self, server: &str, queue: &str, interface: &str, which: Which) -> u64 {
        self.lock()
            .iter()
            .find(|d| d.on(server, queue, interface) && d.is(which))
            .map_or(0, |d| d.seconds)
    }

    /// Every pending deadline (for tests and diagnostics).
    pub fn pending(&self) -> Vec<Deadline> {
        self.lock().clone()
    }

    /// Drops deadlines a change makes moot.
    fn observe(&self, change: &Change) {
        let (queue, interface, back, unpaused) = match &change.kind {
            ChangeKind::MemberUpdated { queue, member } => {
                (queue, member.interface.as_str(), true, !member.paused)
            }
            ChangeKind::MemberRemoved { queue, interface } => {
                (queue, interface.as_str(), false, true)
            }
            _ => return,
        };
        let mut pending = self.lock();
        let before = pending.len();
        pending.retain(|d| {
            let moot = change.seq > d.after_seq
                && d.on(&change.server, queue, interface)
                && match d.due {
                    Due::Unpause => unpaused,
                    Due::Relogin { .. } => back,
                };
            !moot
        });
        if pending.len() != before {
            self.save(&pending);
        }
    }

    fn remove(&self, done: &Deadline) {
        let mut pending = self.lock();
        pending.retain(|d| d != done);
        self.save(&pending);
    }

    fn postpone(&self, late: &Deadline) {
        let mut pending = self.lock();
        if let Some(d) = pending.iter_mut().find(|d| *d == late) {
            d.at_ms = now_ms() + RETRY.as_millis() as u64;
        }
    }

    /// The earliest deadline, if any.
    fn next(&self) -> Option<Deadline> {
        self.lock().iter().min_by_key(|d| d.at_ms).cloned()
    }
}

impl Deadline {
    /// Whether this deadline is about that member entry.
    fn on(&self, server: &str, queue: &str, interface: &str) -> bool {
        self.server == server && self.queue == queue && self.interface == interface
    }

    fn is(&self, which: Which) -> bool {
        matches!(
            (&self.due, which),
            (Due::Unpause, Which::Pause) | (Due::Relogin { .. }, Which::Logout)
        )
    }

    fn command(&self) -> Command {
        match &self.due {
            Due::Unpause => Command::Pause {
                queue: Some(self.queue.clone()),
                interface: self.interface.clone(),
                paused: false,
                reason: String::new(),
            },
            Due::Relogin {
                member_name,
                state_interface,
                penalty,
            } => Command::Login {
                queue: self.queue.clone(),
                interface: self.interface.clone(),
                member_name: member_name.clone(),
                state_interface: state_interface.clone(),
                penalty: Some(*penalty),
                paused: None,
            },
        }
    }
}

/// Fires deadlines as they fall due, until `shutdown`.
pub async fn run(
    deadlines: Arc<Deadlines>,
    commands: Commands,
    hub: Arc<Hub>,
    shutdown: CancellationToken,
) {
    let mut changes = hub.subscribe();
    loop {
        let sleep = match deadlines.next() {
            Some(d) => Duration::from_millis(d.at_ms.saturating_sub(now_ms())),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = deadlines.wake.notified() => continue,
            change = changes.recv() => match change {
                Ok(batch) => batch.iter().for_each(|c| deadlines.observe(c)),
                // Missed changes: firing re-checks through the idempotent command layer.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            () = tokio::time::sleep(sleep) => {
                let Some(d) = deadlines.next().filter(|d| d.at_ms <= now_ms()) else { continue };
                fire(&deadlines, &commands, d).await;
            }
        }
    }
}

async fn fire(deadlines: &Deadlines, commands: &Commands, d: Deadline) {
    match commands
        .execute(&Principal::Service, &d.server, d.command())
        .await
    {
        Ok(done) => {
            info!(server = %d.server, queue = %d.queue, interface = %d.interface, action = ?d.due, ?done, "deadline fired");
            deadlines.remove(&d);
        }
        Err(e) if matches!(e.code, Code::NotConnected | Code::Busy | Code::Timeout) => {
            deadlines.postpone(&d);
        }
        Err(e) => {
            warn!(server = %d.server, queue = %d.queue, interface = %d.interface, error = %e, "deadline dropped");
            deadlines.remove(&d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_survive_a_reload_and_replace_their_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = Deadlines::load(Some(dir.path())).expect("load");
        d.set("pbx1", "sales", "Local/a", Due::Unpause, 30, 7);
        d.set("pbx1", "sales", "Local/a", Due::Unpause, 60, 8);
        let relogin = Due::Relogin {
            member_name: "A".into(),
            state_interface: "Custom:a".into(),
            penalty: 2,
        };
        d.set("pbx1", "sales", "Local/a", relogin, 20, 8);
        let again = Deadlines::load(Some(dir.path())).expect("reload");
        assert_eq!(again.pending(), d.pending());
        assert_eq!(
            again.threshold("pbx1", "sales", "Local/a", Which::Pause),
            60
        );
        assert_eq!(
            again.threshold("pbx1", "sales", "Local/a", Which::Logout),
            20
        );
        again.cancel("pbx1", "sales", "Local/a", Which::Pause);
        assert_eq!(again.threshold("pbx1", "sales", "Local/a", Which::Pause), 0);
    }

    #[test]
    fn only_later_changes_make_a_deadline_moot() {
        let d = Deadlines::load(None).expect("load");
        d.set("pbx1", "sales", "Local/a", Due::Unpause, 30, 10);
        let unpaused = |seq| Change {
            seq,
            server: "pbx1".into(),
            kind: ChangeKind::MemberUpdated {
                queue: "sales".into(),
                member: crate::state::Member {
                    interface: "Local/a".into(),
                    ..Default::default()
                },
            },
        };
        d.observe(&unpaused(9));
        assert_eq!(d.pending().len(), 1, "a change from before the pause");
        d.observe(&unpaused(11));
        assert!(d.pending().is_empty());
    }
}
