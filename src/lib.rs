//! queuebridge: the live state of Asterisk's call queues, kept exact from AMI, for the tools
//! call centres already have.
//!
//! # Layout
//!
//! By tier, each importing only from the tiers below it:
//!
//! * **leaves** — [`clock`] (the wall clock), [`metrics`] (every metric's name and the
//!   recording functions), [`persist`] (atomic writes under `state_dir`), [`tokens`] (bearer
//!   tokens of the vendor dialects), [`threads`] (the core's own threads);
//! * **wire** — [`ami`]: the codec (framing + nom), typed queue events, the [`ami::input`]
//!   the client hands the state, and the resilient client (login, ActionIDs, keepalive,
//!   reconnect, resync), one per Asterisk server;
//! * **state** — [`state`]: the queue model and the pure fold
//!   `apply(&mut State, &Input) -> Vec<Change>`; [`hub`]: the task that owns the state,
//!   publishes changes, lets others read snapshots and reports its liveness to an observer;
//!   [`replay`]: folds a recorded AMI stream offline; [`view`]: what every front end shows
//!   (a visible queue, its agents, an agent's name and number, availability), read one way;
//! * **services** — [`access`] (users, roles, pause reasons, the one authorization module),
//!   [`servers`] (the AMI connections, changed at run time, persisted), [`history`] (the call
//!   history in SQLite, written from the change stream), [`config`] (the one configuration
//!   file, validated at load), [`command`] (agent commands with exactly one outcome each),
//!   [`queues_conf`] (queue definitions changed through Asterisk), [`deadlines`] (timed
//!   unpause and relogin), [`timed`] (a pause with an automatic unpause, a logout
//!   with an automatic log-in), [`wiring`] (the core's running parts, started once);
//! * **front ends** — [`xmpp`] (the pascom "mobydick" XMPP component), [`http`] (the native
//!   JSON API and its SSE stream, the Yeastar, Telecom X and PortSIP dialects with their event
//!   pushes), [`exporter`] (Prometheus' `/metrics`);
//! * **process** — [`systemd`] (the service manager's protocol), [`daemon`] (runs it all for
//!   `main`), [`fuzz`] (the checks the `cargo fuzz` targets run, replayed by `cargo test`).
//!
//! The rule: front ends read the state through the hub and [`view`] and act through
//! [`command`]; none imports [`ami`] or another front end.

pub mod access;
pub mod ami;
pub mod clock;
pub mod command;
pub mod config;
pub mod daemon;
pub mod deadlines;
pub mod exporter;
pub mod fuzz;
pub mod history;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod persist;
pub mod queues_conf;
pub mod replay;
pub mod servers;
pub mod state;
pub mod systemd;
pub mod threads;
pub mod timed;
pub mod tokens;
pub mod view;
pub mod wiring;
pub mod xmpp;
