//! The Asterisk servers queuebridge connects to — one AMI client each — changeable at run time.
//!
//! Servers of the configuration file are *internal*: they can be disabled and enabled again,
//! never removed. Servers added at run time (PortSIP's `POST /api/call_queue_servers`) are
//! *external*: kept with their AMI account in `state_dir/servers.json` (mode 0600, the only place
//! their secret is ever written) and started again on the next start. The on/off switch of every
//! server is kept in the same file.
//!
//! Stopping a client is ordered so the state never shows a ghost: the client is cancelled, its
//! task is awaited (its last input is its link going down), and only then is
//! [`LinkChange::Removed`] queued behind it, which drops the server and its queues from the
//! state with a `queue_removed` change each and a final `server_removed`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ami::client::{self, AmiHandle, ClientConfig};
use crate::ami::Message;
use crate::clock::now_ms;
use crate::hub::Hub;
use crate::state::{Input, LinkChange, What};

const FILE: &str = "servers.json";
/// Most servers added at run time.
pub const MAX_EXTERNAL: usize = 64;
/// How long a stopping client may take to log off.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Where a server comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Origin {
    /// The configuration file.
    Internal,
    /// Added at run time.
    External,
}

/// What anyone may know of a server: never its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    pub id: String,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub origin: Origin,
    pub enabled: bool,
}

impl ServerInfo {
    /// The Asterisk host's name: `host`, or this machine's name when `host` is a loopback
    /// address or `localhost` (queuebridge then runs beside Asterisk, on its machine).
    pub fn hostname(&self) -> String {
        let loopback = self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback {
            static MACHINE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
                gethostname::gethostname().to_string_lossy().into_owned()
            });
            if !MACHINE.is_empty() {
                return MACHINE.clone();
            }
        }
        self.host.clone()
    }
}

/// A server to add.
#[derive(Clone, Debug)]
pub struct NewServer {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub secret: String,
    pub enabled: bool,
}

/// Why a change of the server list was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    #[error("no server {0:?}")]
    NotFound(String),
    #[error("server {0:?} comes from the configuration file and cannot be removed")]
    Internal(String),
    #[error("a server named {0:?} exists already")]
    Duplicate(String),
    #[error("at most {MAX_EXTERNAL} servers can be added")]
    TooMany,
    #[error("cannot persist the server list: {0}")]
    Persist(String),
}

/// An external server as persisted, with its AMI account.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    id: String,
    name: String,
    host: String,
    port: u16,
    username: String,
    secret: String,
    enabled: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    external: Vec<Stored>,
    /// Internal servers switched off.
    #[serde(default)]
    disabled: BTreeSet<String>,
}

struct Running {
    handle: AmiHandle,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

struct Entry {
    info: ServerInfo,
    client: ClientConfig,
    running: Option<Running>,
}

/// The server list and its running clients.
pub struct Servers {
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Serializes changes, so two requests never start or stop the same client twice.
    changing: tokio::sync::Mutex<()>,
    /// Into the state task; let go in [`Servers::wait`] so the state task can end.
    inputs: Mutex<Option<mpsc::Sender<Input>>>,
    shutdown: CancellationToken,
    path: Option<PathBuf>,
    /// Timeouts and limits for added servers (those of the first configured one).
    template: ClientConfig,
    hub: OnceLock<Arc<Hub>>,
}

impl Servers {
    /// Loads `state_dir/servers.json`; nothing runs until [`Servers::start`]. `internal` are
    /// the configured servers, with their display names.
    pub fn load(
        internal: Vec<(String, ClientConfig)>,
        state_dir: Option<PathBuf>,
        inputs: mpsc::Sender<Input>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let path = state_dir.map(|d| d.join(FILE));
        let file: File = match &path {
            Some(p) if p.exists() => {
                let text = std::fs::read_to_string(p)?;
                serde_json::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{} is not a server list: {e}", p.display()))?
            }
            _ => File::default(),
        };
        let template = internal
            .first()
            .map(|(_, c)| c.clone())
            .ok_or_else(|| anyhow::anyhow!("at least one [[ami]] server is required"))?;
        let mut entries = BTreeMap::new();
        for (name, client) in internal {
            let info = ServerInfo {
                id: client.id.to_string(),
                name,
                host: client.host.clone(),
                port: client.port,
                origin: Origin::Internal,
                enabled: !file.disabled.contains(&*client.id),
            };
            entries.insert(
                info.id.clone(),
                Entry {
                    info,
                    client,
                    running: None,
                },
            );
        }
        for s in file.external {
            if entries.contains_key(&s.id) {
                warn!(id = %s.id, "an added server has the id of a configured one; skipped");
                continue;
            }
            let client = ClientConfig {
                id: Arc::from(s.id.as_str()),
                host: s.host.clone(),
                port: s.port,
                username: s.username,
                secret: s.secret,
                ..template.clone()
            };
            let info = ServerInfo {
                id: s.id.clone(),
                name: s.name,
                host: s.host,
                port: s.port,
                origin: Origin::External,
                enabled: s.enabled,
            };
            entries.insert(
                s.id,
                Entry {
                    info,
                    client,
                    running: None,
                },
            );
        }
        Ok(Arc::new(Self {
            entries: Mutex::new(entries),
            changing: tokio::sync::Mutex::new(()),
            inputs: Mutex::new(Some(inputs)),
            shutdown,
            path,
            template,
            hub: OnceLock::new(),
        }))
    }

    /// Connects to every enabled server; `hub` is where their state is folded (so a removal
    /// can wait until it shows there).
    pub fn start(&self, hub: Arc<Hub>) {
        let _ = self.hub.set(hub);
        let mut entries = self.lock();
        for e in entries.values_mut() {
            if e.info.enabled && e.running.is_none() {
                e.running = Some(self.spawn(&e.client));
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn inputs(&self) -> Option<mpsc::Sender<Input>> {
        self.inputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn spawn(&self, cfg: &ClientConfig) -> Running {
        let (handle, requests) = AmiHandle::new(cfg.id.clone());
        let stop = self.shutdown.child_token();
        let task = match self.inputs() {
            Some(inputs) => crate::threads::ami().spawn(client::run(
                cfg.clone(),
                requests,
                inputs,
                stop.clone(),
            )),
            // Shutting down: a client that is never started.
            None => tokio::spawn(async {}),
        };
        Running { handle, stop, task }
    }

    /// The ids of the servers that are enabled (those the state should know).
    pub fn enabled_ids(&self) -> Vec<String> {
        self.lock()
            .values()
            .filter(|e| e.info.enabled)
            .map(|e| e.info.id.clone())
            .collect()
    }

    /// Where to send actions for `id`, while it runs.
    pub fn handle(&self, id: &str) -> Option<AmiHandle> {
        self.lock()
            .get(id)
            .and_then(|e| e.running.as_ref().map(|r| r.handle.clone()))
    }

    /// Percent of the server's RAM in use, as `core show sysinfo` tells it (used = total − free
    /// − buffers); `None` when the server is not running or the read fails.
    pub async fn memory_usage(&self, id: &str) -> Option<u64> {
        let reply = self
            .handle(id)?
            .send(Message::action("Command").with("Command", "core show sysinfo"))
            .await
            .ok()?;
        Some(memory_usage(reply.response.get_all("Output")))
    }

    /// Every server, by id.
    pub fn list(&self) -> Vec<ServerInfo> {
        self.lock().values().map(|e| e.info.clone()).collect()
    }

    /// One server.
    pub fn get(&self, id: &str) -> Option<ServerInfo> {
        self.lock().get(id).map(|e| e.info.clone())
    }

    /// Adds a server and, when enabled, connects to it. Returns its id.
    pub async fn add(&self, new: NewServer) -> Result<String, ServerError> {
        let _changing = self.changing.lock().await;
        let id = {
            let mut entries = self.lock();
            if entries.values().any(|e| e.info.name == new.name) {
                return Err(ServerError::Duplicate(new.name));
            }
            let external = entries
                .values()
                .filter(|e| e.info.origin == Origin::External)
                .count();
            if external >= MAX_EXTERNAL {
                return Err(ServerError::TooMany);
            }
            let id = loop {
                let id = format!("qs{:012x}", fastrand::u64(..) >> 16);
                if !entries.contains_key(&id) {
                    break id;
                }
            };
            let client = ClientConfig {
                id: Arc::from(id.as_str()),
                host: new.host.clone(),
                port: new.port,
                username: new.username,
                secret: new.secret,
                ..self.template.clone()
            };
            entries.insert(
                id.clone(),
                Entry {
                    info: ServerInfo {
                        id: id.clone(),
                        name: new.name,
                        host: new.host,
                        port: new.port,
                        origin: Origin::External,
                        enabled: new.enabled,
                    },
                    client,
                    running: None,
                },
            );
            id
        };
        // Saved first: a server whose save failed would run now and be gone after a restart.
        if let Err(e) = self.save() {
            self.lock().remove(&id);
            return Err(e);
        }
        if let Some(e) = self.lock().get_mut(&id).filter(|e| e.info.enabled) {
            e.running = Some(self.spawn(&e.client));
        }
        info!(server = %id, "queue server added");
        Ok(id)
    }

    /// Switches a server on (connect) or off (disconnect; its queues leave the state).
    pub async fn set_enabled(&self, id: &str, enabled: bool) -> Result<(), ServerError> {
        let _changing = self.changing.lock().await;
        {
            let mut entries = self.lock();
            let e = entries
                .get_mut(id)
                .ok_or_else(|| ServerError::NotFound(id.to_owned()))?;
            if e.info.enabled == enabled {
                return Ok(());
            }
            e.info.enabled = enabled;
        };
        // Saved first, so what runs is what a restart brings back.
        if let Err(err) = self.save() {
            if let Some(e) = self.lock().get_mut(id) {
                e.info.enabled = !enabled;
            }
            return Err(err);
        }
        let stopping = {
            let mut entries = self.lock();
            let Some(e) = entries.get_mut(id) else {
                return Ok(());
            };
            if enabled {
                e.running = Some(self.spawn(&e.client));
                None
            } else {
                e.running.take()
            }
        };
        if let Some(r) = stopping {
            self.stop(id, r).await;
        }
        info!(server = %id, enabled, "queue server switched");
        Ok(())
    }

    /// Removes an added server: disconnects and forgets it.
    pub async fn remove(&self, id: &str) -> Result<(), ServerError> {
        let _changing = self.changing.lock().await;
        let entry = {
            let mut entries = self.lock();
            match entries.get(id) {
                None => return Err(ServerError::NotFound(id.to_owned())),
                Some(e) if e.info.origin == Origin::Internal => {
                    return Err(ServerError::Internal(id.to_owned()))
                }
                Some(_) => entries.remove(id),
            }
        };
        // Saved first: a removal that was not saved would come back at the next restart.
        if let Err(err) = self.save() {
            if let Some(e) = entry {
                self.lock().insert(id.to_owned(), e);
            }
            return Err(err);
        }
        if let Some(r) = entry.and_then(|e| e.running) {
            self.stop(id, r).await;
        }
        info!(server = %id, "queue server removed");
        Ok(())
    }

    /// Stops a client, waits for its last input, then drops the server from the state and
    /// waits until the state shows it gone.
    async fn stop(&self, id: &str, running: Running) {
        let mut changes = self.hub.get().map(|h| h.subscribe());
        running.stop.cancel();
        if tokio::time::timeout(STOP_WAIT, running.task).await.is_err() {
            warn!(server = %id, "AMI client did not stop in time");
        }
        if let Some(inputs) = self.inputs() {
            let _ = inputs
                .send(Input {
                    server: Arc::from(id),
                    at_ms: now_ms(),
                    what: What::Link(LinkChange::Removed),
                })
                .await;
        }
        let (Some(hub), Some(changes)) = (self.hub.get(), changes.as_mut()) else {
            return;
        };
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        if !hub
            .wait_for(changes, deadline, |s| !s.servers.contains_key(id))
            .await
        {
            warn!(server = %id, "the state did not drop the server in time");
        }
    }

    fn save(&self) -> Result<(), ServerError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = {
            let entries = self.lock();
            File {
                external: entries
                    .values()
                    .filter(|e| e.info.origin == Origin::External)
                    .map(|e| Stored {
                        id: e.info.id.clone(),
                        name: e.info.name.clone(),
                        host: e.client.host.clone(),
                        port: e.client.port,
                        username: e.client.username.clone(),
                        secret: e.client.secret.clone(),
                        enabled: e.info.enabled,
                    })
                    .collect(),
                disabled: entries
                    .values()
                    .filter(|e| e.info.origin == Origin::Internal && !e.info.enabled)
                    .map(|e| e.info.id.clone())
                    .collect(),
            }
        };
        serde_json::to_vec_pretty(&file)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::persist::write_atomic(path, &bytes, true))
            .map_err(|e| ServerError::Persist(e.to_string()))
    }

    /// Waits for every client to end (after `shutdown` was cancelled) and lets go of the
    /// state task's input, so it ends too.
    pub async fn wait(&self) {
        let _changing = self.changing.lock().await;
        self.inputs.lock().unwrap_or_else(|e| e.into_inner()).take();
        let tasks: Vec<JoinHandle<()>> = self
            .lock()
            .values_mut()
            .filter_map(|e| e.running.take().map(|r| r.task))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Percent of RAM in use from the lines of `core show sysinfo`.
fn memory_usage<'a>(lines: impl Iterator<Item = &'a str>) -> u64 {
    let kib = |label: &str, line: &str| -> Option<u64> {
        line.trim()
            .strip_prefix(label)?
            .trim()
            .trim_end_matches("KiB")
            .trim()
            .parse()
            .ok()
    };
    let (mut total, mut free, mut buffers) = (0u64, 0u64, 0u64);
    for line in lines {
        if let Some(v) = kib("Total RAM:", line) {
            total = v;
        } else if let Some(v) = kib("Free RAM:", line) {
            free = v;
        } else if let Some(v) = kib("Buffer RAM:", line) {
            buffers = v;
        }
    }
    if total == 0 {
        return 0;
    }
    (total.saturating_sub(free).saturating_sub(buffers) * 100 + total / 2) / total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str) -> ClientConfig {
        ClientConfig {
            id: Arc::from(id),
            host: "127.0.0.1".into(),
            port: 9,
            username: "u".into(),
            secret: "s".into(),
            auth: client::Auth::Plain,
            max_frame: crate::ami::DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_secs(1),
            action_timeout: Duration::from_secs(1),
            ping_interval: Duration::from_secs(1),
            reconcile_interval: Duration::from_secs(60),
            backoff_max: Duration::from_secs(1),
        }
    }

    fn new_server(name: &str) -> NewServer {
        NewServer {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: 9,
            username: "u".into(),
            secret: "s".into(),
            enabled: true,
        }
    }

    /// A server whose save failed would run now and be gone after a restart.
    #[tokio::test]
    async fn a_server_whose_save_failed_is_not_left_running() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::channel(16);
        let servers = Servers::load(
            vec![("pbx1".into(), client("pbx1"))],
            Some(dir.path().to_owned()),
            tx,
            CancellationToken::new(),
        )
        .unwrap();
        // A directory where the file should go: the rename onto it fails.
        std::fs::create_dir(dir.path().join(FILE)).unwrap();
        let err = servers.add(new_server("branch")).await.unwrap_err();
        assert!(matches!(err, ServerError::Persist(_)), "{err:?}");
        assert_eq!(servers.list().len(), 1);
        assert!(servers.list().iter().all(|s| s.name != "branch"));
        let err = servers.set_enabled("pbx1", false).await.unwrap_err();
        assert!(matches!(err, ServerError::Persist(_)), "{err:?}");
        assert!(servers.get("pbx1").unwrap().enabled);
        // With the file writable again, the same request works and is kept.
        std::fs::remove_dir(dir.path().join(FILE)).unwrap();
        let id = servers.add(new_server("branch")).await.unwrap();
        assert!(servers.handle(&id).is_some());
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(text.contains("branch"));
        servers.remove(&id).await.unwrap();
        assert!(servers.handle(&id).is_none());
    }

    #[test]
    fn memory_usage_from_sysinfo() {
        let lines = [
            "System Statistics",
            "  Total RAM:                 1000 KiB",
            "  Free RAM:                  300 KiB",
            "  Buffer RAM:                100 KiB",
        ];
        assert_eq!(memory_usage(lines.into_iter()), 60);
        assert_eq!(memory_usage(std::iter::empty()), 0);
    }
}
