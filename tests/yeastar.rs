//! The Yeastar P-Series dialect against a real Asterisk: tokens, pause reasons, and pausing
//! agents with the permissions holding — every effect read back from Asterisk's QueueStatus.

mod common;

use serde_json::{json, Value};

use common::{dialect_users, started, until, Asterisk, Bridge, Driver};

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
    let bridge = Bridge::start_extra(ast.port, &dialect_users());
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
    // nvogel has no `extension`: the number in the interface is the ext id agent lists show,
    // and the one that addresses them.
    let users = format!(
        "{}{}",
        dialect_users(),
        r#"
[[users]]
name = "nvogel"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$Nb2VVW8ykiJJ5U0ew+3LfiJqxgPvXBaCIwlhT1kEgKk"
interface = "Local/204@agents/n"
display_name = "Nina Vogel"
queues = ["sales"]
"#
    );
    let (_ast, mut driver, bridge) = started(&users).await;
    let y = Yeastar { bridge: &bridge };
    let agent = y.token("tweber", "agent-pw").await;
    let boss = y.token("boss", "boss-pw").await;
    let watcher = y.token("watcher", "boss-pw").await;

    // Free text and codes alike: the seed's feature code becomes its text, other text is
    // stored as it is (one rule for every front end).
    let r = y
        .get(&format!(
            "agent/login?access_token={boss}&ext_id=204&queue_ids=1&operation=login&is_paused=1&reason=Training"
        ))
        .await;
    assert_eq!(r, json!({"errcode": 0, "errmsg": "SUCCESS"}));
    assert_eq!(
        paused(&mut driver, "sales", "Local/204@agents/n").await,
        ("1".into(), "Training".into())
    );
    let listed = y
        .get(&format!("queue/agent_status?access_token={watcher}&id=1"))
        .await;
    let numbers: Vec<&str> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|a| a["number"].as_str())
        .collect();
    assert!(numbers.contains(&"204"), "{listed}");
    // watcher, a supervisor who is no agent, is in no agent list, and manages all the same.
    assert!(!listed.to_string().contains("Wanda"), "{listed}");
    let r = y
        .get(&format!(
            "agent/login?access_token={watcher}&ext_id=204&queue_ids=1&operation=logout"
        ))
        .await;
    assert_eq!(r["errcode"], 0, "{r}");
    assert!(driver.member("sales", "Local/204@agents/n").await.is_none());

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
        ("agent/pause?ext_id=&operation=pause&reason=*01", 40002),
        ("agent/pause?ext_id=abc&operation=unpause", 40002),
        (
            "agent/pause?ext_id=201&operation=pause&max_threshold_for_pause_time=5",
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

/// Yeastar's `call_status` for an Asterisk device state (the seed's 0–5).
fn yeastar_call_status(status: &str) -> i64 {
    match status {
        "1" => 1,
        "2" | "3" => 2,
        "6" => 3,
        "7" => 4,
        "8" => 5,
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_queries_equal_asterisk() {
    let (_ast, mut driver, bridge) = started(&dialect_users()).await;
    let y = Yeastar { bridge: &bridge };
    let boss = y.token("boss", "boss-pw").await;
    let agent = y.token("tweber", "agent-pw").await;

    // Lists: a supervisor sees both queues, Yeastar's strategy names, agents by kind.
    let list = y
        .get(&format!("queue/list?access_token={boss}&sort_by=id"))
        .await;
    assert_eq!(list["errcode"], 0, "{list}");
    assert_eq!(list["total_number"], 2);
    let sales = &list["queue_list"][0];
    assert_eq!(
        (
            sales["id"].clone(),
            sales["name"].clone(),
            sales["ring_strategy"].clone()
        ),
        (json!(1), json!("sales"), json!("ring_all"))
    );
    assert_eq!(list["queue_list"][1]["ring_strategy"], "rrmemory");
    let statics: Vec<&str> = sales["static_agent_list"]
        .as_array()
        .expect("array")
        .iter()
        .map(|a| a["value"].as_str().expect("value"))
        .collect();
    assert_eq!(statics, ["201", "202"]);
    assert_eq!(
        sales["dynamic_agent_list"],
        json!([{"text": "Thomas Weber", "text2": "203", "value": "203", "type": "extension"}]),
        "a configured agent of the queue who may log in"
    );
    assert_eq!(sales["manager_list"][0]["value"], "202");
    let desc = y
        .get(&format!(
            "queue/list?access_token={boss}&sort_by=name&order_by=desc&page=1&page_size=1"
        ))
        .await;
    assert_eq!(desc["total_number"], 2);
    assert_eq!(desc["queue_list"].as_array().map(Vec::len), Some(1));
    assert_eq!(desc["queue_list"][0]["name"], "support");
    let found = y
        .get(&format!(
            "queue/search?access_token={boss}&search_value=SUPP"
        ))
        .await;
    assert_eq!(found["total_number"], 1, "{found}");
    assert_eq!(found["queue_list"][0]["id"], 2);
    let one = y.get(&format!("queue/get?access_token={boss}&id=2")).await;
    assert_eq!(one["data"], found["queue_list"][0]);
    let many = y
        .get(&format!("queue/query?access_token={boss}&ids=2,1"))
        .await;
    assert_eq!(many["data"][0]["id"], 2);
    assert_eq!(many["data"][1]["id"], 1);

    // An agent sees only their queues — and the ones they may log in to.
    let mine = y.get(&format!("queue/list?access_token={agent}")).await;
    assert_eq!(mine["total_number"], 2);
    let mmeyer = y.token("mmeyer", "agent-pw").await;
    let theirs = y.get(&format!("queue/list?access_token={mmeyer}")).await;
    assert_eq!(theirs["total_number"], 1, "{theirs}");
    let hidden = y
        .get(&format!("queue/agent_status?access_token={mmeyer}&id=2"))
        .await;
    assert_eq!(hidden["errcode"], 20001);

    // Live calls: one answered in sales, one waiting in support while agent3 rings.
    driver.devstate("agent1", "NOT_INUSE").await;
    driver.devstate("agent2", "NOT_INUSE").await;
    driver.devstate("agent3", "NOT_INUSE").await;
    driver.agent_mode("agent2", Some("noanswer")).await;
    driver.agent_mode("agent3", Some("noanswer")).await;
    driver.command("database put qb talk_agent1 60").await;
    driver
        .call("sales", ("5551001", "Alice"), 60, 60, None)
        .await;
    let sales_calls = until("sales call answered", async || {
        let v = y
            .get(&format!("queue/call_status?access_token={boss}&id=1"))
            .await;
        (v["active_calls"] == 1).then_some(v)
    })
    .await;
    let active = &sales_calls["active_list"][0];
    assert_eq!(active["caller_number"], "5551001");
    assert_eq!(active["caller_display_name"], "Alice");
    assert_eq!(active["callee_number"], "201");
    assert_eq!(active["callee_display_name"], "mmeyer");
    assert_eq!(sales_calls["waiting_calls"], 0);

    driver
        .call("support", ("5551002", "Bob"), 60, 60, None)
        .await;
    let support = until("support caller ringing agent3", async || {
        let v = y
            .get(&format!("queue/call_status?access_token={boss}&id=2"))
            .await;
        (v["ringing_calls"] == 1).then_some(v)
    })
    .await;
    let truth = driver.queue_status("support").await;
    let entry = truth
        .iter()
        .find(|m| m.event_name() == Some("QueueEntry"))
        .expect("a waiting caller in Asterisk");
    let waiting = &support["waiting_list"][0];
    assert_eq!(support["waiting_calls"], 1);
    assert_eq!(
        waiting["call_id"],
        entry.get("Uniqueid").unwrap_or_default()
    );
    assert_eq!(
        waiting["caller_number"],
        entry.get("CallerIDNum").unwrap_or_default()
    );
    assert_eq!(waiting["caller_display_name"], "Bob");
    assert_eq!(waiting["callee_display_name"], "support");
    let ringing = &support["ringing_list"][0];
    assert_eq!(ringing["call_id"], waiting["call_id"]);
    assert_eq!(ringing["callee_number"], "203");

    // Agent status: every field against Asterisk's QueueStatus, across device states.
    driver.devstate("agent2", "ONHOLD").await;
    let expect_status = async |driver: &mut Driver, queue: &str, id: u64| {
        until("agent_status equals QueueStatus", async || {
            let v = y
                .get(&format!("queue/agent_status?access_token={boss}&id={id}"))
                .await;
            let truth = driver.queue_status(queue).await;
            let members: Vec<_> = truth
                .iter()
                .filter(|m| m.event_name() == Some("QueueMember"))
                .collect();
            let ours = v["data"].as_array()?;
            let logged_in: Vec<&Value> = ours.iter().filter(|a| a["is_login"] == 1).collect();
            if logged_in.len() != members.len() {
                return None;
            }
            for m in &members {
                let number = extension(m.get("Location").unwrap_or_default());
                let a = logged_in.iter().find(|a| a["number"] == number)?;
                let status = yeastar_call_status(m.get("Status").unwrap_or_default());
                let paused = m.get("Paused") == Some("1");
                let kind = if m.get("Membership") == Some("static") {
                    "static"
                } else {
                    "dynamic"
                };
                if a["call_status"] != status
                    || a["is_pause"] != i64::from(paused)
                    || a["agent_type"] != kind
                {
                    return None;
                }
            }
            Some(v)
        })
        .await
    };
    let v = expect_status(&mut driver, "sales", 1).await;
    assert_eq!(
        v["total_number"], 3,
        "two static members and one logged-out agent: {v}"
    );
    let out = v["data"]
        .as_array()
        .and_then(|d| d.iter().find(|a| a["is_login"] == 0))
        .expect("tweber logged out");
    assert_eq!(
        out,
        &json!({"name": "Thomas Weber", "number": "203", "is_login": 0, "is_pause": 0, "call_status": 0,
                "pause_reason": "", "agent_type": "dynamic",
                "max_threshold_for_pause_time": 0, "max_threshold_for_logout_time": 0})
    );
    let held = v["data"]
        .as_array()
        .and_then(|d| d.iter().find(|a| a["number"] == "202"))
        .expect("agent2");
    assert_eq!(held["call_status"], 5, "ONHOLD is 5: {v}");
    driver.devstate("agent3", "RINGINUSE").await;
    let v = expect_status(&mut driver, "support", 2).await;
    assert_eq!(v["data"][0]["call_status"], 4, "{v}");

    // Bad ids: the documented errors.
    for (query, code) in [
        ("queue/get?id=99", 40004),
        ("queue/get?id=x", 40002),
        ("queue/get?id=", 40002),
        ("queue/query?ids=1,99", 40004),
        ("queue/list?page=0", 40002),
        ("queue/list?sort_by=colour", 40002),
        ("queue/call_status?id=-1", 40002),
    ] {
        let r = y.get(&format!("{query}&access_token={boss}")).await;
        assert_eq!(r["errcode"], code, "{query}: {r}");
    }
}

/// The configured extension of each test agent's interface (see `dialect_users()`).
fn extension(location: &str) -> &'static str {
    match location {
        "Local/agent1@agents/n" => "201",
        "Local/agent2@agents/n" => "202",
        "Local/agent3@agents/n" => "203",
        _ => "?",
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn thresholds_unpause_and_log_back_in_also_across_a_restart() {
    let (ast, mut driver, bridge) = started(&dialect_users()).await;
    let y = Yeastar { bridge: &bridge };
    let agent = y.token("tweber", "agent-pw").await;
    let boss = y.token("boss", "boss-pw").await;
    const AGENT3: &str = "Local/agent3@agents/n";

    // An agent cannot log a colleague in; nothing changes in Asterisk.
    let r = y
        .get(&format!(
            "agent/login?access_token={agent}&ext_id=201&queue_ids=2&operation=login"
        ))
        .await;
    assert_eq!(r["errcode"], 20001, "{r}");
    assert!(driver
        .member("support", "Local/agent1@agents/n")
        .await
        .is_none());

    // Log in paused for 10 s: Asterisk shows it, then shows the automatic unpause.
    let r = y
        .get(&format!(
            "agent/login?access_token={agent}&ext_id=203&queue_ids=1&operation=login&is_paused=1&reason=*01&max_threshold_for_pause_time=10"
        ))
        .await;
    assert_eq!(r, json!({"errcode": 0, "errmsg": "SUCCESS"}));
    let m = driver.member("sales", AGENT3).await.expect("logged in");
    assert_eq!(m.get("Membership"), Some("dynamic"));
    assert_eq!(
        (m.get("Paused"), m.get("PausedReason")),
        (Some("1"), Some("Lunch"))
    );
    let status = y
        .get(&format!("queue/agent_status?access_token={agent}&id=1"))
        .await;
    let me = status["data"]
        .as_array()
        .and_then(|d| d.iter().find(|a| a["number"] == "203"))
        .expect("tweber")
        .clone();
    assert_eq!(
        (
            me["is_login"].clone(),
            me["is_pause"].clone(),
            me["pause_reason"].clone()
        ),
        (json!(1), json!(1), json!("Lunch"))
    );
    assert_eq!(me["max_threshold_for_pause_time"], 10);
    until("Asterisk shows the automatic unpause", async || {
        let m = driver.member("sales", AGENT3).await?;
        (m.get("Paused") == Some("0")).then_some(Value::Null)
    })
    .await;
    bridge.assert_exact(&mut driver, "pbx1", "sales").await;

    // Bad thresholds and flags change nothing.
    for query in [
        "queue/agent_login?ext_ids=203&queue_id=1&operation=logout&max_threshold_for_logout_time=5",
        "queue/agent_login?ext_ids=203&queue_id=1&operation=logout&max_threshold_for_logout_time=ten",
        "queue/agent_login?ext_ids=203&queue_id=1&operation=login&is_paused=2",
        "queue/agent_login?ext_ids=203&queue_id=1&operation=leave",
        "queue/agent_login?ext_ids=203&operation=logout",
        "agent/login?operation=logout",
    ] {
        let r = y.get(&format!("{query}&access_token={boss}")).await;
        assert_eq!(r["errcode"], 40002, "{query}: {r}");
    }
    assert!(driver.member("sales", AGENT3).await.is_some());
    // A static member cannot be logged out, not even by a supervisor: Asterisk refuses.
    let r = y
        .get(&format!(
            "queue/agent_login?access_token={boss}&ext_ids=203&queue_id=2&operation=logout"
        ))
        .await;
    assert_eq!(r["errcode"], 50003, "{r}");

    // A supervisor logs the agent out for 10 s; queuebridge restarts meanwhile; Asterisk
    // shows the agent logged back in by the restarted queuebridge.
    let r = y
        .get(&format!(
            "queue/agent_login?access_token={boss}&ext_ids=203&queue_id=1&operation=logout&max_threshold_for_logout_time=10"
        ))
        .await;
    assert_eq!(r["errcode"], 0, "{r}");
    assert!(driver.member("sales", AGENT3).await.is_none());
    let (exit, state_dir) = bridge.terminate();
    assert!(exit.success());
    let bridge = Bridge::start_extra_in(ast.port, &dialect_users(), state_dir);
    bridge.wait_health(200).await;
    let y = Yeastar { bridge: &bridge };
    let boss = y.token("boss", "boss-pw").await;
    let status = y
        .get(&format!("queue/agent_status?access_token={boss}&id=1"))
        .await;
    let out = status["data"]
        .as_array()
        .and_then(|d| d.iter().find(|a| a["number"] == "203"))
        .expect("tweber")
        .clone();
    assert_eq!(
        (
            out["is_login"].clone(),
            out["max_threshold_for_logout_time"].clone()
        ),
        (json!(0), json!(10))
    );
    let back = until("Asterisk shows the agent logged back in", async || {
        driver.member("sales", AGENT3).await.map(|_| Value::Null)
    })
    .await;
    let _ = back;
    let m = driver.member("sales", AGENT3).await.expect("back");
    assert_eq!(m.get("Membership"), Some("dynamic"));
    assert!(bridge.log().contains("deadline fired"), "{}", bridge.log());
    bridge.assert_exact(&mut driver, "pbx1", "sales").await;

    // Agent logs out of all their dynamic queues (no queue_ids).
    let agent = y.token("tweber", "agent-pw").await;
    let r = y
        .get(&format!(
            "agent/login?access_token={agent}&ext_id=203&operation=logout"
        ))
        .await;
    assert_eq!(r["errcode"], 0, "{r}");
    assert!(driver.member("sales", AGENT3).await.is_none());
    assert!(
        driver.member("support", AGENT3).await.is_some(),
        "static stays"
    );
}
