//! Wires the parts together: one AMI client per server, the state task, the HTTP API.
//!
//! [`run`] takes its listener and its stop signal as arguments, so tests bind port 0 and run
//! several daemons side by side.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::access::Access;
use crate::config::Config;
use crate::exporter;
use crate::http::{self, AppState};
use crate::metrics;
use crate::systemd::Notifier;
use crate::wiring::start;

/// How long a shutdown waits for commands in flight before it closes the AMI links anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Connections the metrics listener serves at once (Prometheus scrapes with one or two).
pub const METRICS_CONNECTIONS: usize = 16;

/// The process's soft open-file limit now (what `main` raised it to).
fn open_files() -> u64 {
    rlimit::Resource::NOFILE
        .get()
        .map_or(1024, |(soft, _)| soft)
}

/// Runs the daemon until `shutdown` is cancelled. With `config_path`, SIGHUP reloads users,
/// pause reasons and the API token from that file ([`reload`]).
///
/// A shutdown has two steps. First the front ends stop taking work: the HTTP listener closes,
/// event streams end, new XMPP commands are refused, and the commands already in flight are
/// answered, with Asterisk's reply, because the AMI links are still up (for at most
/// [`SHUTDOWN_GRACE`]). Then the AMI links log off and the XMPP stream is closed.
pub async fn run(
    config: Config,
    config_path: Option<PathBuf>,
    notifier: Notifier,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tasks = TaskTracker::new();
    // The AMI links, the XMPP stream and the state outlive `shutdown` until the front ends
    // have answered what they took.
    let links = CancellationToken::new();
    let metrics = match &config.metrics {
        Some(m) => {
            let listener = TcpListener::bind(m.listen)
                .await
                .with_context(|| format!("metrics.listen {}", m.listen))?;
            Some((listener, metrics::install()?))
        }
        None => None,
    };
    let parts = start(&config, notifier, &tasks, &links)?;
    let front = match &config.xmpp {
        Some(xmpp) => Some(crate::xmpp::start(
            xmpp,
            parts.hub.clone(),
            parts.commands.clone(),
            &tasks,
            &links,
        )?),
        None => None,
    };
    let limits = http::serve::Limits {
        max_connections: http::serve::fit_to_open_files(config.http.max_connections, open_files()),
        request_timeout: Duration::from_secs_f64(config.http.request_timeout),
    };
    if limits.max_connections < config.http.max_connections {
        warn!(
            max_connections = limits.max_connections,
            "http.max_connections lowered to fit the open-file limit"
        );
    }
    if let Some((listener, handle)) = metrics {
        info!(addr = %listener.local_addr()?, "metrics listening");
        tasks.spawn(metrics::upkeep(handle.clone(), shutdown.clone()));
        let exporter = exporter::Exporter::new(handle, parts.hub.clone())
            .with_sessions(front.clone().map(|f| f as Arc<dyn metrics::SessionGauges>));
        tasks.spawn(exporter::count_changes(parts.hub.clone(), shutdown.clone()));
        let scrapes = http::serve::Limits {
            max_connections: METRICS_CONNECTIONS,
            ..limits
        };
        let served = http::serve::serve(
            listener,
            exporter::router(exporter),
            scrapes,
            shutdown.clone(),
        );
        tasks.spawn(async move {
            if let Err(e) = served.await {
                warn!(%e, "metrics listener failed");
            }
        });
    }
    let app = AppState::new(&parts, &config, shutdown.clone());
    if let Some(path) = config_path {
        tasks.spawn(reload_on_hangup(
            path,
            config.clone(),
            parts.access.clone(),
            app.token.clone(),
            shutdown.clone(),
        ));
    }
    info!(addr = %listener.local_addr()?, "http listening");
    let router = http::body::with_body_limit(http::router(app), config.http.max_body_bytes);
    let http = http::serve::serve(listener, router, limits, shutdown.clone());
    let xmpp = async {
        shutdown.cancelled().await;
        if let Some(front) = &front {
            front.drain().await;
        }
    };
    let (served, drained) =
        tokio::join!(within_grace(http, &shutdown), within_grace(xmpp, &shutdown));
    if served.is_none() || drained.is_none() {
        warn!(
            grace = ?SHUTDOWN_GRACE,
            "commands still in flight at the end of the shutdown grace period"
        );
    }
    links.cancel();
    let served = served.transpose().context("http server");
    parts.servers.wait().await;
    drop(parts);
    tasks.close();
    tasks.wait().await;
    served.map(drop)
}

/// Runs `work` to its end, or until [`SHUTDOWN_GRACE`] after `shutdown` was cancelled.
async fn within_grace<T>(work: impl Future<Output = T>, shutdown: &CancellationToken) -> Option<T> {
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        out = work => Some(out),
        () = grace => None,
    }
}

/// On every SIGHUP, [`reload`]s the file; stops with `shutdown`.
async fn reload_on_hangup(
    path: PathBuf,
    mut running: Config,
    access: Arc<Access>,
    token: Arc<RwLock<Arc<str>>>,
    shutdown: CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            warn!(%e, "no SIGHUP handler: reload needs a restart");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hangups.recv() => if got.is_none() { return },
        }
        match reload(&path, &running, &access, &token) {
            Ok(config) => running = config,
            Err(e) => error!(
                "reload of {} refused, the running configuration stays: {e:#}",
                path.display()
            ),
        }
    }
}

/// Reloads what can change without dropping a connection: users, roles, pause reasons and the
/// native API's token. The rest (servers, listeners, XMPP, history) is logged as needing a
/// restart. An invalid file changes nothing.
pub fn reload(
    path: &std::path::Path,
    running: &Config,
    access: &Access,
    token: &RwLock<Arc<str>>,
) -> anyhow::Result<Config> {
    let config = Config::load(path)?;
    let directory = config
        .directory()
        .map_err(|e| anyhow::anyhow!("{}: {}", e.key, e.message))?;
    let users = directory.users().count();
    let reasons = directory.pause_reasons().len();
    access.replace(directory);
    *token.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(config.http.token.as_str());
    let fixed = [
        ("state_dir", config.state_dir != running.state_dir),
        (
            "ami",
            format!("{:?}", config.ami) != format!("{:?}", running.ami),
        ),
        ("http.listen", config.http.listen != running.http.listen),
        (
            "http.max_event_streams",
            config.http.max_event_streams != running.http.max_event_streams,
        ),
        (
            "xmpp",
            format!("{:?}", config.xmpp) != format!("{:?}", running.xmpp),
        ),
        (
            "metrics",
            format!("{:?}", config.metrics) != format!("{:?}", running.metrics),
        ),
        (
            "history",
            format!("{:?}", config.history) != format!("{:?}", running.history),
        ),
        (
            "queues",
            format!("{:?}", config.queues) != format!("{:?}", running.queues),
        ),
        (
            "portsip",
            format!("{:?}", config.portsip) != format!("{:?}", running.portsip),
        ),
    ];
    for (key, changed) in fixed {
        if changed {
            warn!(key, "changed in the file; takes effect at the next restart");
        }
    }
    info!(users, pause_reasons = reasons, "configuration reloaded");
    Ok(config)
}
