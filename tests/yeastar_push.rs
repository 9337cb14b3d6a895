//! Yeastar's event push against a real Asterisk, through a real WebSocket client (Python's
//! `websockets`): the subscribe handshake, heartbeats, bad frames, 30029 / 30026 / 30025 as
//! Asterisk pauses, rings and auto-pauses agents, what an agent's socket may carry, the token
//! ending the socket, the idle timeout and the per-user limit.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::ws::Ws;
use common::{dialect_users, started, until};
use queuebridge::ami::Message;

async fn token(bridge: &common::Bridge, user: &str, password: &str) -> String {
    let v: Value = bridge
        .http
        .post(format!("{}/openapi/v1.0/get_token", bridge.base))
        .header("User-Agent", "OpenAPI")
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .expect("get_token")
        .json()
        .await
        .expect("json");
    v["access_token"].as_str().expect("access_token").to_owned()
}

async fn get(bridge: &common::Bridge, endpoint: &str) -> Value {
    bridge
        .http
        .get(format!("{}/openapi/v1.0/{endpoint}", bridge.base))
        .header("User-Agent", "OpenAPI")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

/// A subscribed socket of `token` for the three queue events.
fn subscribed(bridge: &common::Bridge, token: &str) -> Ws {
    let url = bridge.base.replacen("http://", "ws://", 1);
    let mut ws = Ws::connect(&format!(
        "{url}/openapi/v1.0/subscribe?access_token={token}"
    ));
    assert_eq!(ws.next(), "open");
    ws.send(r#"{"topic_list":[30025,30026,30029]}"#);
    assert_eq!(ws.json(), json!({"errcode": 0, "errmsg": "SUCCESS"}));
    ws
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_events_reach_exactly_the_sockets_that_may_see_them() {
    let (_ast, mut driver, bridge) = started(&dialect_users()).await;
    let started_at = Instant::now();
    let ws_base = bridge.base.replacen("http://", "ws://", 1);
    let boss = token(&bridge, "boss", "boss-pw").await;
    let tweber = token(&bridge, "tweber", "agent-pw").await;
    let mmeyer = token(&bridge, "mmeyer", "agent-pw").await;

    // A socket that says nothing is closed after 60 s; looked at the end.
    let quiet = token(&bridge, "boss", "boss-pw").await;
    let mut idle = Ws::connect(&format!(
        "{ws_base}/openapi/v1.0/subscribe?access_token={quiet}"
    ));
    assert_eq!(idle.next(), "open");

    // No token, a wrong one: Yeastar's answer, no upgrade.
    for t in ["", "nosuch"] {
        let mut ws = Ws::connect(&format!(
            "{ws_base}/openapi/v1.0/subscribe?access_token={t}"
        ));
        let line = ws.next();
        assert!(line.starts_with("refused 200 "), "{line}");
        assert!(line.contains("10004"), "{line}");
    }

    let mut sup = subscribed(&bridge, &boss);
    let mut agent = subscribed(&bridge, &mmeyer);
    // Heartbeat; a frame that is neither is answered with an error and the socket stays.
    sup.send("heartbeat");
    assert_eq!(sup.next(), "recv heartbeat response");
    sup.send("{\"topic_list\": \"all\"}");
    assert_eq!(
        sup.json(),
        json!({"errcode": 40002, "errmsg": "PARAMETER ERROR"})
    );
    sup.send("heartbeat");
    assert_eq!(sup.next(), "recv heartbeat response");

    // 30029 as the supervisor pauses and unpauses tweber (203) in support.
    let r = get(
        &bridge,
        &format!("queue/agent_pause?access_token={boss}&ext_ids=203&queue_id=2&operation=pause&reason=*01"),
    )
    .await;
    assert_eq!(r["errcode"], 0, "{r}");
    assert_eq!(
        sup.event(30029),
        json!({"type": 30029, "sn": "pbx1", "msg": {"queue_number": "queue-support",
               "agent_number": "203", "status": "Paused", "reason": "Lunch"}})
    );
    let r = get(
        &bridge,
        &format!("queue/agent_pause?access_token={boss}&ext_ids=203&queue_id=2&operation=unpause"),
    )
    .await;
    assert_eq!(r["errcode"], 0, "{r}");
    assert_eq!(sup.event(30029)["msg"]["status"], "Available");

    // Asterisk's autopause: agent3 rings, does not answer (30026), and is paused (30025, with
    // the call it missed; and 30029 Paused "Auto-Pause").
    let r = driver
        .send(
            Message::action("UpdateConfig")
                .with("SrcFilename", "queues.conf")
                .with("DstFilename", "queues.conf")
                .with("Reload", "app_queue")
                .with("Action-000000", "Append")
                .with("Cat-000000", "support")
                .with("Var-000000", "autopause")
                .with("Value-000000", "yes"),
        )
        .await;
    assert_eq!(r.response.get("Response"), Some("Success"), "{r:?}");
    let url = bridge.base.replacen("http://", "ws://", 1);
    let mut calls = Ws::connect(&format!("{url}/openapi/v1.0/subscribe?access_token={boss}"));
    assert_eq!(calls.next(), "open");
    calls.send(r#"{"topic_list":[30011]}"#);
    assert_eq!(calls.json()["errcode"], 0);
    driver.agent_mode("agent3", Some("noanswer")).await;
    driver
        .call_with(
            "support",
            ("5550303", "Rita"),
            60,
            60,
            &[("QTIMEOUT", "30")],
        )
        .await;
    let rung = sup.event(30026);
    assert_eq!(
        (
            &rung["msg"]["queue_number"],
            &rung["msg"]["agent_number"],
            &rung["msg"]["caller_number"]
        ),
        (&json!("support"), &json!("203"), &json!("5550303")),
        "{rung}"
    );
    let call_id = rung["msg"]["call_id"].clone();
    let mut auto = None;
    let mut paused = None;
    while auto.is_none() || paused.is_none() {
        let v = sup.json();
        match v["type"].as_u64() {
            Some(30025) => auto = Some(v),
            Some(30029) => paused = Some(v),
            _ => {}
        }
    }
    assert_eq!(
        auto.expect("30025")["msg"],
        json!({"queue_number": "support", "agent_number": "203",
               "calls": [{"caller_number": "5550303", "call_id": call_id}]})
    );
    assert_eq!(
        paused.expect("30029")["msg"],
        json!({"queue_number": "queue-support", "agent_number": "203",
               "status": "Paused", "reason": "Auto-Pause"})
    );
    let m = driver
        .member("support", "Local/agent3@agents/n")
        .await
        .expect("member");
    assert_eq!(
        (m.get("Paused"), m.get("PausedReason")),
        (Some("1"), Some("Auto-Pause"))
    );
    // 30011: Rita waits (RING), then agent 203 is rung (ALERT).
    let joined = calls.event(30011);
    assert_eq!(joined["msg"]["call_id"], call_id, "{joined}");
    let inbound = &joined["msg"]["members"][0]["inbound"];
    assert_eq!(
        (&inbound["from"], &inbound["to"], &inbound["member_status"]),
        (&json!("5550303"), &json!("support"), &json!("RING")),
        "{joined}"
    );
    let rung = calls.event(30011);
    let extension = &rung["msg"]["members"][1]["extension"];
    assert_eq!(
        (&extension["number"], &extension["member_status"]),
        (&json!("203"), &json!("ALERT")),
        "{rung}"
    );

    // mmeyer belongs to sales only: nothing of support reached their socket.
    agent.send("heartbeat");
    assert_eq!(agent.next(), "recv heartbeat response");

    // At most four sockets per user; the fifth is refused.
    let mut four: Vec<Ws> = (0..4).map(|_| subscribed(&bridge, &tweber)).collect();
    let mut fifth = Ws::connect(&format!(
        "{ws_base}/openapi/v1.0/subscribe?access_token={tweber}"
    ));
    let line = fifth.next();
    assert!(
        line.starts_with("refused 200 ") && line.contains("TOO MANY CONNECTIONS"),
        "{line}"
    );
    four.truncate(0);

    // Deleting the token ends its sockets.
    let r = get(&bridge, &format!("del_token?access_token={boss}")).await;
    assert_eq!(r["errcode"], 0, "{r}");
    let end = until("the socket closed", async || {
        sup.next_within(Duration::from_millis(200))
            .filter(|l| l.starts_with("closed"))
    })
    .await;
    assert!(end.contains("token"), "{end}");

    // The idle socket: closed once 60 s passed without traffic, not before.
    let line = idle
        .next_within(Duration::from_secs(75))
        .expect("the idle socket closes");
    assert!(
        line.starts_with("closed 1000") && line.contains("60 s"),
        "{line}"
    );
    assert!(
        started_at.elapsed() >= Duration::from_secs(59),
        "{:?}",
        started_at.elapsed()
    );
    assert!(bridge.log().lines().all(|l| !l.contains("panicked")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_socket_holds_nobody_up() {
    let (_ast, mut driver, bridge) = started(&dialect_users()).await;
    let boss = token(&bridge, "boss", "boss-pw").await;
    // One client stops reading at once; websockets then stops reading the socket.
    let mut stalled = subscribed(&bridge, &boss);
    stalled.send("!stall");
    let mut live = subscribed(&bridge, &boss);

    // 2,000 pauses and unpauses straight through AMI while the stalled socket holds its place.
    const ROUNDS: usize = 2000;
    for i in 0..ROUNDS * 2 {
        let r = driver
            .send(
                Message::action("QueuePause")
                    .with("Queue", "support")
                    .with("Interface", "Local/agent3@agents/n")
                    .with("Paused", if i % 2 == 0 { "true" } else { "false" })
                    .with("Reason", "Flood"),
            )
            .await;
        assert_eq!(r.response.get("Response"), Some("Success"), "{r:?}");
    }
    // The live socket gets every one of them, in order; REST answers meanwhile.
    let r = get(
        &bridge,
        &format!("queue/agent_status?access_token={boss}&id=2"),
    )
    .await;
    assert_eq!(r["errcode"], 0, "{r}");
    for i in 0..ROUNDS * 2 {
        let v = live.event(30029);
        let want = if i % 2 == 0 { "Paused" } else { "Available" };
        assert_eq!(v["msg"]["status"], want, "event {i}: {v}");
    }
    live.send("heartbeat");
    assert_eq!(live.next(), "recv heartbeat response");
    let m = driver
        .member("support", "Local/agent3@agents/n")
        .await
        .expect("member");
    assert_eq!(m.get("Paused"), Some("0"));
    bridge.assert_exact(&mut driver, "pbx1", "support").await;
    drop(stalled);
}
