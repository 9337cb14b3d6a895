//! Links that break, servers that restart, bad input on every boundary — against real Asterisk.

mod common;

use std::time::Duration;

use common::{behind_proxy, expect_change, subscribe, Asterisk, Bridge, Driver, Server, TOKEN};

#[tokio::test(flavor = "multi_thread")]
async fn asterisk_restarted_under_queuebridge() {
    let mut ast = Asterisk::start();
    let mut driver = Driver::connect(ast.port).await;
    driver.devstate("agent1", "NOT_INUSE").await;
    let bridge = Bridge::start(ast.port);
    bridge.wait_health(200).await;
    // A dynamic member that the restart will wipe (persistentmembers = no).
    driver
        .send(
            queuebridge::ami::Message::action("QueueAdd")
                .with("Queue", "sales")
                .with("Interface", "Local/agent7@agents/n"),
        )
        .await;
    let q = bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    assert_eq!(q["members"].as_array().map(Vec::len), Some(3));
    drop(driver);
    ast.restart();
    let mut driver = Driver::connect(ast.port).await;
    driver.devstate("agent1", "INUSE").await;
    bridge.wait_health(200).await;
    let q = bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    assert_eq!(q["members"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn ami_link_cut_then_reconnected_and_exact() {
    let (_ast, mut driver, proxy, bridge) = behind_proxy().await;
    bridge.assert_exact(&mut driver, "pbx1", "support").await;
    let mut events = subscribe(&bridge, None).await;
    proxy.cut();
    // While the link is down, the state changes with nobody watching.
    driver.devstate("agent3", "BUSY").await;
    let down = expect_change(&mut events, "link", 10, |c| c["connected"] == false).await;
    assert!(down.data["reason"].as_str().is_some_and(|r| !r.is_empty()));
    expect_change(&mut events, "link", 15, |c| c["synced"] == true).await;
    let q = bridge.assert_exact(&mut driver, "pbx1", "support").await;
    assert_eq!(q["members"][0]["status"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_open_link_is_found_by_the_keepalive_and_replaced() {
    let (_ast, mut driver, proxy, bridge) = behind_proxy().await;
    let mut events = subscribe(&bridge, None).await;
    proxy.stall();
    // Nothing closes: only the unanswered Ping (every 1 s, 3 s timeout in the tests' config)
    // can tell that the link is dead.
    driver.devstate("agent3", "RINGING").await;
    let down = expect_change(&mut events, "link", 15, |c| c["connected"] == false).await;
    assert!(
        down.data["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Ping unanswered")),
        "{:?}",
        down.data
    );
    expect_change(&mut events, "link", 15, |c| c["synced"] == true).await;
    let q = bridge.assert_exact(&mut driver, "pbx1", "support").await;
    assert_eq!(q["members"][0]["status"], 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_frames_are_skipped_without_dropping_the_link() {
    let (_ast, mut driver, proxy, bridge) = behind_proxy().await;
    let mut events = subscribe(&bridge, None).await;
    let mut junk = b"Event: QueueMemberStatus\r\nthis line has no colon\r\n\r\n".to_vec();
    junk.extend_from_slice(b"Event: UserEvent\r\n");
    for i in 0..40_000 {
        junk.extend_from_slice(format!("Filler{i}: {}\r\n", "x".repeat(30)).as_bytes());
    }
    junk.extend_from_slice(b"\r\n\r\n\r\n");
    proxy.inject(&junk).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    driver.devstate("agent3", "INUSE").await;
    expect_change(&mut events, "member_updated", 10, |c| {
        c["member"]["status"] == 2
    })
    .await;
    bridge.assert_exact(&mut driver, "pbx1", "support").await;
    let log = bridge.log();
    assert!(log.contains("malformed"), "log:\n{log}");
    assert!(log.contains("oversized"), "log:\n{log}");
    assert!(
        !log.contains("ami link down"),
        "the link must survive bad frames:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_back_off_without_crashing() {
    let ast = Asterisk::start();
    let mut bridge = Bridge::start_with(
        &[Server {
            id: "pbx-bad",
            port: ast.port,
            secret: "wrong",
            auth: "plain",
        }],
        None,
    );
    let r = bridge
        .http
        .get(format!("{}/healthz", bridge.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status(), 503);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(bridge.alive());
    // Without the token: up or down, nothing about the servers.
    let public: serde_json::Value = bridge
        .http
        .get(format!("{}/healthz", bridge.base))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    assert_eq!(public, serde_json::json!({"status": "unavailable"}));
    let body: serde_json::Value = bridge.get("/healthz").await.json().await.expect("json");
    assert!(
        body["servers"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("Authentication failed"),
        "{body}"
    );
    let log = bridge.log();
    assert!(
        log.contains("ami login failed") && log.contains("pbx-bad"),
        "log:\n{log}"
    );
    // Backoff: a handful of attempts in four seconds, not a tight loop (each costs Asterisk 1 s).
    let attempts = log.matches("ami login failed").count();
    assert!((1..=5).contains(&attempts), "{attempts} attempts");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_servers_keyed_by_id() {
    let a = Asterisk::start();
    let b = Asterisk::start();
    let bridge = Bridge::start_with(
        &[
            Server {
                id: "pbx1",
                port: a.port,
                secret: common::asterisk::SECRET,
                auth: "md5",
            },
            Server {
                id: "pbx2",
                port: b.port,
                secret: common::asterisk::SECRET,
                auth: "plain",
            },
        ],
        None,
    );
    bridge.wait_health(200).await;
    let mut da = Driver::connect(a.port).await;
    let mut db = Driver::connect(b.port).await;
    db.devstate("agent1", "UNAVAILABLE").await;
    bridge.assert_exact(&mut da, "pbx1", "sales").await;
    let q = bridge.assert_exact(&mut db, "pbx2", "sales").await;
    assert_eq!(q["server"], "pbx2");
    let r = bridge.get("/api/v1/queues/sales").await;
    assert_eq!(r.status(), 409);
    let all = bridge.json("/api/v1/queues").await;
    assert_eq!(all["queues"].as_array().map(Vec::len), Some(4));
    // Queue ids are distinct across servers.
    let mut ids: Vec<i64> = all["queues"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| q["id"].as_i64())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_ids_survive_a_restart_and_sigterm_exits_cleanly() {
    let ast = Asterisk::start();
    let bridge = Bridge::start(ast.port);
    bridge.wait_health(200).await;
    let before = bridge.json("/api/v1/queues").await;
    let (status, dir) = bridge.terminate();
    assert!(status.success(), "exit status {status}");
    let bridge = Bridge::start_with(
        &[Server {
            id: "pbx1",
            port: ast.port,
            secret: common::asterisk::SECRET,
            auth: "md5",
        }],
        Some(dir),
    );
    bridge.wait_health(200).await;
    let after = bridge.json("/api/v1/queues").await;
    let ids = |v: &serde_json::Value| -> Vec<(String, i64)> {
        v["queues"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|q| {
                (
                    q["name"].as_str().unwrap_or_default().to_owned(),
                    q["id"].as_i64().unwrap_or(0),
                )
            })
            .collect()
    };
    assert_eq!(ids(&before), ids(&after));
}

#[tokio::test(flavor = "multi_thread")]
async fn api_refuses_bad_requests_clearly() {
    let ast = Asterisk::start();
    let bridge = Bridge::start(ast.port);
    bridge.wait_health(200).await;
    let url = |p: &str| format!("{}{p}", bridge.base);
    let r = bridge
        .http
        .get(url("/api/v1/queues"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    let r = bridge
        .http
        .get(url("/api/v1/queues"))
        .bearer_auth("wrong-token-wrong")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(bridge.get("/api/v1/queues/nosuch").await.status(), 404);
    assert_eq!(bridge.get("/api/v1/queues/pbx9/sales").await.status(), 404);
    assert_eq!(bridge.get("/api/v1/nothing").await.status(), 404);
    let r = bridge
        .http
        .get(url("/api/v1/events"))
        .bearer_auth(TOKEN)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_resumes_with_exactly_the_missed_changes() {
    let ast = Asterisk::start();
    let mut driver = Driver::connect(ast.port).await;
    driver.devstate("agent3", "NOT_INUSE").await;
    let bridge = Bridge::start(ast.port);
    bridge.wait_health(200).await;
    let mut first = subscribe(&bridge, None).await;
    let snapshot = tokio::time::timeout(Duration::from_secs(5), first.recv())
        .await
        .expect("snapshot")
        .expect("stream");
    assert_eq!(snapshot.event, "snapshot");
    driver.devstate("agent3", "INUSE").await;
    let seen = expect_change(&mut first, "member_updated", 10, |c| {
        c["member"]["status"] == 2
    })
    .await;
    drop(first);
    // Changes while the client is away.
    driver.devstate("agent3", "BUSY").await;
    driver.devstate("agent3", "UNAVAILABLE").await;
    bridge.assert_exact(&mut driver, "pbx1", "support").await;
    let mut resumed = subscribe(&bridge, seen.id).await;
    let a = tokio::time::timeout(Duration::from_secs(5), resumed.recv())
        .await
        .expect("change")
        .expect("stream");
    let b = tokio::time::timeout(Duration::from_secs(5), resumed.recv())
        .await
        .expect("change")
        .expect("stream");
    assert_eq!((a.event.as_str(), b.event.as_str()), ("change", "change"));
    assert_eq!(a.data["member"]["status"], 3);
    assert_eq!(b.data["member"]["status"], 5);
    assert_eq!(a.id.map(|i| i + 1), b.id);
    assert_eq!(seen.id.map(|i| i + 1), a.id);
    // An id from long ago gets a fresh snapshot.
    let mut old = subscribe(&bridge, Some(1)).await;
    let s = tokio::time::timeout(Duration::from_secs(5), old.recv())
        .await
        .expect("snapshot")
        .expect("stream");
    assert_eq!(s.event, "snapshot");
}
