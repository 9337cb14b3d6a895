//! Typed queue events (ami.md §2.3, §2.4, §4), borrowed from a [`Message`].
//!
//! Each event is read in one pass over its headers. Field names of Asterisk 11–22 are all
//! accepted (`Location`/`Interface`, `Name`/`MemberName`, `Join`/`QueueCallerJoin`,
//! `QueueMemberPaused`/`QueueMemberPause`); missing numbers read as 0 and missing strings as "",
//! as Asterisk itself prints them when unset. Events that are not about queues stay untyped.

use super::Message;

/// The member-state block shared by QueueMember* events and the QueueMember list item
/// (ami.md §2.1, §2.4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberFields<'a> {
    pub queue: &'a str,
    pub name: &'a str,
    pub interface: &'a str,
    pub state_interface: &'a str,
    pub membership: &'a str,
    pub penalty: i64,
    pub calls_taken: i64,
    pub last_call: i64,
    pub last_pause: i64,
    pub login_time: i64,
    pub in_call: bool,
    pub status: i64,
    pub paused: bool,
    pub paused_reason: &'a str,
    /// Absent from the QueueMember list item (ami.md §2.4).
    pub ring_in_use: Option<bool>,
    pub wrapup_time: i64,
}

/// The caller of QueueCaller* and Agent* events (the channel that ran `Queue()`), ami.md §2.2.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerFields<'a> {
    pub queue: &'a str,
    pub channel: &'a str,
    pub uniqueid: &'a str,
    pub linkedid: &'a str,
    pub caller_id_num: &'a str,
    pub caller_id_name: &'a str,
    pub connected_line_num: &'a str,
    pub connected_line_name: &'a str,
    /// 1-based position (Join: where placed; Leave/Abandon: where it was).
    pub position: i64,
    /// Callers in the queue after the event (Join/Leave).
    pub count: Option<i64>,
    /// `OriginalPosition` of QueueCallerAbandon.
    pub original_position: i64,
    /// `Exten`: the extension the caller's channel was at — the number it dialled.
    pub exten: &'a str,
    /// `ChanVariable: CALLERID(pres)=…`, present when manager.conf's `channelvars` lists it.
    pub presentation: Option<&'a str>,
}

/// The member side of Agent* events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentFields<'a> {
    pub caller: CallerFields<'a>,
    pub interface: &'a str,
    pub member_name: &'a str,
    pub dest_channel: &'a str,
    pub dest_uniqueid: &'a str,
    /// Seconds waited (AgentConnect, AgentComplete, QueueCallerAbandon).
    pub hold_time: i64,
    /// AgentConnect: seconds; AgentRingNoAnswer: milliseconds (ami.md §7.5).
    pub ring_time: i64,
    pub talk_time: i64,
    /// AgentComplete: `caller`, `agent` or `transfer`.
    pub reason: &'a str,
}

/// QueueParams list item (ami.md §2.4). Note the wire spellings `Holdtime`, `ServicelevelPerf`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamsFields<'a> {
    pub queue: &'a str,
    pub max: i64,
    pub strategy: &'a str,
    pub calls: i64,
    pub hold_time: i64,
    pub talk_time: i64,
    pub completed: i64,
    pub abandoned: i64,
    pub service_level: i64,
    pub service_level_perf: f64,
    pub service_level_perf2: f64,
    pub weight: i64,
}

/// QueueEntry list item (ami.md §2.4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryFields<'a> {
    pub caller: CallerFields<'a>,
    pub wait: i64,
    pub priority: i64,
}

/// The events queuebridge understands; everything else is [`Event::Other`].
#[derive(Clone, Debug, PartialEq)]
pub enum Event<'a> {
    CallerJoin(CallerFields<'a>),
    CallerLeave(CallerFields<'a>),
    CallerAbandon(AgentFields<'a>),
    AgentCalled(AgentFields<'a>),
    AgentRingNoAnswer(AgentFields<'a>),
    AgentConnect(AgentFields<'a>),
    AgentComplete(AgentFields<'a>),
    AgentDump(AgentFields<'a>),
    MemberStatus(MemberFields<'a>),
    MemberAdded(MemberFields<'a>),
    MemberRemoved(MemberFields<'a>),
    MemberPause(MemberFields<'a>),
    MemberPenalty(MemberFields<'a>),
    MemberRinginuse(MemberFields<'a>),
    /// QueueStatus list items.
    Params(ParamsFields<'a>),
    Member(MemberFields<'a>),
    Entry(EntryFields<'a>),
    /// `FullyBooted` — the "resync now" trigger (ami.md §4).
    FullyBooted,
    /// `Reload`, `Load` or `Unload` of a module, with its status.
    Module {
        what: &'a str,
        module: &'a str,
        status: &'a str,
    },
    /// `Shutdown`: the state will be gone.
    Shutdown,
    /// `Hangup` of a channel that ran `Queue()`, with the `QUEUESTATUS` it left with (needs
    /// `channelvars = QUEUESTATUS` in manager.conf and the `call` class).
    Hangup {
        uniqueid: &'a str,
        queue_status: &'a str,
    },
    Other,
}

/// The `QUEUESTATUS` a Hangup carries as a channel variable (TIMEOUT, LEAVEEMPTY, …), if any.
pub fn queue_result(m: &Message) -> Option<&str> {
    m.headers()
        .filter(|(k, _)| *k == "ChanVariable")
        .find_map(|(_, v)| v.strip_prefix("QUEUESTATUS="))
        .filter(|v| !v.is_empty())
}

fn int(v: &str) -> i64 {
    v.trim_ascii().parse().unwrap_or(0)
}

fn flag(v: &str) -> bool {
    int(v) != 0
}

/// Fills the caller block; returns false when the key is not part of it.
fn caller_field<'a>(c: &mut CallerFields<'a>, k: &[u8], v: &'a str) -> bool {
    match k {
        b"Queue" => c.queue = v,
        b"Channel" => c.channel = v,
        b"Uniqueid" => c.uniqueid = v,
        b"Linkedid" => c.linkedid = v,
        b"CallerIDNum" => c.caller_id_num = v,
        b"CallerIDName" => c.caller_id_name = v,
        b"ConnectedLineNum" => c.connected_line_num = v,
        b"ConnectedLineName" => c.connected_line_name = v,
        b"Position" => c.position = int(v),
        b"Count" => c.count = Some(int(v)),
        b"OriginalPosition" => c.original_position = int(v),
        b"Exten" => c.exten = v,
        b"ChanVariable" => match v.strip_prefix("CALLERID(pres)=") {
            Some(pres) => c.presentation = Some(pres),
            None => return false,
        },
        _ => return false,
    }
    true
}

fn caller(m: &Message) -> CallerFields<'_> {
    let mut c = CallerFields::default();
    for (k, v) in m.fields() {
        caller_field(&mut c, k, v);
    }
    c
}

fn agent(m: &Message) -> AgentFields<'_> {
    let mut a = AgentFields::default();
    for (k, v) in m.fields() {
        if caller_field(&mut a.caller, k, v) {
            continue;
        }
        match k {
            b"Interface" | b"Location" | b"Member" => a.interface = v,
            b"MemberName" => a.member_name = v,
            b"DestChannel" => a.dest_channel = v,
            b"DestUniqueid" => a.dest_uniqueid = v,
            b"HoldTime" => a.hold_time = int(v),
            b"RingTime" => a.ring_time = int(v),
            b"TalkTime" => a.talk_time = int(v),
            b"Reason" => a.reason = v,
            _ => {}
        }
    }
    a
}

fn member(m: &Message) -> MemberFields<'_> {
    let mut f = MemberFields::default();
    for (k, v) in m.fields() {
        match k {
            b"Queue" => f.queue = v,
            b"MemberName" | b"Name" => f.name = v,
            b"Interface" | b"Location" => f.interface = v,
            b"StateInterface" => f.state_interface = v,
            b"Membership" => f.membership = v,
            b"Penalty" => f.penalty = int(v),
            b"CallsTaken" => f.calls_taken = int(v),
            b"LastCall" => f.last_call = int(v),
            b"LastPause" => f.last_pause = int(v),
            b"LoginTime" => f.login_time = int(v),
            b"InCall" => f.in_call = flag(v),
            b"Status" => f.status = int(v),
            b"Paused" => f.paused = flag(v),
            b"PausedReason" => f.paused_reason = v,
            b"Ringinuse" => f.ring_in_use = Some(flag(v)),
            b"Wrapuptime" => f.wrapup_time = int(v),
            _ => {}
        }
    }
    if f.name.is_empty() {
        f.name = f.interface; // Asterisk's own default (ami.md §2.1)
    }
    if f.state_interface.is_empty() {
        f.state_interface = f.interface;
    }
    f
}

fn params(m: &Message) -> ParamsFields<'_> {
    let mut p = ParamsFields::default();
    for (k, v) in m.fields() {
        match k {
            b"Queue" => p.queue = v,
            b"Max" => p.max = int(v),
            b"Strategy" => p.strategy = v,
            b"Calls" => p.calls = int(v),
            b"Holdtime" | b"HoldTime" => p.hold_time = int(v),
            b"TalkTime" => p.talk_time = int(v),
            b"Completed" => p.completed = int(v),
            b"Abandoned" => p.abandoned = int(v),
            b"ServiceLevel" => p.service_level = int(v),
            b"ServicelevelPerf" | b"ServiceLevelPerf" => {
                p.service_level_perf = v.trim_ascii().parse().unwrap_or(0.0)
            }
            b"ServicelevelPerf2" | b"ServiceLevelPerf2" => {
                p.service_level_perf2 = v.trim_ascii().parse().unwrap_or(0.0)
            }
            b"Weight" => p.weight = int(v),
            _ => {}
        }
    }
    p
}

fn entry(m: &Message) -> EntryFields<'_> {
    let mut e = EntryFields::default();
    for (k, v) in m.fields() {
        if caller_field(&mut e.caller, k, v) {
            continue;
        }
        match k {
            b"Wait" => e.wait = int(v),
            b"Priority" => e.priority = int(v),
            _ => {}
        }
    }
    e
}

impl<'a> Event<'a> {
    /// Reads the typed event out of a message; [`Event::Other`] for anything else.
    pub fn from_message(m: &'a Message) -> Self {
        let Some(name) = m.event_name() else {
            return Event::Other;
        };
        match name.as_bytes() {
            b"QueueCallerJoin" | b"Join" => Event::CallerJoin(caller(m)),
            b"QueueCallerLeave" | b"Leave" => Event::CallerLeave(caller(m)),
            b"QueueCallerAbandon" => Event::CallerAbandon(agent(m)),
            b"AgentCalled" => Event::AgentCalled(agent(m)),
            b"AgentRingNoAnswer" => Event::AgentRingNoAnswer(agent(m)),
            b"AgentConnect" => Event::AgentConnect(agent(m)),
            b"AgentComplete" => Event::AgentComplete(agent(m)),
            b"AgentDump" => Event::AgentDump(agent(m)),
            b"QueueMemberStatus" => Event::MemberStatus(member(m)),
            b"QueueMemberAdded" => Event::MemberAdded(member(m)),
            b"QueueMemberRemoved" => Event::MemberRemoved(member(m)),
            b"QueueMemberPause" | b"QueueMemberPaused" => Event::MemberPause(member(m)),
            b"QueueMemberPenalty" => Event::MemberPenalty(member(m)),
            b"QueueMemberRinginuse" => Event::MemberRinginuse(member(m)),
            b"QueueParams" => Event::Params(params(m)),
            b"QueueMember" => Event::Member(member(m)),
            b"QueueEntry" => Event::Entry(entry(m)),
            b"FullyBooted" => Event::FullyBooted,
            b"Shutdown" => Event::Shutdown,
            b"Hangup" => match queue_result(m) {
                Some(queue_status) => Event::Hangup {
                    uniqueid: m.get("Uniqueid").unwrap_or_default(),
                    queue_status,
                },
                None => Event::Other,
            },
            b"Reload" | b"Load" | b"Unload" => Event::Module {
                what: name,
                module: m.get("Module").unwrap_or_default(),
                status: m.get("Status").unwrap_or_default(),
            },
            _ => Event::Other,
        }
    }

    /// The queue an event is about, if it is about one.
    pub fn queue(&self) -> Option<&'a str> {
        match self {
            Event::CallerJoin(c) | Event::CallerLeave(c) => Some(c.queue),
            Event::CallerAbandon(a)
            | Event::AgentCalled(a)
            | Event::AgentRingNoAnswer(a)
            | Event::AgentConnect(a)
            | Event::AgentComplete(a)
            | Event::AgentDump(a) => Some(a.caller.queue),
            Event::MemberStatus(m)
            | Event::MemberAdded(m)
            | Event::MemberRemoved(m)
            | Event::MemberPause(m)
            | Event::MemberPenalty(m)
            | Event::MemberRinginuse(m)
            | Event::Member(m) => Some(m.queue),
            Event::Params(p) => Some(p.queue),
            Event::Entry(e) => Some(e.caller.queue),
            _ => None,
        }
    }
}

/// Event names counted by name in the metrics (the rest are counted as `other`, so a server
/// cannot grow the label set): the queue events and the few about the server itself.
pub fn is_counted(name: &str) -> bool {
    is_queue_event(name)
        || matches!(
            name,
            "FullyBooted" | "Shutdown" | "Hangup" | "Reload" | "Load" | "Unload"
        )
}

/// Event names the state fold reads; the client forwards only these (plus list items).
pub fn is_queue_event(name: &str) -> bool {
    matches!(
        name,
        "QueueCallerJoin"
            | "Join"
            | "QueueCallerLeave"
            | "Leave"
            | "QueueCallerAbandon"
            | "AgentCalled"
            | "AgentRingNoAnswer"
            | "AgentConnect"
            | "AgentComplete"
            | "AgentDump"
            | "QueueMemberStatus"
            | "QueueMemberAdded"
            | "QueueMemberRemoved"
            | "QueueMemberPause"
            | "QueueMemberPaused"
            | "QueueMemberPenalty"
            | "QueueMemberRinginuse"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_member_list_item_maps_name_and_location() {
        let m = Message::new()
            .with("Event", "QueueMember")
            .with("Queue", "sales")
            .with("Name", "Agent One")
            .with("Location", "Local/agent1@agents/n")
            .with("StateInterface", "Custom:agent1")
            .with("Membership", "static")
            .with("Paused", "1")
            .with("PausedReason", "Lunch");
        let Event::Member(f) = Event::from_message(&m) else {
            panic!("not a member")
        };
        assert_eq!(f.interface, "Local/agent1@agents/n");
        assert_eq!(f.name, "Agent One");
        assert!(f.paused);
        assert_eq!(f.ring_in_use, None);
    }

    #[test]
    fn asterisk_11_names_are_accepted() {
        let m = Message::new()
            .with("Event", "QueueMemberPaused")
            .with("Queue", "q")
            .with("Location", "SIP/1")
            .with("Paused", "1");
        let Event::MemberPause(f) = Event::from_message(&m) else {
            panic!("not a pause")
        };
        assert_eq!(
            (f.interface, f.name, f.state_interface),
            ("SIP/1", "SIP/1", "SIP/1")
        );
    }

    #[test]
    fn params_read_the_lower_case_spellings() {
        let m = Message::new()
            .with("Event", "QueueParams")
            .with("Queue", "q")
            .with("Holdtime", "7")
            .with("ServicelevelPerf", "66.7");
        let Event::Params(p) = Event::from_message(&m) else {
            panic!("not params")
        };
        assert_eq!((p.hold_time, p.service_level_perf), (7, 66.7));
    }
}
