//! The PortSIP dialect against real Asterisk instances: tokens, the list options, queues
//! created, changed and destroyed through Asterisk's own configuration, agent status seen in
//! QueueStatus, a chosen waiting caller delivered to the agent, and queue servers added and
//! removed at run time with a second Asterisk.

mod common;

use reqwest::Method;
use serde_json::{json, Value};

use common::{started, until, Asterisk, Bridge, Driver};
use queuebridge::ami::Message;

const AGENT3: &str = "Local/agent3@agents/n";

fn users() -> String {
    common::portsip_users()
}

struct Ps<'a> {
    bridge: &'a Bridge,
}

impl Ps<'_> {
    async fn raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut r = self
            .bridge
            .http
            .request(method, format!("{}/api{path}", self.bridge.base));
        if !token.is_empty() {
            r = r.bearer_auth(token);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.expect("request");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (s, text) = self.raw(method, path, token, body).await;
        (
            s,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// A POST without a body (destroy, pickup, sign_out).
    async fn action(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(Method::POST, path, token, None).await
    }

    async fn sign_in(&self, user: &str, password: &str) -> String {
        let (s, v) = self
            .post(
                "/auth/sign_in",
                "",
                json!({"username": user, "password": password}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().expect("token").to_owned()
    }
}

/// The error code of a PortSIP error body.
fn code(v: &Value) -> &str {
    v["errors"][0]["code"].as_str().unwrap_or_default()
}

async fn start() -> (Asterisk, Driver, Bridge) {
    started(&users()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_roles_lists_and_errors() {
    let (_ast, _driver, bridge) = start().await;
    let ps = Ps { bridge: &bridge };

    // sign_in by name or extension number; wrong password.
    let agent = ps.sign_in("tweber", "agent-pw").await;
    let by_number = ps.sign_in("203", "agent-pw").await;
    let (s, v) = ps
        .post(
            "/auth/sign_in",
            "",
            json!({"username": "tweber", "password": "nope"}),
        )
        .await;
    assert_eq!((s, code(&v)), (401, "UNAUTHORIZED"), "{v}");
    let (s, v) = ps
        .post("/auth/sign_in", "", json!({"username": "tweber"}))
        .await;
    assert_eq!((s, code(&v)), (400, "VALIDATE_FAILED"), "{v}");

    // The OAuth-style form endpoint, its refresh grant, and its documented error.
    let form = |pairs: &[(&str, &str)]| {
        bridge
            .http
            .post(format!("{}/api/login/oauth/token", bridge.base))
            .form(pairs)
            .send()
    };
    let client = queuebridge::http::portsip::OAUTH_CLIENT_ID;
    let r = form(&[
        ("grant_type", "password"),
        ("username", "boss"),
        ("password", "boss-pw"),
        ("scope", "all"),
        ("client_id", client),
    ])
    .await
    .expect("oauth");
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.expect("json");
    assert_eq!(tokens["token_type"], "Bearer");
    let boss = tokens["access_token"].as_str().expect("access").to_owned();
    let r = form(&[
        ("grant_type", "password"),
        ("username", "boss"),
        ("password", "wrong"),
        ("client_id", client),
    ])
    .await
    .expect("oauth");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v,
        json!({"errors": [{"code": "UNAUTHORIZED", "message": "Login failed, authentication error"}]})
    );
    let r = form(&[
        ("grant_type", "refresh_token"),
        (
            "refresh_token",
            tokens["refresh_token"].as_str().expect("refresh"),
        ),
        ("client_id", client),
    ])
    .await
    .expect("refresh");
    assert_eq!(r.status(), 200);
    let r = form(&[("grant_type", "password"), ("client_id", "someone-else")])
        .await
        .expect("oauth");
    assert_eq!(r.status(), 400);

    // Roles.
    let admin = ps.sign_in("admin", "admin-pw").await;
    for (token, role) in [
        (&agent, "StandardUser"),
        (&boss, "QueueManager"),
        (&admin, "Admin"),
    ] {
        let (s, v) = ps.get("/auth/user", token).await;
        assert_eq!((s, v["role"].as_str()), (200, Some(role)), "{v}");
    }

    // JSON refresh, then sign out: the token is dead.
    let (s, v) = ps
        .post(
            "/auth/sign_in",
            "",
            json!({"username": "mmeyer", "password": "agent-pw"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, fresh) = ps
        .post(
            "/auth/refresh_token",
            "",
            json!({"refresh_token": v["refresh_token"]}),
        )
        .await;
    assert_eq!(s, 200, "{fresh}");
    let (s, again) = ps
        .post(
            "/auth/refresh_token",
            "",
            json!({"refresh_token": v["refresh_token"]}),
        )
        .await;
    assert_eq!(
        (s, code(&again)),
        (401, "UNAUTHORIZED"),
        "a refresh token is used once"
    );
    let (s, _) = ps.action("/auth/sign_out", &by_number).await;
    assert_eq!(s, 200);
    let (s, v) = ps.get("/call_queues", &by_number).await;
    assert_eq!((s, code(&v)), (401, "UNAUTHORIZED"));
    let (s, v) = ps.get("/call_queues", "").await;
    assert_eq!((s, code(&v)), (401, "UNAUTHORIZED"));
    let (s, v) = ps.get("/call_queues", "junk").await;
    assert_eq!((s, code(&v)), (401, "UNAUTHORIZED"));

    // Lists: the envelope, filter, search, orderby, paging, and what an agent sees.
    let (s, v) = ps.get("/call_queues", &boss).await;
    assert_eq!(s, 200);
    assert_eq!(v["count"], 2);
    assert_eq!(
        v["items"][0],
        json!({"id": "1", "name": "sales", "extension_number": "001", "ring_time": 4,
               "polling_strategy": "RING_SIMULTANEOUSLY"})
    );
    assert_eq!(v["items"][1]["polling_strategy"], "CYCLIC_HUNT");
    assert_eq!(v["items"][1]["ring_time"], 5);
    let (_, v) = ps
        .get("/call_queues?filter=extension_number%20eq%20'002'", &boss)
        .await;
    assert_eq!(
        (v["count"].clone(), v["items"][0]["id"].clone()),
        (json!(1), json!("2"))
    );
    let (_, v) = ps
        .get(
            "/call_queues?filter=ring_time%20gt%204%20and%20startswith(name,'sup')",
            &boss,
        )
        .await;
    assert_eq!(v["count"], 1);
    let (_, v) = ps
        .get("/call_queues?orderby=ring_time%20desc&top=1", &boss)
        .await;
    assert_eq!(v["count"], 2, "count is all matches, not the page");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["items"][0]["name"], "support");
    let (_, v) = ps.get("/call_queues?search=SAL&skip=0", &boss).await;
    assert_eq!(v["count"], 1);
    let (_, v) = ps.get("/call_queues?skip=5", &boss).await;
    assert_eq!(
        (v["count"].clone(), v["items"].clone()),
        (json!(2), json!([]))
    );
    for bad in [
        "filter=colour%20eq%20'red'",
        "filter=name%20eq",
        "filter=ring_time%20eq%20'x'",
        "orderby=name%20upwards",
        "top=0",
        "top=101",
        "skip=-1",
    ] {
        let (s, v) = ps.get(&format!("/call_queues?{bad}"), &boss).await;
        assert_eq!((s, code(&v)), (400, "VALIDATE_FAILED"), "{bad}: {v}");
    }
    let (_, v) = ps.get("/call_queues", &agent).await;
    assert_eq!(v["count"], 2, "tweber belongs to both queues");
    let (_, v) = ps
        .get("/call_queues", &ps.sign_in("mmeyer", "agent-pw").await)
        .await;
    assert_eq!(v["count"], 1, "mmeyer is a member of sales only");

    // Ids and permissions.
    let (s, v) = ps.get("/call_queues/abc", &boss).await;
    assert_eq!((s, code(&v)), (400, "VALIDATE_FAILED"));
    let (s, v) = ps.get("/call_queues/999", &boss).await;
    assert_eq!((s, code(&v)), (404, "NOT_FOUND"));
    let (s, v) = ps.get("/call_queue_servers", &boss).await;
    assert_eq!((s, code(&v)), (403, "FORBIDDEN"), "servers are for admins");
    let (s, v) = ps.post("/call_queues", &boss, json!({"name": "x"})).await;
    assert_eq!((s, code(&v)), (403, "FORBIDDEN"));
    let (s, v) = ps.get("/call_queues/1/status", &boss).await;
    assert_eq!((s, v), (200, json!({"status": "ONLINE"})));
    for (path, body, why) in [
        ("203", Some(json!({"state": "READY"})), "unknown body field"),
        ("203", None, "no body"),
        ("12", Some(json!({"status": "READY"})), "bad agent number"),
        ("203", Some(json!({"status": "ASLEEP"})), "unknown status"),
    ] {
        let path = format!("/call_queues/2/agents/{path}");
        let (s, v) = ps.call(Method::POST, &path, &agent, body).await;
        assert_eq!((s, code(&v)), (400, "VALIDATE_FAILED"), "{why}: {v}");
    }
    let (s, v) = ps.get("/call_queues/2/agents/299", &agent).await;
    assert_eq!((s, code(&v)), (404, "NOT_FOUND"));
}

/// Lines of a category in Asterisk's GetConfig of `file`.
async fn config_lines(driver: &mut Driver, file: &str, category: &str) -> Vec<String> {
    let r = driver
        .send(
            Message::action("GetConfig")
                .with("Filename", file)
                .with("Category", category),
        )
        .await;
    r.response
        .headers()
        .filter(|(k, _)| k.starts_with("Line-"))
        .map(|(_, v)| v.to_owned())
        .collect()
}

async fn db_get(driver: &mut Driver, key: &str) -> String {
    let r = driver.command(&format!("database get {key}")).await;
    r.response.get_all("Output").collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn queues_are_created_changed_and_destroyed_in_asterisk() {
    let (_ast, mut driver, bridge) = start().await;
    let ps = Ps { bridge: &bridge };
    let admin = ps.sign_in("admin", "admin-pw").await;

    // A queues.conf queue named by a word gets its id as extension number, 3 digits.
    let (_, v) = ps.get("/call_queues?filter=name eq 'sales'", &admin).await;
    assert_eq!(v["items"][0]["extension_number"], "001", "{v}");

    // A whole object of the vendor's own defaults (sticky routing on among them) is taken.
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/portsip-openapi.json"),
    )
    .expect("OpenAPI file");
    let spec: Value = serde_json::from_str(&text).expect("json");
    let props = &spec["paths"]["/call_queues"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"]["properties"];
    let mut defaults = json!({"name": "Defaults", "extension_number": "8009"});
    for (k, p) in props.as_object().expect("properties") {
        if let Some(d) = p.get("default").filter(|d| !d.is_null()) {
            defaults[k] = d.clone();
        }
    }
    assert_eq!(defaults["enable_sticky_routing"], true);
    let (s, v) = ps.post("/call_queues", &admin, defaults).await;
    assert_eq!(s, 200, "{v}");
    let created = v["id"].as_str().expect("id").to_owned();
    let (s, q) = ps.get(&format!("/call_queues/{created}"), &admin).await;
    assert_eq!((s, q["max_waiting_time"].clone()), (200, json!(300)), "{q}");
    assert_eq!(q["enable_sticky_routing"], false, "Asterisk has none: {q}");
    let (s, _) = ps
        .action(&format!("/call_queues/{created}/destroy"), &admin)
        .await;
    assert_eq!(s, 204);

    // Fields Asterisk cannot honour are refused by name, and nothing is created.
    let (s, v) = ps
        .post(
            "/call_queues",
            &admin,
            json!({"name": "Hotline", "extension_number": "8001",
                   "polling_strategy": "SKILL_BASED_ROUTING_CYCLIC_HUNT",
                   "enable_callback": true, "ring_time": 0}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "VALIDATE_FAILED"), "{v}");
    let fields = &v["errors"][0]["detail"]["fields"];
    assert_eq!(
        fields,
        &json!(["polling_strategy", "ring_time", "enable_callback"]),
        "{v}"
    );
    let (s, v) = ps
        .post(
            "/call_queues",
            &admin,
            json!({"name": "Hotline", "extension_number": "8001",
              "polling_strategy": "RING_SIMULTANEOUSLY", "colour": "red"}),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (400, "VALIDATE_FAILED"),
        "unknown field: {v}"
    );
    let (s, v) = ps
        .post(
            "/call_queues",
            &admin,
            json!({"name": "Hotline", "extension_number": "80"}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "VALIDATE_FAILED"), "{v}");
    assert!(
        driver.queue_status("8001").await.is_empty(),
        "nothing was created"
    );

    // Create: Asterisk runs the queue with the mapped options.
    let (s, v) = ps
        .post(
            "/call_queues",
            &admin,
            json!({"name": "Hotline", "extension_number": "8001",
                   "polling_strategy": "LEAST_WORKED_HUNT", "ring_time": 25, "max_callers": 5,
                   "sla_time": 40, "max_waiting_time": 120, "inform_position": "ON_CONNECTED",
                   "inform_position_interval": 30, "wait_when_no_agents_online": true,
                   "intro_type": "DISABLE", "enable_callback": false, "enable_paid": false,
                   "agent_auto_ready": true, "language": "en-US", "outbound_caller_ids": []}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let id = v["id"].as_str().expect("id").to_owned();
    let params = driver.queue_status("8001").await;
    let p = params
        .iter()
        .find(|m| m.event_name() == Some("QueueParams"))
        .expect("Asterisk runs queue 8001");
    assert_eq!(p.get("Strategy"), Some("leastrecent"));
    assert_eq!(p.get("Max"), Some("5"));
    assert_eq!(p.get("ServiceLevel"), Some("40"));
    let lines = config_lines(&mut driver, "queuebridge-queues.conf", "8001").await;
    for want in [
        "timeout=25",
        "announce-position=yes",
        "announce-frequency=30",
        "joinempty=yes",
    ] {
        assert!(lines.iter().any(|l| l == want), "{want} in {lines:?}");
    }
    assert!(db_get(&mut driver, "queuebridge/max_waiting_time 8001")
        .await
        .contains("120"));
    let (s, q) = ps.get(&format!("/call_queues/{id}"), &admin).await;
    assert_eq!(s, 200);
    for (k, want) in [
        ("name", json!("Hotline")),
        ("extension_number", json!("8001")),
        ("polling_strategy", json!("LEAST_WORKED_HUNT")),
        ("ring_time", json!(25)),
        ("max_callers", json!(5)),
        ("sla_time", json!(40)),
        ("max_waiting_time", json!(120)),
        ("inform_position", json!("ON_CONNECTED")),
        ("inform_position_interval", json!(30)),
        ("wait_when_no_agents_online", json!(true)),
        ("enable_sticky_routing", json!(false)),
    ] {
        assert_eq!(q[k], want, "{k} in {q}");
    }
    let (s, v) = ps
        .post(
            "/call_queues",
            &admin,
            json!({"name": "Again", "extension_number": "8001",
              "polling_strategy": "RING_SIMULTANEOUSLY"}),
        )
        .await;
    assert_eq!((s, code(&v)), (409, "CONFLICT"), "{v}");
    let (_, q) = ps.get(&format!("/call_queues/{id}"), &admin).await;
    assert_eq!(
        q["name"], "Hotline",
        "a refused create leaves the queue as it was"
    );

    // Update: new strategy, ring time and name; the static members are the agent list.
    let (s, v) = ps
        .post(
            &format!("/call_queues/{id}"),
            &admin,
            json!({"name": "Hotline 2",
              "polling_strategy": "PRIORITIZED_HUNT", "ring_time": 30}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let params = driver.queue_status("8001").await;
    assert_eq!(params[0].get("Strategy"), Some("linear"));
    assert!(config_lines(&mut driver, "queuebridge-queues.conf", "8001")
        .await
        .iter()
        .any(|l| l == "timeout=30"));
    let (_, q) = ps.get(&format!("/call_queues/{id}"), &admin).await;
    assert_eq!(
        (q["name"].clone(), q["ring_time"].clone()),
        (json!("Hotline 2"), json!(30))
    );
    assert_eq!(q["max_callers"], 5, "fields not sent stay");
    let (s, v) = ps
        .post(
            &format!("/call_queues/{id}/agents"),
            &admin,
            json!({"items": [{"extension_number": "203", "skill_level": 2}]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let m = driver
        .member("8001", AGENT3)
        .await
        .expect("agent3 is a static member");
    assert_eq!(
        (m.get("Membership"), m.get("Penalty")),
        (Some("static"), Some("1"))
    );
    let (_, v) = ps.get(&format!("/call_queues/{id}/agents"), &admin).await;
    assert_eq!(
        v,
        json!({"items": [{"extension_number": "203", "display_name": "Thomas Weber", "skill_level": 2}]})
    );
    // GET …/agents, then POST the same list: nothing changes — the dynamic member stays
    // dynamic, the static one static with its penalty.
    let (s, v) = bridge
        .call(
            "POST",
            "/api/v1/queues/pbx1/8001/members",
            Some(json!({"interface": "Local/agent1@agents/n", "penalty": 4})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, listed) = ps.get(&format!("/call_queues/{id}/agents"), &admin).await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    let before = config_lines(&mut driver, "queuebridge-queues.conf", "8001").await;
    let (s, v) = ps
        .post(&format!("/call_queues/{id}/agents"), &admin, listed.clone())
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        config_lines(&mut driver, "queuebridge-queues.conf", "8001").await,
        before
    );
    let (_, again) = ps.get(&format!("/call_queues/{id}/agents"), &admin).await;
    assert_eq!(again, listed);
    let m = driver
        .member("8001", "Local/agent1@agents/n")
        .await
        .expect("agent1 is still a member");
    assert_eq!(
        (m.get("Membership"), m.get("Penalty")),
        (Some("dynamic"), Some("4"))
    );
    let (s, v) = bridge
        .call(
            "DELETE",
            "/api/v1/queues/pbx1/8001/members/Local%2Fagent1%40agents%2Fn",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = ps
        .post(
            &format!("/call_queues/{id}/agents"),
            &admin,
            json!({"items": [{"extension_number": "299"}]}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "VALIDATE_FAILED"), "{v}");
    let (s, v) = ps
        .post("/call_queues/1", &admin, json!({"ring_time": 9}))
        .await;
    assert_eq!(
        (s, code(&v)),
        (403, "FORBIDDEN"),
        "queues.conf's own queues stay: {v}"
    );
    let (s, v) = ps
        .post(
            &format!("/call_queues/{id}"),
            &admin,
            json!({"inform_position": "PERIODICALLY"}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "VALIDATE_FAILED"), "{v}");

    // A caller dialling the new queue's number waits in it (agent3 does not answer); the
    // waiting list shows them.
    driver.agent_mode("agent3", Some("noanswer")).await;
    driver
        .call("8001", ("5551234", "Alice"), 30, 60, None)
        .await;
    until("the caller in the waiting list", async || {
        let (_, v) = ps.get(&format!("/call_queues/{id}/waiting"), &admin).await;
        (v["items"][0]["extension_number"] == "5551234").then_some(())
    })
    .await;
    let (_, v) = ps.get(&format!("/call_queues/{id}/waiting"), &admin).await;
    assert_eq!(v["items"][0]["display_name"], "Alice");
    driver.command("channel request hangup all").await;

    // The longest wait is honoured: a caller of a queue without agents leaves after 15 s.
    let (s, v) = ps
        .post(
            "/call_queues",
            &admin,
            json!({"name": "Short", "extension_number": "8002", "max_waiting_time": 15,
                   "polling_strategy": "RING_SIMULTANEOUSLY", "wait_when_no_agents_online": true}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let short = v["id"].as_str().expect("id").to_owned();
    let mut events = common::subscribe(&bridge, None).await;
    driver.call("8002", ("5550002", "Bob"), 30, 60, None).await;
    let joined =
        common::expect_change(&mut events, "caller_joined", 10, |c| c["queue"] == "8002").await;
    common::expect_change(&mut events, "caller_left", 30, |c| c["queue"] == "8002").await;
    let entered = joined.data["caller"]["entered"].as_i64().expect("entered");
    let gone_after = queuebridge::clock::now_secs() - entered;
    assert!((14..=25).contains(&gone_after), "left after {gone_after} s");
    let (s, _) = ps
        .action(&format!("/call_queues/{short}/destroy"), &admin)
        .await;
    assert_eq!(s, 204);

    // Destroy: gone from Asterisk and from every front end.
    until("the caller gone", async || {
        driver
            .queue_status("8001")
            .await
            .iter()
            .all(|m| m.event_name() != Some("QueueEntry"))
            .then_some(())
    })
    .await;
    let (s, v) = ps
        .action(&format!("/call_queues/{id}/destroy"), &admin)
        .await;
    assert_eq!(s, 204, "{v}");
    assert!(driver.queue_status("8001").await.is_empty());
    assert!(config_lines(&mut driver, "queuebridge-queues.conf", "8001")
        .await
        .is_empty());
    let (s, _) = ps.get(&format!("/call_queues/{id}"), &admin).await;
    assert_eq!(s, 404);
    let (s, _) = bridge.call("GET", "/api/v1/queues/pbx1/8001", None).await;
    assert_eq!(s, 404);
    let (s, v) = ps
        .action(&format!("/call_queues/{id}/destroy"), &admin)
        .await;
    assert_eq!((s, code(&v)), (404, "NOT_FOUND"));
    let (s, v) = ps.action("/call_queues/x/destroy", &admin).await;
    assert_eq!((s, code(&v)), (400, "VALIDATE_FAILED"));
}

/// The line of `core show channels concise` of the channel with this uniqueid.
async fn channel_line(driver: &mut Driver, uniqueid: &str) -> Option<Vec<String>> {
    let r = driver.command("core show channels concise").await;
    let line = r
        .response
        .get_all("Output")
        .map(|l| l.split('!').map(str::to_owned).collect::<Vec<_>>())
        .find(|f| f.last().map(String::as_str) == Some(uniqueid));
    line
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_status_and_picking_a_chosen_caller() {
    let (_ast, mut driver, bridge) = start().await;
    let ps = Ps { bridge: &bridge };
    let tweber = ps.sign_in("tweber", "agent-pw").await;

    // BREAK = paused with reason BREAK — which the catalogue spells "Break" (reasons are one
    // rule on every front end: a configured one becomes its configured text) — in Asterisk,
    // and read back as BREAK; READY unpauses.
    let (s, v) = ps
        .post(
            "/call_queues/2/agents/203",
            &tweber,
            json!({"status": "BREAK"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let m = driver.member("support", AGENT3).await.expect("member");
    assert_eq!(
        (m.get("Paused"), m.get("PausedReason")),
        (Some("1"), Some("Break"))
    );
    let (_, v) = ps.get("/call_queues/2/agents/203", &tweber).await;
    assert_eq!(
        v,
        json!({"extension_number": "203", "display_name": "Thomas Weber", "skill_level": 2, "status": "BREAK"})
    );
    let (s, _) = ps
        .post(
            "/user/call_queues/2/agent",
            &tweber,
            json!({"status": "READY"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        driver
            .member("support", AGENT3)
            .await
            .expect("member")
            .get("Paused"),
        Some("0")
    );
    let (_, v) = ps.get("/user/call_queues/2/agent", &tweber).await;
    assert_eq!(v["status"], "READY");

    // LOGGED_IN / LOGGED_OUT add and remove the member; a colleague is refused.
    let (s, v) = ps
        .post(
            "/call_queues/1/agents/203",
            &tweber,
            json!({"status": "LOGGED_IN"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let m = driver.member("sales", AGENT3).await.expect("logged in");
    assert_eq!(m.get("Membership"), Some("dynamic"));
    let (s, v) = ps
        .post(
            "/call_queues/1/agents/201",
            &tweber,
            json!({"status": "LUNCH"}),
        )
        .await;
    assert_eq!((s, code(&v)), (403, "FORBIDDEN"), "{v}");
    assert_eq!(
        driver
            .member("sales", "Local/agent1@agents/n")
            .await
            .expect("agent1")
            .get("Paused"),
        Some("0"),
        "nothing changed"
    );
    let (s, _) = ps
        .post(
            "/call_queues/1/agents/203",
            &tweber,
            json!({"status": "LOGGED_OUT"}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(driver.member("sales", AGENT3).await.is_none());
    let (_, v) = ps.get("/call_queues/1/agents/203", &tweber).await;
    assert_eq!(v["status"], "LOGGED_OUT");
    let (_, v) = ps.get("/user/call_queues", &tweber).await;
    assert_eq!(v["items"].as_array().map(Vec::len), Some(2), "{v}");
    let boss = ps.sign_in("boss", "boss-pw").await;
    let (s, v) = ps
        .post(
            "/users/tweber/call_queues/2/agent",
            &boss,
            json!({"status": "WRAP_UP"}),
        )
        .await;
    assert_eq!(s, 200, "a supervisor sets a colleague's status: {v}");
    let (_, v) = ps.get("/users/tweber/call_queues/2/agent", &boss).await;
    assert_eq!(v["status"], "WRAP_UP");
    // The device state wins over the pause, as PortSIP shows a busy agent busy; a held agent
    // is still in their call (the schema has no ON_HOLD).
    for (state, want) in [
        ("INUSE", "OTHER_CALL"),
        ("ONHOLD", "OTHER_CALL"),
        ("UNAVAILABLE", "OFFLINE"),
    ] {
        driver.devstate("agent3", state).await;
        until(&format!("{state} read as {want}"), async || {
            let (_, v) = ps.get("/call_queues/2/agents/203", &tweber).await;
            (v["status"] == want).then_some(())
        })
        .await;
    }
    driver.devstate("agent3", "NOT_INUSE").await;
    let (s, _) = ps.get("/users/boss/call_queues", &tweber).await;
    assert_eq!(s, 403);

    // Pickup: two callers wait (the only agent is wrapping up); tweber takes the second.
    driver.command("database put qb talk_agent3 20").await;
    driver
        .call("support", ("1001", "First"), 60, 60, None)
        .await;
    until("the first caller waiting", async || {
        let (_, v) = ps.get("/call_queues/2/waiting", &tweber).await;
        (v["items"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    driver
        .call("support", ("1002", "Second"), 60, 60, None)
        .await;
    let waiting = until("two callers waiting", async || {
        let (_, v) = ps.get("/call_queues/2/waiting", &tweber).await;
        (v["items"].as_array().map(Vec::len) == Some(2)).then_some(v)
    })
    .await;
    assert_eq!(waiting["items"][0]["display_name"], "First");
    assert_eq!(waiting["items"][1]["extension_number"], "1002");
    let second = waiting["items"][1]["session_id"]
        .as_str()
        .expect("session")
        .to_owned();
    let (s, v) = ps
        .action("/call_queues/2/waiting/nope/pickup", &tweber)
        .await;
    assert_eq!((s, code(&v)), (404, "NOT_FOUND"), "{v}");
    let mmeyer = ps.sign_in("mmeyer", "agent-pw").await;
    let (s, _) = ps
        .action(&format!("/call_queues/2/waiting/{second}/pickup"), &mmeyer)
        .await;
    assert_eq!(s, 404, "mmeyer cannot see support");
    let (s, v) = ps
        .action(&format!("/call_queues/2/waiting/{second}/pickup"), &tweber)
        .await;
    assert_eq!(s, 200, "{v}");
    let entries: Vec<Message> = driver
        .queue_status("support")
        .await
        .into_iter()
        .filter(|m| m.event_name() == Some("QueueEntry"))
        .collect();
    assert_eq!(entries.len(), 1, "the first caller keeps waiting");
    assert_eq!(entries[0].get("CallerIDName"), Some("First"));
    let line = until("the second caller bridged to agent3", async || {
        channel_line(&mut driver, &second).await.filter(|f| {
            f.get(5).map(String::as_str) == Some("Dial") && f.get(12).is_some_and(|b| !b.is_empty())
        })
    })
    .await;
    assert!(line[6].contains("agent3"), "dialled agent3: {line:?}");
    let (_, v) = ps.get("/call_queues/2/waiting", &tweber).await;
    assert_eq!(
        v["items"].as_array().map(Vec::len),
        Some(1),
        "every front end sees it: {v}"
    );
    driver.command("channel request hangup all").await;

    // A queue call answered by agent3 reads as QUEUE_CALL.
    until("support empty", async || {
        let (_, v) = ps.get("/call_queues/2/waiting", &tweber).await;
        (v["items"].as_array().map(Vec::len) == Some(0)).then_some(())
    })
    .await;
    let (s, _) = ps
        .post(
            "/user/call_queues/2/agent",
            &tweber,
            json!({"status": "READY"}),
        )
        .await;
    assert_eq!(s, 200);
    driver
        .call("support", ("1003", "Third"), 30, 60, None)
        .await;
    until("agent3 in a queue call", async || {
        let (_, v) = ps.get("/call_queues/2/agents/203", &tweber).await;
        (v["status"] == "QUEUE_CALL").then_some(())
    })
    .await;
    driver.command("channel request hangup all").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_servers_come_and_go_at_run_time() {
    let (ast, _driver, bridge) = start().await;
    let branch = Asterisk::start();
    let ps = Ps { bridge: &bridge };
    let admin = ps.sign_in("admin", "admin-pw").await;

    let (s, v) = ps.get("/call_queue_servers", &admin).await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"count": 1, "items": [{"id": "pbx1", "name": "pbx1", "enabled": true,
               "type": "INTERNAL", "ipv4": "127.0.0.1"}]})
    );
    for bad in [
        json!({"name": "b"}),
        json!({"name": "", "ipv4": "127.0.0.1"}),
        json!({"name": "b", "ipv4": "300.1.1.1"}),
        json!({"name": "b", "ipv4": "127.0.0.1", "x": 1}),
    ] {
        let (s, v) = ps.post("/call_queue_servers", &admin, bad.clone()).await;
        assert_eq!((s, code(&v)), (400, "VALIDATE_FAILED"), "{bad}: {v}");
    }
    let (s, v) = ps
        .post("/call_queue_servers", &admin,
              json!({"name": "branch", "enabled": true, "ipv4": "127.0.0.1", "ami_port": branch.port}))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().expect("id").to_owned();
    let (s, text) = ps
        .raw(Method::GET, "/call_queue_servers", &admin, None)
        .await;
    assert_eq!(s, 200);
    assert!(
        !text.contains(common::asterisk::SECRET),
        "no secret: {text}"
    );
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["count"], 2);
    let (_, one) = ps.get(&format!("/call_queue_servers/{id}"), &admin).await;
    assert_eq!(one["type"], "EXTERNAL");
    let (_, v) = ps
        .get("/call_queue_servers?filter=type%20eq%20'EXTERNAL'", &admin)
        .await;
    assert_eq!(v["count"], 1);

    let queues = async |want: u64| {
        until(&format!("{want} queues"), async || {
            let (_, v) = ps.get("/call_queues", &admin).await;
            (v["count"] == want).then_some(v)
        })
        .await
    };
    let v = queues(4).await;
    let ring_times: Vec<&Value> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|q| &q["ring_time"])
        .collect();
    assert_eq!(
        ring_times,
        [4, 5, 4, 5],
        "read from both servers' queues.conf: {}",
        bridge.log()
    );
    let status = until("the branch online", async || {
        let (_, v) = ps
            .get(&format!("/call_queue_servers/{id}/status"), &admin)
            .await;
        (v["status"] == "ONLINE").then_some(v)
    })
    .await;
    let memory = status["memory_usage"].as_u64().expect("memory");
    assert!((1..=100).contains(&memory), "{status}");
    assert_eq!(status["cpu_usage"], 0);
    let file = bridge.state_dir.path().join("servers.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&file)
            .expect("servers.json")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Off and on again.
    let (s, _) = ps
        .post(
            &format!("/call_queue_servers/{id}"),
            &admin,
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(s, 200);
    queues(2).await;
    let (_, v) = ps
        .get(&format!("/call_queue_servers/{id}/status"), &admin)
        .await;
    assert_eq!(v["status"], "OFFLINE");
    let (s, _) = ps
        .post(
            &format!("/call_queue_servers/{id}"),
            &admin,
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(s, 200);
    queues(4).await;
    let (s, v) = ps
        .post(
            &format!("/call_queue_servers/{id}"),
            &admin,
            json!({"enabled": "yes"}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "VALIDATE_FAILED"));

    // It survives a restart of queuebridge.
    let (_, state_dir) = bridge.terminate();
    let bridge = Bridge::start_extra_in(ast.port, &users(), state_dir);
    let ps = Ps { bridge: &bridge };
    let admin = ps.sign_in("admin", "admin-pw").await;
    until("four queues after the restart", async || {
        let (_, v) = ps.get("/call_queues", &admin).await;
        (v["count"] == 4).then_some(())
    })
    .await;

    // The configured server stays; the added one goes with its queues.
    // (400: PortSIP's file documents 204, 400 and 404 for this operation.)
    let (s, v) = ps.action("/call_queue_servers/pbx1/destroy", &admin).await;
    assert_eq!((s, code(&v)), (400, "VALIDATE_FAILED"), "{v}");
    let (s, v) = ps
        .action("/call_queue_servers/no%20such/destroy", &admin)
        .await;
    assert_eq!(
        (s, v["errors"][0]["message"].as_str()),
        (400, Some("Invalid server id supplied"))
    );
    let (s, v) = ps
        .action("/call_queue_servers/nosuch/destroy", &admin)
        .await;
    assert_eq!(
        (s, v["errors"][0]["message"].as_str()),
        (404, Some("Server not found"))
    );
    let (s, _) = ps
        .action(&format!("/call_queue_servers/{id}/destroy"), &admin)
        .await;
    assert_eq!(s, 204);
    let (_, v) = ps.get("/call_queues", &admin).await;
    assert_eq!(v["count"], 2, "its queues vanished with it: {v}");
    let (_, v) = ps.get("/call_queue_servers", &admin).await;
    assert_eq!(v["count"], 1);
}
