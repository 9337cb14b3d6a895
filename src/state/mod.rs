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

pub use change::{Change, ChangeKind};
pub use fold::{apply, apply_into, Changes};
pub use ids::QueueIds;
pub use lineup::{Keyed, Lineup};
pub use model::{
    Caller, ConnectedCall, DeviceState, Link, Member, Members, Membership, Queue, QueueStats,
    Ringing, Rung, Server, ServerView, Snapshot, State, Text, Waiting, WaitingRef,
};

pub use crate::ami::input::{Events, Input, LinkChange, QueueStatus, Scope, What};
