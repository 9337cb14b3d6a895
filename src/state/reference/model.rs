//! The live model: servers, their queues, members, waiting callers and connected calls.
//!
//! Field names follow the native JSON API (snake_case); each field says which AMI field it
//! mirrors so a reader can check it against QueueStatus.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use super::ids::QueueIds;

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

/// The AMI link of one server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Link {
    /// Logged in over AMI right now.
    pub connected: bool,
    /// A full QueueStatus has been folded since the last (re)connect.
    pub synced: bool,
    /// Why the link is down, when it is.
    pub reason: Option<String>,
}

/// Queue parameters and statistics: exactly the QueueParams list item (ami.md §2.4).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QueueStats {
    /// `Strategy`
    pub strategy: String,
    /// `Max` (maxlen; 0 = unlimited)
    pub max: i64,
    /// `Calls` — callers waiting now
    pub calls: i64,
    /// `Holdtime` — average seconds waited
    pub hold_time: i64,
    /// `TalkTime` — average seconds talked
    pub talk_time: i64,
    /// `Completed`
    pub completed: i64,
    /// `Abandoned`
    pub abandoned: i64,
    /// `ServiceLevel` — seconds
    pub service_level: i64,
    /// `ServicelevelPerf` — percent answered within the service level
    pub service_level_perf: f64,
    /// `ServicelevelPerf2` — the same, counting abandoned calls
    pub service_level_perf2: f64,
    /// `Weight`
    pub weight: i64,
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

/// A queue member (ami.md §2.1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Member {
    /// `Interface` (`Location` in QueueStatus) — the member's key
    pub interface: String,
    /// `MemberName` (`Name` in QueueStatus)
    pub name: String,
    /// `StateInterface`
    pub state_interface: String,
    /// `Membership`: static, dynamic or realtime
    pub membership: String,
    pub penalty: i64,
    pub calls_taken: i64,
    /// Epoch seconds, 0 = never
    pub last_call: i64,
    /// Epoch seconds, 0 = never
    pub last_pause: i64,
    /// Epoch seconds
    pub login_time: i64,
    pub in_call: bool,
    /// Device state number, `Status` 0–8
    pub status: i64,
    /// Device state name (`ast_devstate2str`)
    pub status_name: &'static str,
    pub paused: bool,
    pub paused_reason: String,
    /// Seconds; 0 = the queue's value
    pub wrapup_time: i64,
    /// `Ringinuse`; unknown (null) until an event carried it: QueueStatus does not list it.
    pub ring_in_use: Option<bool>,
}

/// The device state name of a `Status` value (ami.md §2.1 table).
pub fn status_name(status: i64) -> &'static str {
    match status {
        0 => "Unknown",
        1 => "Not in use",
        2 => "In use",
        3 => "Busy",
        4 => "Invalid",
        5 => "Unavailable",
        6 => "Ringing",
        7 => "Ring+Inuse",
        8 => "On Hold",
        _ => "Unknown",
    }
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

/// A caller connected to a member, from AgentConnect until AgentComplete.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConnectedCall {
    /// The caller's `Uniqueid`.
    pub uniqueid: String,
    pub channel: String,
    pub caller_id_num: String,
    pub caller_id_name: String,
    /// The member's `Interface`.
    pub interface: String,
    pub member_name: String,
    /// The agent leg (`DestChannel`).
    pub agent_channel: String,
    /// Seconds the caller waited.
    pub hold_time: i64,
    /// Seconds the member rang before answering.
    pub ring_time: i64,
    /// Epoch seconds of the AgentConnect.
    pub connected_at: i64,
    /// Carried over from the waiting caller (see [`Caller`]).
    pub dialled: String,
    pub privacy: bool,
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
