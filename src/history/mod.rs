//! Call history: every call that leaves a queue, in SQLite under `state_dir`.
//!
//! Written from the state's change stream by one recorder task, never by the AMI reader: the
//! recorder is an ordinary broadcast subscriber (if it ever falls behind it loses calls, never
//! stalls anything) and hands finished rows over a bounded channel to one writer thread that
//! owns the database. Reads run on the blocking pool with their own connection (WAL mode lets
//! them run beside the writer).
//!
//! A row is written when its outcome is known:
//!
//! * `answered` — at AgentComplete, with the member and the talk time;
//! * `abandoned` — at the QueueCallerLeave that followed a QueueCallerAbandon. Asterisk sends
//!   that pair for a caller hanging up *and* for a timeout, a leave-when-empty or a withdraw;
//!   the caller's Hangup then tells which, through the `QUEUESTATUS` channel variable
//!   (`channelvars = QUEUESTATUS` in manager.conf), and refines the row to `timeout`,
//!   `no_members`, `all_busy` or `withdrawn`. Without that variable, those stay `abandoned`;
//! * `agent_dump` — the member hung up before the caller was bridged;
//! * `unknown` — the caller left unanswered without an abandon (seen only when queuebridge
//!   missed events, e.g. across an AMI reconnect), after [`UNRESOLVED_AFTER`].
//!
//! Retention: rows older than `retention_days` are deleted, and at most `max_calls` rows are
//! kept, at start and every [`PRUNE_EVERY`].

mod recorder;
mod store;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::clock::now_secs;
use crate::hub::Hub;

use recorder::Recorder;
pub use store::{History, MemberDay};

/// File name under `state_dir`.
pub const FILE: &str = "history.sqlite3";
/// Rows queued for the writer; past this the recorder waits, and the change stream buffers for
/// it (a recorder that falls behind the stream says how many changes it missed).
const WRITE_QUEUE: usize = 4096;
/// Calls tracked at once between join and outcome.
const MAX_PENDING: usize = 100_000;
/// A caller that left unanswered without an abandon is written as `unknown` after this.
pub const UNRESOLVED_AFTER: Duration = Duration::from_secs(60);
/// How often old rows are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// `[history]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Rows older than this many days are deleted.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// At most this many rows are kept (the oldest go first).
    #[serde(default = "default_max_calls")]
    pub max_calls: u64,
}

fn default_retention_days() -> u32 {
    90
}
fn default_max_calls() -> u64 {
    1_000_000
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            retention_days: default_retention_days(),
            max_calls: default_max_calls(),
        }
    }
}

/// One call that left a queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    pub server: String,
    pub queue: String,
    /// The caller's `Uniqueid`.
    pub uniqueid: String,
    pub caller_number: String,
    pub caller_name: String,
    /// The number the caller dialled.
    pub dialled: String,
    /// Epoch seconds.
    pub entered: i64,
    pub answered: Option<i64>,
    pub ended: i64,
    /// `answered`, `abandoned`, `timeout`, `no_members`, `all_busy`, `withdrawn`,
    /// `agent_dump` or `unknown`.
    pub outcome: String,
    pub member_interface: String,
    pub member_name: String,
    pub wait_seconds: i64,
    pub talk_seconds: i64,
}

/// What a history query asks for.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub server: String,
    pub queue: String,
    /// Epoch seconds, inclusive, on `entered`.
    pub from: i64,
    pub to: i64,
    /// Outcomes to include; empty = all.
    pub outcomes: Vec<String>,
    /// Outcomes to exclude.
    pub exclude: Vec<String>,
    pub newest_first: bool,
    pub offset: u64,
    pub limit: u64,
}

enum Write {
    Insert(CallRecord),
    /// (server, uniqueid, outcome): refine an `abandoned` row.
    Refine(String, String, String),
    Prune,
}

/// Records calls from the change stream until `shutdown`.
pub async fn run(history: History, hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut changes = hub.subscribe();
    let mut recorder = Recorder::default();
    let mut sweep = tokio::time::interval(Duration::from_secs(10));
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        let writes = tokio::select! {
            () = shutdown.cancelled() => return,
            change = changes.recv() => match change {
                Ok(batch) => {
                    let now = now_secs();
                    batch.iter().flat_map(|c| recorder.observe(c, now)).collect()
                }
                Err(RecvError::Lagged(n)) => {
                    warn!(missed = n, "call history recorder fell behind; calls may be missing");
                    Vec::new()
                }
                Err(RecvError::Closed) => return,
            },
            _ = sweep.tick() => recorder.sweep(now_secs()),
            _ = prune.tick() => vec![Write::Prune],
        };
        // A sweep writes thousands of rows at once at a busy site: they wait for room in the
        // writer's queue rather than being dropped.
        for w in writes {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = history.send(w) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Caller, ConnectedCall, Waiting};
    use crate::state::{Change, ChangeKind};

    fn change(kind: ChangeKind) -> Change {
        Change {
            seq: 1,
            server: "pbx1".into(),
            kind,
        }
    }

    fn joined(uniqueid: &str, entered: i64) -> Change {
        change(ChangeKind::CallerJoined {
            queue: "sales".into(),
            caller: Waiting {
                position: 1,
                caller: Caller {
                    uniqueid: uniqueid.into(),
                    caller_id_num: "5551".into(),
                    entered,
                    ..Caller::default()
                },
            },
        })
    }

    fn left(uniqueid: &str, abandoned: bool) -> Change {
        change(ChangeKind::CallerLeft {
            queue: "sales".into(),
            uniqueid: uniqueid.into(),
            position: 1,
            abandoned,
        })
    }

    fn inserted(w: &[Write]) -> Vec<&CallRecord> {
        w.iter()
            .filter_map(|w| match w {
                Write::Insert(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// At most MAX_PENDING calls are followed; a call beyond is counted, not recorded, and
    /// the next sweep logs how many there were.
    #[test]
    fn calls_beyond_the_pending_limit_are_counted_not_followed() {
        let mut r = Recorder::default();
        for n in 0..MAX_PENDING {
            r.observe(&joined(&format!("1.{n}"), 100), 100);
        }
        assert_eq!(r.pending.len(), MAX_PENDING);
        r.observe(&joined("2.0", 100), 100);
        r.observe(&joined("2.1", 100), 100);
        assert_eq!((r.pending.len(), r.untracked()), (MAX_PENDING, 2));
        r.sweep(101);
        assert_eq!(r.untracked(), 0);
    }

    #[test]
    fn answered_abandoned_and_unresolved_calls() {
        let mut r = Recorder::default();
        assert!(r.observe(&joined("a", 100), 100).is_empty());
        assert!(r.observe(&left("a", false), 104).is_empty());
        let connected = change(ChangeKind::CallConnected {
            queue: "sales".into(),
            call: ConnectedCall {
                uniqueid: "a".into(),
                interface: "Local/agent1@agents/n".into(),
                member_name: "Agent One".into(),
                hold_time: 4,
                connected_at: 104,
                ..ConnectedCall::default()
            },
        });
        assert!(r.observe(&connected, 104).is_empty());
        let done = r.observe(
            &change(ChangeKind::CallCompleted {
                queue: "sales".into(),
                uniqueid: "a".into(),
                interface: "Local/agent1@agents/n".into(),
                hold_time: 4,
                talk_time: 30,
                reason: "caller".into(),
            }),
            134,
        );
        let rows = inserted(&done);
        assert_eq!(rows.len(), 1);
        let a = rows[0];
        assert_eq!(
            (
                a.outcome.as_str(),
                a.entered,
                a.answered,
                a.ended,
                a.wait_seconds,
                a.talk_seconds
            ),
            ("answered", 100, Some(104), 134, 4, 30)
        );
        assert_eq!(a.member_name, "Agent One");

        r.observe(&joined("b", 200), 200);
        let w = r.observe(&left("b", true), 207);
        let b = inserted(&w);
        assert_eq!((b[0].outcome.as_str(), b[0].wait_seconds), ("abandoned", 7));
        let refine = r.observe(
            &change(ChangeKind::CallerHungUp {
                uniqueid: "b".into(),
                queue_status: "TIMEOUT".into(),
            }),
            208,
        );
        assert!(matches!(&refine[..], [Write::Refine(_, u, o)] if u == "b" && o == "timeout"));

        r.observe(&joined("c", 300), 300);
        r.observe(&left("c", false), 301);
        assert!(r.sweep(330).is_empty());
        let w = r.sweep(301 + UNRESOLVED_AFTER.as_secs() as i64);
        assert_eq!(inserted(&w)[0].outcome, "unknown");
        assert!(r.pending.is_empty());
    }

    #[tokio::test]
    async fn rows_survive_reopening_and_retention_prunes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = HistoryConfig {
            retention_days: 1,
            max_calls: 2,
        };
        let now = now_secs();
        let row = |uniqueid: &str, ended: i64, outcome: &str| CallRecord {
            server: "pbx1".into(),
            queue: "sales".into(),
            uniqueid: uniqueid.into(),
            entered: ended - 10,
            ended,
            outcome: outcome.into(),
            ..CallRecord::default()
        };
        {
            let h = History::open(dir.path(), &config).expect("open");
            for w in [
                Write::Insert(row("old", now - 3 * 86_400, "answered")),
                Write::Insert(row("x", now - 30, "abandoned")),
                Write::Insert(row("y", now - 20, "answered")),
                Write::Insert(row("z", now - 10, "abandoned")),
                Write::Refine("pbx1".into(), "z".into(), "timeout".into()),
            ] {
                h.send(w).await;
            }
            h.send(Write::Prune).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let h = History::open(dir.path(), &config).expect("reopen");
        let q = Query {
            server: "pbx1".into(),
            queue: "sales".into(),
            from: 0,
            to: i64::MAX,
            limit: 10,
            ..Query::default()
        };
        let (total, rows) = h.query(q.clone()).await.expect("query");
        assert_eq!(total, 2, "{rows:?}");
        let got: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.uniqueid.as_str(), r.outcome.as_str()))
            .collect();
        assert_eq!(got, [("y", "answered"), ("z", "timeout")]);
        let (total, rows) = h
            .query(Query {
                exclude: vec!["answered".into()],
                newest_first: true,
                ..q
            })
            .await
            .expect("query");
        assert_eq!((total, rows[0].uniqueid.as_str()), (1, "z"));
    }
}
