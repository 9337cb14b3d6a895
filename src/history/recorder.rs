//! The pure side of the call history: a change of the state in, the rows it finishes out. No
//! I/O and no clock (the time comes in with each change), so it is tested with plain values.

use std::hash::BuildHasher;

use hashbrown::hash_table::{Entry, HashTable};
use tracing::{debug, warn};

use super::{CallRecord, Write, MAX_PENDING, UNRESOLVED_AFTER};
use crate::state::{Change, ChangeKind};

/// The outcome of an unanswered caller's `QUEUESTATUS`; `None` keeps `abandoned`.
pub(super) fn outcome_of(queue_status: &str) -> Option<&'static str> {
    match queue_status {
        "TIMEOUT" => Some("timeout"),
        "LEAVEEMPTY" | "JOINEMPTY" => Some("no_members"),
        "LEAVEUNAVAIL" | "JOINUNAVAIL" => Some("all_busy"),
        "WITHDRAW" => Some("withdrawn"),
        _ => None,
    }
}

/// A call between join and outcome.
pub(super) struct Pending {
    record: CallRecord,
    /// Epoch seconds it left the waiting list unanswered without an abandon.
    left_at: Option<i64>,
}

/// The recorder: folds changes into rows.
///
/// Pending calls, each a box found by the server, Uniqueid and queue its own record holds, so
/// a lookup copies no key and the table holds one pointer per slot: grown as calls come, up to
/// 262,144 slots (2.3 MiB) for [`MAX_PENDING`], each doubling a step of at most 1.2 MiB. (With
/// the keys in the slots a doubling was the 10 MiB step of the 30-minute soak, BENCHMARKS.md,
/// "Soak", and the table was made for twice `MAX_PENDING` from the start; but a table that big
/// around a few live calls is slow either way: 16 MiB missed the cache at every lookup, and
/// the tombstones a stream of joins and leaves spreads over it make every miss a long probe.)
pub(super) struct Recorder {
    pub(super) pending: HashTable<Box<Pending>>,
    hasher: foldhash::fast::RandomState,
    /// Calls not followed since the last sweep: [`MAX_PENDING`] were pending already.
    untracked: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            pending: HashTable::new(),
            hasher: Default::default(),
            untracked: 0,
        }
    }
}

/// Which call: server, Uniqueid, queue.
type Key<'a> = (&'a str, &'a str, &'a str);

fn key_of(p: &Pending) -> Key<'_> {
    (&p.record.server, &p.record.uniqueid, &p.record.queue)
}

impl Recorder {
    fn hash(&self, key: Key<'_>) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The slot of a call, with the hasher a rehash needs.
    fn entry(&mut self, key: Key<'_>) -> Entry<'_, Box<Pending>> {
        let hash = self.hash(key);
        let hasher = self.hasher.clone();
        self.pending.entry(
            hash,
            |p| key_of(p) == key,
            move |p| hasher.hash_one(key_of(p)),
        )
    }

    fn remove(&mut self, key: Key<'_>) -> Option<Box<Pending>> {
        let hash = self.hash(key);
        let found = self.pending.find_entry(hash, |p| key_of(p) == key).ok()?;
        Some(found.remove().0)
    }

    fn get_mut(&mut self, key: Key<'_>) -> Option<&mut Pending> {
        let hash = self.hash(key);
        self.pending
            .find_mut(hash, |p| key_of(p) == key)
            .map(|p| &mut **p)
    }

    pub(super) fn observe(&mut self, c: &Change, now: i64) -> Vec<Write> {
        let server = &c.server;
        let mut out = Vec::new();
        match &c.kind {
            ChangeKind::CallerJoined { queue, caller }
            | ChangeKind::CallerUpdated { queue, caller } => {
                let caller = &caller.caller;
                let full = self.pending.len() >= MAX_PENDING;
                let joined = matches!(c.kind, ChangeKind::CallerJoined { .. });
                match self.entry((server, &caller.uniqueid, queue)) {
                    Entry::Occupied(_) => {}
                    Entry::Vacant(_) if full => self.untracked += u64::from(joined),
                    Entry::Vacant(slot) => {
                        slot.insert(Box::new(Pending {
                            record: CallRecord {
                                server: server.to_string(),
                                queue: queue.to_string(),
                                uniqueid: caller.uniqueid.to_string(),
                                caller_number: caller.caller_id_num.to_string(),
                                caller_name: caller.caller_id_name.to_string(),
                                dialled: caller.dialled.to_string(),
                                entered: caller.entered,
                                ..CallRecord::default()
                            },
                            left_at: None,
                        }));
                    }
                }
            }
            ChangeKind::CallerLeft {
                queue,
                uniqueid,
                abandoned,
                ..
            } => {
                let key = (&**server, &**uniqueid, &**queue);
                if *abandoned {
                    if let Some(mut p) = self.remove(key) {
                        p.record.outcome = "abandoned".into();
                        p.record.ended = now;
                        p.record.wait_seconds = (now - p.record.entered).max(0);
                        out.push(Write::Insert(p.record));
                    }
                } else if let Some(p) = self.get_mut(key) {
                    // Answered calls leave before their AgentConnect.
                    p.left_at = Some(now);
                }
            }
            ChangeKind::CallConnected { queue, call } => {
                let entered = call.connected_at - call.hold_time;
                let p = self
                    .entry((server, &call.uniqueid, queue))
                    .or_insert_with(|| {
                        Box::new(Pending {
                            record: CallRecord {
                                server: server.to_string(),
                                queue: queue.to_string(),
                                uniqueid: call.uniqueid.to_string(),
                                caller_number: call.caller_id_num.to_string(),
                                caller_name: call.caller_id_name.to_string(),
                                dialled: call.dialled.to_string(),
                                entered,
                                ..CallRecord::default()
                            },
                            left_at: None,
                        })
                    });
                let p = p.into_mut();
                p.left_at = None;
                p.record.answered = Some(call.connected_at);
                p.record.member_interface = call.interface.to_string();
                p.record.member_name = call.member_name.to_string();
                p.record.wait_seconds = call.hold_time;
            }
            ChangeKind::CallCompleted {
                queue,
                uniqueid,
                talk_time,
                reason,
                hold_time,
                interface,
            } => {
                let Some(mut p) = self.remove((server, uniqueid, queue)) else {
                    debug!(%server, %queue, %uniqueid, "completed call unknown to the history");
                    return out;
                };
                p.record.ended = now;
                p.record.talk_seconds = *talk_time;
                p.record.wait_seconds = *hold_time;
                p.record.member_interface = interface.to_string();
                p.record.outcome = if reason == "dump" {
                    "agent_dump".into()
                } else {
                    "answered".into()
                };
                out.push(Write::Insert(p.record));
            }
            ChangeKind::CallerHungUp {
                uniqueid,
                queue_status,
            } => {
                if let Some(outcome) = outcome_of(queue_status) {
                    out.push(Write::Refine(
                        server.to_string(),
                        uniqueid.to_string(),
                        outcome.into(),
                    ));
                }
            }
            _ => {}
        }
        out
    }

    /// Calls not followed since the last sweep.
    #[cfg(test)]
    pub(super) fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Writes callers that left unanswered without an abandon long ago as `unknown`, and
    /// forgets calls pending for over a day; logs the calls not followed since the last sweep.
    pub(super) fn sweep(&mut self, now: i64) -> Vec<Write> {
        if self.untracked > 0 {
            warn!(
                calls = self.untracked,
                limit = MAX_PENDING,
                "call history: calls not recorded, too many calls pending"
            );
            self.untracked = 0;
        }
        let mut out = Vec::new();
        let unresolved = UNRESOLVED_AFTER.as_secs() as i64;
        self.pending.retain(|p| match p.left_at {
            Some(left) if now - left >= unresolved => {
                let mut r = std::mem::take(&mut p.record);
                r.outcome = "unknown".into();
                r.ended = left;
                r.wait_seconds = (left - r.entered).max(0);
                out.push(Write::Insert(r));
                false
            }
            _ => now - p.record.entered < 86_400,
        });
        out
    }
}
