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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, params_from_iter, Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::clock::now_secs;
use crate::hub::Hub;
use crate::state::{Change, ChangeKind};

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

/// Handle to the history database.
#[derive(Clone)]
pub struct History {
    path: PathBuf,
    writes: mpsc::Sender<Write>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    queue TEXT NOT NULL,
    uniqueid TEXT NOT NULL,
    caller_number TEXT NOT NULL,
    caller_name TEXT NOT NULL,
    dialled TEXT NOT NULL,
    entered INTEGER NOT NULL,
    answered INTEGER,
    ended INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    member_interface TEXT NOT NULL,
    member_name TEXT NOT NULL,
    wait_seconds INTEGER NOT NULL,
    talk_seconds INTEGER NOT NULL,
    UNIQUE (server, queue, uniqueid, entered)
);
CREATE INDEX IF NOT EXISTS calls_by_queue ON calls (server, queue, entered);
CREATE INDEX IF NOT EXISTS calls_by_uniqueid ON calls (server, uniqueid);
";

impl History {
    /// Opens (creating) the database under `state_dir` and starts its writer thread, which
    /// ends when every handle is dropped.
    pub fn open(state_dir: &Path, config: &HistoryConfig) -> anyhow::Result<Self> {
        let path = state_dir.join(FILE);
        let conn = Connection::open(&path)?;
        conn.execute_batch(SCHEMA)?;
        let (writes, rx) = mpsc::channel(WRITE_QUEUE);
        let config = config.clone();
        std::thread::Builder::new()
            .name("history".into())
            .spawn(move || writer(conn, rx, &config))?;
        let history = Self { path, writes };
        // The queue is empty: there is room.
        let _ = history.writes.try_send(Write::Prune);
        Ok(history)
    }

    /// Queues a write; waits while the writer's queue is full (the change stream buffers
    /// meanwhile).
    async fn send(&self, write: Write) {
        // Only fails once the writer thread is gone, at shutdown.
        let _ = self.writes.send(write).await;
    }

    /// Calls matching `q`, and how many match without offset and limit.
    pub async fn query(&self, q: Query) -> anyhow::Result<(u64, Vec<CallRecord>)> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            read(&conn, &q)
        })
        .await?
    }
}

/// A member's answered calls in a queue since some time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberDay {
    pub calls: i64,
    pub talk_seconds: i64,
    /// Epoch seconds the last one ended.
    pub last_ended: Option<i64>,
}

impl History {
    /// Answered calls per member interface of `queue` that entered at or after `since`.
    pub async fn member_stats(
        &self,
        server: &str,
        queue: &str,
        since: i64,
    ) -> anyhow::Result<HashMap<String, MemberDay>> {
        let (path, server, queue) = (self.path.clone(), server.to_owned(), queue.to_owned());
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let mut stmt = conn.prepare(
                "SELECT member_interface, COUNT(*), SUM(talk_seconds), MAX(ended) FROM calls
                 WHERE server = ?1 AND queue = ?2 AND entered >= ?3 AND outcome = 'answered'
                 GROUP BY member_interface",
            )?;
            let rows = stmt.query_map(params![server, queue, since], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    MemberDay {
                        calls: row.get(1)?,
                        talk_seconds: row.get(2)?,
                        last_ended: row.get(3)?,
                    },
                ))
            })?;
            Ok(rows.collect::<Result<HashMap<_, _>, _>>()?)
        })
        .await?
    }
}

fn writer(mut conn: Connection, mut rx: mpsc::Receiver<Write>, config: &HistoryConfig) {
    while let Some(first) = rx.blocking_recv() {
        // Batch what is queued into one transaction.
        let mut batch = vec![first];
        while let Ok(w) = rx.try_recv() {
            batch.push(w);
            if batch.len() == 512 {
                break;
            }
        }
        if let Err(err) = write_batch(&mut conn, &batch, config) {
            error!(%err, "call history write failed");
        }
    }
}

fn write_batch(
    conn: &mut Connection,
    batch: &[Write],
    config: &HistoryConfig,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for w in batch {
        match w {
            Write::Insert(r) => {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO calls (server, queue, uniqueid, caller_number,
                        caller_name, dialled, entered, answered, ended, outcome,
                        member_interface, member_name, wait_seconds, talk_seconds)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )?
                .execute(params![
                    r.server,
                    r.queue,
                    r.uniqueid,
                    r.caller_number,
                    r.caller_name,
                    r.dialled,
                    r.entered,
                    r.answered,
                    r.ended,
                    r.outcome,
                    r.member_interface,
                    r.member_name,
                    r.wait_seconds,
                    r.talk_seconds
                ])?;
            }
            Write::Refine(server, uniqueid, outcome) => {
                tx.prepare_cached(
                    "UPDATE calls SET outcome = ?3
                     WHERE server = ?1 AND uniqueid = ?2 AND outcome = 'abandoned'",
                )?
                .execute(params![server, uniqueid, outcome])?;
            }
            Write::Prune => {
                let oldest = now_secs() - i64::from(config.retention_days) * 86_400;
                tx.execute("DELETE FROM calls WHERE ended < ?1", params![oldest])?;
                tx.execute(
                    "DELETE FROM calls WHERE id NOT IN
                        (SELECT id FROM calls ORDER BY ended DESC, id DESC LIMIT ?1)",
                    params![i64::try_from(config.max_calls).unwrap_or(i64::MAX)],
                )?;
            }
        }
    }
    tx.commit()
}

fn read(conn: &Connection, q: &Query) -> anyhow::Result<(u64, Vec<CallRecord>)> {
    let mut filter = String::from("server = ? AND queue = ? AND entered >= ? AND entered <= ?");
    let mut args: Vec<rusqlite::types::Value> = vec![
        q.server.clone().into(),
        q.queue.clone().into(),
        q.from.into(),
        q.to.into(),
    ];
    for (list, op) in [(&q.outcomes, "IN"), (&q.exclude, "NOT IN")] {
        if !list.is_empty() {
            let marks = vec!["?"; list.len()].join(",");
            filter.push_str(&format!(" AND outcome {op} ({marks})"));
            args.extend(list.iter().map(|o| o.clone().into()));
        }
    }
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM calls WHERE {filter}"),
        params_from_iter(args.iter()),
        |row| row.get(0),
    )?;
    let order = if q.newest_first { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT server, queue, uniqueid, caller_number, caller_name, dialled, entered, answered,
                ended, outcome, member_interface, member_name, wait_seconds, talk_seconds
         FROM calls WHERE {filter} ORDER BY entered {order}, id {order} LIMIT ? OFFSET ?"
    );
    args.push(i64::try_from(q.limit).unwrap_or(i64::MAX).into());
    args.push(i64::try_from(q.offset).unwrap_or(i64::MAX).into());
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map(params_from_iter(args.iter()), |row| {
            Ok(CallRecord {
                server: row.get(0)?,
                queue: row.get(1)?,
                uniqueid: row.get(2)?,
                caller_number: row.get(3)?,
                caller_name: row.get(4)?,
                dialled: row.get(5)?,
                entered: row.get(6)?,
                answered: row.get(7)?,
                ended: row.get(8)?,
                outcome: row.get(9)?,
                member_interface: row.get(10)?,
                member_name: row.get(11)?,
                wait_seconds: row.get(12)?,
                talk_seconds: row.get(13)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((u64::try_from(total).unwrap_or(0), rows))
}

/// The outcome of an unanswered caller's `QUEUESTATUS`; `None` keeps `abandoned`.
fn outcome_of(queue_status: &str) -> Option<&'static str> {
    match queue_status {
        "TIMEOUT" => Some("timeout"),
        "LEAVEEMPTY" | "JOINEMPTY" => Some("no_members"),
        "LEAVEUNAVAIL" | "JOINUNAVAIL" => Some("all_busy"),
        "WITHDRAW" => Some("withdrawn"),
        _ => None,
    }
}

/// A call between join and outcome.
struct Pending {
    record: CallRecord,
    /// Epoch seconds it left the waiting list unanswered without an abandon.
    left_at: Option<i64>,
}

/// The recorder: folds changes into rows.
#[derive(Default)]
struct Recorder {
    pending: HashMap<(Arc<str>, String, Arc<str>), Pending>,
}

impl Recorder {
    fn observe(&mut self, c: &Change, now: i64) -> Vec<Write> {
        let server = &c.server;
        let mut out = Vec::new();
        match &c.kind {
            ChangeKind::CallerJoined { queue, caller }
            | ChangeKind::CallerUpdated { queue, caller } => {
                let caller = &caller.caller;
                let key = (server.clone(), caller.uniqueid.clone(), queue.clone());
                if !self.pending.contains_key(&key) && self.pending.len() < MAX_PENDING {
                    self.pending.insert(
                        key,
                        Pending {
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
                        },
                    );
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
                let p = self.pending.entry(key).or_insert_with(|| Pending {
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

    /// Writes callers that left unanswered without an abandon long ago as `unknown`, and
    /// forgets calls pending for over a day.
    fn sweep(&mut self, now: i64) -> Vec<Write> {
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
