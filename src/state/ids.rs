//! Stable numeric queue ids: configured, or assigned once and persisted under `state_dir`.
//!
//! The REST dialects address queues by number (Yeastar `id`, PortSIP `id`), so a queue keeps its
//! number across queuebridge restarts. Assignment is pure (part of the fold); writing the file
//! is done by the task that owns the state, when [`QueueIds::take_dirty`] says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// File name under `state_dir`.
pub const FILE: &str = "queue-ids.json";

#[derive(Clone, Debug, Default)]
pub struct QueueIds {
    by_queue: BTreeMap<(String, String), u64>,
    /// Ids fixed in the configuration; never handed out to another queue.
    pinned: BTreeSet<u64>,
    dirty: bool,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    server: String,
    queue: String,
    id: u64,
}

/// Errors reading or writing the id file.
#[derive(Debug, thiserror::Error)]
pub enum IdsError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a queue id file: {source}")]
    Format {
        path: String,
        source: serde_json::Error,
    },
}

impl QueueIds {
    /// Pins a configured id; configured ids win over persisted ones.
    pub fn pin(&mut self, server: &str, queue: &str, id: u64) {
        self.by_queue
            .retain(|k, v| *v != id || (k.0 == server && k.1 == queue));
        self.by_queue.insert((server.into(), queue.into()), id);
        self.pinned.insert(id);
    }

    /// The queue's id, assigning the next free one the first time a queue is seen.
    pub fn get_or_assign(&mut self, server: &str, queue: &str) -> u64 {
        if let Some(&id) = self.by_queue.get(&(server.to_owned(), queue.to_owned())) {
            return id;
        }
        let used: BTreeSet<u64> = self.by_queue.values().copied().collect();
        let id = (1..)
            .find(|n| !used.contains(n) && !self.pinned.contains(n))
            .unwrap_or(u64::MAX);
        self.by_queue.insert((server.into(), queue.into()), id);
        self.dirty = true;
        id
    }

    /// The queue's id, if it has one.
    pub fn get(&self, server: &str, queue: &str) -> Option<u64> {
        self.by_queue
            .get(&(server.to_owned(), queue.to_owned()))
            .copied()
    }

    /// True once after an id was assigned: time to persist.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Reads the persisted ids (a missing file is an empty set).
    pub fn load(dir: &Path) -> Result<Self, IdsError> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(IdsError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let entries: Vec<Entry> =
            serde_json::from_str(&text).map_err(|source| IdsError::Format {
                path: path.display().to_string(),
                source,
            })?;
        let mut ids = Self::default();
        for e in entries {
            ids.by_queue.insert((e.server, e.queue), e.id);
        }
        Ok(ids)
    }

    /// Writes the ids atomically (temporary file, then rename).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let entries: Vec<Entry> = self
            .by_queue
            .iter()
            .map(|((server, queue), id)| Entry {
                server: server.clone(),
                queue: queue.clone(),
                id: *id,
            })
            .collect();
        let json = serde_json::to_vec_pretty(&entries).map_err(std::io::Error::other)?;
        crate::persist::write_atomic(&dir.join(FILE), &json, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_skip_pinned_numbers() {
        let mut ids = QueueIds::default();
        ids.pin("pbx1", "vip", 1);
        assert_eq!(ids.get_or_assign("pbx1", "sales"), 2);
        assert_eq!(ids.get_or_assign("pbx1", "vip"), 1);
        assert_eq!(ids.get_or_assign("pbx1", "sales"), 2);
        assert!(ids.take_dirty());
        assert!(!ids.take_dirty());
    }

    #[test]
    fn survive_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut ids = QueueIds::default();
        ids.get_or_assign("a", "q1");
        ids.get_or_assign("a", "q2");
        ids.save(dir.path()).unwrap();
        let mut back = QueueIds::load(dir.path()).unwrap();
        assert_eq!(back.get_or_assign("a", "q2"), 2);
        assert_eq!(back.get_or_assign("b", "q1"), 3);
    }
}
