//! queuebridge: the live state of Asterisk's call queues, kept exact from AMI, for the tools
//! call centres already have.
//!
//! # Layout
//!
//! * [`config`] — the one configuration file, validated at load;
//! * [`access`] — users, roles, pause reasons and the one authorization module;
//! * [`command`] — agent commands (log in/out, pause, penalty) with exactly one outcome each;
//! * [`ami`] — the AMI wire codec (framing + nom), typed queue events, and the resilient client
//!   (login, ActionIDs, keepalive, reconnect, resync) — one per Asterisk server;
//! * [`state`] — the queue model and the pure fold `apply(&mut State, &Input) -> Vec<Change>`;
//! * [`hub`] — the task that owns the state, publishes changes, and lets others read snapshots;
//! * [`http`] — the native JSON API and its Server-Sent Events stream, the vendor dialects
//!   (`yeastar/` with its event push `subscribe.rs`, `telecomx.rs`, `portsip/` with its `/wsi`
//!   push `wsi.rs`) and what both pushes share (`push.rs`);
//! * [`replay`] — folds a recorded AMI stream offline (the `replay` command and the benchmark);
//! * [`tokens`] — bearer tokens of the vendor dialects;
//! * [`history`] — the call history in SQLite, written from the change stream;
//! * [`deadlines`] — timed unpause and relogin (Yeastar's thresholds), persisted;
//! * [`servers`] — the AMI connections, added, disabled and removed at run time (PortSIP's
//!   queue servers), persisted;
//! * [`queues_conf`] — queue definitions changed through Asterisk (GetConfig, UpdateConfig,
//!   reload) and queue attributes in AstDB;
//! * [`persist`] — atomic writes of the small files under `state_dir`;
//! * [`metrics`] — every exported Prometheus metric, and how each is kept;
//! * [`xmpp`] — the pascom "mobydick" XMPP component (queue, event and xmppuser modules);
//! * [`daemon`] — wires it all together for `main`;
//! * [`fuzz`] — the checks the `cargo fuzz` targets run, replayed on the corpus by `cargo test`.
//!
//! Front ends never talk to AMI directly: they read the hub and submit actions through an
//! [`ami::client::AmiHandle`].

pub mod access;
pub mod ami;
pub mod command;
pub mod config;
pub mod daemon;
pub mod deadlines;
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
pub mod tokens;
pub mod xmpp;
