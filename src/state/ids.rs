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
    /// Server → queue → id.
    by_queue: BTreeMap<String, BTreeMap<String, u64>>,
    /// Id → its server and queue.
    owners: BTreeMap<u64, (String, String)>,
    /// Ids fixed in the configuration; never handed out to another queue.
    pinned: BTreeSet<u64>,
    /// Every id below this one is taken, so the search for a free one starts here: assigning
    /// n ids costs O(n log n) in all, not O(n²). Only re-pinning a queue frees an id.
    next: u64,
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
        if let Some((s, q)) = self.owners.remove(&id) {
            if let Some(queues) = self.by_queue.get_mut(&s) {
                queues.remove(&q);
            }
        }
        self.set(server, queue, id);
        self.pinned.insert(id);
    }

    fn set(&mut self, server: &str, queue: &str, id: u64) {
        let queues = self.by_queue.entry(server.to_owned()).or_default();
        if let Some(old) = queues.insert(queue.to_owned(), id) {
            if old != id {
                self.owners.remove(&old);
                self.next = self.next.min(old);
            }
        }
        self.owners
            .insert(id, (server.to_owned(), queue.to_owned()));
    }

    /// The queue's id, assigning the next free one the first time a queue is seen.
    pub fn get_or_assign(&mut self, server: &str, queue: &str) -> u64 {
        if let Some(id) = self.get(server, queue) {
            return id;
        }
        let mut id = self.next.max(1);
        while self.owners.contains_key(&id) || self.pinned.contains(&id) {
            id = id.saturating_add(1);
        }
        self.next = id.saturating_add(1);
        self.set(server, queue, id);
        self.dirty = true;
        id
    }

    /// The queue's id, if it has one.
    pub fn get(&self, server: &str, queue: &str) -> Option<u64> {
        self.by_queue.get(server)?.get(queue).copied()
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
            ids.set(&e.server, &e.queue, e.id);
        }
        Ok(ids)
    }

    /// Writes the ids atomically (temporary file, then rename).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let entries: Vec<Entry> = self
            .by_queue
            .iter()
            .flat_map(|(server, queues)| {
                queues.iter().map(|(queue, id)| Entry {
                    server: server.clone(),
                    queue: queue.clone(),
                    id: *id,
                })
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

    #[test]
    fn pinning_takes_the_number_from_the_queue_that_had_it() {
        let mut ids = QueueIds::default();
        assert_eq!(ids.get_or_assign("a", "q1"), 1);
        assert_eq!(ids.get_or_assign("a", "q2"), 2);
        ids.pin("a", "vip", 2);
        assert_eq!(ids.get("a", "vip"), Some(2));
        assert_eq!(ids.get("a", "q2"), None);
        assert_eq!(ids.get_or_assign("a", "q2"), 3);
        // Re-pinning a queue to another number frees nothing it should not.
        ids.pin("a", "q1", 7);
        assert_eq!(ids.get("a", "q1"), Some(7));
        assert_eq!(ids.get_or_assign("a", "q4"), 1);
    }
}
