//! `apply`: the pure fold of one input into the state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::ami::event::{AgentFields, CallerFields, EntryFields, MemberFields, ParamsFields};
use crate::ami::Event;

use super::{
    Caller, Change, ChangeKind, ConnectedCall, Input, LinkChange, Member, Queue, QueueStats,
    QueueStatus, Ringing, Scope, State, What,
};
use crate::state::{DeviceState, Membership};

/// Folds one input into the state and returns what changed, in order.
pub fn apply(state: &mut State, input: &Input) -> Vec<Change> {
    let mut fold = Fold {
        server: &input.server,
        at_secs: i64::try_from(input.at_ms / 1000).unwrap_or(i64::MAX),
        changes: Vec::new(),
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
    let mut changes = fold.changes;
    for c in &mut changes {
        state.seq += 1;
        c.seq = state.seq;
    }
    changes
}

struct Fold<'i> {
    server: &'i Arc<str>,
    at_secs: i64,
    changes: Vec<Change>,
}

/// Asterisk prints an unknown caller id as `<unknown>` in events and `unknown` in QueueStatus
/// (ami.md §2.2, §2.4); both mean "none".
fn caller_id(v: &str) -> String {
    match v {
        "<unknown>" | "unknown" => String::new(),
        _ => v.to_owned(),
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

/// Folds a member event into the member we know, in place; true when anything changed.
fn merge_member(m: &mut Member, f: &MemberFields<'_>) -> bool {
    fn set<T: PartialEq>(slot: &mut T, value: T) -> bool {
        let changed = *slot != value;
        if changed {
            *slot = value;
        }
        changed
    }
    fn set_str(slot: &mut super::super::Text, value: &str) -> bool {
        let changed = slot != value;
        if changed {
            slot.clear();
            slot.push_str(value);
        }
        changed
    }
    // Call counters only grow between snapshots; an event queued before a snapshot must not
    // take back what the snapshot already counted (ami.md §1.14). Ringinuse is absent from
    // some events: keep what we know.
    let (calls_taken, last_call) = (
        f.calls_taken.max(m.calls_taken),
        f.last_call.max(m.last_call),
    );
    let ring_in_use = f.ring_in_use.or(m.ring_in_use);
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

fn stats_from(p: &ParamsFields<'_>) -> QueueStats {
    QueueStats {
        strategy: p.strategy.into(),
        max: p.max,
        calls: p.calls,
        hold_time: p.hold_time,
        talk_time: p.talk_time,
        completed: p.completed,
        abandoned: p.abandoned,
        service_level: p.service_level,
        service_level_perf: p.service_level_perf,
        service_level_perf2: p.service_level_perf2,
        weight: p.weight,
    }
}

fn caller_from(c: &CallerFields<'_>) -> Caller {
    Caller {
        position: c.position,
        channel: c.channel.to_owned(),
        uniqueid: c.uniqueid.to_owned(),
        linkedid: c.linkedid.to_owned(),
        caller_id_num: caller_id(c.caller_id_num),
        caller_id_name: caller_id(c.caller_id_name),
        connected_line_num: caller_id(c.connected_line_num),
        connected_line_name: caller_id(c.connected_line_name),
        dialled: c.exten.to_owned(),
        privacy: withheld(c.presentation),
        ..Caller::default()
    }
}

/// `CALLERID(pres)` values starting with `prohib` withhold the number.
fn withheld(presentation: Option<&str>) -> bool {
    presentation.is_some_and(|p| p.starts_with("prohib"))
}

fn renumber(callers: &mut [Caller]) {
    for (i, c) in callers.iter_mut().enumerate() {
        c.position = i as i64 + 1;
    }
}

impl Fold<'_> {
    fn push(&mut self, kind: ChangeKind) {
        self.changes.push(Change {
            seq: 0,
            server: self.server.clone(),
            kind,
        });
    }

    /// The queue, created (with its stable id) the first time anything mentions it, and
    /// announced then with what is known of it: nothing yet.
    fn queue<'s>(&mut self, state: &'s mut State, name: &str) -> &'s mut Queue {
        let (queue, created) = self.queue_entry(state, name);
        if created {
            self.push(ChangeKind::QueueUpdated {
                queue: queue.name.clone(),
                queue_id: queue.id,
                stats: QueueStats::default(),
            });
        }
        queue
    }

    /// The queue, created (with its stable id) if it is new, and whether it was.
    fn queue_entry<'s>(&mut self, state: &'s mut State, name: &str) -> (&'s mut Queue, bool) {
        let server = state.server_mut(self.server);
        if !server.queues.contains_key(name) {
            let id = state.ids.get_or_assign(self.server, name);
            let queue = Queue {
                server: self.server.clone(),
                name: Arc::from(name),
                id,
                stats: QueueStats::default(),
                members: BTreeMap::new(),
                callers: Vec::new(),
                connected_calls: Vec::new(),
                ringing: Vec::new(),
            };
            let server = state.server_mut(self.server);
            return (server.queues.entry(name.to_owned()).or_insert(queue), true);
        }
        let queue = state
            .server_mut(self.server)
            .queues
            .get_mut(name)
            .unwrap_or_else(|| unreachable!("queue {name} was checked above"));
        (queue, false)
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
                if let Some(c) = q
                    .callers
                    .iter_mut()
                    .find(|c| c.uniqueid == a.caller.uniqueid)
                {
                    c.abandoned = true;
                }
            }
            Event::AgentCalled(a) => {
                let at = self.at_secs;
                let q = self.queue(state, a.caller.queue);
                let waiting = q.callers.iter().any(|c| c.uniqueid == a.caller.uniqueid);
                let known = q
                    .ringing
                    .iter()
                    .any(|r| r.uniqueid == a.caller.uniqueid && r.interface == a.interface);
                if waiting && !known {
                    q.ringing.push(Ringing {
                        uniqueid: a.caller.uniqueid.to_owned(),
                        interface: a.interface.to_owned(),
                        since: at,
                    });
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
                q.ringing
                    .retain(|r| r.uniqueid != a.caller.uniqueid || r.interface != a.interface);
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
                if !merge_member(old, f) {
                    return;
                }
                old.clone()
            }
            None => {
                let member = member_from(f);
                q.members
                    .insert(member.interface.to_string(), member.clone());
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
        let known = q.callers.iter().position(|x| x.uniqueid == c.uniqueid);
        let old = known.map(|i| q.callers.remove(i));
        if let Some(old) = &old {
            // Already known (from a snapshot that raced this event): keep what only we know.
            caller.entered = old.entered;
            caller.priority = old.priority;
            caller.abandoned = old.abandoned;
        }
        let index = usize::try_from(c.position.max(1) - 1)
            .unwrap_or(0)
            .min(q.callers.len());
        q.callers.insert(index, caller);
        renumber(&mut q.callers);
        q.stats.calls = q.callers.len() as i64;
        let caller = &q.callers[index];
        let kind = match old {
            None => ChangeKind::CallerJoined {
                queue: q.name.clone(),
                caller: super::published(caller),
            },
            Some(old) if old == *caller => return,
            Some(_) => ChangeKind::CallerUpdated {
                queue: q.name.clone(),
                caller: super::published(caller),
            },
        };
        self.push(kind);
    }

    fn caller_leave(&mut self, state: &mut State, c: &CallerFields<'_>) {
        let q = self.queue(state, c.queue);
        let Some(i) = q.callers.iter().position(|x| x.uniqueid == c.uniqueid) else {
            return;
        };
        let old = q.callers.remove(i);
        q.ringing.retain(|r| r.uniqueid != old.uniqueid);
        renumber(&mut q.callers);
        q.stats.calls = q.callers.len() as i64;
        self.push(ChangeKind::CallerLeft {
            queue: q.name.clone(),
            uniqueid: old.uniqueid.into(),
            position: old.position,
            abandoned: old.abandoned,
        });
    }

    fn set_in_call(&mut self, state: &mut State, queue: &str, interface: &str, in_call: bool) {
        let q = self.queue(state, queue);
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
        q.ringing.retain(|r| r.uniqueid != a.caller.uniqueid);
        let (dialled, privacy) = match q.callers.iter().find(|c| c.uniqueid == a.caller.uniqueid) {
            Some(c) => (c.dialled.as_str().into(), c.privacy),
            None => (a.caller.exten.into(), withheld(a.caller.presentation)),
        };
        let call = ConnectedCall {
            uniqueid: a.caller.uniqueid.into(),
            channel: a.caller.channel.into(),
            caller_id_num: caller_id(a.caller.caller_id_num).into(),
            caller_id_name: caller_id(a.caller.caller_id_name).into(),
            interface: a.interface.into(),
            member_name: a.member_name.into(),
            agent_channel: a.dest_channel.into(),
            hold_time: a.hold_time,
            ring_time: a.ring_time,
            connected_at: self.at_secs,
            dialled,
            privacy,
        };
        let q = self.queue(state, a.caller.queue);
        let queue = q.name.clone();
        q.connected_calls.retain(|c| c.uniqueid != call.uniqueid);
        q.connected_calls.push(call.clone());
        // InCall becomes 1 at bridge time without an event of its own (ami.md §2.5).
        self.set_in_call(state, a.caller.queue, a.interface, true);
        self.push(ChangeKind::CallConnected { queue, call });
    }

    fn agent_done(&mut self, state: &mut State, a: &AgentFields<'_>, reason: &str) {
        let q = self.queue(state, a.caller.queue);
        let queue = q.name.clone();
        let uniqueid = match a.caller.uniqueid {
            "" => crate::state::fold::answered_by(&q.connected_calls, a).unwrap_or_default(),
            uniqueid => uniqueid.into(),
        };
        q.connected_calls.retain(|c| c.uniqueid != uniqueid);
        // InCall goes back to 0 silently; CallsTaken and LastCall change silently too and are
        // read back by the client's targeted QueueStatus, never guessed (guessing would double
        // them when this event raced a snapshot).
        self.set_in_call(state, a.caller.queue, a.interface, false);
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
        let mut params: BTreeMap<&str, &ParamsFields<'_>> = BTreeMap::new();
        let mut members: BTreeMap<&str, Vec<&MemberFields<'_>>> = BTreeMap::new();
        let mut entries: BTreeMap<&str, Vec<&EntryFields<'_>>> = BTreeMap::new();
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
        let in_scope: BTreeSet<String> = match &status.scope {
            Scope::All => state
                .server_mut(self.server)
                .queues
                .keys()
                .cloned()
                .chain(params.keys().map(|q| (*q).to_owned()))
                .collect(),
            Scope::Queue(q) | Scope::Callers(q) => [q.clone()].into(),
            Scope::Merge => params.keys().map(|q| (*q).to_owned()).collect(),
        };
        let with_members = !matches!(status.scope, Scope::Callers(_));
        for name in &in_scope {
            let Some(p) = params.get(name.as_str()) else {
                self.remove_queue(state, name);
                continue;
            };
            let listed_members = members.remove(name.as_str()).unwrap_or_default();
            let listed_entries = entries.remove(name.as_str()).unwrap_or_default();
            self.queue_snapshot(
                state,
                p,
                with_members.then_some(&listed_members),
                &listed_entries,
            );
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
        // A new queue is announced with the snapshot's statistics, its callers not yet counted.
        let (q, created) = self.queue_entry(state, name);
        let queue = q.name.clone();
        let mut changes = Vec::new();
        if created {
            let mut stats = stats_from(p);
            stats.calls = 0;
            q.stats = stats.clone();
            changes.push(ChangeKind::QueueUpdated {
                queue: queue.clone(),
                queue_id: q.id,
                stats,
            });
        }

        if let Some(members) = members {
            let listed: BTreeSet<&str> = members.iter().map(|m| m.interface).collect();
            let gone: Vec<String> = q
                .members
                .keys()
                .filter(|k| !listed.contains(k.as_str()))
                .cloned()
                .collect();
            for interface in gone {
                q.members.remove(&interface);
                changes.push(ChangeKind::MemberRemoved {
                    queue: queue.clone(),
                    interface: interface.into(),
                });
            }
            for f in members {
                let mut member = member_from(f);
                let old = q.members.get(f.interface);
                // QueueStatus does not list Ringinuse: keep what an event told us.
                member.ring_in_use = old.and_then(|o| o.ring_in_use);
                if old != Some(&member) {
                    q.members
                        .insert(member.interface.to_string(), member.clone());
                    changes.push(ChangeKind::MemberUpdated {
                        queue: queue.clone(),
                        member,
                    });
                }
            }
            let busy: BTreeSet<&str> = q
                .members
                .values()
                .filter(|m| m.in_call)
                .map(|m| m.interface.as_str())
                .collect();
            q.connected_calls
                .retain(|c| busy.contains(c.interface.as_str()));
        }

        let mut callers: Vec<Caller> = Vec::with_capacity(entries.len());
        let mut sorted: Vec<&&EntryFields<'_>> = entries.iter().collect();
        sorted.sort_by_key(|e| e.caller.position);
        for e in sorted {
            let mut caller = caller_from(&e.caller);
            caller.priority = e.priority;
            match q.callers.iter().find(|c| c.uniqueid == e.caller.uniqueid) {
                Some(old) => {
                    caller.linkedid = old.linkedid.clone();
                    caller.dialled = old.dialled.clone();
                    caller.privacy = old.privacy;
                    caller.entered = old.entered;
                    caller.abandoned = old.abandoned;
                }
                None => caller.entered = at - e.wait,
            }
            callers.push(caller);
        }
        renumber(&mut callers);
        for old in &q.callers {
            if !callers.iter().any(|c| c.uniqueid == old.uniqueid) {
                changes.push(ChangeKind::CallerLeft {
                    queue: queue.clone(),
                    uniqueid: old.uniqueid.as_str().into(),
                    position: old.position,
                    abandoned: old.abandoned,
                });
            }
        }
        for c in &callers {
            match q.callers.iter().find(|o| o.uniqueid == c.uniqueid) {
                None => changes.push(ChangeKind::CallerJoined {
                    queue: queue.clone(),
                    caller: super::published(c),
                }),
                Some(old) if old != c => changes.push(ChangeKind::CallerUpdated {
                    queue: queue.clone(),
                    caller: super::published(c),
                }),
                Some(_) => {}
            }
        }
        q.callers = callers;
        let waiting: BTreeSet<&str> = q.callers.iter().map(|c| c.uniqueid.as_str()).collect();
        q.ringing.retain(|r| waiting.contains(r.uniqueid.as_str()));

        let mut stats = stats_from(p);
        stats.calls = q.callers.len() as i64;
        if q.stats != stats {
            q.stats = stats.clone();
            changes.push(ChangeKind::QueueUpdated {
                queue: queue.clone(),
                queue_id: q.id,
                stats,
            });
        }
        for c in changes {
            self.push(c);
        }
    }
}
