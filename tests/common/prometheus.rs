//! A real Prometheus (Debian 12's package) for one test, scraping one target every second with
//! the repository's prometheus/prometheus.yml, on a free loopback port.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::free_port;

/// Renders the repository's prometheus/prometheus.yml (the file docker-compose.yml renders too)
/// into `file`, and checks it with `promtool check config`.
pub fn write_config(file: &Path, interval: &str, target: &str) {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus/prometheus.yml"),
    )
    .expect("prometheus/prometheus.yml");
    let rendered = template
        .replace("@INTERVAL@", interval)
        .replace("@TARGET@", target);
    std::fs::write(file, rendered).expect("write prometheus.yml");
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(file)
        .output()
        .expect("promtool (apt-get install prometheus)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

pub struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second, with the repository's
    /// prometheus/prometheus.yml; `promtool check config` first.
    pub fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        write_config(&config, "1s", target);
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// The value of an instant query with one result, if it has one.
    pub async fn query(&self, http: &reqwest::Client, q: &str) -> Option<f64> {
        let v: Value = http
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", q)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let result = v["data"]["result"].as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
