//! The `queuebridge` binary: parse the command line, set up logging, run.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use queuebridge::config::Config;

/// jemalloc returns the pages a burst took (a resync, a stall that let queues fill) to the
/// system within seconds, by its decay; glibc's malloc keeps most of them, and a long-running
/// daemon's RSS only ever steps up (BENCHMARKS.md, "Soak").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Asterisk call queues, live and exact, for XMPP clients, vendor REST dialects and Prometheus.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(
        long,
        short,
        global = true,
        default_value = "/etc/queuebridge/queuebridge.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Fold a recorded AMI byte stream offline: final state as JSON on stdout, rate on stderr.
    Replay {
        /// The capture: bytes exactly as read from the AMI socket, banner included.
        file: PathBuf,
        /// The server id to file the queues under.
        #[arg(long, default_value = "replay")]
        server: String,
        /// Largest message accepted, in bytes.
        #[arg(long, default_value_t = queuebridge::ami::DEFAULT_MAX_FRAME)]
        max_message_bytes: usize,
    },
    /// Check a configuration file: exit 0, or print the errors naming the keys.
    CheckConfig {
        /// The file to check (defaults to --config).
        file: Option<PathBuf>,
    },
    /// Read a password from the first line of standard input and print its argon2id hash, for
    /// `[[users]] password_hash`.
    HashPassword,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Under systemd, stderr goes to the journal, which stamps every line itself: no time and
    // no colours there; colours only on a terminal.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(!journal && std::io::stderr().is_terminal());
    if journal {
        logs.without_time().init();
    } else {
        logs.init();
    }
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(cli.config),
        Command::Replay {
            file,
            server,
            max_message_bytes,
        } => replay(&file, &server, max_message_bytes),
        Command::CheckConfig { file } => {
            let path = file.unwrap_or(cli.config);
            Config::load(&path)?;
            println!("{}: ok", path.display());
            Ok(())
        }
        Command::HashPassword => hash_password(),
    }
}

fn hash_password() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "no password on standard input");
    let hash = queuebridge::access::hash_password(password).map_err(anyhow::Error::msg)?;
    println!("{hash}");
    Ok(())
}

fn replay(file: &PathBuf, server: &str, max: usize) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let r = queuebridge::replay::replay(&bytes, server, max);
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &r.state.snapshot())?;
    writeln!(out)?;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "{} messages ({} skipped), {} changes in {:.3} s: {:.0} messages/s",
        r.messages,
        r.skipped,
        r.changes,
        secs,
        r.messages as f64 / secs
    );
    Ok(())
}

fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    let config_path = path.clone();
    // Room for the HTTP connections (capped at [http] max_connections) and the AMI links: raise
    // the soft open-file limit to the hard one, as a server should.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => info!(open_files = n, "open-file limit"),
        Err(e) => warn!(%e, "cannot raise the open-file limit"),
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("binding http.listen {}", config.http.listen))?;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            info!("shutting down");
            queuebridge::systemd::stopping();
            stop.cancel();
        });
        let notifier = queuebridge::systemd::Notifier::from_env();
        queuebridge::daemon::run(config, Some(config_path), notifier, listener, shutdown).await
    })
}

/// SIGINT or SIGTERM (systemd stops services with SIGTERM).
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
