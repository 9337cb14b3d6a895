//! What the AMI side hands the state task: an event, a QueueStatus snapshot, or a link
//! change of one server. Defined here, below the state, so that the client that makes them
//! and the fold that reads them both import down.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::Message;

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
    /// The events of one read of the socket, in order.
    Events(Events),
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

impl What {
    /// How many events this is: those of a read, else one (a snapshot or link change counts
    /// as one).
    pub fn events(&self) -> usize {
        match self {
            What::Events(events) => events.len(),
            _ => 1,
        }
    }
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

/// Events a link read at once, handed on as one input. While it exists it counts against the
/// link's share of the state task's queue ([`Events::budget`]): dropping it (folded, or not
/// queued) gives the room back.
#[derive(Debug)]
pub struct Events {
    messages: Vec<Message>,
    queued: Arc<AtomicUsize>,
}

impl Events {
    /// A counter of the events a link has queued, to be shared by its batches.
    pub fn budget() -> Arc<AtomicUsize> {
        Arc::default()
    }

    /// `messages`, counted in `queued` — or given back when `limit` would be passed.
    pub fn counted(
        messages: Vec<Message>,
        queued: &Arc<AtomicUsize>,
        limit: usize,
    ) -> Result<Self, Vec<Message>> {
        let n = messages.len();
        if queued.fetch_add(n, Ordering::Relaxed) + n > limit {
            queued.fetch_sub(n, Ordering::Relaxed);
            return Err(messages);
        }
        Ok(Self {
            messages,
            queued: queued.clone(),
        })
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

impl Clone for Events {
    fn clone(&self) -> Self {
        self.queued
            .fetch_add(self.messages.len(), Ordering::Relaxed);
        Self {
            messages: self.messages.clone(),
            queued: self.queued.clone(),
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.queued
            .fetch_sub(self.messages.len(), Ordering::Relaxed);
    }
}
