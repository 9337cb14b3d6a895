//! A private Prosody (Debian 12's package) for one test, and real clients (slixmpp) on it.
//!
//! Prosody refuses to run as root, so it runs as the `prosody` user (`setpriv`, which execs:
//! the PID we hold is Prosody's own) with an absolute configuration path, c2s and component
//! ports on free loopback ports, the repository's `prosody/mod_pascom.lua` on the users' host,
//! and the data directory in a temporary directory it owns.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::free_port;

pub const DOMAIN: &str = "example.test";
pub const COMPONENT: &str = "pbx.example.test";
pub const SECRET: &str = "component-secret";

pub struct Prosody {
    pub c2s_port: u16,
    pub component_port: u16,
    dir: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
}

fn as_prosody(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=prosody",
        "--regid=prosody",
        "--init-groups",
        "--",
        program,
    ]);
    c
}

/// How a [`Prosody`]'s accounts are made.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Accounts {
    /// `prosodyctl register`, as an administrator does (hashed passwords); a fraction of a
    /// second per account.
    Registered,
    /// `internal_plain`'s data files written directly: for the thousands of accounts of a
    /// benchmark. The server then keeps plain passwords and takes SASL PLAIN without TLS, so
    /// only on a private loopback server.
    PlainFiles,
}

impl Prosody {
    /// Starts Prosody with these users (name, password) registered.
    pub fn start(users: &[(&str, &str)]) -> Self {
        Self::start_with(users, Accounts::Registered, "debug")
    }

    /// Starts Prosody with these users, made as `accounts` says, logging from `log_level` up.
    pub fn start_with(users: &[(&str, &str)], accounts: Accounts, log_level: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("qb-prosody-")
            .tempdir()
            .expect("temp dir");
        let (c2s_port, component_port) = (free_port(), free_port());
        let root = dir.path();
        std::fs::create_dir_all(root.join("data")).expect("data dir");
        std::fs::create_dir_all(root.join("plugins")).expect("plugins dir");
        let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("prosody/mod_pascom.lua");
        std::fs::copy(&module, root.join("plugins/mod_pascom.lua")).expect("copy module");
        let r = root.display().to_string();
        let config = root.join("prosody.cfg.lua");
        // The repository's template, the same file docker-compose.yml renders.
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("prosody/prosody.cfg.lua"),
        )
        .expect("prosody/prosody.cfg.lua");
        let rendered = [
            ("@RUN@", r.clone()),
            ("@DATA@", format!("{r}/data")),
            ("@PLUGINS@", format!("{r}/plugins")),
            ("@INTERFACE@", "127.0.0.1".to_owned()),
            ("@C2S_PORT@", c2s_port.to_string()),
            ("@COMPONENT_PORT@", component_port.to_string()),
            ("@LOG_LEVEL@", log_level.to_owned()),
            ("@LOG@", format!("{r}/prosody.log")),
            ("@DOMAIN@", DOMAIN.to_owned()),
            ("@COMPONENT@", COMPONENT.to_owned()),
            ("@SECRET@", SECRET.to_owned()),
        ]
        .iter()
        .fold(template, |text, (name, value)| text.replace(name, value));
        assert!(
            !rendered.contains("@"),
            "unrendered placeholder:\n{rendered}"
        );
        let rendered = match accounts {
            Accounts::Registered => rendered,
            Accounts::PlainFiles => {
                // The layout of Prosody's `internal` storage (util/datamanager.lua): host and
                // user names with every non-alphanumeric byte %-encoded, one Lua table per
                // account.
                let encode = |name: &str| -> String {
                    name.bytes()
                        .map(|b| match b.is_ascii_alphanumeric() {
                            true => char::from(b).to_string(),
                            false => format!("%{b:02x}"),
                        })
                        .collect()
                };
                let dir = root.join("data").join(encode(DOMAIN)).join("accounts");
                std::fs::create_dir_all(&dir).expect("accounts dir");
                for (user, password) in users {
                    let table = format!("return {{\n\t[\"password\"] = {password:?};\n}};\n");
                    std::fs::write(dir.join(format!("{}.dat", encode(user))), table)
                        .expect("account");
                }
                // SASL PLAIN without TLS, which a client of thousands of sessions can speak
                // without a SCRAM implementation: loopback only.
                rendered.replace(
                    "authentication = \"internal_hashed\"",
                    "authentication = \"internal_plain\"\nallow_unencrypted_plain_auth = true",
                )
            }
        };
        std::fs::write(&config, rendered).expect("write config");
        let status = Command::new("chown")
            .args(["-R", "prosody:prosody"])
            .arg(root)
            .status()
            .expect("chown");
        assert!(status.success(), "chown {r}");
        let cfg = config.display().to_string();
        for (user, password) in users.iter().filter(|_| accounts == Accounts::Registered) {
            let out = as_prosody("prosodyctl")
                .args(["--config", &cfg, "register", user, DOMAIN, password])
                .output()
                .expect("prosodyctl");
            assert!(
                out.status.success(),
                "prosodyctl register {user}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut p = Prosody {
            c2s_port,
            component_port,
            dir,
            config,
            child: None,
        };
        p.run();
        p
    }

    /// Starts the server process and waits until its ports accept connections.
    pub fn run(&mut self) {
        let child = as_prosody("prosody")
            .args(["--config", &self.config.display().to_string(), "-F"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prosody");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [self.c2s_port, self.component_port] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "prosody did not open port {port}:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Stops the server process (SIGTERM, then SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server process's PID while it runs (`setpriv` execs it: this is Prosody's own).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default()
    }

    /// The `[xmpp]` section that points queuebridge at this server.
    pub fn xmpp_config(&self) -> String {
        self.xmpp_config_via(self.component_port)
    }

    /// The `[xmpp]` section with the component port `port` (a proxy in front of this server's).
    pub fn xmpp_config_via(&self, port: u16) -> String {
        format!(
            r#"
[xmpp]
server = "127.0.0.1:{}"
component = "{COMPONENT}"
secret = "{SECRET}"
domain = "{DOMAIN}"
ping_interval = 5
reconnect_max = 2
"#,
            port
        )
    }

    /// Logs a client in as `user/resource` and waits for its session.
    pub fn client(&self, user: &str, password: &str, resource: &str) -> Client {
        Client::connect(
            &format!("{user}@{DOMAIN}/{resource}"),
            password,
            self.c2s_port,
        )
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A slixmpp client process, fed raw stanzas on stdin.
pub struct Client {
    pub jid: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<serde_json::Value>,
    /// Stanzas received and not yet taken.
    pending: Vec<String>,
}

impl Client {
    pub fn connect(jid: &str, password: &str, port: u16) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/pascom_client.py");
        // scripts/test.sh points this at a virtual environment with slixmpp.
        let python = std::env::var("QUEUEBRIDGE_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(python)
            .arg(script)
            .args([jid, password, "127.0.0.1", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the slixmpp client (scripts/test.sh installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let mut c = Client {
            jid: jid.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            pending: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match c.lines.recv_timeout(left) {
                Ok(v) if v["event"] == "ready" => break,
                Ok(v) if v["event"].is_string() => panic!("{jid}: {v}"),
                Ok(v) => c.keep(v),
                Err(_) => panic!("{jid}: no session within 20 s"),
            }
        }
        c
    }

    fn keep(&mut self, v: serde_json::Value) {
        if let Some(s) = v["stanza"].as_str() {
            // slixmpp writes empty elements as `<a />`.
            self.pending.push(s.replace(" />", "/>"));
        }
    }

    /// Sends raw XML.
    pub fn send(&mut self, xml: &str) {
        let line = xml.replace(['\n', '\r'], " ");
        let stdin = self.stdin.as_mut().expect("client stdin");
        writeln!(stdin, "{line}").expect("write to client");
        stdin.flush().expect("flush client");
    }

    /// The first received stanza (taken) for which `want` holds, within `timeout`.
    pub fn wait_for(&mut self, timeout: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.pending.iter().position(|s| want(s)) {
                return Some(self.pending.remove(i));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(v) => self.keep(v),
                Err(_) => return None,
            }
        }
    }

    /// Sends `xml` (an IQ with `id`) and returns the answer with that id, within 25 s.
    pub fn request(&mut self, id: &str, xml: &str) -> String {
        self.send(xml);
        let marker = format!("id=\"{id}\"");
        self.wait_for(Duration::from_secs(25), |s| {
            s.starts_with("<iq") && s.contains(&marker)
        })
        .unwrap_or_else(|| panic!("{}: no answer to {id}", self.jid))
    }

    /// Takes every received stanza containing `needle` that arrives within `timeout`.
    pub fn collect(&mut self, timeout: Duration, needle: &str) -> Vec<String> {
        let mut got = Vec::new();
        let deadline = Instant::now() + timeout;
        while let Some(s) = self.wait_for(deadline.saturating_duration_since(Instant::now()), |s| {
            s.contains(needle)
        }) {
            got.push(s);
        }
        got
    }

    /// Freezes (SIGSTOP) or wakes (SIGCONT) the client process: a client that stops reading.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal}");
    }

    /// Drops everything received so far.
    pub fn clear(&mut self) {
        while let Ok(v) = self.lines.try_recv() {
            self.keep(v);
        }
        self.pending.clear();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
