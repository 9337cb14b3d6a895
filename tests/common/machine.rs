//! A Debian 12 system booted by systemd for one test: a fresh copy of the root file system that
//! `scripts/debian-rootfs` builds, run by `systemd-nspawn --boot` with systemd as its PID 1. It
//! shares the host's network, so it reaches the test's Asterisk on loopback and the test reaches
//! its listeners. Commands run inside it through `nsenter`; the copy is removed afterwards.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/debian-rootfs` caches the Debian 12 root file system.
pub fn debian_root() -> PathBuf {
    super::cached_root(
        "QUEUEBRIDGE_DEBIAN_ROOT",
        "/var/cache/queuebridge/bookworm",
        "lib/systemd/systemd",
    )
}

pub struct Machine {
    dir: tempfile::TempDir,
    nspawn: Child,
    leader: u32,
}

impl Machine {
    /// Boots a fresh copy of the Debian 12 root and waits until its systemd has started up.
    pub fn boot() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("qb-machine-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let root = dir.path().join("root");
        let copied = Command::new("cp")
            .arg("-a")
            .arg(debian_root())
            .arg(&root)
            .status()
            .expect("cp");
        assert!(copied.success(), "copying the Debian root failed");
        let console = std::fs::File::create(dir.path().join("console.log")).expect("console log");
        let nspawn = Command::new("systemd-nspawn")
            .args(["--quiet", "--boot", "--keep-unit", "--register=no"])
            .arg(format!("--machine=qb-{}", std::process::id()))
            .arg("--console=passive")
            .arg("--directory")
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("console"))
            .stderr(console)
            .spawn()
            .expect("spawn systemd-nspawn (package systemd-container)");
        let mut machine = Machine {
            dir,
            leader: 0,
            nspawn,
        };
        // Generous: on a loaded 2-core machine the container's systemd has taken over 30 s.
        let deadline = Instant::now() + Duration::from_secs(120);
        machine.leader = loop {
            let children = Command::new("pgrep")
                .args(["-P", &machine.nspawn.id().to_string()])
                .output()
                .expect("pgrep");
            // nspawn forks a helper that forks the container's init and exits: the leader is
            // the child that runs systemd (a first boot on a cold machine once caught the
            // helper, and every nsenter after it failed).
            let pid = String::from_utf8_lossy(&children.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .find(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "systemd")
                });
            if let Some(pid) = pid {
                break pid;
            }
            assert!(
                Instant::now() < deadline,
                "systemd-nspawn started no container:\n{}",
                machine.console()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        // Startup is over when the manager says running (or degraded: a unit that has no
        // business in a container may fail).
        loop {
            let out = machine.run(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if state == "running" || state == "degraded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the container's systemd did not finish starting ({state}; {}):\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                machine.console()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        machine
    }

    /// The container's root directory, as the host sees it.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A path inside the container, as the host sees it.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.root().join(inside.trim_start_matches('/'))
    }

    /// What the container wrote to its console.
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }

    /// Runs a command inside the container (its mount, PID, IPC and UTS namespaces).
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-m", "-p", "-i", "-u", "--"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    /// Runs a command inside the container that must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `systemctl show -p NAME UNIT`: one property's value.
    pub fn property(&self, unit: &str, name: &str) -> String {
        self.ok(&["systemctl", "show", "--value", "-p", name, unit])
            .trim()
            .to_owned()
    }

    /// The unit's journal.
    pub fn journal(&self, unit: &str) -> String {
        let out = self.run(&["journalctl", "--no-pager", "-o", "cat", "-u", unit]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Copies a host file into the container.
    pub fn put(&self, host: &Path, inside: &str) {
        std::fs::copy(host, self.path(inside)).expect("copy into the container");
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // SIGTERM asks nspawn for an orderly shutdown of the container.
        let _ = Command::new("kill")
            .args(["-TERM", &self.nspawn.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}
