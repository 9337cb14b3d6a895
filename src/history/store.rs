//! The SQLite side of the call history: the schema, the one writer thread that owns the
//! database (batched commits, retention), and reads on the blocking pool with their own
//! connection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, params_from_iter, Connection, OpenFlags};
use tokio::sync::mpsc;
use tracing::error;

use super::{CallRecord, HistoryConfig, Query, Write, FILE, WRITE_QUEUE};
use crate::clock::now_secs;

/// Handle to the history database.
#[derive(Clone)]
pub struct History {
    path: PathBuf,
    writes: mpsc::Sender<Write>,
}

pub(super) const SCHEMA: &str = "
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
    pub(super) async fn send(&self, write: Write) {
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

pub(super) fn writer(mut conn: Connection, mut rx: mpsc::Receiver<Write>, config: &HistoryConfig) {
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

pub(super) fn write_batch(
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

pub(super) fn read(conn: &Connection, q: &Query) -> anyhow::Result<(u64, Vec<CallRecord>)> {
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
