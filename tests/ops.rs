//! Running as a service: SIGHUP reloads users, pause reasons and the API token without dropping
//! a connection, an invalid file is refused and the running configuration stays, SIGTERM and
//! SIGINT end the daemon cleanly with exit status 0 after answering the commands in flight, and
//! the command line answers `--version` and `check-config`.

mod common;

use std::time::{Duration, Instant};

use common::{behind_proxy, dialect_users, until, Asterisk, Bridge, TOKEN};
use serde_json::json;

async fn sign_in(bridge: &Bridge, user: &str, password: &str) -> u16 {
    bridge
        .http
        .post(format!("{}/api/auth/sign_in", bridge.base))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn native(bridge: &Bridge, token: &str) -> u16 {
    bridge
        .http
        .get(format!("{}/api/v1/queues", bridge.base))
        .bearer_auth(token)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_and_sigterm_exits_cleanly() {
    let ast = Asterisk::start();
    let mut bridge = Bridge::start_extra(ast.port, &dialect_users());
    bridge.wait_health(200).await;
    assert_eq!(sign_in(&bridge, "newbie", "new-pw").await, 401);
    assert_eq!(native(&bridge, TOKEN).await, 200);

    // An SSE stream stays open across the reloads.
    let mut events = bridge
        .http
        .get(format!("{}/api/v1/events", bridge.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("event stream");
    assert_eq!(events.status(), 200);

    // A new user and a new token.
    let original = std::fs::read_to_string(bridge.config_path()).expect("config");
    let newbie = queuebridge::access::hash_password("new-pw").expect("hash");
    let changed = format!(
        "{}\n[[users]]\nname = \"newbie\"\npassword_hash = \"{newbie}\"\ninterface = \"Local/agent4@agents/n\"\n",
        original.replace(TOKEN, "another-token-0123456789")
    );
    std::fs::write(bridge.config_path(), &changed).expect("write config");
    bridge.signal("HUP");
    until("the reload", async || {
        (sign_in(&bridge, "newbie", "new-pw").await == 200).then_some(())
    })
    .await;
    assert_eq!(native(&bridge, TOKEN).await, 401);
    assert_eq!(native(&bridge, "another-token-0123456789").await, 200);
    assert_eq!(sign_in(&bridge, "tweber", "agent-pw").await, 200);

    // An invalid file: logged, and nothing changes.
    std::fs::write(
        bridge.config_path(),
        changed.replace("name = \"newbie\"", "name = \"new bie\""),
    )
    .expect("write config");
    bridge.signal("HUP");
    until("the refusal in the log", async || {
        bridge.log().contains("reload of").then_some(())
    })
    .await;
    let log = bridge.log();
    assert!(log.contains("users[4].name"), "{log}");
    assert_eq!(sign_in(&bridge, "newbie", "new-pw").await, 200);
    assert_eq!(native(&bridge, "another-token-0123456789").await, 200);
    assert!(bridge.alive());
    // Nothing was dropped: the AMI link never went down, the event stream is still open.
    assert!(!log.contains("ami link down"), "{log}");
    let chunk = tokio::time::timeout(Duration::from_millis(300), events.chunk()).await;
    assert!(
        !matches!(chunk, Ok(Ok(None)) | Ok(Err(_))),
        "the stream ended: {chunk:?}"
    );

    // SIGTERM: exit status 0 within a few seconds, the event stream closed cleanly.
    exits_cleanly(bridge, Instant::now());
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.chunk().await {
                Ok(Some(_)) => continue,
                other => return other.is_ok(),
            }
        }
    })
    .await;
    assert_eq!(end, Ok(true), "the event stream did not end cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_answers_the_commands_in_flight_with_asterisks_reply() {
    let (_ast, mut driver, proxy, bridge) = behind_proxy().await;
    let member = "Local/agent3@agents/n";
    let pause = "/api/v1/queues/pbx1/support/members/Local%2Fagent3%40agents%2Fn/pause";
    // Asterisk's answers take a second to reach queuebridge (its keepalive still fits).
    proxy.latency(Duration::from_secs(1));
    let command = tokio::spawn({
        let http = bridge.http.clone();
        let url = format!("{}{pause}", bridge.base);
        async move {
            let r = http
                .post(url)
                .bearer_auth(TOKEN)
                .json(&json!({"paused": true}))
                .send()
                .await
                .expect("an answer, not a dropped connection");
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    });
    // Asterisk has paused the member; its reply is on the way when SIGINT (Ctrl-C) arrives.
    until("Asterisk paused the member", async || {
        let m = driver.member("support", member).await?;
        (m.get("Paused") == Some("1")).then_some(())
    })
    .await;
    let started = Instant::now();
    bridge.signal("INT");
    let (status, body) = command.await.expect("command task");
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("applied")),
        "{body}"
    );
    exits_cleanly(bridge, started);
}

/// SIGTERM (again, if it was sent at `since`): exit status 0 within 5 s of `since`.
fn exits_cleanly(bridge: Bridge, since: Instant) {
    let (status, _dir) = bridge.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        since.elapsed() < Duration::from_secs(5),
        "{:?}",
        since.elapsed()
    );
}

#[test]
fn version_and_check_config() {
    let bin = env!("CARGO_BIN_EXE_queuebridge");
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .expect("run");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("queuebridge {}", env!("CARGO_PKG_VERSION"))
    );
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("q.toml");
    std::fs::write(
        &file,
        "state_dir = \"/tmp/x\"\n[[ami]]\nid = \"pbx1\"\nhost = \"h\"\nusername = \"u\"\nsecret = \"s\"\n[http]\nlisten = \"127.0.0.1:1\"\ntoken = \"short\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(bin)
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http.token"), "{err}");
    assert!(!err.contains("\"s\""), "a secret in the error: {err}");
}
