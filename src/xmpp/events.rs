//! From the queue state to pascom's queue module: the member states and waiting calls of a
//! queue as a client sees them, and the events that keep a client's picture right.
//!
//! [`Published`] is what every subscribed client has been told: per queue, each agent's
//! `QueueMemberState` and each waiting call. A change of the state is turned into events by
//! comparing with it, so an event goes out only when something a client sees changed (a device
//! state change alone is no `QueueMemberState`, as the seed says), and a fan-out that fell behind
//! the change stream catches up by comparing the whole state with it: the clients get exactly the
//! events that take them from what they were told to what is.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::access::{Directory, User};
use crate::state::{Caller, Change, ChangeKind, Member, Queue, State, Text};
use crate::view;

use super::pascom::{CallEntry, MemberState, Person, QueueRef};

/// A member's state as the seed writes it; `user` is the user whose interface it is.
pub fn member_state(queue: &str, member: &Member, user: Option<&User>) -> MemberState {
    MemberState {
        agent: user.map_or_else(
            || {
                if member.name.is_empty() {
                    member.interface.to_string()
                } else {
                    member.name.to_string()
                }
            },
            |u| u.name.clone(),
        ),
        queue: queue.to_owned(),
        dynamic: !member.membership.is_static(),
        loggedin: true,
        paused: member.paused,
        // Asterisk keeps the last reason after an unpause (and QueueMemberStatus may clear it
        // later): it means something only while paused.
        pause_reason: if member.paused {
            member.paused_reason.to_string()
        } else {
            String::new()
        },
        person: {
            let (phone, displayname) = view::identity(user, member);
            Person { phone, displayname }
        },
    }
}

/// A configured dynamic agent of `queue` who is not logged in.
pub fn logged_out(queue: &str, user: &User) -> MemberState {
    MemberState {
        agent: user.name.clone(),
        queue: queue.to_owned(),
        dynamic: true,
        loggedin: false,
        paused: false,
        pause_reason: String::new(),
        person: user_person(user),
    }
}

/// A user's phone book entry: extension and display name.
pub fn user_person(u: &User) -> Person {
    Person {
        phone: u.number().to_owned(),
        displayname: u.display_name.clone(),
    }
}

/// A waiting caller.
pub fn call_entry(position: i64, c: &Caller) -> CallEntry {
    CallEntry {
        position,
        channel: c.channel.to_string(),
        uniqueid: c.uniqueid.to_string(),
        person: Person {
            phone: c.caller_id_num.to_string(),
            displayname: c.caller_id_name.to_string(),
        },
    }
}

/// Every agent of a queue: its members, then the configured dynamic agents not logged in.
pub fn queue_members(dir: &Directory, q: &Queue) -> Vec<MemberState> {
    view::agents(dir, q)
        .into_iter()
        .filter_map(|a| match (a.member, a.user) {
            (Some(m), user) => Some(member_state(&q.name, m, user.as_deref())),
            (None, Some(u)) => Some(logged_out(&q.name, &u)),
            (None, None) => None,
        })
        .collect()
}

/// The user's own entry in every queue of their server they belong to.
pub fn own_states(state: &State, user: &User) -> Vec<MemberState> {
    let Some(server) = state.servers.get(user.server.as_str()) else {
        return Vec::new();
    };
    server
        .queues
        .values()
        .filter_map(|q| match q.members.get(&user.interface) {
            Some(m) => Some(member_state(&q.name, m, Some(user))),
            None => user
                .queues
                .contains(&*q.name)
                .then(|| logged_out(&q.name, user)),
        })
        .collect()
}

/// An event of the queue module, with what subscriptions and permissions are judged on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `queue.QueueMemberState`: a login or pause change of the member `interface`.
    Member {
        server: Arc<str>,
        interface: Text,
        state: MemberState,
    },
    /// `queue.QueueJoinEvent`.
    Join {
        server: Arc<str>,
        queue: QueueRef,
        entry: CallEntry,
    },
    /// `queue.QueueLeaveEvent`.
    Leave {
        server: Arc<str>,
        queue: QueueRef,
        entry: CallEntry,
    },
}

impl Event {
    /// The event's name in the queue module.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Member { .. } => "QueueMemberState",
            Event::Join { .. } => "QueueJoinEvent",
            Event::Leave { .. } => "QueueLeaveEvent",
        }
    }

    pub fn server(&self) -> &Arc<str> {
        match self {
            Event::Member { server, .. }
            | Event::Join { server, .. }
            | Event::Leave { server, .. } => server,
        }
    }

    pub fn queue(&self) -> &str {
        match self {
            Event::Member { state, .. } => &state.queue,
            Event::Join { queue, .. } | Event::Leave { queue, .. } => &queue.name,
        }
    }

    /// The attribute an `AttributeFilter` names: the event element's own attributes, and
    /// `queue` for the call events' `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        match self {
            Event::Member { state, .. } => state.attr(name),
            Event::Join { queue, .. } | Event::Leave { queue, .. } => match name {
                "name" | "queue" => Some(&queue.name),
                _ => None,
            },
        }
    }

    /// The payload of the headline.
    pub fn element(&self) -> tokio_xmpp::minidom::Element {
        match self {
            Event::Member { state, .. } => super::pascom::cmd("queue", state.element()),
            Event::Join { queue, entry, .. } => {
                super::pascom::call_event(self.name(), queue, entry)
            }
            Event::Leave { queue, entry, .. } => {
                super::pascom::call_event(self.name(), queue, entry)
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Seen {
    id: u64,
    /// By interface.
    members: BTreeMap<Text, MemberState>,
    /// By uniqueid.
    calls: BTreeMap<Text, CallEntry>,
}

/// What the clients have been told, per (server, queue).
#[derive(Debug, Default)]
pub struct Published {
    queues: BTreeMap<(Arc<str>, String), Seen>,
}

impl Published {
    /// The picture of a state, as if every client had been told it.
    pub fn of(state: &State, dir: &Directory) -> Self {
        let mut p = Self::default();
        p.catch_up(state, dir);
        p
    }

    /// The members of a queue, as published (by interface).
    pub fn members(&self, server: &Arc<str>, queue: &str) -> Option<&BTreeMap<Text, MemberState>> {
        self.queues
            .get(&(server.clone(), queue.to_owned()))
            .map(|s| &s.members)
    }

    /// The events one change brings.
    pub fn apply(&mut self, change: &Change, dir: &Directory) -> Vec<Event> {
        let server = &change.server;
        let mut events = Vec::new();
        match &change.kind {
            ChangeKind::QueueUpdated {
                queue, queue_id, ..
            } => {
                self.seen(server, queue).id = *queue_id;
            }
            ChangeKind::QueueRemoved { queue, .. } => {
                if let Some(seen) = self.queues.remove(&(server.clone(), queue.to_string())) {
                    diff_queue(server, queue, seen, &Seen::default(), &mut events);
                }
            }
            ChangeKind::MemberUpdated { queue, member } => {
                let user = dir.by_interface(server, &member.interface);
                let now = member_state(queue, member, user.map(|u| &**u));
                let seen = self.seen(server, queue);
                let old = seen.members.insert(member.interface.clone(), now.clone());
                if old.is_none_or(|o| !o.same_state(&now)) {
                    events.push(Event::Member {
                        server: server.clone(),
                        interface: member.interface.clone(),
                        state: now,
                    });
                }
            }
            ChangeKind::MemberRemoved { queue, interface } => {
                if let Some(old) = self.seen(server, queue).members.remove(interface) {
                    events.push(left(server, interface, old));
                }
            }
            ChangeKind::CallerJoined { queue, caller } => {
                let position = caller.position;
                let caller = &caller.caller;
                let seen = self.seen(server, queue);
                let qref = QueueRef {
                    id: seen.id,
                    name: queue.to_string(),
                };
                if !seen.calls.contains_key(&caller.uniqueid) {
                    // Callers behind the new one move down, as in Asterisk.
                    for c in seen.calls.values_mut() {
                        if c.position >= position {
                            c.position += 1;
                        }
                    }
                    let entry = call_entry(position, caller);
                    seen.calls.insert(caller.uniqueid.clone(), entry.clone());
                    events.push(Event::Join {
                        server: server.clone(),
                        queue: qref,
                        entry,
                    });
                }
            }
            ChangeKind::CallerUpdated { queue, caller } => {
                if let Some(c) = self
                    .seen(server, queue)
                    .calls
                    .get_mut(&caller.caller.uniqueid)
                {
                    *c = call_entry(caller.position, &caller.caller);
                }
            }
            ChangeKind::CallerLeft {
                queue, uniqueid, ..
            } => {
                let seen = self.seen(server, queue);
                let qref = QueueRef {
                    id: seen.id,
                    name: queue.to_string(),
                };
                if let Some(entry) = seen.calls.remove(uniqueid) {
                    for c in seen.calls.values_mut() {
                        if c.position > entry.position {
                            c.position -= 1;
                        }
                    }
                    events.push(Event::Leave {
                        server: server.clone(),
                        queue: qref,
                        entry,
                    });
                }
            }
            _ => {}
        }
        events
    }

    /// The events that take the clients from what they were told to `state`, after the
    /// fan-out missed changes.
    pub fn catch_up(&mut self, state: &State, dir: &Directory) -> Vec<Event> {
        let mut now: BTreeMap<(Arc<str>, String), Seen> = BTreeMap::new();
        for q in state.queues() {
            let seen = Seen {
                id: q.id,
                members: q
                    .members
                    .values()
                    .map(|m| {
                        let user = dir.by_interface(&q.server, &m.interface);
                        (
                            m.interface.clone(),
                            member_state(&q.name, m, user.map(|u| &**u)),
                        )
                    })
                    .collect(),
                calls: q
                    .waiting()
                    .map(|w| (w.caller.uniqueid.clone(), call_entry(w.position, w.caller)))
                    .collect(),
            };
            now.insert((q.server.clone(), q.name.to_string()), seen);
        }
        let mut events = Vec::new();
        let mut old = std::mem::take(&mut self.queues);
        for (key, new) in &now {
            let was = old.remove(key).unwrap_or_default();
            diff_queue(&key.0, &key.1, was, new, &mut events);
        }
        for ((server, queue), was) in old {
            diff_queue(&server, &queue, was, &Seen::default(), &mut events);
        }
        self.queues = now;
        events
    }

    fn seen(&mut self, server: &Arc<str>, queue: &str) -> &mut Seen {
        self.queues
            .entry((server.clone(), queue.to_owned()))
            .or_default()
    }
}

/// A member gone from a queue: logged out, and no longer paused.
fn left(server: &Arc<str>, interface: &str, mut state: MemberState) -> Event {
    state.loggedin = false;
    state.paused = false;
    state.pause_reason.clear();
    Event::Member {
        server: server.clone(),
        interface: interface.into(),
        state,
    }
}

/// The events from `old` to `new` of one queue: member changes, then leaves, then joins.
fn diff_queue(server: &Arc<str>, queue: &str, old: Seen, new: &Seen, events: &mut Vec<Event>) {
    for (interface, was) in &old.members {
        match new.members.get(interface) {
            Some(now) if now.same_state(was) => {}
            Some(now) => events.push(Event::Member {
                server: server.clone(),
                interface: interface.clone(),
                state: now.clone(),
            }),
            None => events.push(left(server, interface, was.clone())),
        }
    }
    for (interface, now) in &new.members {
        if !old.members.contains_key(interface) {
            events.push(Event::Member {
                server: server.clone(),
                interface: interface.clone(),
                state: now.clone(),
            });
        }
    }
    let qref = |id: u64| QueueRef {
        id,
        name: queue.to_owned(),
    };
    for (uniqueid, entry) in &old.calls {
        if !new.calls.contains_key(uniqueid) {
            events.push(Event::Leave {
                server: server.clone(),
                queue: qref(old.id),
                entry: entry.clone(),
            });
        }
    }
    let mut joined: Vec<&CallEntry> = new
        .calls
        .iter()
        .filter(|(u, _)| !old.calls.contains_key(*u))
        .map(|(_, e)| e)
        .collect();
    joined.sort_by_key(|e| e.position);
    for entry in joined {
        events.push(Event::Join {
            server: server.clone(),
            queue: qref(new.id),
            entry: entry.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{DeviceState, Membership};
    use crate::state::{QueueIds, QueueStats, Waiting};

    fn member(interface: &str, paused: bool, reason: &str, status: i64) -> Member {
        Member {
            interface: interface.into(),
            name: format!("Agent {interface}").into(),
            membership: Membership::Dynamic,
            status: DeviceState::from_code(status),
            paused,
            paused_reason: reason.into(),
            ..Member::default()
        }
    }

    fn caller(uniqueid: &str, position: i64) -> Waiting {
        Waiting {
            position,
            caller: Caller {
                channel: format!("Local/{uniqueid}").into(),
                uniqueid: uniqueid.into(),
                caller_id_num: "370".into(),
                ..Caller::default()
            },
        }
    }

    /// A state whose queue `support` has these members and these callers, in order.
    fn state(members: Vec<Member>, callers: Vec<Waiting>) -> State {
        let mut s = State::new(["pbx1"], QueueIds::default());
        let server: Arc<str> = Arc::from("pbx1");
        s.server_mut("pbx1").queues.insert(
            "support".into(),
            Queue {
                server: server.clone(),
                name: Arc::from("support"),
                id: 2,
                stats: QueueStats::default(),
                members: members.into_iter().collect(),
                callers: callers.into_iter().map(|w| w.caller).collect(),
                connected_calls: Default::default(),
            },
        );
        s
    }

    fn change(kind: ChangeKind) -> Change {
        Change {
            seq: 1,
            server: Arc::from("pbx1"),
            kind,
        }
    }

    fn names(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Member {
                    interface, state, ..
                } => format!(
                    "member {interface} in={} paused={} {:?}",
                    state.loggedin, state.paused, state.pause_reason
                ),
                Event::Join { entry, .. } => format!("join {} @{}", entry.uniqueid, entry.position),
                Event::Leave { entry, .. } => {
                    format!("leave {} @{}", entry.uniqueid, entry.position)
                }
            })
            .collect()
    }

    #[test]
    fn only_login_and_pause_changes_are_member_events() {
        let dir = Directory::default();
        let mut p = Published::of(&state(vec![member("a", false, "", 1)], vec![]), &dir);
        let queue: Arc<str> = Arc::from("support");
        let update = |m: Member| {
            change(ChangeKind::MemberUpdated {
                queue: queue.clone(),
                member: m,
            })
        };
        // A device state change alone is no event.
        assert!(p.apply(&update(member("a", false, "", 6)), &dir).is_empty());
        assert_eq!(
            names(&p.apply(&update(member("a", true, "Lunch", 6)), &dir)),
            ["member a in=true paused=true \"Lunch\""]
        );
        // Asterisk keeps the reason after an unpause; it is not shown, nor its later clearing.
        assert_eq!(
            names(&p.apply(&update(member("a", false, "Lunch", 1)), &dir)),
            ["member a in=true paused=false \"\""]
        );
        assert!(p.apply(&update(member("a", false, "", 1)), &dir).is_empty());
        let removed = change(ChangeKind::MemberRemoved {
            queue: queue.clone(),
            interface: "a".into(),
        });
        assert_eq!(
            names(&p.apply(&removed, &dir)),
            ["member a in=false paused=false \"\""]
        );
        assert!(p.apply(&removed, &dir).is_empty());
    }

    #[test]
    fn joins_and_leaves_keep_positions_and_are_never_repeated() {
        let dir = Directory::default();
        let mut p = Published::of(&state(vec![], vec![caller("u1", 1)]), &dir);
        let queue: Arc<str> = Arc::from("support");
        let join = change(ChangeKind::CallerJoined {
            queue: queue.clone(),
            caller: caller("u2", 2),
        });
        assert_eq!(names(&p.apply(&join, &dir)), ["join u2 @2"]);
        assert!(p.apply(&join, &dir).is_empty());
        let leave = |u: &str, position| {
            change(ChangeKind::CallerLeft {
                queue: queue.clone(),
                uniqueid: u.into(),
                position,
                abandoned: false,
            })
        };
        assert_eq!(names(&p.apply(&leave("u1", 1), &dir)), ["leave u1 @1"]);
        // u2 moved up to position 1.
        assert_eq!(names(&p.apply(&leave("u2", 1), &dir)), ["leave u2 @1"]);
        assert!(p.apply(&leave("u2", 1), &dir).is_empty());
    }

    #[test]
    fn catching_up_tells_exactly_the_difference() {
        let dir = Directory::default();
        let mut p = Published::of(
            &state(
                vec![member("a", false, "", 1), member("gone", false, "", 1)],
                vec![caller("u1", 1)],
            ),
            &dir,
        );
        let now = state(
            vec![member("a", true, "Lunch", 1), member("b", false, "", 1)],
            vec![caller("u2", 1), caller("u3", 2)],
        );
        assert_eq!(
            names(&p.catch_up(&now, &dir)),
            [
                "member a in=true paused=true \"Lunch\"",
                "member gone in=false paused=false \"\"",
                "member b in=true paused=false \"\"",
                "leave u1 @1",
                "join u2 @1",
                "join u3 @2",
            ]
        );
        assert!(p.catch_up(&now, &dir).is_empty());
        // The queue disappears: everyone leaves, every member is logged out.
        let empty = State::new(["pbx1"], QueueIds::default());
        assert_eq!(
            names(&p.catch_up(&empty, &dir)),
            [
                "member a in=false paused=false \"\"",
                "member b in=false paused=false \"\"",
                "leave u2 @1",
                "leave u3 @2",
            ]
        );
    }
}
