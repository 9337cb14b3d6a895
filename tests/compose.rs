//! docker-compose.yml, checked without a Docker engine (none runs on the test machines): every
//! file it and its Dockerfiles name exists, the services are wired with matching names, ports and
//! secrets, and the configurations the images render are valid (queuebridge check-config,
//! promtool check config). The images themselves are made from the files the other tests run:
//! asterisk-conf/, prosody/, prometheus/prometheus.yml and the Debian package.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use queuebridge::config::Config;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The value after `key:` on each line of the compose file that has it.
fn values<'a>(compose: &'a str, key: &str) -> Vec<&'a str> {
    compose
        .lines()
        .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix(key))
        .map(|v| v.trim().trim_matches('"'))
        .collect()
}

#[test]
fn every_file_compose_names_exists() {
    let compose = read("docker-compose.yml");
    for service in ["asterisk:", "prosody:", "queuebridge:", "prometheus:"] {
        assert!(
            compose.lines().any(|l| l == format!("  {service}")),
            "no service {service}"
        );
    }
    let dockerfiles = values(&compose, "dockerfile:");
    assert_eq!(dockerfiles.len(), 4, "{dockerfiles:?}");
    for dockerfile in dockerfiles {
        let text = read(dockerfile);
        // COPY sources are relative to the build context, the repository.
        for line in text.lines().filter(|l| l.starts_with("COPY ")) {
            let source = line.split_whitespace().nth(1).unwrap_or_default();
            if source.starts_with("--from") || source == "." {
                continue;
            }
            assert!(
                repo().join(source).exists(),
                "{dockerfile}: {source} missing"
            );
        }
    }
    for volume in values(&compose, "./") {
        let host = volume.split(':').next().unwrap_or_default();
        assert!(repo().join(host).exists(), "volume source {host} missing");
    }
}

#[test]
fn services_are_wired_and_their_configurations_valid() {
    let config_path = repo().join("docker/queuebridge.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_queuebridge"))
        .arg("check-config")
        .arg(&config_path)
        .output()
        .expect("queuebridge");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = Config::load(&config_path).expect("config");

    // queuebridge → Asterisk: the service name, AMI port and the secret the image renders.
    let asterisk = read("docker/asterisk.Dockerfile");
    let ami = &config.ami[0];
    assert_eq!((ami.host.as_str(), ami.port), ("asterisk", 5038));
    assert!(asterisk.contains(&format!("s#@AMI_SECRET@#{}#g", ami.secret)));
    assert!(asterisk.contains("s#@AMI_PORT@#5038#g"));

    // queuebridge → Prosody: the component port, names and secret the image renders.
    let prosody = read("docker/prosody.Dockerfile");
    let xmpp = config.xmpp.as_ref().expect("[xmpp]");
    assert_eq!(xmpp.server, "prosody:5347");
    for (name, value) in [
        ("COMPONENT_PORT", "5347"),
        ("DOMAIN", xmpp.domain.as_str()),
        ("COMPONENT", xmpp.component.as_str()),
        ("SECRET", xmpp.secret.as_str()),
    ] {
        assert!(
            prosody.contains(&format!("s#@{name}@#{value}#")),
            "prosody image: @{name}@ is not {value}"
        );
    }
    // Every placeholder of the template is filled in.
    for placeholder in read("prosody/prosody.cfg.lua")
        .split('@')
        .skip(1)
        .step_by(2)
    {
        assert!(
            prosody.contains(&format!("s#@{placeholder}@#")),
            "prosody image leaves @{placeholder}@"
        );
    }

    // Prometheus → queuebridge: the target is queuebridge's metrics listener, and the rendered
    // file passes promtool.
    let metrics = config.metrics.as_ref().expect("[metrics]");
    let prometheus = read("docker/prometheus.Dockerfile");
    let target = format!("queuebridge:{}", metrics.listen.port());
    assert!(
        prometheus.contains(&format!("s#@TARGET@#{target}#")),
        "{prometheus}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    common::prometheus::write_config(&dir.path().join("prometheus.yml"), "15s", &target);

    // Published ports: the listeners inside the containers.
    let compose = read("docker-compose.yml");
    assert_eq!(config.http.listen.port(), 8088);
    assert!(compose.contains("\"127.0.0.1:8088:8088\""));
    assert!(Path::new(&repo().join(".dockerignore")).exists());
}
