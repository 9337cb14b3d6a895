//! End-to-end: the real queuebridge binary against a real Asterisk 22, compared field by field
//! with Asterisk's own QueueStatus.

mod common;

use std::time::Duration;

use common::{expect_change, subscribe, Asterisk, Bridge, Driver};
use queuebridge::ami::Message;

async fn setup() -> (Asterisk, Bridge, Driver) {
    let ast = Asterisk::start();
    let mut driver = Driver::connect(ast.port).await;
    // Custom device states live in AstDB: start every test from known ones.
    for a in ["agent1", "agent2", "agent3"] {
        driver.devstate(a, "NOT_INUSE").await;
    }
    let bridge = Bridge::start(ast.port);
    bridge.wait_health(200).await;
    (ast, bridge, driver)
}

#[tokio::test(flavor = "multi_thread")]
async fn initial_sync_is_exact() {
    let (_ast, bridge, mut driver) = setup().await;
    let q = bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    assert_eq!(q["members"].as_array().map(Vec::len), Some(2));
    bridge.assert_exact(&mut driver, "pbx1", "support").await;
    let all = bridge.json("/api/v1/queues").await;
    assert_eq!(all["queues"].as_array().map(Vec::len), Some(2));
    assert_eq!(all["servers"][0]["synced"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn answered_call_join_ring_answer_complete() {
    let (_ast, bridge, mut driver) = setup().await;
    driver.devstate("agent2", "UNAVAILABLE").await;
    bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    let mut events = subscribe(&bridge, None).await;
    driver
        .call("sales", ("5551234", "Alice"), 30, 20, None)
        .await;
    let joined = expect_change(&mut events, "caller_joined", 10, |_| true).await;
    assert_eq!(joined.data["caller"]["caller_id_num"], "5551234");
    assert_eq!(joined.data["caller"]["caller_id_name"], "Alice");
    assert_eq!(joined.data["caller"]["position"], 1);
    let uniqueid = joined.data["caller"]["uniqueid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    expect_change(&mut events, "agent_called", 10, |c| {
        c["interface"] == "Local/agent1@agents/n"
    })
    .await;
    expect_change(&mut events, "caller_left", 10, |c| {
        c["uniqueid"] == *uniqueid && c["abandoned"] == false
    })
    .await;
    let connected = expect_change(&mut events, "call_connected", 10, |_| true).await;
    assert_eq!(connected.data["call"]["interface"], "Local/agent1@agents/n");
    assert_eq!(connected.data["call"]["uniqueid"], *uniqueid);
    // During the call: the caller→member link is published, InCall is 1.
    let q = bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    assert_eq!(q["connected_calls"][0]["caller_id_num"], "5551234");
    let done = expect_change(&mut events, "call_completed", 15, |_| true).await;
    assert_eq!(done.data["reason"], "agent");
    // CallsTaken and LastCall change silently (ami.md §2.5): read back, not guessed.
    let q = bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    let agent1 = q["members"].as_array().and_then(|m| {
        m.iter()
            .find(|m| m["interface"] == "Local/agent1@agents/n")
            .cloned()
    });
    assert_eq!(agent1.map(|m| m["calls_taken"].clone()), Some(1.into()));
    assert_eq!(q["connected_calls"].as_array().map(Vec::len), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn abandoned_call() {
    let (_ast, bridge, mut driver) = setup().await;
    driver.devstate("agent1", "UNAVAILABLE").await;
    driver.devstate("agent2", "UNAVAILABLE").await;
    let mut events = subscribe(&bridge, None).await;
    driver.call("sales", ("5550001", "Bob"), 30, 3, None).await;
    let joined = expect_change(&mut events, "caller_joined", 10, |_| true).await;
    bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    let uniqueid = joined.data["caller"]["uniqueid"].clone();
    expect_change(&mut events, "caller_left", 10, |c| {
        c["uniqueid"] == uniqueid && c["abandoned"] == true
    })
    .await;
    let q = bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    assert_eq!(q["abandoned"], 1);
    assert_eq!(q["callers"].as_array().map(Vec::len), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn ring_no_answer() {
    let (_ast, bridge, mut driver) = setup().await;
    driver.devstate("agent2", "UNAVAILABLE").await;
    driver.agent_mode("agent1", Some("noanswer")).await;
    let mut events = subscribe(&bridge, None).await;
    driver
        .call("sales", ("5550002", "Carol"), 30, 8, None)
        .await;
    let rna = expect_change(&mut events, "agent_ring_no_answer", 15, |_| true).await;
    assert_eq!(rna.data["interface"], "Local/agent1@agents/n");
    assert_eq!(rna.data["ring_time_ms"], 4000);
    bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    expect_change(&mut events, "caller_left", 15, |c| c["abandoned"] == true).await;
    bridge.assert_exact(&mut driver, "pbx1", "sales").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_and_unpause_with_reason() {
    let (_ast, bridge, mut driver) = setup().await;
    let mut events = subscribe(&bridge, None).await;
    let r = driver
        .send(
            Message::action("QueuePause")
                .with("Interface", "Local/agent1@agents/n")
                .with("Queue", "sales")
                .with("Paused", "true")
                .with("Reason", "Lunch break"),
        )
        .await;
    assert!(r.is_success());
    let c = expect_change(&mut events, "member_updated", 10, |c| {
        c["member"]["paused"] == true
    })
    .await;
    assert_eq!(c.data["member"]["paused_reason"], "Lunch break");
    let q = bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    assert!(q["members"][0]["last_pause"].as_i64().unwrap_or(0) > 0);
    let r = driver
        .send(
            Message::action("QueuePause")
                .with("Interface", "Local/agent1@agents/n")
                .with("Paused", "false"),
        )
        .await;
    assert!(r.is_success());
    expect_change(&mut events, "member_updated", 10, |c| {
        c["member"]["paused"] == false
    })
    .await;
    bridge.assert_exact(&mut driver, "pbx1", "sales").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamic_member_added_and_removed() {
    let (_ast, bridge, mut driver) = setup().await;
    let mut events = subscribe(&bridge, None).await;
    let r = driver
        .send(
            Message::action("QueueAdd")
                .with("Queue", "support")
                .with("Interface", "Local/agent9@agents/n")
                .with("MemberName", "Agent Nine")
                .with("StateInterface", "Custom:agent9")
                .with("Penalty", "3"),
        )
        .await;
    assert!(r.is_success(), "{:?}", r.response);
    let c = expect_change(&mut events, "member_updated", 10, |c| {
        c["member"]["interface"] == "Local/agent9@agents/n"
    })
    .await;
    assert_eq!(c.data["member"]["membership"], "dynamic");
    assert_eq!(c.data["member"]["penalty"], 3);
    bridge.assert_exact(&mut driver, "pbx1", "support").await;
    let r = driver
        .send(
            Message::action("QueuePenalty")
                .with("Interface", "Local/agent9@agents/n")
                .with("Penalty", "5"),
        )
        .await;
    assert!(r.is_success());
    expect_change(&mut events, "member_updated", 10, |c| {
        c["member"]["penalty"] == 5
    })
    .await;
    let r = driver
        .send(
            Message::action("QueueRemove")
                .with("Queue", "support")
                .with("Interface", "Local/agent9@agents/n"),
        )
        .await;
    assert!(r.is_success());
    expect_change(&mut events, "member_removed", 10, |c| {
        c["interface"] == "Local/agent9@agents/n"
    })
    .await;
    bridge.assert_exact(&mut driver, "pbx1", "support").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn device_state_changes() {
    let (_ast, bridge, mut driver) = setup().await;
    let mut events = subscribe(&bridge, None).await;
    for (state, code, name) in [
        ("INUSE", 2, "In use"),
        ("UNAVAILABLE", 5, "Unavailable"),
        ("RINGING", 6, "Ringing"),
        ("NOT_INUSE", 1, "Not in use"),
    ] {
        driver.devstate("agent3", state).await;
        let c = expect_change(&mut events, "member_updated", 10, |c| {
            c["member"]["status"] == code
        })
        .await;
        assert_eq!(c.data["member"]["status_name"], name);
        bridge.assert_exact(&mut driver, "pbx1", "support").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_callers_and_their_positions() {
    let (_ast, bridge, mut driver) = setup().await;
    driver.devstate("agent1", "UNAVAILABLE").await;
    driver.devstate("agent2", "UNAVAILABLE").await;
    let mut events = subscribe(&bridge, None).await;
    driver
        .call("sales", ("5550010", "First"), 30, 4, None)
        .await;
    expect_change(&mut events, "caller_joined", 10, |c| {
        c["caller"]["position"] == 1
    })
    .await;
    driver
        .call("sales", ("5550020", "Second"), 30, 30, None)
        .await;
    expect_change(&mut events, "caller_joined", 10, |c| {
        c["caller"]["position"] == 2
    })
    .await;
    // A caller with a higher priority goes ahead of both.
    driver
        .call("sales", ("5550030", "Urgent"), 30, 30, Some(10))
        .await;
    expect_change(&mut events, "caller_joined", 10, |c| {
        c["caller"]["position"] == 1
    })
    .await;
    let q = bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    assert_eq!(q["callers"][0]["priority"], 10);
    assert_eq!(q["callers"][1]["caller_id_name"], "First");
    // The first caller gives up: the others keep their order, renumbered without any event.
    expect_change(&mut events, "caller_left", 10, |_| true).await;
    let q = bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    assert_eq!(q["callers"][0]["caller_id_name"], "Urgent");
    assert_eq!(q["callers"][1]["caller_id_name"], "Second");
    assert_eq!(q["callers"][1]["position"], 2);
    driver.command("channel request hangup all").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    bridge.assert_exact(&mut driver, "pbx1", "sales").await;
}
