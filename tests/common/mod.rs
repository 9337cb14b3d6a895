//! Test helpers: a real Asterisk, the real queuebridge binary, and exactness checks.

#![allow(dead_code)]

pub mod asterisk;
pub mod driver;
pub mod machine;
pub mod prometheus;
pub mod prosody;
pub mod proxy;
pub mod ws;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use queuebridge::ami::{Event, Message};
use serde_json::Value;

#[allow(unused_imports)]
pub use asterisk::{free_port, Asterisk};
#[allow(unused_imports)]
pub use driver::Driver;

pub const TOKEN: &str = "test-token-0123456789";

/// Two pause reasons, as configuration text.
pub const PAUSE_REASONS: &str = r#"
[[pause_reasons]]
code = "*01"
reason = "Lunch"
[[pause_reasons]]
code = "*02"
reason = "Break"
"#;

/// A root file system a `scripts/*-rootfs` script caches: `$var`, or `default`; it must hold
/// `marker`.
pub fn cached_root(var: &str, default: &str, marker: &str) -> PathBuf {
    let root = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        root.join(marker).exists(),
        "no root file system at {} — run scripts/test.sh, which builds it",
        root.display()
    );
    root
}

/// One `[[ami]]` entry of a test configuration.
pub struct Server<'a> {
    pub id: &'a str,
    pub port: u16,
    pub secret: &'a str,
    pub auth: &'a str,
}

/// The queuebridge binary, running with a test configuration.
pub struct Bridge {
    pub base: String,
    child: Child,
    pub state_dir: tempfile::TempDir,
    stderr_path: PathBuf,
    pub http: reqwest::Client,
}

impl Bridge {
    /// Starts queuebridge against one Asterisk with the `bridge` account.
    pub fn start(port: u16) -> Self {
        Self::start_with(
            &[Server {
                id: "pbx1",
                port,
                secret: asterisk::SECRET,
                auth: "md5",
            }],
            None,
        )
    }

    /// Starts queuebridge with these servers, optionally reusing a state directory.
    pub fn start_with(servers: &[Server<'_>], state_dir: Option<tempfile::TempDir>) -> Self {
        Self::start_configured(servers, state_dir, "")
    }

    /// Starts queuebridge against one Asterisk, with `extra` TOML (users, pause reasons …).
    pub fn start_extra(port: u16, extra: &str) -> Self {
        let server = Server {
            id: "pbx1",
            port,
            secret: asterisk::SECRET,
            auth: "md5",
        };
        Self::start_configured(&[server], None, extra)
    }

    /// Like [`Bridge::start_extra`], with more `[http]` keys (`http` is TOML lines of that
    /// table: limits …).
    pub fn start_http(port: u16, http: &str, extra: &str) -> Self {
        let server = Server {
            id: "pbx1",
            port,
            secret: asterisk::SECRET,
            auth: "md5",
        };
        Self::start_full(&[server], None, http, extra)
    }

    /// Like [`Bridge::start_extra`], reusing a state directory (a restart).
    pub fn start_extra_in(port: u16, extra: &str, state_dir: tempfile::TempDir) -> Self {
        let server = Server {
            id: "pbx1",
            port,
            secret: asterisk::SECRET,
            auth: "md5",
        };
        Self::start_configured(&[server], Some(state_dir), extra)
    }

    fn start_configured(
        servers: &[Server<'_>],
        state_dir: Option<tempfile::TempDir>,
        extra: &str,
    ) -> Self {
        Self::start_full(servers, state_dir, "", extra)
    }

    fn start_full(
        servers: &[Server<'_>],
        state_dir: Option<tempfile::TempDir>,
        http: &str,
        extra: &str,
    ) -> Self {
        let state_dir = state_dir.unwrap_or_else(|| tempfile::tempdir().expect("tempdir"));
        let http_port = free_port();
        let mut config = format!(
            "state_dir = {:?}\n[http]\nlisten = \"127.0.0.1:{http_port}\"\ntoken = \"{TOKEN}\"\n{http}\n",
            state_dir.path().display().to_string()
        );
        for s in servers {
            config.push_str(&format!(
                "[[ami]]\nid = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"bridge\"\nsecret = \"{}\"\nauth = \"{}\"\n\
                 ping_interval = 1.0\naction_timeout = 3.0\nreconcile_interval = 5.0\nreconnect_max = 2.0\n",
                s.id, s.port, s.secret, s.auth
            ));
        }
        config.push_str(extra);
        let config_path = state_dir.path().join("queuebridge.toml");
        std::fs::write(&config_path, config).expect("write config");
        let stderr_path = state_dir.path().join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_queuebridge"))
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "queuebridge=debug,info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn queuebridge");
        let base = format!("http://127.0.0.1:{http_port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err() {
            assert!(Instant::now() < deadline, "queuebridge did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Bridge {
            base,
            child,
            state_dir,
            stderr_path,
            http: reqwest::Client::new(),
        }
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The configuration file the daemon runs with.
    pub fn config_path(&self) -> PathBuf {
        self.state_dir.path().join("queuebridge.toml")
    }

    /// Sends a signal (`HUP`, `TERM` …) to the daemon.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().expect("wait");
        let dir = std::mem::replace(&mut self.state_dir, tempfile::tempdir().expect("tempdir"));
        (status, dir)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("http get")
    }

    /// Sends `method path` with an optional JSON body; returns the status and the JSON answer.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("http request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json")
    }

    /// Waits for /healthz to answer `status`.
    pub async fn wait_health(&self, status: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.http.get(format!("{}/healthz", self.base)).send().await;
            if r.as_ref().ok().map(|r| r.status().as_u16()) == Some(status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "healthz never became {status}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until queuebridge's view of `queue` equals Asterisk's QueueStatus, field by field.
    pub async fn assert_exact(&self, driver: &mut Driver, server: &str, queue: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let truth = driver.queue_status(queue).await;
            let ours = self.json(&format!("/api/v1/queues/{server}/{queue}")).await;
            match diff(&truth, &ours) {
                None => return ours,
                Some(d) if Instant::now() > deadline => {
                    panic!(
                        "state of {queue} is not exact: {d}\nqueuebridge: {ours:#}\nlog:\n{}",
                        self.log()
                    )
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

/// Asterisk, the tests' driver, and queuebridge connected to Asterisk through a [`Proxy`].
pub async fn behind_proxy() -> (Asterisk, Driver, proxy::Proxy, Bridge) {
    let ast = Asterisk::start();
    let mut driver = Driver::connect(ast.port).await;
    driver.devstate("agent3", "NOT_INUSE").await;
    let proxy = proxy::Proxy::start(ast.port).await;
    let bridge = Bridge::start(proxy.port);
    bridge.wait_health(200).await;
    (ast, driver, proxy, bridge)
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn caller_id(v: &str) -> &str {
    if v == "unknown" || v == "<unknown>" {
        ""
    } else {
        v
    }
}

/// Compares QueueStatus items with queuebridge's JSON for the queue; `None` when equal.
pub fn diff(truth: &[Message], ours: &Value) -> Option<String> {
    let mut members = Vec::new();
    let mut entries = Vec::new();
    for m in truth {
        match Event::from_message(m) {
            Event::Params(p) => {
                let want = [
                    ("strategy", Value::from(p.strategy)),
                    ("max", p.max.into()),
                    ("calls", p.calls.into()),
                    ("hold_time", p.hold_time.into()),
                    ("talk_time", p.talk_time.into()),
                    ("completed", p.completed.into()),
                    ("abandoned", p.abandoned.into()),
                    ("service_level", p.service_level.into()),
                    ("service_level_perf", p.service_level_perf.into()),
                    ("service_level_perf2", p.service_level_perf2.into()),
                    ("weight", p.weight.into()),
                ];
                for (k, v) in want {
                    if ours[k] != v {
                        return Some(format!("queue {k}: asterisk {v}, queuebridge {}", ours[k]));
                    }
                }
            }
            Event::Member(f) => members.push(f),
            Event::Entry(e) => entries.push(e),
            _ => {}
        }
    }
    let our_members = ours["members"].as_array().cloned().unwrap_or_default();
    if our_members.len() != members.len() {
        return Some(format!(
            "{} members in asterisk, {} in queuebridge",
            members.len(),
            our_members.len()
        ));
    }
    for f in &members {
        let Some(m) = our_members.iter().find(|m| m["interface"] == f.interface) else {
            return Some(format!("member {} missing", f.interface));
        };
        let want = [
            ("name", Value::from(f.name)),
            ("state_interface", f.state_interface.into()),
            ("membership", f.membership.into()),
            ("penalty", f.penalty.into()),
            ("calls_taken", f.calls_taken.into()),
            ("last_call", f.last_call.into()),
            ("last_pause", f.last_pause.into()),
            ("login_time", f.login_time.into()),
            ("in_call", f.in_call.into()),
            ("status", f.status.into()),
            ("paused", f.paused.into()),
            ("paused_reason", f.paused_reason.into()),
            ("wrapup_time", f.wrapup_time.into()),
        ];
        for (k, v) in want {
            if m[k] != v {
                return Some(format!(
                    "member {} {k}: asterisk {v}, queuebridge {}",
                    f.interface, m[k]
                ));
            }
        }
    }
    let our_callers = ours["callers"].as_array().cloned().unwrap_or_default();
    if our_callers.len() != entries.len() {
        return Some(format!(
            "{} callers in asterisk, {} in queuebridge",
            entries.len(),
            our_callers.len()
        ));
    }
    for e in &entries {
        let Some(c) = our_callers
            .iter()
            .find(|c| c["uniqueid"] == e.caller.uniqueid)
        else {
            return Some(format!("caller {} missing", e.caller.uniqueid));
        };
        let want = [
            ("position", Value::from(e.caller.position)),
            ("channel", e.caller.channel.into()),
            ("caller_id_num", caller_id(e.caller.caller_id_num).into()),
            ("caller_id_name", caller_id(e.caller.caller_id_name).into()),
            (
                "connected_line_num",
                caller_id(e.caller.connected_line_num).into(),
            ),
            (
                "connected_line_name",
                caller_id(e.caller.connected_line_name).into(),
            ),
            ("priority", e.priority.into()),
        ];
        for (k, v) in want {
            if c[k] != v {
                return Some(format!(
                    "caller {} {k}: asterisk {v}, queuebridge {}",
                    e.caller.uniqueid, c[k]
                ));
            }
        }
    }
    None
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub id: Option<u64>,
    pub event: String,
    pub data: Value,
}

/// Reads an SSE stream in the background; events arrive on the returned channel.
pub async fn subscribe(
    bridge: &Bridge,
    last_event_id: Option<u64>,
) -> tokio::sync::mpsc::UnboundedReceiver<Sse> {
    let mut req = bridge
        .http
        .get(format!("{}/api/v1/events", bridge.base))
        .bearer_auth(TOKEN);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let resp = req.send().await.expect("sse");
    assert_eq!(resp.status(), 200);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let mut ev = Sse {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                ev.data = serde_json::from_str(&data).unwrap_or(Value::Null);
                if tx.send(ev).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Waits for a change of `kind` matching `pred`; returns it, or panics after `secs`.
pub async fn expect_change(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Sse>,
    kind: &str,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> Sse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind} change within {secs} s"))
            .expect("sse stream ended");
        if ev.event == "change" && ev.data["type"] == kind && pred(&ev.data) {
            return ev;
        }
    }
}

/// The queue ids of the tests: sales = 1, support = 2.
pub const QUEUE_IDS: &str = r#"
[[queues]]
server = "pbx1"
name = "sales"
id = 1
[[queues]]
server = "pbx1"
name = "support"
id = 2
"#;

/// The users of the dialect tests: tweber (agent3, ext 203, may join support and sales),
/// mmeyer (agent1, ext 201), boss (agent2, ext 202, supervisor), watcher (a supervisor who is
/// not an agent: no interface, no extension, boss's password); queue ids sales = 1,
/// support = 2; the two pause reasons.
pub fn dialect_users() -> String {
    let agent = queuebridge::access::hash_password("agent-pw").expect("hash");
    let boss = queuebridge::access::hash_password("boss-pw").expect("hash");
    format!(
        r#"
{QUEUE_IDS}
[[users]]
name = "tweber"
password_hash = "{agent}"
interface = "Local/agent3@agents/n"
display_name = "Thomas Weber"
extension = "203"
queues = ["support", "sales"]
[[users]]
name = "mmeyer"
password_hash = "{agent}"
interface = "Local/agent1@agents/n"
extension = "201"
[[users]]
name = "boss"
password_hash = "{boss}"
interface = "Local/agent2@agents/n"
extension = "202"
roles = ["supervisor"]
[[users]]
name = "watcher"
password_hash = "{boss}"
display_name = "Wanda Watcher"
roles = ["supervisor"]
{PAUSE_REASONS}"#
    )
}

/// A fresh Asterisk, a driver on its AMI, and queuebridge on it with `extra` configuration
/// (users, pause reasons …), healthy.
pub async fn started(extra: &str) -> (Asterisk, Driver, Bridge) {
    let ast = Asterisk::start();
    let driver = Driver::connect(ast.port).await;
    let bridge = Bridge::start_extra(ast.port, extra);
    bridge.wait_health(200).await;
    (ast, driver, bridge)
}

/// The sample value of the series `name{labels}` in an exposition (labels in any order).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let Some(rest) = l.strip_prefix(name) else {
                return false;
            };
            (rest.starts_with('{') || rest.starts_with(' '))
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls `check` until it gives a value, for at most 30 s.
pub async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The dialect users plus an admin (agent4, ext 204, password admin-pw), and the AMI account
/// the PortSIP dialect uses for added queue servers.
pub fn portsip_users() -> String {
    let admin = queuebridge::access::hash_password("admin-pw").expect("hash");
    format!(
        r#"{}
[[users]]
name = "admin"
password_hash = "{admin}"
interface = "Local/agent4@agents/n"
extension = "204"
roles = ["admin"]
[portsip]
server_username = "bridge"
server_secret = "{}"
"#,
        dialect_users(),
        asterisk::SECRET
    )
}

/// A PortSIP access token of `user`, signed in through `/api/auth/sign_in`.
pub async fn portsip_token(bridge: &Bridge, user: &str, password: &str) -> String {
    let v: Value = bridge
        .http
        .post(format!("{}/api/auth/sign_in", bridge.base))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await
        .expect("sign_in")
        .json()
        .await
        .expect("json");
    v["access_token"].as_str().expect("access_token").to_owned()
}
