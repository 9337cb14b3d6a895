//! The live model: servers, their queues, members, waiting callers and connected calls.
//!
//! Field names follow the native JSON API (snake_case); each field says which AMI field it
//! mirrors so a reader can check it against QueueStatus.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use super::ids::QueueIds;
use super::lineup::{Keyed, Lineup};
pub use compact_str::CompactString as Text;

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
    pub queues: BTreeMap<Text, Queue>,
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
    pub strategy: Text,
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
#[derive(Clone, Debug)]
pub struct Queue {
    pub server: Arc<str>,
    pub name: Arc<str>,
    /// Stable numeric id, the same across restarts.
    pub id: u64,
    pub stats: QueueStats,
    /// Members by `Interface`.
    pub members: Members,
    /// Waiting callers in queue order, by `Uniqueid`; a caller's position is its place here.
    pub callers: Lineup<Caller>,
    /// Calls answered by a member and not yet completed (AgentConnect → AgentComplete), in the
    /// order they were connected, by the caller's `Uniqueid`.
    pub connected_calls: Lineup<ConnectedCall>,
}

/// A member being rung for a waiting caller, as published: each caller holds its own
/// ([`Caller::ringing`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ringing<'a> {
    /// The caller's `Uniqueid`.
    pub uniqueid: &'a str,
    /// The member's `Interface`.
    pub interface: &'a str,
    /// Epoch seconds of the AgentCalled.
    pub since: i64,
}

/// A member being rung for the caller that holds it (AgentCalled until answer, no answer or
/// leave).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rung {
    /// The member's `Interface`.
    pub interface: Text,
    /// Epoch seconds of the AgentCalled.
    pub since: i64,
}

impl Keyed for Rung {
    fn key(&self) -> &str {
        &self.interface
    }
}

impl Queue {
    /// An empty queue.
    pub fn new(server: Arc<str>, name: Arc<str>, id: u64) -> Self {
        Queue {
            server,
            name,
            id,
            stats: QueueStats::default(),
            members: Members::default(),
            callers: Lineup::default(),
            connected_calls: Lineup::default(),
        }
    }

    /// Members being rung now, caller by caller in queue order.
    pub fn ringing(&self) -> impl Iterator<Item = Ringing<'_>> + '_ {
        self.callers.iter().flat_map(|c| {
            c.ringing.iter().map(move |r| Ringing {
                uniqueid: &c.uniqueid,
                interface: &r.interface,
                since: r.since,
            })
        })
    }

    /// The waiting callers as published: each with its position.
    pub fn waiting(&self) -> impl Iterator<Item = WaitingRef<'_>> + '_ {
        self.callers.ranked().map(|(i, caller)| WaitingRef {
            position: i as i64,
            caller,
        })
    }
}

/// The JSON form of a queue (`GET /api/v1/queues`, SSE snapshots).
impl Serialize for Queue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            server: &'a str,
            name: &'a str,
            id: u64,
            #[serde(flatten)]
            stats: &'a QueueStats,
            members: &'a Members,
            callers: Vec<WaitingRef<'a>>,
            connected_calls: Vec<&'a ConnectedCall>,
            ringing: Vec<Ringing<'a>>,
        }
        View {
            server: &self.server,
            name: &self.name,
            id: self.id,
            stats: &self.stats,
            members: &self.members,
            callers: self.waiting().collect(),
            connected_calls: self.connected_calls.iter().collect(),
            ringing: self.ringing().collect(),
        }
        .serialize(s)
    }
}

/// The members of a queue, by `Interface`, in its order: a vector kept sorted, which holds
/// exactly its members (a map's nodes would hold room for eleven, about 2.5 KiB, in every
/// queue) and finds one by binary search — in a queue of more than [`INDEXED_FROM`] members by
/// a hash of the interface instead, since every member event looks its member up and a search
/// among hundreds of agents' interfaces, alike up to their last characters, was 5 % of the
/// daemon's time. Adding or removing a member shifts those after it (and their places in the
/// index); member changes are rare next to the events that look members up.
#[derive(Clone, Debug, Default)]
pub struct Members {
    sorted: Vec<Member>,
    /// The place of each member in `sorted`, while there are more than [`INDEXED_FROM`].
    index: Option<foldhash::HashMap<Text, u32>>,
}

/// Up to this many members a queue finds one by binary search.
pub const INDEXED_FROM: usize = 16;

impl PartialEq for Members {
    fn eq(&self, other: &Self) -> bool {
        self.sorted == other.sorted
    }
}

impl Eq for Members {}

impl Members {
    fn position(&self, interface: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(interface).map(|&i| i as usize),
            None => self.search(interface).ok(),
        }
    }

    fn search(&self, interface: &str) -> Result<usize, usize> {
        self.sorted
            .binary_search_by(|m| m.interface.as_str().cmp(interface))
    }

    /// The index made again from `sorted` (or dropped, for a small queue).
    fn reindex(&mut self) {
        self.index = (self.sorted.len() > INDEXED_FROM).then(|| {
            self.sorted
                .iter()
                .enumerate()
                .map(|(i, m)| (m.interface.clone(), i as u32))
                .collect()
        });
    }

    pub fn get(&self, interface: &str) -> Option<&Member> {
        self.position(interface).map(|i| &self.sorted[i])
    }

    pub fn get_mut(&mut self, interface: &str) -> Option<&mut Member> {
        self.position(interface).map(|i| &mut self.sorted[i])
    }

    pub fn contains_key(&self, interface: &str) -> bool {
        self.position(interface).is_some()
    }

    /// Adds a member, or replaces the one with the same interface (returned).
    pub fn insert(&mut self, member: Member) -> Option<Member> {
        match self.search(&member.interface) {
            Ok(i) => Some(std::mem::replace(&mut self.sorted[i], member)),
            Err(i) => {
                let interface = member.interface.clone();
                self.sorted.insert(i, member);
                match &mut self.index {
                    Some(index) => {
                        for at in index.values_mut() {
                            *at += u32::from(*at as usize >= i);
                        }
                        index.insert(interface, i as u32);
                    }
                    None if self.sorted.len() > INDEXED_FROM => self.reindex(),
                    None => {}
                }
                None
            }
        }
    }

    pub fn remove(&mut self, interface: &str) -> Option<Member> {
        let i = self.position(interface)?;
        let member = self.sorted.remove(i);
        if self.sorted.len() <= INDEXED_FROM {
            self.index = None;
        } else if let Some(index) = &mut self.index {
            index.remove(interface);
            for at in index.values_mut() {
                *at -= u32::from(*at as usize > i);
            }
        }
        Some(member)
    }

    /// Members in interface order.
    pub fn values(&self) -> std::slice::Iter<'_, Member> {
        self.sorted.iter()
    }

    /// Interfaces in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.sorted.iter().map(|m| m.interface.as_str())
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    pub fn retain(&mut self, keep: impl FnMut(&Member) -> bool) {
        let before = self.sorted.len();
        self.sorted.retain(keep);
        if self.sorted.len() != before {
            self.reindex();
        }
    }
}

/// Members from any order; a later one with the same interface wins.
impl FromIterator<Member> for Members {
    fn from_iter<I: IntoIterator<Item = Member>>(members: I) -> Self {
        let mut out = Members::default();
        for m in members {
            out.insert(m);
        }
        out
    }
}

impl Serialize for Members {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.sorted.serialize(s)
    }
}

/// A queue member (ami.md §2.1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Member {
    /// `Interface` (`Location` in QueueStatus) — the member's key
    pub interface: Text,
    /// `MemberName` (`Name` in QueueStatus)
    pub name: Text,
    /// `StateInterface`
    pub state_interface: Text,
    /// `Membership`
    pub membership: Membership,
    pub penalty: i64,
    pub calls_taken: i64,
    /// Epoch seconds, 0 = never
    pub last_call: i64,
    /// Epoch seconds, 0 = never
    pub last_pause: i64,
    /// Epoch seconds
    pub login_time: i64,
    pub in_call: bool,
    /// `Status`: serialized as `status` (0–8) and `status_name` (`ast_devstate2str`)
    #[serde(flatten)]
    pub status: DeviceState,
    pub paused: bool,
    pub paused_reason: Text,
    /// Seconds; 0 = the queue's value
    pub wrapup_time: i64,
    /// `Ringinuse`; unknown (null) until an event carried it: QueueStatus does not list it.
    pub ring_in_use: Option<bool>,
}

/// How a member came into the queue (`Membership`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    /// In `queues.conf`: neither a login nor a logout moves it.
    Static,
    /// Logged in with `QueueAdd` (or an unknown word: Asterisk knows only these three).
    #[default]
    Dynamic,
    /// From a realtime table.
    Realtime,
}

impl Membership {
    /// From AMI's `Membership` header.
    pub fn from_ami(word: &str) -> Self {
        match word {
            "static" => Self::Static,
            "realtime" => Self::Realtime,
            _ => Self::Dynamic,
        }
    }

    /// In `queues.conf`.
    pub fn is_static(self) -> bool {
        self == Self::Static
    }
}

/// A device state (`Status` 0–8, ami.md §2.1); a value outside that range is `Unknown`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceState {
    #[default]
    Unknown,
    NotInUse,
    InUse,
    Busy,
    Invalid,
    Unavailable,
    Ringing,
    RingInUse,
    OnHold,
}

impl DeviceState {
    const ALL: [DeviceState; 9] = [
        Self::Unknown,
        Self::NotInUse,
        Self::InUse,
        Self::Busy,
        Self::Invalid,
        Self::Unavailable,
        Self::Ringing,
        Self::RingInUse,
        Self::OnHold,
    ];

    /// From AMI's `Status` number.
    pub fn from_code(code: i64) -> Self {
        usize::try_from(code)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
            .unwrap_or_default()
    }

    /// AMI's `Status` number.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// Asterisk's name (`ast_devstate2str`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "Unknown",
            Self::NotInUse => "Not in use",
            Self::InUse => "In use",
            Self::Busy => "Busy",
            Self::Invalid => "Invalid",
            Self::Unavailable => "Unavailable",
            Self::Ringing => "Ringing",
            Self::RingInUse => "Ring+Inuse",
            Self::OnHold => "On Hold",
        }
    }

    /// The device is in a call: in use, busy, rung while in use, or on hold.
    pub fn in_call(self) -> bool {
        matches!(
            self,
            Self::InUse | Self::Busy | Self::RingInUse | Self::OnHold
        )
    }

    /// The device cannot be reached: invalid or unavailable.
    pub fn unreachable(self) -> bool {
        matches!(self, Self::Invalid | Self::Unavailable)
    }
}

/// `"status": 2, "status_name": "In use"`, in a member's JSON.
impl Serialize for DeviceState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("DeviceState", 2)?;
        st.serialize_field("status", &self.code())?;
        st.serialize_field("status_name", self.name())?;
        st.end()
    }
}

/// A caller waiting in a queue. Its position is its place in [`Queue::callers`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Caller {
    pub channel: Text,
    pub uniqueid: Text,
    /// From QueueCallerJoin; empty if the caller was first seen in a QueueStatus snapshot.
    pub linkedid: Text,
    /// Empty when Asterisk reports it unknown (`<unknown>` in events, `unknown` in QueueStatus).
    pub caller_id_num: Text,
    pub caller_id_name: Text,
    pub connected_line_num: Text,
    pub connected_line_name: Text,
    /// Epoch seconds when the caller joined.
    pub entered: i64,
    /// `QUEUE_PRIO`, from QueueStatus.
    pub priority: i64,
    /// The extension the caller dialled into the queue (`Exten` of QueueCallerJoin).
    pub dialled: Text,
    /// The caller withheld their number (`CALLERID(pres)` is `prohib…`; needs
    /// `channelvars = CALLERID(pres)` in manager.conf, false without it).
    pub privacy: bool,
    /// Set by QueueCallerAbandon, which precedes the caller's QueueCallerLeave.
    #[serde(skip)]
    pub abandoned: bool,
    /// Members being rung for this caller, in the order AgentCalled named them (published as
    /// the queue's `ringing`).
    #[serde(skip)]
    pub ringing: Lineup<Rung>,
}

impl Keyed for Caller {
    fn key(&self) -> &str {
        &self.uniqueid
    }
}

/// A waiting caller with its 1-based position, as changes publish it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Waiting {
    /// 1-based, kept right as callers ahead leave.
    pub position: i64,
    #[serde(flatten)]
    pub caller: Caller,
}

/// A borrowed [`Waiting`], as snapshots publish it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct WaitingRef<'a> {
    pub position: i64,
    #[serde(flatten)]
    pub caller: &'a Caller,
}

/// A caller connected to a member, from AgentConnect until AgentComplete.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConnectedCall {
    /// The caller's `Uniqueid`.
    pub uniqueid: Text,
    pub channel: Text,
    pub caller_id_num: Text,
    pub caller_id_name: Text,
    /// The member's `Interface`.
    pub interface: Text,
    pub member_name: Text,
    /// The agent leg (`DestChannel`).
    pub agent_channel: Text,
    /// Seconds the caller waited.
    pub hold_time: i64,
    /// Seconds the member rang before answering.
    pub ring_time: i64,
    /// Epoch seconds of the AgentConnect.
    pub connected_at: i64,
    /// Carried over from the waiting caller (see [`Caller`]).
    pub dialled: Text,
    pub privacy: bool,
}

impl Keyed for ConnectedCall {
    fn key(&self) -> &str {
        &self.uniqueid
    }
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
            return server_entry(&mut self.servers, &Arc::from(id));
        }
        // Checked just above.
        self.servers
            .get_mut(id)
            .unwrap_or_else(|| unreachable!("server {id} was checked above"))
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

/// The entry of server `id`, created (not connected yet, no queues) when absent.
pub(super) fn server_entry<'s>(
    servers: &'s mut BTreeMap<Arc<str>, Server>,
    id: &Arc<str>,
) -> &'s mut Server {
    // Looked up before the entry is made: `entry` would clone the id on every event.
    if servers.contains_key(id) {
        return servers
            .get_mut(id)
            .unwrap_or_else(|| unreachable!("server {id} was checked above"));
    }
    servers.entry(id.clone()).or_insert_with(|| Server {
        id: id.clone(),
        link: Link {
            reason: Some("not connected yet".into()),
            ..Link::default()
        },
        queues: BTreeMap::new(),
    })
}
