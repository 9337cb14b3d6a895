//! Changes published by the fold, each with its sequence number.
//!
//! A change carries the whole new record (member, caller, call), so a subscriber never needs to
//! read the state to render it. Callers' positions are implicit: after `caller_left` at position
//! p, every caller behind p moves up by one, exactly as in Asterisk.

use std::sync::Arc;

use serde::Serialize;

use super::{ConnectedCall, Link, Member, QueueStats, Text, Waiting};

/// One change of the state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// Strictly increasing, also across restarts (it starts from the clock).
    pub seq: u64,
    pub server: Arc<str>,
    #[serde(flatten)]
    pub kind: ChangeKind,
}

/// What changed.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChangeKind {
    /// The AMI link went up, down, or finished its resync.
    Link(Link),
    /// The server was removed or disabled at run time; its queues were removed just before.
    ServerRemoved,
    /// A queue appeared or its parameters and statistics changed.
    QueueUpdated {
        queue: Arc<str>,
        queue_id: u64,
        #[serde(flatten)]
        stats: QueueStats,
    },
    /// A queue is gone (removed from queues.conf, or app_queue unloaded).
    QueueRemoved { queue: Arc<str>, queue_id: u64 },
    /// A member was added or any of its fields changed.
    MemberUpdated { queue: Arc<str>, member: Member },
    /// A member left the queue.
    MemberRemoved { queue: Arc<str>, interface: Text },
    /// A caller joined at `caller.position`.
    CallerJoined { queue: Arc<str>, caller: Waiting },
    /// A waiting caller's details changed (priority or order, seen in QueueStatus).
    CallerUpdated { queue: Arc<str>, caller: Waiting },
    /// A caller left the waiting list (answered, abandoned, timed out or withdrawn).
    CallerLeft {
        queue: Arc<str>,
        uniqueid: Text,
        position: i64,
        /// QueueCallerAbandon preceded the leave: hung up, timed out or withdrawn.
        abandoned: bool,
    },
    /// A member is being rung for a caller (AgentCalled).
    AgentCalled {
        queue: Arc<str>,
        interface: Text,
        uniqueid: Text,
    },
    /// A member did not answer (AgentRingNoAnswer); `ring_time_ms` as Asterisk reports it.
    AgentRingNoAnswer {
        queue: Arc<str>,
        interface: Text,
        uniqueid: Text,
        ring_time_ms: i64,
    },
    /// A member answered a caller (AgentConnect).
    CallConnected {
        queue: Arc<str>,
        call: ConnectedCall,
    },
    /// The connected call ended (AgentComplete), or the agent dropped before the bridge
    /// (AgentDump, reason `dump`).
    CallCompleted {
        queue: Arc<str>,
        uniqueid: Text,
        interface: Text,
        hold_time: i64,
        talk_time: i64,
        /// `caller`, `agent`, `transfer` or `dump`.
        reason: Text,
    },
    /// A channel that ran `Queue()` hung up, with the `QUEUESTATUS` it left the queue with
    /// (`TIMEOUT`, `LEAVEEMPTY`, `LEAVEUNAVAIL`, `WITHDRAW`, …): how an unanswered caller left.
    CallerHungUp { uniqueid: Text, queue_status: Text },
}
