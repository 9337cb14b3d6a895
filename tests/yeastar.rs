//! The Yeastar P-Series dialect against a real Asterisk: tokens, pause reasons, and pausing
//! agents with the permissions holding — every effect read back from Asterisk's QueueStatus.

mod common;

use queuebridge::access::hash_password;
use serde_json::{json, Value};

use common::{Asterisk, Bridge, Driver, PAUSE_REASONS};

fn users() -> String {
    let agent = hash_password("agent-pw").expect("hash");
    let boss = hash_password("boss-pw").expect("hash");
    format!(
        r#"
[[queues]]
server = "pbx1"
name = "sales"
id = 1
[[queues]]
server = "pbx1"
name = "support"
id = 2
[[users]]
name = "tweber"
password_hash = "{agent}"
interface = "Local/agent3@agents/n"
extension = "203"
queues = ["support"]
[[users]]
name = "mmeyer"
password_hash = "{agent}"
interface = "Local/agent1@agents/n"
extension = "201"
[[users]]
name = "boss"
password_hash = "{boss}"
interface = "Local/agent2@agents/n"
extension = "202"
roles = ["supervisor"]
{PAUSE_REASONS}"#
    )
}

struct Yeastar<'a> {
    bridge: &'a Bridge,
}

impl Yeastar<'_> {
    fn url(&self, endpoint: &str) -> String {
        format!("{}/openapi/v1.0/{endpoint}", self.bridge.base)
    }

    async fn get(&self, endpoint: &str) -> Value {
        let r = self
            .bridge
            .http
            .get(self.url(endpoint))
            .header("User-Agent", "OpenAPI")
            .send()
            .await
            .expect("get");
        assert_eq!(
            r.status().as_u16(),
            200,
            "Yeastar answers 200 to everything"
        );
        r.json().await.expect("json")
    }

    async fn post(&self, endpoint: &str, body: Value) -> Value {
        let r = self
            .bridge
            .http
            .post(self.url(endpoint))
            .header("User-Agent", "OpenAPI")
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 200);
        r.json().await.expect("json")
    }

    async fn token(&self, user: &str, password: &str) -> String {
        let t = self
            .post("get_token", json!({"username": user, "password": password}))
            .await;
        assert_eq!(t["errcode"], 0, "{t}");
        t["access_token"].as_str().expect("access_token").to_owned()
    }
}

async fn paused(driver: &mut Driver, queue: &str, interface: &str) -> (String, String) {
    let m = driver
        .member(queue, interface)
        .await
        .expect("member in Asterisk");
    (
        m.get("Paused").unwrap_or_default().to_owned(),
        m.get("PausedReason").unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_as_yeastar_issues_them() {
    let ast = Asterisk::start();
    let bridge = Bridge::start_extra(ast.port, &users());
    bridge.wait_health(200).await;
    let y = Yeastar { bridge: &bridge };

    // No User-Agent: refused, as the PBX does.
    let r = bridge
        .http
        .post(y.url("get_token"))
        .json(&json!({"username": "tweber", "password": "agent-pw"}))
        .send()
        .await
        .expect("post");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["errcode"], 40002);
    assert_eq!(v["invalid_param_list"][0]["field"], "User-Agent");

    let bad = y
        .post(
            "get_token",
            json!({"username": "tweber", "password": "nope"}),
        )
        .await;
    assert_eq!(
        bad,
        json!({"errcode": -1, "errmsg": "FAILURE",
               "invalid_param_list": [{"field": "username or password", "value": "error"}]})
    );
    let missing = y.post("get_token", json!({"username": "tweber"})).await;
    assert_eq!(missing["errcode"], 40002);
    assert_eq!(
        missing["invalid_param_list"][0],
        json!({"field": "password", "validation_type": "required"})
    );

    let t = y
        .post(
            "get_token",
            json!({"username": "tweber", "password": "agent-pw"}),
        )
        .await;
    assert_eq!(t["errmsg"], "SUCCESS");
    assert_eq!(t["access_token_expire_time"], 1800);
    assert_eq!(t["refresh_token_expire_time"], 86400);
    let access = t["access_token"].as_str().expect("token").to_owned();
    let refresh = t["refresh_token"].as_str().expect("token").to_owned();
    let list = y
        .get(&format!("queue_pause_reason/list?access_token={access}"))
        .await;
    assert_eq!(
        list,
        json!({"errcode": 0, "errmsg": "SUCCESS", "data": [
            {"code": "*01", "reason": "Lunch"}, {"code": "*02", "reason": "Break"}]})
    );
    for token in ["", "not-a-token", refresh.as_str()] {
        let r = y
            .get(&format!("queue_pause_reason/list?access_token={token}"))
            .await;
        assert_eq!(r, json!({"errcode": 10004, "errmsg": "TOKEN EXPIRED"}));
    }

    // Refresh: a new pair; the old refresh token is spent.
    let again = y
        .post("refresh_token", json!({"refresh_token": refresh}))
        .await;
    assert_eq!(again["errcode"], 0, "{again}");
    let spent = y
        .post("refresh_token", json!({"refresh_token": refresh}))
        .await;
    assert_eq!(spent["errcode"], 10004);

    // Revoked: unusable at once.
    let del = y.get(&format!("del_token?access_token={access}")).await;
    assert_eq!(del, json!({"errcode": 0, "errmsg": "SUCCESS"}));
    let after = y
        .get(&format!("queue_pause_reason/list?access_token={access}"))
        .await;
    assert_eq!(after["errcode"], 10004);

    // At most 8 live access tokens per user (one is live from the refresh).
    for _ in 0..7 {
        y.token("tweber", "agent-pw").await;
    }
    let ninth = y
        .post(
            "get_token",
            json!({"username": "tweber", "password": "agent-pw"}),
        )
        .await;
    assert_eq!(
        ninth,
        json!({"errcode": 10005, "errmsg": "TOO MANY TOKENS"})
    );
    // Another user is not affected.
    y.token("boss", "boss-pw").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_pause_themselves_not_colleagues_and_supervisors_pause_anyone() {
    let ast = Asterisk::start();
    let mut driver = Driver::connect(ast.port).await;
    let bridge = Bridge::start_extra(ast.port, &users());
    bridge.wait_health(200).await;
    let y = Yeastar { bridge: &bridge };
    let agent = y.token("tweber", "agent-pw").await;
    let boss = y.token("boss", "boss-pw").await;

    // An agent pauses themselves in all their queues with a feature code.
    let r = y
        .get(&format!(
            "agent/pause?access_token={agent}&ext_id=203&operation=pause&reason=*02"
        ))
        .await;
    assert_eq!(r, json!({"errcode": 0, "errmsg": "SUCCESS"}));
    assert_eq!(
        paused(&mut driver, "support", "Local/agent3@agents/n").await,
        ("1".into(), "Break".into())
    );
    bridge.assert_exact(&mut driver, "pbx1", "support").await;

    // …but not a colleague: refused, and nothing changes in Asterisk.
    let before = paused(&mut driver, "sales", "Local/agent1@agents/n").await;
    let r = y
        .get(&format!(
            "queue/agent_pause?access_token={agent}&ext_ids=201&queue_id=1&operation=pause&reason=*01"
        ))
        .await;
    assert_eq!(r["errcode"], 20001, "{r}");
    assert_eq!(r["errmsg"], "PERMISSION DENIED");
    assert_eq!(
        paused(&mut driver, "sales", "Local/agent1@agents/n").await,
        before
    );

    // A supervisor may, in one queue, for several agents at once.
    let r = y
        .get(&format!(
            "queue/agent_pause?access_token={boss}&ext_ids=201,202&queue_id=1&operation=pause&reason=Lunch"
        ))
        .await;
    assert_eq!(r["errcode"], 0, "{r}");
    for iface in ["Local/agent1@agents/n", "Local/agent2@agents/n"] {
        assert_eq!(
            paused(&mut driver, "sales", iface).await,
            ("1".into(), "Lunch".into())
        );
    }
    bridge.assert_exact(&mut driver, "pbx1", "sales").await;

    // Bad input gets the documented error and changes nothing.
    for (query, code) in [
        (
            "queue/agent_pause?ext_ids=201&queue_id=1&operation=unpause",
            10004,
        ),
        (
            "queue/agent_pause?ext_ids=201&queue_id=99&operation=unpause",
            40004,
        ),
        (
            "queue/agent_pause?ext_ids=999&queue_id=1&operation=unpause",
            40004,
        ),
        (
            "queue/agent_pause?ext_ids=201&queue_id=x&operation=unpause",
            40002,
        ),
        (
            "queue/agent_pause?ext_ids=201&queue_id=1&operation=nap",
            40002,
        ),
        ("queue/agent_pause?queue_id=1&operation=unpause", 40002),
        ("agent/pause?ext_id=201&operation=pause&reason=*09", 40002),
        ("agent/pause?ext_id=abc&operation=unpause", 40002),
        (
            "agent/pause?ext_id=201&operation=pause&max_threshold_for_pause_time=60",
            40002,
        ),
    ] {
        let token = if code == 10004 { "" } else { boss.as_str() };
        let r = y.get(&format!("{query}&access_token={token}")).await;
        assert_eq!(r["errcode"], code, "{query}: {r}");
    }
    assert_eq!(
        paused(&mut driver, "sales", "Local/agent1@agents/n").await,
        ("1".into(), "Lunch".into())
    );

    // Unpause everyone again; the agent unpauses themselves.
    let r = y
        .get(&format!(
            "queue/agent_pause?access_token={boss}&ext_ids=201,202&queue_id=1&operation=unpause"
        ))
        .await;
    assert_eq!(r["errcode"], 0, "{r}");
    let r = y
        .get(&format!(
            "agent/pause?access_token={agent}&ext_id=203&queue_ids=2&operation=unpause"
        ))
        .await;
    assert_eq!(r["errcode"], 0, "{r}");
    assert_eq!(
        paused(&mut driver, "support", "Local/agent3@agents/n")
            .await
            .0,
        "0"
    );
    bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    bridge.assert_exact(&mut driver, "pbx1", "support").await;
}
