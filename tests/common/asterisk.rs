//! A private Asterisk 22 for one test: the Debian-unstable root file system built by
//! `scripts/asterisk-rootfs`, run in its own mount and PID namespaces (`unshare` + `chroot`, /proc
//! mounted), with the configuration from `asterisk-conf/` and AMI on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/asterisk-rootfs` caches the root file system.
pub fn rootfs() -> PathBuf {
    super::cached_root(
        "QUEUEBRIDGE_ASTERISK_ROOT",
        "/var/cache/queuebridge/asterisk-sid",
        "usr/sbin/asterisk",
    )
}

pub const SECRET: &str = "test-secret";

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct Asterisk {
    pub port: u16,
    root: PathBuf,
    /// The instance directory inside the root file system (as Asterisk sees it).
    base: String,
    child: Option<Child>,
}

fn moddir(root: &Path) -> String {
    let lib = root.join("usr/lib");
    for entry in std::fs::read_dir(&lib).expect("usr/lib").flatten() {
        let candidate = entry.path().join("asterisk/modules");
        if candidate.join("app_queue.so").exists() {
            let rel = candidate.strip_prefix(root).expect("inside root");
            return format!("/{}", rel.display());
        }
    }
    panic!("no app_queue.so under {}", lib.display());
}

impl Asterisk {
    /// Starts a fresh instance and waits until its AMI port accepts connections.
    pub fn start() -> Self {
        Self::start_with_queues("")
    }

    /// Like [`Asterisk::start`], with `queues` (queues.conf sections) after the usual ones.
    pub fn start_with_queues(queues: &str) -> Self {
        let root = rootfs();
        let port = free_port();
        let base = format!("/tmp/qb-test-{}-{port}", std::process::id());
        let host_base = root.join(base.trim_start_matches('/'));
        let _ = std::fs::remove_dir_all(&host_base);
        for d in ["etc", "lib", "agi", "spool", "run", "log"] {
            std::fs::create_dir_all(host_base.join(d)).expect("instance dir");
        }
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("asterisk-conf");
        let moddir = moddir(&root);
        for entry in std::fs::read_dir(&conf).expect("asterisk-conf").flatten() {
            let text = std::fs::read_to_string(entry.path()).expect("conf file");
            let text = text
                .replace("@BASE@", &base)
                .replace("@MODDIR@", &moddir)
                .replace("@AMI_PORT@", &port.to_string())
                .replace("@AMI_SECRET@", SECRET);
            std::fs::write(host_base.join("etc").join(entry.file_name()), text)
                .expect("write conf");
        }
        if !queues.is_empty() {
            let path = host_base.join("etc/queues.conf");
            let text = std::fs::read_to_string(&path).expect("queues.conf");
            std::fs::write(&path, format!("{text}\n{queues}")).expect("write queues.conf");
        }
        let mut a = Asterisk {
            port,
            root,
            base,
            child: None,
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(
            self.root
                .join(self.base.trim_start_matches('/'))
                .join("log/stdout"),
        )
        .expect("log file");
        let child = Command::new("unshare")
            .args(["--mount", "--pid", "--fork", "--kill-child"])
            .arg(format!("--mount-proc={}", self.root.join("proc").display()))
            .arg("chroot")
            .arg(&self.root)
            .args(["/usr/sbin/asterisk", "-f", "-C"])
            .arg(format!("{}/etc/asterisk.conf", self.base))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn unshare/asterisk");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Asterisk did not open AMI on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops Asterisk (SIGKILL to its namespace, by PID).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops and starts again on the same port with the same configuration.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Asterisk {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(self.root.join(self.base.trim_start_matches('/')));
    }
}
