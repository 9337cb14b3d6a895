//! The Debian package and its systemd unit, for real: the .deb that `cargo deb` built
//! (scripts/test.sh passes it in `QUEUEBRIDGE_DEB`) is installed with dpkg into a Debian 12
//! system booted by systemd (systemd-nspawn), configured against a real Asterisk 22, started,
//! reloaded, wedged and stopped with systemctl, the way an operator would.

mod common;

use std::time::{Duration, Instant};

use common::machine::Machine;
use common::prometheus::Prometheus;
use common::{asterisk, free_port, Asterisk, Driver, TOKEN};
use serde_json::Value;

fn deb() -> std::path::PathBuf {
    let deb = std::env::var_os("QUEUEBRIDGE_DEB")
        .map(std::path::PathBuf::from)
        .expect("QUEUEBRIDGE_DEB names the .deb to test: scripts/test.sh builds it with cargo deb");
    assert!(deb.exists(), "no package at {}", deb.display());
    deb
}

/// Polls the unit until `check` holds, for at most `secs`.
fn wait_for(machine: &Machine, what: &str, secs: u64, check: impl Fn(&Machine) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check(machine) {
        assert!(
            Instant::now() < deadline,
            "timed out: {what}\njournal:\n{}",
            machine.journal("queuebridge")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `systemd-analyze security`'s overall exposure, from its last line.
fn exposure(report: &str) -> f64 {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{report}"));
    line.split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure in {line:?}"))
}

#[test]
fn unit_file_verifies_and_is_hardened() {
    // The repository's unit, pointing at the binary under test instead of /usr/bin.
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/queuebridge.service"),
    )
    .expect("unit file")
    .replace("/usr/bin/queuebridge", env!("CARGO_BIN_EXE_queuebridge"));
    let path = dir.path().join("queuebridge.service");
    std::fs::write(&path, unit).expect("write unit");
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let complaints = String::from_utf8_lossy(&verify.stderr).into_owned()
        + &String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    let security = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security");
    let report = String::from_utf8_lossy(&security.stdout);
    let level = exposure(&report);
    assert!(level <= 2.0, "exposure {level} > 2.0:\n{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn package_installs_and_runs_under_systemd() {
    let deb = deb();
    let machine = tokio::task::spawn_blocking(Machine::boot)
        .await
        .expect("boot");

    // Installed like an operator would, on a running system.
    machine.put(&deb, "/var/tmp/queuebridge.deb");
    machine.ok(&["dpkg", "-i", "/var/tmp/queuebridge.deb"]);
    let version = machine.ok(&["queuebridge", "--version"]);
    assert_eq!(
        version.trim(),
        format!("queuebridge {}", env!("CARGO_PKG_VERSION"))
    );
    let checked = machine.ok(&[
        "queuebridge",
        "check-config",
        "/etc/queuebridge/queuebridge.toml.example",
    ]);
    assert!(checked.contains("ok"), "{checked}");
    let user = machine.ok(&["getent", "passwd", "queuebridge"]);
    assert!(
        user.contains(":/var/lib/queuebridge:") && user.trim_end().ends_with("nologin"),
        "system user: {user}"
    );
    let dir = machine.ok(&["stat", "-c", "%U:%G %a", "/etc/queuebridge"]);
    assert_eq!(dir.trim(), "root:queuebridge 750");

    // Enabled, but idle until the operator writes the configuration.
    assert_eq!(
        machine
            .ok(&["systemctl", "is-enabled", "queuebridge"])
            .trim(),
        "enabled"
    );
    machine.ok(&["systemctl", "start", "queuebridge"]);
    assert_eq!(machine.property("queuebridge", "ActiveState"), "inactive");
    assert_eq!(machine.property("queuebridge", "ConditionResult"), "no");

    // The installed unit, as systemd itself reads it.
    let verify = machine.run(&["systemd-analyze", "verify", "queuebridge.service"]);
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let report = machine.ok(&["systemd-analyze", "security", "--no-pager", "queuebridge"]);
    assert!(exposure(&report) <= 2.0, "{report}");

    // Asterisk is down when the service starts: it stays "activating" and says why.
    let mut ast = Asterisk::start();
    ast.stop();
    let (http, metrics) = (free_port(), free_port());
    let config = format!(
        "state_dir = \"/var/lib/queuebridge\"\n\
         [[ami]]\nid = \"pbx1\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"bridge\"\n\
         secret = \"{}\"\nping_interval = 1.0\nreconnect_max = 1.0\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\ntoken = \"{TOKEN}\"\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n",
        ast.port,
        asterisk::SECRET
    );
    std::fs::write(machine.path("/var/tmp/queuebridge.toml"), config).expect("config");
    machine.ok(&[
        "install",
        "-m",
        "640",
        "-g",
        "queuebridge",
        "/var/tmp/queuebridge.toml",
        "/etc/queuebridge/queuebridge.toml",
    ]);
    // A short watchdog period, so that the test sees it fire; everything else as shipped.
    std::fs::create_dir_all(machine.path("/etc/systemd/system/queuebridge.service.d"))
        .expect("drop-in dir");
    std::fs::write(
        machine.path("/etc/systemd/system/queuebridge.service.d/watchdog.conf"),
        "[Service]\nWatchdogSec=3s\n",
    )
    .expect("drop-in");
    machine.ok(&["systemctl", "daemon-reload"]);
    machine.ok(&["systemctl", "start", "--no-block", "queuebridge"]);
    wait_for(&machine, "the status names the AMI link down", 30, |m| {
        m.property("queuebridge", "StatusText")
            .starts_with("pbx1 down")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(machine.property("queuebridge", "ActiveState"), "activating");

    // READY=1 comes with the first sync: then the published state is Asterisk's.
    ast.restart();
    wait_for(&machine, "active after the first sync", 30, |m| {
        m.property("queuebridge", "ActiveState") == "active"
    });
    let status = machine.property("queuebridge", "StatusText");
    assert!(status.starts_with("pbx1: "), "{status}");
    let mut driver = Driver::connect(ast.port).await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http}");
    let ours: Value = client
        .get(format!("{base}/api/v1/queues/pbx1/sales"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET queue")
        .json()
        .await
        .expect("json");
    let truth = driver.queue_status("sales").await;
    assert_eq!(common::diff(&truth, &ours), None, "{ours:#}");
    // Scraped by a real Prometheus: the installed service's metrics, with Asterisk's values.
    let prometheus = Prometheus::start(&format!("127.0.0.1:{metrics}"));
    let members = truth
        .iter()
        .filter(|m| m.get("Event") == Some("QueueMember"))
        .count();
    let seen = common::until("Prometheus to scrape the service", async || {
        let link = prometheus
            .query(&client, r#"queuebridge_ami_link_up{server="pbx1"}"#)
            .await?;
        let members = prometheus
            .query(
                &client,
                r#"queuebridge_queue_members_logged_in{queue="sales"}"#,
            )
            .await?;
        Some((link, members))
    })
    .await;
    assert_eq!(seen, (1.0, members as f64));
    drop(prometheus);

    // The keepalives arrive: three watchdog periods pass without a restart.
    let pid = machine.property("queuebridge", "MainPID");
    std::thread::sleep(Duration::from_secs(9));
    assert_eq!(machine.property("queuebridge", "NRestarts"), "0");
    assert_eq!(machine.property("queuebridge", "MainPID"), pid);

    // Reload is SIGHUP: same process, nothing dropped.
    machine.ok(&["systemctl", "reload", "queuebridge"]);
    wait_for(&machine, "the reload is logged", 10, |m| {
        m.journal("queuebridge").contains("reloaded")
    });
    assert_eq!(machine.property("queuebridge", "MainPID"), pid);
    assert_eq!(machine.property("queuebridge", "ActiveState"), "active");

    // A wedged daemon sends no keepalive: systemd kills it and starts it again.
    machine.ok(&["systemctl", "kill", "--signal=SIGSTOP", "queuebridge"]);
    wait_for(&machine, "the watchdog restarts the service", 30, |m| {
        m.property("queuebridge", "NRestarts") == "1"
            && m.property("queuebridge", "ActiveState") == "active"
    });
    assert_ne!(machine.property("queuebridge", "MainPID"), pid);
    assert!(machine.journal("queuebridge").contains("Watchdog timeout"));

    // Stopped with SIGTERM: a clean exit.
    machine.ok(&["systemctl", "stop", "queuebridge"]);
    assert_eq!(machine.property("queuebridge", "ActiveState"), "inactive");
    assert_eq!(machine.property("queuebridge", "Result"), "success");
    assert_eq!(machine.property("queuebridge", "ExecMainStatus"), "0");
}
