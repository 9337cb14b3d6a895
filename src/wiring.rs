//! The core's running parts, wired once: the AMI connections, the state task and its hub,
//! agent commands, timed unpause and relogin, the call history. The daemon starts them; the
//! front ends are built on [`Parts`].

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::Access;
use crate::command::Commands;
use crate::config::Config;
use crate::deadlines::{self, Deadlines};
use crate::history::{self, History};
use crate::hub::{self, Hub, Liveness};
use crate::servers::Servers;
use crate::state::{QueueIds, State};

/// The first sequence number of this process: microseconds since the epoch, so numbers keep
/// growing across restarts and a `Last-Event-ID` from an earlier process is never mistaken
/// for a recent one.
fn first_seq() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The running parts other front ends build on.
pub struct Parts {
    pub hub: Arc<Hub>,
    /// The AMI connections, changeable at run time.
    pub servers: Arc<Servers>,
    /// Users, roles and pause reasons; replaced on reload.
    pub access: Arc<Access>,
    /// Agent commands for every front end.
    pub commands: Commands,
    /// Timed unpause and relogin, persisted.
    pub deadlines: Arc<Deadlines>,
    /// Calls that left a queue.
    pub history: History,
}

/// Starts the AMI clients and the state task, which reports how it is doing to `notifier` (systemd,
/// in the daemon); they stop
/// when `shutdown` is cancelled.
pub fn start(
    config: &Config,
    notifier: impl Liveness + 'static,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<Parts> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state_dir {}", config.state_dir.display()))?;
    let mut ids = QueueIds::load(&config.state_dir)?;
    for q in &config.queues {
        ids.pin(&q.server, &q.name, q.id);
    }
    let (inputs_tx, inputs_rx) = mpsc::channel(hub::INPUT_QUEUE);
    let servers = Servers::load(
        config
            .ami
            .iter()
            .map(|a| (a.name.clone().unwrap_or_else(|| a.id.clone()), a.client()))
            .collect(),
        Some(config.state_dir.clone()),
        inputs_tx,
        shutdown.clone(),
    )?;
    let enabled = servers.enabled_ids();
    let mut state = State::new(enabled.iter().map(String::as_str), ids);
    state.seq = first_seq();
    let hub = Hub::new(state);
    servers.start(hub.clone());
    tasks.spawn_on(
        hub::run(
            hub.clone(),
            inputs_rx,
            Some(config.state_dir.clone()),
            notifier,
        ),
        &crate::threads::state(),
    );
    let access = Access::new(
        config
            .directory()
            .map_err(|e| anyhow::anyhow!("{}: {}", e.key, e.message))?,
    );
    let commands = Commands::new(hub.clone(), servers.clone(), access.clone());
    let deadlines = Deadlines::load(Some(&config.state_dir))?;
    tasks.spawn(deadlines::run(
        deadlines.clone(),
        commands.clone(),
        hub.clone(),
        shutdown.clone(),
    ));
    let history = History::open(&config.state_dir, &config.history)?;
    tasks.spawn(history::run(history.clone(), hub.clone(), shutdown.clone()));
    Ok(Parts {
        hub,
        servers,
        access,
        commands,
        deadlines,
        history,
    })
}
