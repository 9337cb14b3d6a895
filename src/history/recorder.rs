//! The pure side of the call history: a change of the state in, the rows it finishes out. No
//! I/O and no clock (the time comes in with each change), so it is tested with plain values.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

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
/// A pending call is boxed: the table then holds a key and a pointer per slot (64 bytes), not
/// the whole record (~400), so its growth by doubling costs megabytes, not the 35 MiB step
/// the 30-minute soak showed with 60,000 calls pending (BENCHMARKS.md, "Soak"). It grows with
/// the calls pending, up to 262,144 slots (16 MiB) for [`MAX_PENDING`]: made that big from the
/// start, its few live calls were spread over 16 MiB and nearly every lookup missed the cache
/// (5 % of the daemon's time at a million events a second). Hashed with foldhash, as the
/// fold's indexes are: a change or two per event look it up.
pub(super) struct Recorder {
    pub(super) pending: HashMap<(Arc<str>, String, Arc<str>), Box<Pending>>,
    /// Calls not followed since the last sweep: [`MAX_PENDING`] were pending already.
    untracked: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
            untracked: 0,
        }
    }
}

impl Recorder {
    pub(super) fn observe(&mut self, c: &Change, now: i64) -> Vec<Write> {
        let server = &c.server;
        let mut out = Vec::new();
        match &c.kind {
            ChangeKind::CallerJoined { queue, caller }
            | ChangeKind::CallerUpdated { queue, caller } => {
                let caller = &caller.caller;
                let key = (server.clone(), caller.uniqueid.clone(), queue.clone());
                let full = self.pending.len() >= MAX_PENDING;
                let joined = matches!(c.kind, ChangeKind::CallerJoined { .. });
                match self.pending.entry(key) {
                    Entry::Occupied(_) => {}
                    Entry::Vacant(_) if full => self.untracked += u64::from(joined),
                    Entry::Vacant(slot) => {
                        slot.insert(Box::new(Pending {
                            record: CallRecord {
                                server: server.to_string(),
                                queue: queue.to_string(),
                                uniqueid: caller.uniqueid.clone(),
                                caller_number: caller.caller_id_num.clone(),
                                caller_name: caller.caller_id_name.clone(),
                                dialled: caller.dialled.clone(),
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
                let key = (server.clone(), uniqueid.clone(), queue.clone());
                if *abandoned {
                    if let Some(mut p) = self.pending.remove(&key) {
                        p.record.outcome = "abandoned".into();
                        p.record.ended = now;
                        p.record.wait_seconds = (now - p.record.entered).max(0);
                        out.push(Write::Insert(p.record));
                    }
                } else if let Some(p) = self.pending.get_mut(&key) {
                    // Answered calls leave before their AgentConnect.
                    p.left_at = Some(now);
                }
            }
            ChangeKind::CallConnected { queue, call } => {
                let key = (server.clone(), call.uniqueid.clone(), queue.clone());
                let entered = call.connected_at - call.hold_time;
                let p = self.pending.entry(key).or_insert_with(|| {
                    Box::new(Pending {
                        record: CallRecord {
                            server: server.to_string(),
                            queue: queue.to_string(),
                            uniqueid: call.uniqueid.clone(),
                            caller_number: call.caller_id_num.clone(),
                            caller_name: call.caller_id_name.clone(),
                            dialled: call.dialled.clone(),
                            entered,
                            ..CallRecord::default()
                        },
                        left_at: None,
                    })
                });
                p.left_at = None;
                p.record.answered = Some(call.connected_at);
                p.record.member_interface = call.interface.clone();
                p.record.member_name = call.member_name.clone();
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
                let key = (server.clone(), uniqueid.clone(), queue.clone());
                let Some(mut p) = self.pending.remove(&key) else {
                    debug!(%server, %queue, %uniqueid, "completed call unknown to the history");
                    return out;
                };
                p.record.ended = now;
                p.record.talk_seconds = *talk_time;
                p.record.wait_seconds = *hold_time;
                p.record.member_interface.clone_from(interface);
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
                        uniqueid.clone(),
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
        self.pending.retain(|_, p| match p.left_at {
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
