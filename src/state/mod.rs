//! The queue model and the pure fold of AMI input into it.
//!
//! [`apply`] takes one [`Input`] — an event, a QueueStatus snapshot, or a link change of one
//! server — and returns the [`Change`]s it made, each with the next sequence number. It does no
//! I/O and reads no clock: the time of arrival travels in the input. That makes the fold
//! testable with plain values and lets `replay` fold a capture exactly as the daemon would.
//!
//! Races between a snapshot and events queued before it (ami.md §1.14) are made harmless by
//! folding every event as an assertion about absolute state: member events replace the member
//! (call counters only ever grow from events, snapshots may reset them), callers are keyed by
//! `Uniqueid` and placed at the absolute `Position`. Re-applying an event the snapshot already
//! contains changes nothing.

mod change;
mod fold;
pub mod ids;
pub mod lineup;
mod model;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use change::{Change, ChangeKind};
pub use fold::apply;
pub use ids::QueueIds;
pub use lineup::{Keyed, Lineup};
pub use model::{
    status_name, Caller, ConnectedCall, Link, Member, Members, Queue, QueueStats, Ringing, Rung,
    Server, ServerView, Snapshot, State, Waiting, WaitingRef,
};

use crate::ami::Message;

/// One thing that happened on one server's AMI link.
#[derive(Clone, Debug)]
pub struct Input {
    /// The `id` of the `[[ami]]` server.
    pub server: Arc<str>,
    /// When it arrived, in milliseconds since the epoch.
    pub at_ms: u64,
    pub what: What,
}

/// The kinds of input.
#[derive(Clone, Debug)]
pub enum What {
    /// An asynchronous AMI event.
    Event(Message),
    /// The items of one QueueStatus reply, applied as a whole.
    Snapshot(QueueStatus),
    /// The link came up (logged in) or went down.
    Link(LinkChange),
}

/// A link transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkChange {
    /// Logged in; a full resync follows.
    Up,
    /// Disconnected, with the reason.
    Down(String),
    /// The server was removed or disabled at run time: its queues and its entry go.
    Removed,
}

/// What a QueueStatus request covered, so the fold knows what the absence of an item means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// No filter: every queue of the server. Queues not listed are gone.
    All,
    /// `Queue: q`: the queue with all its members and callers. Not listed = gone.
    Queue(String),
    /// `Queue: q` with a member filter matching nobody: parameters and callers only.
    Callers(String),
    /// Unknown request (a capture of another client): upsert what is listed, remove nothing.
    Merge,
}

/// A complete QueueStatus reply.
#[derive(Clone, Debug)]
pub struct QueueStatus {
    pub scope: Scope,
    /// QueueParams, QueueMember and QueueEntry items, in wire order.
    pub items: Vec<Message>,
}
