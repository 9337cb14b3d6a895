//! A real WebSocket client for the push tests: Python's `websockets`, driven line by line
//! (tests/clients/ws_client.py).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Ws {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Ws {
    /// Connects to `url` (`ws://…`); the first line is `open` or `refused <status> <body>`.
    pub fn connect(url: &str) -> Self {
        let python = std::env::var("QUEUEBRIDGE_PYTHON").unwrap_or_else(|_| "python3".into());
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/ws_client.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the WebSocket client (scripts/test.sh installs websockets)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            lines,
        }
    }

    pub fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{text}").expect("send");
        stdin.flush().expect("flush");
    }

    /// The next line within `within`, if any.
    pub fn next_within(&mut self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// The next line, within 15 s.
    pub fn next(&mut self) -> String {
        self.next_within(Duration::from_secs(15))
            .expect("a line from the WebSocket client within 15 s")
    }

    /// The next received message, parsed as JSON (skipping none).
    pub fn json(&mut self) -> serde_json::Value {
        let line = self.next();
        let text = line
            .strip_prefix("recv ")
            .unwrap_or_else(|| panic!("expected a message, got {line:?}"));
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// The next received message whose `type` is `topic`, skipping others.
    pub fn event(&mut self, topic: u64) -> serde_json::Value {
        loop {
            let v = self.json();
            if v["type"] == topic {
                return v;
            }
        }
    }
}

impl Drop for Ws {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
