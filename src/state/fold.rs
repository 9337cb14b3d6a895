//! `apply`: the pure fold of one input into the state.

use foldhash::{HashMap, HashMapExt, HashSet};
use std::collections::btree_map;
use std::sync::Arc;

use crate::ami::event::{AgentFields, CallerFields, EntryFields, MemberFields, ParamsFields};
use crate::ami::Event;

use super::model::{DeviceState, Membership};
use super::{
    Caller, Change, ChangeKind, ConnectedCall, Input, LinkChange, Member, Queue, QueueStats,
    QueueStatus, Rung, Scope, State, Text, Waiting, What,
};

/// Folds one input into the state and returns what changed, in order.
pub fn apply(state: &mut State, input: &Input) -> Vec<Change> {
    let mut changes = Vec::new();
    apply_into(state, input, &mut changes);
    changes
}

/// [`apply`], appending the changes to `changes`: a vector kept across inputs spares an
/// allocation per event, and one of `Arc`s gets each change built in its `Arc` (the hub
/// shares them), not moved there afterwards.
pub fn apply_into(state: &mut State, input: &Input, changes: &mut impl Changes) {
    let mut fold = Fold {
        server: &input.server,
        at_secs: i64::try_from(input.at_ms / 1000).unwrap_or(i64::MAX),
        seq: state.seq,
        changes,
    };
    match &input.what {
        What::Link(link) => fold.link(state, link),
        What::Snapshot(status) => fold.snapshot(state, status),
        What::Event(msg) => fold.event(state, &Event::from_message(msg)),
        What::Events(events) => {
            for msg in events.messages() {
                fold.event(state, &Event::from_message(msg));
            }
        }
    }
    state.seq = fold.seq;
}

/// Where [`apply_into`] puts the changes.
pub trait Changes {
    fn push_change(&mut self, change: Change);
}

impl Changes for Vec<Change> {
    fn push_change(&mut self, change: Change) {
        self.push(change);
    }
}

impl Changes for Vec<Arc<Change>> {
    fn push_change(&mut self, change: Change) {
        self.push(Arc::new(change));
    }
}

struct Fold<'i, C> {
    server: &'i Arc<str>,
    at_secs: i64,
    /// The sequence number of the last change made.
    seq: u64,
    changes: &'i mut C,
}

/// Asterisk prints an unknown caller id as `<unknown>` in events and `unknown` in QueueStatus
/// (ami.md §2.2, §2.4); both mean "none".
fn caller_id(v: &str) -> Text {
    match v {
        "<unknown>" | "unknown" => Text::default(),
        _ => v.into(),
    }
}

fn member_from(f: &MemberFields<'_>) -> Member {
    Member {
        interface: f.interface.into(),
        name: f.name.into(),
        state_interface: f.state_interface.into(),
        membership: Membership::from_ami(f.membership),
        penalty: f.penalty,
        calls_taken: f.calls_taken,
        last_call: f.last_call,
        last_pause: f.last_pause,
        login_time: f.login_time,
        in_call: f.in_call,
        status: DeviceState::from_code(f.status),
        paused: f.paused,
        paused_reason: f.paused_reason.into(),
        wrapup_time: f.wrapup_time,
        ring_in_use: f.ring_in_use,
    }
}

/// Sets `slot` to `value`; true when that changed it.
fn set<T: PartialEq>(slot: &mut T, value: T) -> bool {
    let changed = *slot != value;
    if changed {
        *slot = value;
    }
    changed
}

/// Sets a string in place (no allocation when it fits); true when that changed it.
fn set_str(slot: &mut Text, value: &str) -> bool {
    let changed = slot != value;
    if changed {
        slot.clear();
        slot.push_str(value);
    }
    changed
}

/// Where member fields come from: the rules for call counters and Ringinuse differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Event,
    Snapshot,
}

/// Folds member fields into the member we know, in place; true when anything changed.
fn merge_member(m: &mut Member, f: &MemberFields<'_>, source: Source) -> bool {
    // Call counters only grow between snapshots; an event queued before a snapshot must not
    // take back what the snapshot already counted (ami.md §1.14), while a snapshot may reset
    // them. Ringinuse is absent from some events: keep what we know. QueueStatus does not list
    // it at all: keep what an event told us.
    let (calls_taken, last_call, ring_in_use) = match source {
        Source::Event => (
            f.calls_taken.max(m.calls_taken),
            f.last_call.max(m.last_call),
            f.ring_in_use.or(m.ring_in_use),
        ),
        Source::Snapshot => (f.calls_taken, f.last_call, m.ring_in_use),
    };
    let changes = [
        set_str(&mut m.name, f.name),
        set_str(&mut m.state_interface, f.state_interface),
        set(&mut m.membership, Membership::from_ami(f.membership)),
        set(&mut m.penalty, f.penalty),
        set(&mut m.calls_taken, calls_taken),
        set(&mut m.last_call, last_call),
        set(&mut m.last_pause, f.last_pause),
        set(&mut m.login_time, f.login_time),
        set(&mut m.in_call, f.in_call),
        set(&mut m.status, DeviceState::from_code(f.status)),
        set(&mut m.paused, f.paused),
        set_str(&mut m.paused_reason, f.paused_reason),
        set(&mut m.wrapup_time, f.wrapup_time),
        set(&mut m.ring_in_use, ring_in_use),
    ];
    changes.contains(&true)
}

/// Folds QueueParams into the statistics in place, with `calls` counted from the callers;
/// true when anything changed.
fn merge_stats(s: &mut QueueStats, p: &ParamsFields<'_>, calls: i64) -> bool {
    let changes = [
        set_str(&mut s.strategy, p.strategy),
        set(&mut s.max, p.max),
        set(&mut s.calls, calls),
        set(&mut s.hold_time, p.hold_time),
        set(&mut s.talk_time, p.talk_time),
        set(&mut s.completed, p.completed),
        set(&mut s.abandoned, p.abandoned),
        set(&mut s.service_level, p.service_level),
        // Compared as numbers, as the derived PartialEq did.
        set(&mut s.service_level_perf, p.service_level_perf),
        set(&mut s.service_level_perf2, p.service_level_perf2),
        set(&mut s.weight, p.weight),
    ];
    changes.contains(&true)
}

fn caller_from(c: &CallerFields<'_>) -> Caller {
    Caller {
        channel: c.channel.into(),
        uniqueid: c.uniqueid.into(),
        linkedid: c.linkedid.into(),
        caller_id_num: caller_id(c.caller_id_num),
        caller_id_name: caller_id(c.caller_id_name),
        connected_line_num: caller_id(c.connected_line_num),
        connected_line_name: caller_id(c.connected_line_name),
        dialled: c.exten.into(),
        privacy: withheld(c.presentation),
        ..Caller::default()
    }
}

/// The Uniqueid of the call an AgentComplete without a caller block ends: Asterisk builds the
/// block from the caller channel's latest snapshot, and when the caller hung up first its
/// channel may already be gone (as the Dest block goes missing when the agent hung up first,
/// ami.md §2.3). The call is then the one the member answered in this queue: by the agent's
/// channel when the Dest block is there, by the member's interface otherwise — if exactly one
/// call fits. Rare, so a scan of the queue's connected calls.
pub(super) fn answered_by<'c>(
    calls: impl IntoIterator<Item = &'c ConnectedCall>,
    a: &AgentFields<'_>,
) -> Option<Text> {
    let mut fits = calls.into_iter().filter(|c| match a.dest_channel {
        "" => c.interface == a.interface,
        dest => c.agent_channel == dest,
    });
    match (fits.next(), fits.next()) {
        (Some(call), None) => Some(call.uniqueid.clone()),
        _ => None,
    }
}

/// `CALLERID(pres)` values starting with `prohib` withhold the number.
fn withheld(presentation: Option<&str>) -> bool {
    presentation.is_some_and(|p| p.starts_with("prohib"))
}

/// A 1-based position from AMI (`Position`); anything below 1 means the front.
fn place(position: i64) -> usize {
    usize::try_from(position).unwrap_or(0).max(1)
}

fn waiting(position: usize, caller: &Caller) -> Waiting {
    Waiting {
        position: position as i64,
        caller: caller.clone(),
    }
}

/// The queue, and whether it was created just now (with its stable id). One lookup of the
/// server and two of the queue on the way, whatever the event.
fn queue_entry<'s>(state: &'s mut State, server: &Arc<str>, name: &str) -> (&'s mut Queue, bool) {
    let State { servers, ids, .. } = state;
    let entry = super::model::server_entry(servers, server);
    // One search with an owned key costs less than two without: a name of up to 24 bytes is
    // copied inline, with no allocation, cheaper than a descent of the tree, the more so the
    // more queues there are.
    match entry.queues.entry(name.into()) {
        btree_map::Entry::Occupied(queue) => (queue.into_mut(), false),
        btree_map::Entry::Vacant(slot) => {
            let id = ids.get_or_assign(server, name);
            (
                slot.insert(Queue::new(server.clone(), Arc::from(name), id)),
                true,
            )
        }
    }
}

/// What a queue's `queue_updated` says: its statistics now.
fn announced(q: &Queue) -> ChangeKind {
    ChangeKind::QueueUpdated {
        queue: q.name.clone(),
        queue_id: q.id,
        stats: q.stats.clone(),
    }
}

impl<C: Changes> Fold<'_, C> {
    fn push(&mut self, kind: ChangeKind) {
        self.seq += 1;
        self.changes.push_change(Change {
            seq: self.seq,
            server: self.server.clone(),
            kind,
        });
    }

    /// The queue, created (with its stable id) the first time anything mentions it, and
    /// announced then with what is known of it: nothing yet.
    fn queue<'s>(&mut self, state: &'s mut State, name: &str) -> &'s mut Queue {
        let (queue, created) = queue_entry(state, self.server, name);
        if created {
            self.push(announced(queue));
        }
        queue
    }

    fn link(&mut self, state: &mut State, change: &LinkChange) {
        if *change == LinkChange::Removed {
            if let Some(server) = state.servers.remove(self.server) {
                for q in server.queues.into_values() {
                    self.push(ChangeKind::QueueRemoved {
                        queue: q.name,
                        queue_id: q.id,
                    });
                }
                self.push(ChangeKind::ServerRemoved);
            }
            return;
        }
        let link = &mut state.server_mut(self.server).link;
        let new = match change {
            LinkChange::Up => super::Link {
                connected: true,
                synced: false,
                reason: Some("resync in progress".into()),
            },
            LinkChange::Down(reason) => super::Link {
                connected: false,
                synced: false,
                reason: Some(reason.clone()),
            },
            LinkChange::Removed => return,
        };
        if *link != new {
            *link = new.clone();
            self.push(ChangeKind::Link(new));
        }
    }

    fn event(&mut self, state: &mut State, event: &Event<'_>) {
        match event {
            Event::MemberStatus(f)
            | Event::MemberAdded(f)
            | Event::MemberPause(f)
            | Event::MemberPenalty(f)
            | Event::MemberRinginuse(f) => self.member_event(state, f),
            Event::MemberRemoved(f) => self.member_removed(state, f.queue, f.interface),
            Event::CallerJoin(c) => self.caller_join(state, c),
            Event::CallerLeave(c) => self.caller_leave(state, c),
            Event::CallerAbandon(a) => {
                let q = self.queue(state, a.caller.queue);
                if let Some(c) = q.callers.get_mut(a.caller.uniqueid) {
                    c.abandoned = true;
                }
            }
            Event::AgentCalled(a) => {
                let at = self.at_secs;
                let q = self.queue(state, a.caller.queue);
                // Only a waiting caller is rung; a repeated AgentCalled keeps the first time.
                if let Some(c) = q.callers.get_mut(a.caller.uniqueid) {
                    if !c.ringing.contains_key(a.interface) {
                        c.ringing.push(Rung {
                            interface: a.interface.into(),
                            since: at,
                        });
                    }
                }
                let queue = q.name.clone();
                self.push(ChangeKind::AgentCalled {
                    queue,
                    interface: a.interface.into(),
                    uniqueid: a.caller.uniqueid.into(),
                })
            }
            Event::AgentRingNoAnswer(a) => {
                let q = self.queue(state, a.caller.queue);
                if let Some(c) = q.callers.get_mut(a.caller.uniqueid) {
                    c.ringing.remove(a.interface);
                }
                let queue = q.name.clone();
                self.push(ChangeKind::AgentRingNoAnswer {
                    queue,
                    interface: a.interface.into(),
                    uniqueid: a.caller.uniqueid.into(),
                    ring_time_ms: a.ring_time,
                })
            }
            Event::AgentConnect(a) => self.agent_connect(state, a),
            Event::AgentComplete(a) => self.agent_done(state, a, a.reason),
            Event::AgentDump(a) => self.agent_done(state, a, "dump"),
            // List items only mean something as a whole list: they arrive as a snapshot.
            Event::Params(_) | Event::Member(_) | Event::Entry(_) => {}
            Event::Hangup {
                uniqueid,
                queue_status,
            } => self.push(ChangeKind::CallerHungUp {
                uniqueid: (*uniqueid).into(),
                queue_status: (*queue_status).into(),
            }),
            Event::FullyBooted | Event::Module { .. } | Event::Shutdown | Event::Other => {}
        }
    }

    fn member_event(&mut self, state: &mut State, f: &MemberFields<'_>) {
        let q = self.queue(state, f.queue);
        let queue = q.name.clone();
        let member = match q.members.get_mut(f.interface) {
            Some(old) => {
                if !merge_member(old, f, Source::Event) {
                    return;
                }
                old.clone()
            }
            None => {
                let member = member_from(f);
                q.members.insert(member.clone());
                member
            }
        };
        self.push(ChangeKind::MemberUpdated { queue, member });
    }

    fn member_removed(&mut self, state: &mut State, queue: &str, interface: &str) {
        let q = self.queue(state, queue);
        if q.members.remove(interface).is_some() {
            self.push(ChangeKind::MemberRemoved {
                queue: q.name.clone(),
                interface: interface.into(),
            });
        }
    }

    fn caller_join(&mut self, state: &mut State, c: &CallerFields<'_>) {
        let at = self.at_secs;
        let q = self.queue(state, c.queue);
        let mut caller = caller_from(c);
        caller.entered = at;
        let old = q.callers.remove(c.uniqueid);
        if let Some((_, old)) = &old {
            // Already known (from a snapshot that raced this event): keep what only we know.
            caller.entered = old.entered;
            caller.priority = old.priority;
            caller.abandoned = old.abandoned;
            caller.ringing = old.ringing.clone();
        }
        let position = q.callers.insert(place(c.position), caller);
        q.stats.calls = q.callers.len() as i64;
        let Some(caller) = q.callers.get(c.uniqueid) else {
            return;
        };
        let kind = match old {
            None => ChangeKind::CallerJoined {
                queue: q.name.clone(),
                caller: waiting(position, caller),
            },
            Some((was, old)) if was == position && old == *caller => return,
            Some(_) => ChangeKind::CallerUpdated {
                queue: q.name.clone(),
                caller: waiting(position, caller),
            },
        };
        self.push(kind);
    }

    fn caller_leave(&mut self, state: &mut State, c: &CallerFields<'_>) {
        let q = self.queue(state, c.queue);
        let Some((position, old)) = q.callers.remove(c.uniqueid) else {
            return;
        };
        q.stats.calls = q.callers.len() as i64;
        self.push(ChangeKind::CallerLeft {
            queue: q.name.clone(),
            uniqueid: old.uniqueid,
            position: position as i64,
            abandoned: old.abandoned,
        });
    }

    fn set_in_call(&mut self, q: &mut Queue, interface: &str, in_call: bool) {
        if let Some(m) = q.members.get_mut(interface) {
            if m.in_call != in_call {
                m.in_call = in_call;
                let member = m.clone();
                self.push(ChangeKind::MemberUpdated {
                    queue: q.name.clone(),
                    member,
                });
            }
        }
    }

    fn agent_connect(&mut self, state: &mut State, a: &AgentFields<'_>) {
        let q = self.queue(state, a.caller.queue);
        let (dialled, privacy) = match q.callers.get_mut(a.caller.uniqueid) {
            Some(c) => {
                c.ringing = Default::default();
                (c.dialled.clone(), c.privacy)
            }
            None => (a.caller.exten.into(), withheld(a.caller.presentation)),
        };
        let call = ConnectedCall {
            uniqueid: a.caller.uniqueid.into(),
            channel: a.caller.channel.into(),
            caller_id_num: caller_id(a.caller.caller_id_num),
            caller_id_name: caller_id(a.caller.caller_id_name),
            interface: a.interface.into(),
            member_name: a.member_name.into(),
            agent_channel: a.dest_channel.into(),
            hold_time: a.hold_time,
            ring_time: a.ring_time,
            connected_at: self.at_secs,
            dialled,
            privacy,
        };
        let queue = q.name.clone();
        q.connected_calls.push(call.clone());
        // InCall becomes 1 at bridge time without an event of its own (ami.md §2.5).
        self.set_in_call(q, a.interface, true);
        self.push(ChangeKind::CallConnected { queue, call });
    }

    fn agent_done(&mut self, state: &mut State, a: &AgentFields<'_>, reason: &str) {
        let q = self.queue(state, a.caller.queue);
        let queue = q.name.clone();
        let uniqueid = match a.caller.uniqueid {
            "" => answered_by(q.connected_calls.iter(), a).unwrap_or_default(),
            uniqueid => uniqueid.into(),
        };
        q.connected_calls.remove(&uniqueid);
        // InCall goes back to 0 silently; CallsTaken and LastCall change silently too and are
        // read back by the client's targeted QueueStatus, never guessed (guessing would double
        // them when this event raced a snapshot).
        self.set_in_call(q, a.interface, false);
        self.push(ChangeKind::CallCompleted {
            queue,
            uniqueid,
            interface: a.interface.into(),
            hold_time: a.hold_time,
            talk_time: a.talk_time,
            reason: reason.into(),
        });
    }

    fn snapshot(&mut self, state: &mut State, status: &QueueStatus) {
        let events: Vec<Event<'_>> = status.items.iter().map(Event::from_message).collect();
        let mut params: HashMap<&str, &ParamsFields<'_>> = HashMap::with_capacity(events.len());
        let mut members: HashMap<&str, Vec<&MemberFields<'_>>> = HashMap::new();
        let mut entries: HashMap<&str, Vec<&EntryFields<'_>>> = HashMap::new();
        for e in &events {
            match e {
                Event::Params(p) => {
                    params.insert(p.queue, p);
                }
                Event::Member(m) => members.entry(m.queue).or_default().push(m),
                Event::Entry(x) => entries.entry(x.caller.queue).or_default().push(x),
                _ => {}
            }
        }
        // The queues listed, and those in scope but not listed (gone), each in name order;
        // they are folded merged in name order.
        let (mut listed, gone): (Vec<&str>, Vec<Arc<str>>) = match &status.scope {
            Scope::All => (
                params.keys().copied().collect(),
                state
                    .server_mut(self.server)
                    .queues
                    .values()
                    .filter(|q| !params.contains_key(&*q.name))
                    .map(|q| q.name.clone())
                    .collect(),
            ),
            Scope::Queue(q) | Scope::Callers(q) => match params.get_key_value(q.as_str()) {
                Some((name, _)) => (vec![*name], Vec::new()),
                None => (Vec::new(), vec![Arc::from(q.as_str())]),
            },
            Scope::Merge => (params.keys().copied().collect(), Vec::new()),
        };
        listed.sort_unstable();
        let with_members = !matches!(status.scope, Scope::Callers(_));
        let mut gone = gone.into_iter().peekable();
        for name in listed {
            while let Some(g) = gone.next_if(|g| **g < *name) {
                self.remove_queue(state, &g);
            }
            let Some(p) = params.get(name) else {
                continue;
            };
            let listed_members = members.remove(name).unwrap_or_default();
            let listed_entries = entries.remove(name).unwrap_or_default();
            self.queue_snapshot(
                state,
                p,
                with_members.then_some(&listed_members),
                &listed_entries,
            );
        }
        for g in gone {
            self.remove_queue(state, &g);
        }
        if status.scope == Scope::All {
            let link = &mut state.server_mut(self.server).link;
            if link.connected && !link.synced {
                link.synced = true;
                link.reason = None;
                let link = link.clone();
                self.push(ChangeKind::Link(link));
            }
        }
    }

    fn remove_queue(&mut self, state: &mut State, name: &str) {
        if let Some(q) = state.server_mut(self.server).queues.remove(name) {
            self.push(ChangeKind::QueueRemoved {
                queue: q.name,
                queue_id: q.id,
            });
        }
    }

    fn queue_snapshot(
        &mut self,
        state: &mut State,
        p: &ParamsFields<'_>,
        members: Option<&Vec<&MemberFields<'_>>>,
        entries: &[&EntryFields<'_>],
    ) {
        let at = self.at_secs;
        let name = p.queue;
        // A queue the snapshot brings is announced with its statistics, its callers not yet
        // counted: they follow, each a change, and the count after them if there are any.
        let (q, created) = queue_entry(state, self.server, name);
        let queue = q.name.clone();
        let mut changes = Vec::new();
        if created {
            merge_stats(&mut q.stats, p, 0);
            changes.push(announced(q));
        }

        if let Some(members) = members {
            let listed: HashSet<&str> = members.iter().map(|m| m.interface).collect();
            q.members.retain(|m| {
                let keep = listed.contains(m.interface.as_str());
                if !keep {
                    changes.push(ChangeKind::MemberRemoved {
                        queue: queue.clone(),
                        interface: m.interface.clone(),
                    });
                }
                keep
            });
            for f in members {
                let member = match q.members.get_mut(f.interface) {
                    Some(old) => {
                        if !merge_member(old, f, Source::Snapshot) {
                            continue;
                        }
                        old.clone()
                    }
                    None => {
                        let mut member = member_from(f);
                        member.ring_in_use = None;
                        q.members.insert(member.clone());
                        member
                    }
                };
                changes.push(ChangeKind::MemberUpdated {
                    queue: queue.clone(),
                    member,
                });
            }
            let busy: HashSet<&str> = q
                .members
                .values()
                .filter(|m| m.in_call)
                .map(|m| m.interface.as_str())
                .collect();
            q.connected_calls
                .retain(|c| busy.contains(c.interface.as_str()));
        }

        let mut sorted: Vec<&&EntryFields<'_>> = entries.iter().collect();
        sorted.sort_by_key(|e| e.caller.position);
        let mut callers: Vec<Caller> = Vec::with_capacity(sorted.len());
        for e in sorted {
            let mut caller = caller_from(&e.caller);
            caller.priority = e.priority;
            match q.callers.get(e.caller.uniqueid) {
                Some(old) => {
                    caller.linkedid = old.linkedid.clone();
                    caller.dialled = old.dialled.clone();
                    caller.privacy = old.privacy;
                    caller.entered = old.entered;
                    caller.abandoned = old.abandoned;
                    caller.ringing = old.ringing.clone();
                }
                None => caller.entered = at - e.wait,
            }
            callers.push(caller);
        }
        let listed: HashSet<&str> = callers.iter().map(|c| c.uniqueid.as_str()).collect();
        for (position, old) in q.callers.ranked() {
            if !listed.contains(old.uniqueid.as_str()) {
                changes.push(ChangeKind::CallerLeft {
                    queue: queue.clone(),
                    uniqueid: old.uniqueid.clone(),
                    position: position as i64,
                    abandoned: old.abandoned,
                });
            }
        }
        // Positions after the leaves above: the order the snapshot lists.
        for (i, c) in callers.iter().enumerate() {
            let position = i + 1;
            match q.callers.get(&c.uniqueid) {
                None => changes.push(ChangeKind::CallerJoined {
                    queue: queue.clone(),
                    caller: waiting(position, c),
                }),
                Some(old) if old != c || q.callers.position(&c.uniqueid) != Some(position) => {
                    changes.push(ChangeKind::CallerUpdated {
                        queue: queue.clone(),
                        caller: waiting(position, c),
                    })
                }
                Some(_) => {}
            }
        }
        q.callers.replace(callers);

        if merge_stats(&mut q.stats, p, q.callers.len() as i64) {
            changes.push(announced(q));
        }
        for c in changes {
            self.push(c);
        }
    }
}
