//! Agent commands through the native API and the command layer, against a real Asterisk: every
//! outcome checked in Asterisk's own QueueStatus.

mod common;

use queuebridge::ami::Message;
use serde_json::{json, Value};

use common::{behind_proxy, Asterisk, Bridge, Driver, PAUSE_REASONS};

const AGENT9: &str = "Local%2Fagent9%40agents%2Fn";

/// One field of that item.
async fn field(driver: &mut Driver, queue: &str, interface: &str, key: &str) -> Option<String> {
    let m = driver.member(queue, interface).await?;
    m.get(key).map(str::to_owned)
}

fn result(answer: &(u16, Value)) -> (u16, &str) {
    let text = answer.1["result"]
        .as_str()
        .or(answer.1["error"].as_str())
        .unwrap_or_default();
    (answer.0, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn log_in_pause_penalty_log_out_each_confirmed_by_asterisk() {
    let ast = Asterisk::start();
    let mut driver = Driver::connect(ast.port).await;
    driver.devstate("agent9", "NOT_INUSE").await;
    let bridge = Bridge::start_extra(ast.port, PAUSE_REASONS);
    bridge.wait_health(200).await;
    let members = "/api/v1/queues/pbx1/support/members";
    let login = json!({
        "interface": "Local/agent9@agents/n",
        "member_name": "Agent Nine",
        "state_interface": "Custom:agent9",
        "penalty": 2,
    });

    let a = bridge.call("POST", members, Some(login.clone())).await;
    assert_eq!(result(&a), (200, "applied"), "{a:?}");
    let m = driver.member("support", "Local/agent9@agents/n").await;
    let m = m.expect("Asterisk lists the new member");
    assert_eq!(m.get("Membership"), Some("dynamic"));
    assert_eq!(m.get("Penalty"), Some("2"));
    assert_eq!(m.get("Name"), Some("Agent Nine"));
    bridge.assert_exact(&mut driver, "pbx1", "support").await;
    // Idempotent: a second login succeeds without changing anything.
    let a = bridge.call("POST", members, Some(login)).await;
    assert_eq!(result(&a), (200, "unchanged"));

    // Pause by feature code: Asterisk stores the configured reason text.
    let pause = format!("{members}/{AGENT9}/pause");
    let a = bridge
        .call(
            "POST",
            &pause,
            Some(json!({"paused": true, "reason": "*01"})),
        )
        .await;
    assert_eq!(result(&a), (200, "applied"), "{a:?}");
    let m = driver.member("support", "Local/agent9@agents/n").await;
    let m = m.expect("member");
    assert_eq!(
        (m.get("Paused"), m.get("PausedReason")),
        (Some("1"), Some("Lunch"))
    );
    let a = bridge
        .call(
            "POST",
            &pause,
            Some(json!({"paused": true, "reason": "Lunch"})),
        )
        .await;
    assert_eq!(result(&a), (200, "unchanged"));
    // Reasons are free text, on every front end: one outside the catalogue is stored as it
    // is; a code becomes its text.
    for (reason, stored) in [("Nap", "Nap"), ("*01", "Lunch")] {
        let a = bridge
            .call(
                "POST",
                &pause,
                Some(json!({"paused": true, "reason": reason})),
            )
            .await;
        assert_eq!(result(&a), (200, "applied"), "{reason}");
        assert_eq!(
            field(
                &mut driver,
                "support",
                "Local/agent9@agents/n",
                "PausedReason"
            )
            .await
            .as_deref(),
            Some(stored)
        );
    }

    let a = bridge
        .call(
            "POST",
            &format!("{members}/{AGENT9}/penalty"),
            Some(json!({"penalty": 5})),
        )
        .await;
    assert_eq!(result(&a), (200, "applied"), "{a:?}");
    assert_eq!(
        field(&mut driver, "support", "Local/agent9@agents/n", "Penalty")
            .await
            .as_deref(),
        Some("5")
    );

    // Unpause in every queue of the member.
    let a = bridge
        .call(
            "POST",
            &format!("/api/v1/servers/pbx1/members/{AGENT9}/pause"),
            Some(json!({"paused": false})),
        )
        .await;
    assert_eq!(result(&a), (200, "applied"), "{a:?}");
    assert_eq!(
        field(&mut driver, "support", "Local/agent9@agents/n", "Paused")
            .await
            .as_deref(),
        Some("0")
    );
    bridge.assert_exact(&mut driver, "pbx1", "support").await;

    let a = bridge
        .call("DELETE", &format!("{members}/{AGENT9}"), None)
        .await;
    assert_eq!(result(&a), (200, "applied"), "{a:?}");
    assert!(driver
        .member("support", "Local/agent9@agents/n")
        .await
        .is_none());
    let a = bridge
        .call("DELETE", &format!("{members}/{AGENT9}"), None)
        .await;
    assert_eq!(result(&a), (200, "unchanged"));
    bridge.assert_exact(&mut driver, "pbx1", "support").await;

    let reasons = bridge.json("/api/v1/pause_reasons").await;
    assert_eq!(
        reasons["pause_reasons"],
        json!([{"code": "*01", "reason": "Lunch"}, {"code": "*02", "reason": "Break"}])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_carry_a_stable_code_and_change_nothing() {
    let ast = Asterisk::start();
    let mut driver = Driver::connect(ast.port).await;
    let bridge = Bridge::start_extra(ast.port, PAUSE_REASONS);
    bridge.wait_health(200).await;
    let before = driver.queue_status("sales").await;

    // A static member cannot be logged out (Asterisk: "Member not dynamic").
    let a = bridge
        .call(
            "DELETE",
            "/api/v1/queues/pbx1/sales/members/Local%2Fagent1%40agents%2Fn",
            None,
        )
        .await;
    assert_eq!(result(&a), (409, "not_dynamic"), "{a:?}");
    assert_eq!(a.1["message"], "Member not dynamic");
    let a = bridge
        .call(
            "POST",
            "/api/v1/queues/pbx1/nosuch/members",
            Some(json!({"interface": "Local/agent9@agents/n"})),
        )
        .await;
    assert_eq!(result(&a), (404, "no_such_queue"), "{a:?}");
    let a = bridge
        .call(
            "POST",
            &format!("/api/v1/queues/pbx1/sales/members/{AGENT9}/pause"),
            Some(json!({"paused": true})),
        )
        .await;
    assert_eq!(result(&a), (404, "not_member"), "{a:?}");
    let a = bridge
        .call(
            "POST",
            "/api/v1/queues/pbx9/sales/members",
            Some(json!({"interface": "Local/agent9@agents/n"})),
        )
        .await;
    assert_eq!(result(&a), (404, "no_such_server"));
    let a = bridge
        .call(
            "POST",
            "/api/v1/queues/pbx1/sales/members",
            Some(json!({"interface": "Local/agent9@agents/n", "penalty": -1})),
        )
        .await;
    assert_eq!(result(&a), (400, "invalid_argument"));
    let a = bridge
        .call(
            "POST",
            "/api/v1/queues/pbx1/sales/members",
            Some(json!({"interface": "Local/agent9@agents/n", "colour": "red"})),
        )
        .await;
    assert_eq!(result(&a), (400, "bad_request"));
    assert!(a.1["message"]
        .as_str()
        .is_some_and(|m| m.contains("colour")));
    let r = bridge
        .http
        .post(format!("{}/api/v1/queues/pbx1/sales/members", bridge.base))
        .bearer_auth(common::TOKEN)
        .header("content-type", "application/json")
        .body("{\"interface\": ")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);

    let after = driver.queue_status("sales").await;
    let members = |items: &[Message]| -> Vec<String> {
        items
            .iter()
            .filter(|m| m.event_name() == Some("QueueMember"))
            .map(|m| format!("{:?}", m.get("Location")))
            .collect()
    };
    assert_eq!(members(&before), members(&after));
    assert!(bridge.log().lines().all(|l| !l.contains("panicked")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_on_a_dead_link_is_answered_not_hung() {
    let (_ast, mut driver, proxy, bridge) = behind_proxy().await;
    let pause = "/api/v1/queues/pbx1/support/members/Local%2Fagent3%40agents%2Fn/pause";

    // Half-open: the action is written into a link that no longer answers.
    proxy.stall();
    let a = bridge
        .call("POST", pause, Some(json!({"paused": true})))
        .await;
    assert!(
        matches!(result(&a), (504, "timeout") | (503, "not_connected")),
        "{a:?}"
    );
    // Nothing reached Asterisk.
    assert_eq!(
        field(&mut driver, "support", "Local/agent3@agents/n", "Paused")
            .await
            .as_deref(),
        Some("0")
    );

    // Once the keepalive has dropped the link and it is back, commands work again.
    bridge.wait_health(503).await;
    bridge.wait_health(200).await;
    let a = bridge
        .call("POST", pause, Some(json!({"paused": true})))
        .await;
    assert_eq!(result(&a), (200, "applied"), "{a:?}");
    bridge.assert_exact(&mut driver, "pbx1", "support").await;
}
