//! The one configuration file (TOML), validated at load with errors that name the key.
//!
//! Every key is documented in README.md and in `queuebridge.example.toml`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::access::{Directory, PauseReason, UserConfig};
use crate::ami::client::{Auth, ClientConfig};
use crate::ami::DEFAULT_MAX_FRAME;
use crate::history::HistoryConfig;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where queue ids (and later call history and deadlines) are kept.
    pub state_dir: PathBuf,
    /// The Asterisk servers, one AMI connection each.
    pub ami: Vec<AmiConfig>,
    pub http: HttpConfig,
    /// Queue ids fixed by the operator.
    #[serde(default)]
    pub queues: Vec<QueueIdConfig>,
    /// Agents and supervisors.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Reasons an agent may give for a pause.
    #[serde(default)]
    pub pause_reasons: Vec<PauseReason>,
    /// Call history retention.
    #[serde(default)]
    pub history: HistoryConfig,
    /// The PortSIP dialect.
    #[serde(default)]
    pub portsip: PortsipConfig,
    /// The pascom XMPP component; off when absent.
    #[serde(default)]
    pub xmpp: Option<XmppConfig>,
    /// The Prometheus endpoint; off when absent.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
}

/// `[metrics]`: where `GET /metrics` is served (its own listener, beside the API's).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

/// `[xmpp]`: queuebridge as an external component (XEP-0114) of an XMPP server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppConfig {
    /// The server's component port, `host:port`.
    pub server: String,
    /// The component's JID, e.g. `pbx.example.test`.
    pub component: String,
    /// The shared secret of the component.
    pub secret: String,
    /// The users' domain: user `tweber` is `tweber@domain`.
    pub domain: String,
    /// Seconds of silence on the link before queuebridge pings the server.
    #[serde(default = "default_xmpp_ping")]
    pub ping_interval: f64,
    /// Longest pause between reconnect attempts, seconds.
    #[serde(default = "default_backoff_max")]
    pub reconnect_max: f64,
    /// Client sessions (full JIDs) kept per user; the least recently active goes first.
    #[serde(default = "default_sessions_per_user")]
    pub max_sessions_per_user: usize,
}

/// `[portsip]`: the AMI account of queue servers added through `POST /api/call_queue_servers`
/// (a PortSIP client sends only a name and an address), unless the request carries its own
/// `ami_username`/`ami_secret`/`ami_port`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortsipConfig {
    #[serde(default)]
    pub server_username: Option<String>,
    #[serde(default)]
    pub server_secret: Option<String>,
    #[serde(default = "default_port")]
    pub server_port: u16,
}

impl Default for PortsipConfig {
    fn default() -> Self {
        Self {
            server_username: None,
            server_secret: None,
            server_port: default_port(),
        }
    }
}

/// One `[[ami]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmiConfig {
    pub id: String,
    /// Shown by the PortSIP dialect as the queue server's name; defaults to `id`.
    #[serde(default)]
    pub name: Option<String>,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub username: String,
    pub secret: String,
    #[serde(default)]
    pub auth: Auth,
    /// Seconds to wait for the TCP connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: f64,
    /// Seconds to wait for Asterisk to answer an action.
    #[serde(default = "default_action_timeout")]
    pub action_timeout: f64,
    /// Seconds between keepalive Pings.
    #[serde(default = "default_ping_interval")]
    pub ping_interval: f64,
    /// Seconds between full QueueStatus reconciliations.
    #[serde(default = "default_reconcile_interval")]
    pub reconcile_interval: f64,
    /// Longest pause between reconnect attempts, seconds.
    #[serde(default = "default_backoff_max")]
    pub reconnect_max: f64,
    /// Largest AMI message accepted, bytes; longer ones are skipped.
    #[serde(default = "default_max_frame")]
    pub max_message_bytes: usize,
}

/// `[http]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Bearer token of the native API.
    pub token: String,
    /// Most SSE streams open at once.
    #[serde(default = "default_max_streams")]
    pub max_event_streams: usize,
    /// Most password checks (argon2, ~19 MiB each) running at once, over all dialects.
    #[serde(default = "default_max_password_checks")]
    pub max_password_checks: usize,
    /// Most connections open at once; beyond, the oldest idle one is closed (see
    /// [`crate::http::serve`]).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client has to send a request head (and a keep-alive connection may stay
    /// silent), and to send a request body.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: f64,
    /// Largest request body, bytes; larger ones are answered 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

/// One `[[queues]]` entry: a fixed id for a queue.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueIdConfig {
    pub server: String,
    pub name: String,
    pub id: u64,
}

fn default_port() -> u16 {
    5038
}
fn default_connect_timeout() -> f64 {
    5.0
}
fn default_action_timeout() -> f64 {
    10.0
}
fn default_ping_interval() -> f64 {
    10.0
}
fn default_reconcile_interval() -> f64 {
    60.0
}
fn default_backoff_max() -> f64 {
    30.0
}
fn default_max_frame() -> usize {
    DEFAULT_MAX_FRAME
}
fn default_max_streams() -> usize {
    256
}
fn default_max_connections() -> usize {
    1024
}
fn default_request_timeout() -> f64 {
    10.0
}
fn default_max_body_bytes() -> usize {
    64 * 1024
}
/// argon2 checks running at once (about 19 MiB each).
fn default_max_password_checks() -> usize {
    4
}
fn default_xmpp_ping() -> f64 {
    30.0
}
fn default_sessions_per_user() -> usize {
    8
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let syntax = |e: toml::de::Error| ConfigError::Syntax {
            path: origin.to_owned(),
            message: syntax_message(text, &e),
        };
        let value: toml::Table = toml::from_str(text).map_err(syntax)?;
        if let Some(key) = key_with_nul(&value, "") {
            return Err(ConfigError::Invalid {
                path: origin.to_owned(),
                key,
                message: "must not contain a NUL character".to_owned(),
            });
        }
        let config: Config = toml::from_str(text).map_err(syntax)?;
        config.validate(origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: String, message: &str| ConfigError::Invalid {
            path: origin.to_owned(),
            key,
            message: message.to_owned(),
        };
        if self.ami.is_empty() {
            return Err(invalid(
                "ami".into(),
                "at least one [[ami]] server is required",
            ));
        }
        let mut ids = BTreeSet::new();
        for (i, a) in self.ami.iter().enumerate() {
            let key = |k: &str| format!("ami[{i}].{k}");
            if a.id.is_empty() || a.id.contains('/') {
                return Err(invalid(key("id"), "must be non-empty and contain no '/'"));
            }
            if !ids.insert(a.id.as_str()) {
                return Err(invalid(
                    key("id"),
                    &format!("duplicate server id {:?}", a.id),
                ));
            }
            if a.host.is_empty() {
                return Err(invalid(key("host"), "must not be empty"));
            }
            if a.username.is_empty() {
                return Err(invalid(key("username"), "must not be empty"));
            }
            for (name, v) in [
                ("connect_timeout", a.connect_timeout),
                ("action_timeout", a.action_timeout),
                ("ping_interval", a.ping_interval),
                ("reconcile_interval", a.reconcile_interval),
                ("reconnect_max", a.reconnect_max),
            ] {
                if !(0.05..=86_400.0).contains(&v) {
                    return Err(invalid(key(name), "must be between 0.05 and 86400 seconds"));
                }
            }
            if !(1024..=64 * 1024 * 1024).contains(&a.max_message_bytes) {
                return Err(invalid(
                    key("max_message_bytes"),
                    "must be between 1024 and 67108864",
                ));
            }
        }
        if self.http.token.len() < 16 {
            return Err(invalid(
                "http.token".into(),
                "must be at least 16 characters",
            ));
        }
        if !(1..=MAX_EVENT_STREAMS).contains(&self.http.max_event_streams) {
            return Err(invalid(
                "http.max_event_streams".into(),
                &format!("must be between 1 and {MAX_EVENT_STREAMS}"),
            ));
        }
        if !(1..=1_000_000).contains(&self.http.max_connections) {
            return Err(invalid(
                "http.max_connections".into(),
                "must be between 1 and 1000000",
            ));
        }
        if !(0.1..=3600.0).contains(&self.http.request_timeout) {
            return Err(invalid(
                "http.request_timeout".into(),
                "must be between 0.1 and 3600 seconds",
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.http.max_body_bytes) {
            return Err(invalid(
                "http.max_body_bytes".into(),
                "must be between 1024 and 67108864",
            ));
        }
        if !(1..=64).contains(&self.http.max_password_checks) {
            return Err(invalid(
                "http.max_password_checks".into(),
                "must be between 1 and 64",
            ));
        }
        if !(1..=36_500).contains(&self.history.retention_days) {
            return Err(invalid(
                "history.retention_days".into(),
                "must be between 1 and 36500 (0 would delete every call at start)",
            ));
        }
        if self.history.max_calls == 0 {
            return Err(invalid(
                "history.max_calls".into(),
                "must be at least 1 (0 would delete every call at start)",
            ));
        }
        let mut pinned = BTreeSet::new();
        for (i, q) in self.queues.iter().enumerate() {
            if !ids.contains(q.server.as_str()) {
                return Err(invalid(
                    format!("queues[{i}].server"),
                    "names no [[ami]] id",
                ));
            }
            if q.id == 0 || !pinned.insert(q.id) {
                return Err(invalid(
                    format!("queues[{i}].id"),
                    "must be unique and above 0",
                ));
            }
        }
        if let Some(x) = &self.xmpp {
            let port = x
                .server
                .rsplit_once(':')
                .and_then(|(host, port)| (!host.is_empty()).then_some(port.parse::<u16>().ok()?));
            if port.is_none() {
                return Err(invalid(
                    "xmpp.server".into(),
                    "must be host:port, e.g. \"127.0.0.1:5347\" or \"prosody:5347\"",
                ));
            }
            for (key, v) in [("xmpp.component", &x.component), ("xmpp.domain", &x.domain)] {
                if tokio_xmpp::jid::BareJid::new(v).map_or(true, |j| j.node().is_some()) {
                    return Err(invalid(key.into(), "must be a domain name"));
                }
            }
            if x.secret.is_empty() {
                return Err(invalid("xmpp.secret".into(), "must not be empty"));
            }
            for (key, v) in [
                ("xmpp.ping_interval", x.ping_interval),
                ("xmpp.reconnect_max", x.reconnect_max),
            ] {
                if !(0.05..=86_400.0).contains(&v) {
                    return Err(invalid(
                        key.into(),
                        "must be between 0.05 and 86400 seconds",
                    ));
                }
            }
            if !(1..=1024).contains(&x.max_sessions_per_user) {
                return Err(invalid(
                    "xmpp.max_sessions_per_user".into(),
                    "must be between 1 and 1024",
                ));
            }
        }
        self.directory().map_err(|e| invalid(e.key, &e.message))?;
        Ok(())
    }

    /// The users and pause reasons, resolved.
    pub fn directory(&self) -> Result<Directory, crate::access::DirectoryError> {
        let servers: Vec<&str> = self.ami.iter().map(|a| a.id.as_str()).collect();
        Directory::new(&self.users, &self.pause_reasons, &servers)
    }
}

/// The most SSE streams `[http] max_event_streams` may allow.
pub const MAX_EVENT_STREAMS: usize = 65_536;

/// Keys whose values are never shown in an error: an error message ends up in logs and on
/// terminals, a secret must not.
const HIDDEN_KEYS: [&str; 4] = ["secret", "token", "password", "hash"];

/// A TOML error as "line L, column C: what", without the source text the toml crate quotes,
/// and without the value itself when the line holds a secret.
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let what = e.message().trim_end();
    let Some(before) = e.span().and_then(|span| text.get(..span.start)) else {
        return what.to_owned();
    };
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or_default();
    // Only a key that is a key (TOML's bare-key letters, dotted): whatever else stands before
    // an `=` on that line — the middle of a multi-line string, say — is not repeated.
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
        .filter(|k| {
            !k.is_empty()
                && k.len() <= 64
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        });
    let message = match key {
        Some(k)
            if HIDDEN_KEYS
                .iter()
                .any(|h| k.to_ascii_lowercase().contains(h)) =>
        {
            format!("{k}: invalid value (not shown: it is a secret)")
        }
        Some(k) => format!("{k}: {what}"),
        None => what.to_owned(),
    };
    format!("line {line_no}, column {column}: {message}")
}

/// The first key (dotted, with `[i]` for arrays) whose string value contains NUL.
fn key_with_nul(table: &toml::Table, prefix: &str) -> Option<String> {
    fn walk(v: &toml::Value, key: String) -> Option<String> {
        match v {
            toml::Value::String(s) => s.contains('\0').then_some(key),
            toml::Value::Array(a) => a
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, format!("{key}[{i}]"))),
            toml::Value::Table(t) => key_with_nul(t, &key),
            _ => None,
        }
    }
    table.iter().find_map(|(k, v)| {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if k.contains('\0') {
            return Some(key);
        }
        walk(v, key)
    })
}

impl AmiConfig {
    /// The client settings of this server.
    pub fn client(&self) -> ClientConfig {
        ClientConfig {
            id: Arc::from(self.id.as_str()),
            host: self.host.clone(),
            port: self.port,
            username: self.username.clone(),
            secret: self.secret.clone(),
            auth: self.auth,
            max_frame: self.max_message_bytes,
            connect_timeout: Duration::from_secs_f64(self.connect_timeout),
            action_timeout: Duration::from_secs_f64(self.action_timeout),
            ping_interval: Duration::from_secs_f64(self.ping_interval),
            reconcile_interval: Duration::from_secs_f64(self.reconcile_interval),
            backoff_max: Duration::from_secs_f64(self.reconnect_max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
state_dir = "/tmp/qb"
[[ami]]
id = "pbx1"
host = "127.0.0.1"
username = "bridge"
secret = "s"
[http]
listen = "127.0.0.1:8088"
token = "0123456789abcdef"
"#;

    #[test]
    fn minimal_file_loads_with_defaults() {
        let c = Config::parse(GOOD, "t").unwrap();
        assert_eq!(c.ami[0].port, 5038);
        assert_eq!(c.ami[0].auth, Auth::Md5);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse(&GOOD.replace("secret", "secrett"), "t").unwrap_err();
        assert!(err.to_string().contains("secrett"), "{err}");
    }

    #[test]
    fn duplicate_server_id_is_named() {
        let twice = format!(
            "{GOOD}\n[[ami]]\nid = \"pbx1\"\nhost = \"h\"\nusername = \"u\"\nsecret = \"s\"\n"
        );
        let err = Config::parse(&twice, "t").unwrap_err();
        assert!(err.to_string().contains("ami[1].id"), "{err}");
    }

    #[test]
    fn a_bad_user_entry_is_named() {
        let users = format!(
            "{GOOD}\n[[users]]\nname = \"tweber\"\npassword_hash = \"x\"\ninterface = \"Local/340@agents/n\"\n"
        );
        let err = Config::parse(&users, "t").unwrap_err();
        assert!(err.to_string().contains("users[0].password_hash"), "{err}");
    }

    #[test]
    fn what_would_panic_or_destroy_data_is_refused() {
        for (extra, key) in [
            (
                "[http]\nmax_event_streams = 18446744073709551615",
                "max_event_streams",
            ),
            ("[history]\nretention_days = 0", "history.retention_days"),
            ("[history]\nmax_calls = 0", "history.max_calls"),
        ] {
            let text = if extra.starts_with("[http]") {
                GOOD.replace(
                    "token = \"0123456789abcdef\"",
                    "token = \"0123456789abcdef\"\nmax_event_streams = 9223372036854775807",
                )
            } else {
                format!("{GOOD}\n{extra}\n")
            };
            let err = Config::parse(&text, "t").unwrap_err();
            assert!(err.to_string().contains(key), "{extra}: {err}");
        }
    }

    #[test]
    fn a_nul_in_any_text_is_refused_by_key() {
        let text =
            format!("{GOOD}\n[[pause_reasons]]\ncode = \"*01\"\nreason = \"Lu\\u0000nch\"\n");
        let err = Config::parse(&text, "t").unwrap_err();
        assert!(err.to_string().contains("pause_reasons[0].reason"), "{err}");
        assert!(err.to_string().contains("NUL"), "{err}");
    }

    #[test]
    fn syntax_errors_never_echo_a_secret() {
        for bad in [
            GOOD.replace("secret = \"s\"", "secret = \"hunter2-top"),
            GOOD.replace("secret = \"s\"", "secret = 'hunter2-top' x"),
            GOOD.replace("secret = \"s\"", "secret = 12345hunter2-top"),
            GOOD.replace("token = \"0123456789abcdef\"", "token = [\"hunter2-top\"]"),
        ] {
            let err = Config::parse(&bad, "t").unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.contains("line "), "{err}");
        }
        let err = Config::parse(&GOOD.replace("username = \"bridge\"", "port = \"x\""), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 6") && err.contains("port"), "{err}");
        let huge = format!("{GOOD}\n[history]\nmax_calls = 18446744073709551615\n");
        let err = Config::parse(&huge, "t").unwrap_err().to_string();
        assert!(err.contains("max_calls"), "{err}");
    }

    #[test]
    fn short_token_is_refused() {
        let err = Config::parse(&GOOD.replace("0123456789abcdef", "short"), "t").unwrap_err();
        assert!(err.to_string().contains("http.token"), "{err}");
    }

    #[test]
    fn the_xmpp_section_is_optional_and_checked() {
        assert!(Config::parse(GOOD, "t").unwrap().xmpp.is_none());
        let xmpp = format!(
            "{GOOD}\n[xmpp]\nserver = \"127.0.0.1:5347\"\ncomponent = \"pbx.example.test\"\nsecret = \"s\"\ndomain = \"example.test\"\n"
        );
        let c = Config::parse(&xmpp, "t").unwrap();
        let x = c.xmpp.expect("xmpp");
        assert_eq!((x.ping_interval, x.max_sessions_per_user), (30.0, 8));
        for (from, to, key) in [
            ("127.0.0.1:5347", "localhost", "xmpp.server"),
            ("127.0.0.1:5347", ":5347", "xmpp.server"),
            ("127.0.0.1:5347", "prosody:http", "xmpp.server"),
            ("pbx.example.test", "user@pbx", "xmpp.component"),
            ("\"example.test\"", "\"\"", "xmpp.domain"),
            ("secret = \"s\"", "secret = \"\"", "xmpp.secret"),
        ] {
            let err = Config::parse(&xmpp.replace(from, to), "t").unwrap_err();
            assert!(err.to_string().contains(key), "{from}: {err}");
        }
    }
}
