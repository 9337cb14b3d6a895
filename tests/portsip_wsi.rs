//! PortSIP's `/wsi` event push against a real Asterisk, through a real WebSocket client
//! (Python's `websockets`): auth by name and by extension number, the documented replies,
//! subscriptions with their permissions, the `queue_status` snapshot, caller and agent events
//! as Asterisk queues, rings and connects a call, an SLA breach, and queue management events.

mod common;

use std::time::Duration;

use serde_json::{json, Value};

use common::ws::Ws;
use common::{started, Bridge};

fn wsi(bridge: &Bridge) -> Ws {
    let url = bridge.base.replacen("http://", "ws://", 1);
    let mut ws = Ws::connect(&format!("{url}/wsi"));
    assert_eq!(ws.next(), "open");
    ws
}

/// The next message whose `event_type` is `event` (and, given, of queue `queue_id`).
fn event(ws: &mut Ws, event: &str, queue_id: Option<&str>) -> Value {
    loop {
        let v = ws.json();
        if v["event_type"] == event && queue_id.is_none_or(|q| v["queue_id"] == q) {
            return v;
        }
    }
}

fn signed_in(bridge: &Bridge, who: (&str, &str), password: &str) -> Ws {
    let mut ws = wsi(bridge);
    ws.send(&json!({"command": "auth", who.0: who.1, "password": password, "id": "1"}).to_string());
    assert_eq!(
        ws.json(),
        json!({"command": "auth", "id": "1", "status": 0})
    );
    ws
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_events_follow_asterisk_for_those_who_may_see_them() {
    let (_ast, mut driver, bridge) = started(&common::portsip_users()).await;

    // A caller waits in sales, where nobody answers: its SLA (20 s) will be breached.
    for a in ["agent1", "agent2"] {
        driver.agent_mode(a, Some("noanswer")).await;
    }
    driver
        .call_with("sales", ("5550101", "Sam"), 60, 60, &[("QTIMEOUT", "50")])
        .await;

    // Before auth nothing but auth; a wrong password gets PortSIP's own reply.
    let mut ws = wsi(&bridge);
    ws.send(r#"{"command":"subscribe","topics":["queue_events"],"queues":["002"],"id":"9"}"#);
    let v = ws.json();
    assert_eq!(
        (v["status"].clone(), v["id"].clone()),
        (json!(-1), json!("9")),
        "{v}"
    );
    ws.send(r#"{"command":"auth","username":"tweber","password":"wrong","domain":"x","id":"2"}"#);
    assert_eq!(
        ws.json(),
        json!({"command": "auth", "error": "access_token , username , domain or password error",
               "id": "2", "status": -1})
    );
    // By extension number; bad frames and unknown commands are answered, the socket stays.
    ws.send(r#"{"command":"auth","extension_number":"203","password":"agent-pw","id":"3"}"#);
    assert_eq!(
        ws.json(),
        json!({"command": "auth", "id": "3", "status": 0})
    );
    ws.send("hello");
    assert_eq!(ws.json()["status"], -1);
    ws.send(r#"{"command":"dance","id":"4"}"#);
    assert_eq!(
        ws.json(),
        json!({"command": "dance", "error": "unknown command", "id": "4", "status": -1})
    );
    ws.send(r#"{"command":"subscribe","topics":["cdr_events"],"id":"5"}"#);
    assert_eq!(ws.json()["status"], -1);

    // Subscribe to support (002): the answer, then the snapshot equal to Asterisk's.
    ws.send(r#"{"command":"subscribe","topics":["queue_events"],"queues":["002"],"id":"6"}"#);
    assert_eq!(
        ws.json(),
        json!({"command": "subscribe", "id": "6", "status": 0})
    );
    let snap = event(&mut ws, "queue_status", Some("2"));
    assert_eq!(
        (
            &snap["queue_number"],
            &snap["queue_name"],
            &snap["tenant_id"]
        ),
        (&json!("002"), &json!("support"), &json!("pbx1")),
        "{snap}"
    );
    assert_eq!(snap["waiting_list"], json!([]));
    assert_eq!(
        snap["agents"][0]["agent_extension_number"], "203",
        "agent3 is tweber (ext 203): {snap}"
    );
    assert_eq!(snap["agents"][0]["state"], "READY");

    // A client that stops reading (subscribed to the same queue) holds up nobody: every event
    // below still reaches the others.
    let mut stalled = signed_in(&bridge, ("username", "boss"), "boss-pw");
    stalled.send(r#"{"command":"subscribe","topics":["queue_events"],"queues":["002"],"id":"2"}"#);
    stalled.send("!stall");

    // An agent may not subscribe to another queue, nor to queue management.
    let mut colleague = signed_in(&bridge, ("username", "mmeyer"), "agent-pw");
    colleague
        .send(r#"{"command":"subscribe","topics":["queue_events"],"queues":["002"],"id":"1"}"#);
    let v = colleague.json();
    assert_eq!(v["status"], -1, "{v}");
    colleague.send(r#"{"command":"subscribe","topics":["queue_management_events"],"id":"2"}"#);
    assert_eq!(colleague.json()["status"], -1);

    // A caller joins support and agent3 answers: enqueue, then agent_answered and QUEUE_CALL.
    driver.command("database put qb talk_agent3 3").await;
    driver
        .call("support", ("5550202", "Rita"), 60, 60, None)
        .await;
    let joined = event(&mut ws, "queue_caller_status", Some("2"));
    let c = &joined["updated_callers"][0];
    assert_eq!(
        (
            &c["reason"],
            &c["caller_number"],
            &c["position"],
            &c["type"]
        ),
        (
            &json!("enqueue"),
            &json!("5550202"),
            &json!(1),
            &json!("normal")
        ),
        "{joined}"
    );
    let session = c["session_id"].clone();
    assert!(
        c["timestamp"]
            .as_str()
            .is_some_and(|t| t.parse::<i64>().is_ok()),
        "{c}"
    );
    let mut answered = None;
    let mut busy = None;
    while answered.is_none() || busy.is_none() {
        let v = ws.json();
        match v["event_type"].as_str() {
            Some("queue_caller_status") => answered = Some(v),
            Some("queue_agent_status") if v["updated_agents"][0]["state"] == "QUEUE_CALL" => {
                busy = Some(v)
            }
            _ => {}
        }
    }
    let a = answered.expect("answered");
    assert_eq!(a["updated_callers"][0]["reason"], "agent_answered", "{a}");
    assert_eq!(a["updated_callers"][0]["session_id"], session);
    let b = busy.expect("agent status");
    assert_eq!(b["updated_agents"][0]["session_id"], session, "{b}");
    assert_eq!(b["updated_agents"][0]["caller_number"], "5550202");

    // Sales (001): subscribed late, its waiting caller breaches the 20 s service level once.
    ws.send(r#"{"command":"subscribe","topics":["queue_events"],"queues":["001"],"id":"7"}"#);
    let breached = loop {
        let line = ws
            .next_within(Duration::from_secs(40))
            .expect("the breach within 40 s");
        let v: Value = serde_json::from_str(line.trim_start_matches("recv ")).expect("json");
        if v["event_type"] == "queue_sla_breached" {
            break v;
        }
    };
    assert_eq!(
        (
            &breached["queue_id"],
            &breached["caller"],
            &breached["sla_time_secs"]
        ),
        (&json!("1"), &json!("5550101"), &json!(20)),
        "{breached}"
    );
    assert_eq!(breached["total_callers_breached"], 1);
    assert!(breached["timestamp"].is_string());

    // Admins get queue management events for what the dialect creates and destroys.
    let mut admin = signed_in(&bridge, ("username", "admin"), "admin-pw");
    admin.send(r#"{"command":"subscribe","topics":["queue_management_events"],"id":"2"}"#);
    assert_eq!(
        admin.json(),
        json!({"command": "subscribe", "id": "2", "status": 0})
    );
    // At most four signed-in sockets per user: a fifth auth is refused, the socket stays.
    let more: Vec<Ws> = (0..3)
        .map(|_| signed_in(&bridge, ("username", "admin"), "admin-pw"))
        .collect();
    let mut fifth = wsi(&bridge);
    fifth.send(r#"{"command":"auth","username":"admin","password":"admin-pw","id":"1"}"#);
    assert_eq!(
        fifth.json(),
        json!({"command": "auth", "error": "too many event sockets for this user",
               "id": "1", "status": -1})
    );
    drop(more);
    let token = common::portsip_token(&bridge, "admin", "admin-pw").await;
    let token = token.as_str();
    let created: Value = bridge
        .http
        .post(format!("{}/api/call_queues", bridge.base))
        .bearer_auth(token)
        .json(&json!({"name": "Pushed", "extension_number": "8005",
                      "polling_strategy": "RING_SIMULTANEOUSLY"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        event(&mut admin, "queue_created", None),
        json!({"topic": "queue_management_events", "event_type": "queue_created",
               "queue_number": "8005", "tenant_id": "pbx1"})
    );
    let r = bridge
        .http
        .post(format!("{}/api/call_queues/{id}/destroy", bridge.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("destroy");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        event(&mut admin, "queue_destroy", None)["queue_number"],
        "8005"
    );

    // Unsubscribed, support's events stop; the socket stays for the rest.
    ws.send(
        r#"{"command":"unsubscribe","topics":["queue_events"],"queues":["002","001"],"id":"8"}"#,
    );
    loop {
        let v = ws.json();
        if v["command"] == "unsubscribe" {
            assert_eq!(v["status"], 0, "{v}");
            break;
        }
    }
    driver
        .call("support", ("5550303", "Tom"), 60, 60, None)
        .await;
    assert!(
        ws.next_within(Duration::from_secs(3)).is_none(),
        "no events after unsubscribing"
    );
    drop(stalled);
}
