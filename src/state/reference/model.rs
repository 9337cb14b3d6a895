//! The model as the scanning fold kept it: callers, ringing and connected calls in vectors.
//! The records that did not change shape are the crate's own.
//!
//! Field names follow the native JSON API (snake_case); each field says which AMI field it
//! mirrors so a reader can check it against QueueStatus.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use super::ids::QueueIds;
use super::{ConnectedCall, Link, Member, QueueStats};

/// Everything queuebridge knows, for every configured Asterisk server.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// Sequence number of the last change applied.
    pub seq: u64,
    pub servers: BTreeMap<Arc<str>, Server>,
    /// Stable numeric queue ids (configured or assigned once, persisted by the caller).
    pub ids: QueueIds,
}

/// One Asterisk server and its queues.
#[derive(Clone, Debug)]
pub struct Server {
    pub id: Arc<str>,
    pub link: Link,
    pub queues: BTreeMap<String, Queue>,
}

/// One queue.
#[derive(Clone, Debug, Serialize)]
pub struct Queue {
    pub server: Arc<str>,
    pub name: Arc<str>,
    /// Stable numeric id, the same across restarts.
    pub id: u64,
    #[serde(flatten)]
    pub stats: QueueStats,
    #[serde(serialize_with = "values")]
    pub members: BTreeMap<String, Member>,
    /// Waiting callers in queue order; `callers[i].position == i + 1`.
    pub callers: Vec<Caller>,
    /// Calls answered by a member and not yet completed (AgentConnect → AgentComplete).
    pub connected_calls: Vec<ConnectedCall>,
    /// Members being rung for a waiting caller (AgentCalled until answer, no answer or leave).
    pub ringing: Vec<Ringing>,
}

/// A member being rung for a waiting caller.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ringing {
    /// The caller's `Uniqueid`.
    pub uniqueid: String,
    /// The member's `Interface`.
    pub interface: String,
    /// Epoch seconds of the AgentCalled.
    pub since: i64,
}

fn values<S: Serializer>(map: &BTreeMap<String, Member>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(map.values())
}

/// A caller waiting in a queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// 1-based, kept right as callers ahead leave.
    pub position: i64,
    pub channel: String,
    pub uniqueid: String,
    /// From QueueCallerJoin; empty if the caller was first seen in a QueueStatus snapshot.
    pub linkedid: String,
    /// Empty when Asterisk reports it unknown (`<unknown>` in events, `unknown` in QueueStatus).
    pub caller_id_num: String,
    pub caller_id_name: String,
    pub connected_line_num: String,
    pub connected_line_name: String,
    /// Epoch seconds when the caller joined.
    pub entered: i64,
    /// `QUEUE_PRIO`, from QueueStatus.
    pub priority: i64,
    /// The extension the caller dialled into the queue (`Exten` of QueueCallerJoin).
    pub dialled: String,
    /// The caller withheld their number (`CALLERID(pres)` is `prohib…`; needs
    /// `channelvars = CALLERID(pres)` in manager.conf, false without it).
    pub privacy: bool,
    /// Set by QueueCallerAbandon, which precedes the caller's QueueCallerLeave.
    #[serde(skip)]
    pub abandoned: bool,
}

/// Serialisable view of the whole state: what `GET /api/v1/queues` and SSE snapshots carry.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub seq: u64,
    pub servers: Vec<ServerView>,
    pub queues: Vec<Queue>,
}

/// One server's link in a [`Snapshot`].
#[derive(Clone, Debug, Serialize)]
pub struct ServerView {
    pub id: Arc<str>,
    #[serde(flatten)]
    pub link: Link,
}

impl State {
    /// A state with the given servers, all links down, and these queue ids.
    pub fn new<'a>(servers: impl IntoIterator<Item = &'a str>, ids: QueueIds) -> Self {
        let mut state = State {
            ids,
            ..State::default()
        };
        for id in servers {
            state.server_mut(id);
        }
        state
    }

    /// The server's entry, created when first seen.
    pub fn server_mut(&mut self, id: &str) -> &mut Server {
        if !self.servers.contains_key(id) {
            let id: Arc<str> = Arc::from(id);
            self.servers.insert(
                id.clone(),
                Server {
                    id,
                    link: Link {
                        reason: Some("not connected yet".into()),
                        ..Link::default()
                    },
                    queues: BTreeMap::new(),
                },
            );
        }
        // Inserted just above when absent.
        self.servers
            .get_mut(id)
            .unwrap_or_else(|| unreachable!("server {id} was just inserted"))
    }

    /// A queue by server and name.
    pub fn queue(&self, server: &str, name: &str) -> Option<&Queue> {
        self.servers.get(server)?.queues.get(name)
    }

    /// Every queue of every server, in (server, name) order.
    pub fn queues(&self) -> impl Iterator<Item = &Queue> {
        self.servers.values().flat_map(|s| s.queues.values())
    }

    /// A copy of everything, for API readers.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            seq: self.seq,
            servers: self
                .servers
                .values()
                .map(|s| ServerView {
                    id: s.id.clone(),
                    link: s.link.clone(),
                })
                .collect(),
            queues: self.queues().cloned().collect(),
        }
    }

    /// True when every server is connected and synced.
    pub fn all_synced(&self) -> bool {
        self.servers.values().all(|s| s.link.synced)
    }
}
