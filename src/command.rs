//! The command layer: the one way every front end acts on agents.
//!
//! A [`Command`] becomes one AMI action (`QueueAdd`, `QueueRemove`, `QueuePause`,
//! `QueuePenalty`); [`Commands::pickup`] takes a chosen waiting caller to an agent (`Setvar` +
//! `Redirect`). Each has exactly one outcome:
//!
//! * **success** once the state shows what was asked — folded from the confirming event
//!   (QueueMemberAdded / Removed / Pause / Penalty) — or when it already did (commands are
//!   idempotent: logging in a member that is there, or pausing a paused one, succeeds without a
//!   second action);
//! * **failure** with a stable [`Code`] and a readable reason — Asterisk's own error text where
//!   it gave one ("Unable to remove interface: Not there" is an idempotent success, "Member not
//!   dynamic" is [`Code::NotDynamic`]);
//! * **timeout** when Asterisk did not answer, or answered but the confirming event did not
//!   arrive in time.
//!
//! Never a hang, and never a success while the AMI link is down: an action is only sent on a
//! connected link, and only the folded state — which only events from Asterisk change — can
//! turn it into a success. Authorization ([`crate::access`]) is checked here, so no front end
//! can forget it.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::access::{Access, Action, Principal, User};
use crate::ami::client::ActionError;
use crate::ami::Message;
use crate::hub::Hub;
use crate::servers::Servers;
use crate::state::{Member, State};

/// The dialplan context a picked caller is redirected to (asterisk-conf/extensions.conf): it
/// dials the channel variable [`PICKUP_VARIABLE`].
pub const PICKUP_CONTEXT: &str = "queuebridge-pickup";
/// The channel variable that names the interface a picked caller is delivered to.
pub const PICKUP_VARIABLE: &str = "QB_PICKUP_TARGET";

/// How long to wait for the confirming event after Asterisk accepted an action.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// Commands one user may have running at once, over every front end; beyond, [`Code::Busy`]
/// (nothing sent). So no user can fill a link's in-flight window and leave others "busy".
pub const MAX_COMMANDS_PER_USER: usize = 8;
/// The same for the native API's token (an integration acting for many agents).
pub const MAX_COMMANDS_PER_SERVICE: usize = 64;

/// Running commands per user (`None`: the service principal).
type RunningCount = Arc<std::sync::Mutex<std::collections::HashMap<Option<String>, usize>>>;

/// An agent command on one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `QueueAdd`: make `interface` a dynamic member of `queue`.
    Login {
        queue: String,
        interface: String,
        member_name: String,
        state_interface: String,
        /// `None`: the penalty the member usually has (the user's `penalty`, else 0). Only a
        /// supervisor may choose another one.
        penalty: Option<i64>,
        /// Log in paused, with this reason.
        paused: Option<String>,
    },
    /// `QueueRemove`.
    Logout { queue: String, interface: String },
    /// `QueuePause` in one queue, or (`queue: None`) in every queue of the member.
    Pause {
        queue: Option<String>,
        interface: String,
        paused: bool,
        /// Free text, or a configured code; empty for none. For an unpause it is only what the
        /// queue log records.
        reason: String,
    },
    /// `QueuePenalty` in one queue or every queue of the member.
    Penalty {
        queue: Option<String>,
        interface: String,
        penalty: i64,
    },
}

impl Command {
    /// `user` logs in to `queue` with their configured interface, name and device state;
    /// `penalty` and `paused` as in [`Command::Login`].
    pub fn login(
        user: &User,
        queue: impl Into<String>,
        penalty: Option<i64>,
        paused: Option<String>,
    ) -> Self {
        Command::Login {
            queue: queue.into(),
            interface: user.interface.clone(),
            member_name: user.display_name.clone(),
            state_interface: user.state_interface.clone(),
            penalty,
            paused,
        }
    }
}

/// How a command failed; stable, for front ends to map onto their dialect's errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// Malformed request: empty interface, negative penalty, NUL in a value.
    InvalidArgument,
    /// The principal may not do this.
    Forbidden,
    NoSuchServer,
    NoSuchQueue,
    /// The interface is not a member (of that queue, or of any).
    NotMember,
    /// No such caller waits in the queue (any more).
    NoSuchCaller,
    /// A static member cannot be logged in or out.
    NotDynamic,
    /// The AMI link is down: nothing was sent.
    NotConnected,
    /// Too many actions in flight on the link: nothing was sent.
    Busy,
    /// Sent, but no answer or no confirming event in time. The outcome is unknown.
    Timeout,
    /// Asterisk refused with a reason not listed above.
    Refused,
}

impl Code {
    /// The snake_case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "invalid_argument",
            Code::Forbidden => "forbidden",
            Code::NoSuchServer => "no_such_server",
            Code::NoSuchQueue => "no_such_queue",
            Code::NotMember => "not_member",
            Code::NoSuchCaller => "no_such_caller",
            Code::NotDynamic => "not_dynamic",
            Code::NotConnected => "not_connected",
            Code::Busy => "busy",
            Code::Timeout => "timeout",
            Code::Refused => "refused",
        }
    }
}

/// A failed command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub code: Code,
    pub message: String,
}

fn fail(code: Code, message: impl Into<String>) -> CommandError {
    CommandError {
        code,
        message: message.into(),
    }
}

/// A successful command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Done {
    /// Asterisk did it and the state shows it.
    Applied,
    /// It was already so; nothing was sent, or Asterisk said so.
    Unchanged,
}

/// Submits commands; cheap to clone.
#[derive(Clone)]
pub struct Commands {
    hub: Arc<Hub>,
    servers: Arc<Servers>,
    access: Arc<Access>,
    confirm: Duration,
    running: RunningCount,
}

/// One running command of a user, given back when dropped.
struct Running {
    running: RunningCount,
    who: Option<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = running.get_mut(&self.who) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.who);
            }
        }
    }
}

impl Commands {
    pub fn new(hub: Arc<Hub>, servers: Arc<Servers>, access: Arc<Access>) -> Self {
        Self {
            hub,
            servers,
            access,
            confirm: CONFIRM_TIMEOUT,
            running: Arc::default(),
        }
    }

    /// A place for one more command of `who`, or [`Code::Busy`].
    fn start(&self, who: &Principal) -> Result<Running, CommandError> {
        let (key, max) = match who {
            Principal::User(u) => (Some(u.name.clone()), MAX_COMMANDS_PER_USER),
            Principal::Service => (None, MAX_COMMANDS_PER_SERVICE),
        };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let n = running.entry(key.clone()).or_default();
        if *n >= max {
            return Err(fail(
                Code::Busy,
                format!("{max} commands of this user are still running; try again"),
            ));
        }
        *n += 1;
        Ok(Running {
            running: self.running.clone(),
            who: key,
        })
    }

    /// The users and pause reasons these commands are checked against.
    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    /// Runs one command for `who` on `server`.
    pub async fn execute(
        &self,
        who: &Principal,
        server: &str,
        command: Command,
    ) -> Result<Done, CommandError> {
        let _running = self.start(who)?;
        let handle = self
            .servers
            .handle(server)
            .ok_or_else(|| fail(Code::NoSuchServer, format!("no server {server:?}")))?;
        if let (
            Principal::User(u),
            Command::Login {
                penalty: Some(p), ..
            },
        ) = (who, &command)
        {
            if !u.supervisor && *p != u.penalty {
                return Err(fail(
                    Code::Forbidden,
                    format!(
                        "a penalty is a supervisor's decision: {} logs in with penalty {}",
                        u.name, u.penalty
                    ),
                ));
            }
        }
        agent_needed(who, command.target().1)?;
        let command = self.validate(server, command)?;
        let (queue, interface, action) = command.target();
        self.hub.read(|s| {
            if !s.servers.get(server).is_some_and(|srv| srv.link.connected) {
                return Err(fail(
                    Code::NotConnected,
                    format!("AMI link to {server} is down"),
                ));
            }
            who.may(s, server, queue, interface, action)
                .map_err(|m| fail(Code::Forbidden, m))
        })?;
        if self.hub.read(|s| command.satisfied(s, server)) == Some(true) {
            return Ok(Done::Unchanged);
        }
        // Subscribe before sending, so the confirming change cannot slip past.
        let changes = self.hub.subscribe();
        let reply = handle.send(command.action()).await.map_err(action_error)?;
        if !reply.is_success() {
            return command.refused(reply.message());
        }
        let what = format!("{}'s effect", command.name());
        self.confirmed(changes, &what, |s| {
            command.satisfied(s, server) != Some(false)
        })
        .await
    }

    /// Delivers the waiting caller `uniqueid` of `queue` to `interface`, out of turn: the
    /// caller's channel gets [`PICKUP_VARIABLE`] and is redirected to [`PICKUP_CONTEXT`], which
    /// dials it. Success once the caller left the queue.
    pub async fn pickup(
        &self,
        who: &Principal,
        server: &str,
        queue: &str,
        uniqueid: &str,
        interface: &str,
    ) -> Result<Done, CommandError> {
        let _running = self.start(who)?;
        let handle = self
            .servers
            .handle(server)
            .ok_or_else(|| fail(Code::NoSuchServer, format!("no server {server:?}")))?;
        agent_needed(who, interface)?;
        if interface.trim().is_empty() {
            return Err(fail(Code::InvalidArgument, "interface must not be empty"));
        }
        let waiting = |s: &State| {
            s.queue(server, queue)
                .and_then(|q| q.callers.iter().find(|c| c.uniqueid == uniqueid))
                .map(|c| c.channel.clone())
        };
        let channel = self.hub.read(|s| {
            if !s.servers.get(server).is_some_and(|srv| srv.link.connected) {
                return Err(fail(
                    Code::NotConnected,
                    format!("AMI link to {server} is down"),
                ));
            }
            if s.queue(server, queue).is_none() {
                return Err(fail(Code::NoSuchQueue, format!("no queue {queue:?}")));
            }
            who.may(s, server, Some(queue), interface, Action::Pickup)
                .map_err(|m| fail(Code::Forbidden, m))?;
            waiting(s).ok_or_else(|| {
                fail(
                    Code::NoSuchCaller,
                    format!("no caller {uniqueid:?} waits in queue {queue}"),
                )
            })
        })?;
        let changes = self.hub.subscribe();
        for action in [
            Message::action("Setvar")
                .with("Channel", &channel)
                .with("Variable", PICKUP_VARIABLE)
                .with("Value", interface),
            Message::action("Redirect")
                .with("Channel", &channel)
                .with("Context", PICKUP_CONTEXT)
                .with("Exten", "s")
                .with("Priority", "1"),
        ] {
            let name = action.get("Action").unwrap_or_default().to_owned();
            let reply = handle.send(action).await.map_err(action_error)?;
            if !reply.is_success() {
                // The caller hung up or was answered in between.
                let code = if self.hub.read(|s| waiting(s).is_none()) {
                    Code::NoSuchCaller
                } else {
                    Code::Refused
                };
                return Err(fail(code, format!("{name}: {}", reply.message().trim())));
            }
        }
        self.confirmed(changes, "the redirected caller's leave", |s| {
            waiting(s).is_none()
        })
        .await
    }

    /// Success once the state shows what was asked (`done`), a timeout after
    /// [`CONFIRM_TIMEOUT`] otherwise.
    async fn confirmed(
        &self,
        mut changes: tokio::sync::broadcast::Receiver<crate::hub::Batch>,
        what: &str,
        done: impl Fn(&State) -> bool,
    ) -> Result<Done, CommandError> {
        let deadline = Instant::now() + self.confirm;
        if self.hub.wait_for(&mut changes, deadline, done).await {
            Ok(Done::Applied)
        } else {
            Err(fail(
                Code::Timeout,
                format!(
                    "Asterisk accepted the action but did not confirm {what} within {} s",
                    self.confirm.as_secs()
                ),
            ))
        }
    }

    /// Checks arguments and makes the pause reason what Asterisk will store.
    fn validate(&self, server: &str, mut command: Command) -> Result<Command, CommandError> {
        let (queue, interface, _) = command.target();
        if interface.trim().is_empty() {
            return Err(fail(Code::InvalidArgument, "interface must not be empty"));
        }
        if queue.is_some_and(|q| q.trim().is_empty()) {
            return Err(fail(Code::InvalidArgument, "queue must not be empty"));
        }
        // Asterisk reads header values as C strings: a NUL would cut the value short there,
        // and the confirmation would wait for something Asterisk never stores.
        if command.action().headers().any(|(_, v)| v.contains('\0')) {
            return Err(fail(
                Code::InvalidArgument,
                "queue, interface, names and reasons must not contain NUL",
            ));
        }
        if let Command::Login {
            penalty: penalty @ None,
            interface,
            ..
        } = &mut command
        {
            let directory = self.access.directory();
            *penalty = Some(
                directory
                    .by_interface(server, interface)
                    .map_or(0, |u| u.penalty),
            );
        }
        match &mut command {
            Command::Login {
                penalty: Some(penalty),
                ..
            }
            | Command::Penalty { penalty, .. }
                if *penalty < 0 =>
            {
                return Err(fail(Code::InvalidArgument, "penalty must be 0 or more"));
            }
            Command::Login {
                paused: Some(reason),
                ..
            }
            | Command::Pause { reason, .. } => {
                // Free text, as Asterisk will store and report it back: the confirmation
                // compares this.
                *reason = self.access.directory().pause_reason(reason);
            }
            _ => {}
        }
        Ok(command)
    }
}

/// A command a front end built from the asking user's own (empty) interface: they are a
/// supervisor or admin who is not an agent, which deserves a clearer answer than "empty
/// interface".
fn agent_needed(who: &Principal, interface: &str) -> Result<(), CommandError> {
    match who {
        Principal::User(u) if interface.is_empty() => u
            .agent_interface()
            .map(drop)
            .map_err(|m| fail(Code::Forbidden, m)),
        _ => Ok(()),
    }
}

/// A failed submission: nothing was sent, or no answer came.
fn action_error(e: ActionError) -> CommandError {
    match e {
        ActionError::NotConnected { .. } => fail(Code::NotConnected, e.to_string()),
        ActionError::Busy => fail(Code::Busy, e.to_string()),
        ActionError::Timeout | ActionError::ConnectionLost => fail(Code::Timeout, e.to_string()),
    }
}

impl Command {
    /// (queue, interface, action) for authorization.
    fn target(&self) -> (Option<&str>, &str, Action) {
        match self {
            Command::Login {
                queue, interface, ..
            } => (Some(queue), interface, Action::Login),
            Command::Logout { queue, interface } => (Some(queue), interface, Action::Logout),
            Command::Pause {
                queue, interface, ..
            } => (queue.as_deref(), interface, Action::Pause),
            Command::Penalty {
                queue, interface, ..
            } => (queue.as_deref(), interface, Action::Penalty),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Command::Login { .. } => "QueueAdd",
            Command::Logout { .. } => "QueueRemove",
            Command::Pause { .. } => "QueuePause",
            Command::Penalty { .. } => "QueuePenalty",
        }
    }

    /// The AMI action.
    fn action(&self) -> Message {
        let action = Message::action(self.name());
        match self {
            Command::Login {
                queue,
                interface,
                member_name,
                state_interface,
                penalty,
                paused,
            } => {
                let mut a = action
                    .with("Queue", queue)
                    .with("Interface", interface)
                    .with("Penalty", &penalty.unwrap_or(0).to_string());
                if !member_name.is_empty() {
                    a = a.with("MemberName", member_name);
                }
                if !state_interface.is_empty() {
                    a = a.with("StateInterface", state_interface);
                }
                if let Some(reason) = paused {
                    a = a.with("Paused", "true").with("Reason", reason);
                }
                a
            }
            Command::Logout { queue, interface } => {
                action.with("Queue", queue).with("Interface", interface)
            }
            Command::Pause {
                queue,
                interface,
                paused,
                reason,
            } => {
                let mut a = action
                    .with("Interface", interface)
                    .with("Paused", if *paused { "true" } else { "false" });
                if let Some(q) = queue {
                    a = a.with("Queue", q);
                }
                if !reason.is_empty() {
                    a = a.with("Reason", reason);
                }
                a
            }
            Command::Penalty {
                queue,
                interface,
                penalty,
            } => {
                let mut a = action
                    .with("Interface", interface)
                    .with("Penalty", &penalty.to_string());
                if let Some(q) = queue {
                    a = a.with("Queue", q);
                }
                a
            }
        }
    }

    /// Whether the state already shows the command's effect: `None` when it cannot tell (the
    /// member is in no known queue, for a command on all its queues).
    fn satisfied(&self, state: &State, server: &str) -> Option<bool> {
        let member = |queue: &str, interface: &str| -> Option<Option<&Member>> {
            state.queue(server, queue).map(|q| q.members.get(interface))
        };
        let every = |queue: &Option<String>, interface: &str, ok: &dyn Fn(&Member) -> bool| {
            let mut seen = false;
            for q in state.queues().filter(|q| *q.server == *server) {
                if queue.as_deref().is_some_and(|name| *q.name != *name) {
                    continue;
                }
                if let Some(m) = q.members.get(interface) {
                    seen = true;
                    if !ok(m) {
                        return Some(false);
                    }
                }
            }
            seen.then_some(true)
        };
        match self {
            Command::Login {
                queue, interface, ..
            } => member(queue, interface).map(|m| m.is_some()),
            Command::Logout { queue, interface } => member(queue, interface).map(|m| m.is_none()),
            Command::Pause {
                queue,
                interface,
                paused,
                reason,
            } => every(queue, interface, &|m| {
                m.paused == *paused && (!*paused || m.paused_reason == *reason)
            }),
            Command::Penalty {
                queue,
                interface,
                penalty,
            } => every(queue, interface, &|m| m.penalty == *penalty),
        }
    }

    /// Maps Asterisk's error text (ami.md §3) onto an outcome.
    fn refused(&self, text: &str) -> Result<Done, CommandError> {
        let lower = text.to_ascii_lowercase();
        let code = if lower.contains("already there") || lower.contains("not there") {
            // The state was already what was asked: idempotent success.
            return Ok(Done::Unchanged);
        } else if lower.contains("no such queue") {
            Code::NoSuchQueue
        } else if lower.contains("not dynamic") {
            Code::NotDynamic
        } else if lower.contains("interface not found") || lower.contains("invalid interface") {
            Code::NotMember
        } else {
            Code::Refused
        };
        let text = if text.is_empty() {
            format!("Asterisk refused {}", self.name())
        } else {
            text.trim().to_owned()
        };
        Err(fail(code, text))
    }
}
