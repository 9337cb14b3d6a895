//! The Telecom X dialect against a real Asterisk: tokens (query and cookie), queue, callers and
//! members equal to Asterisk's QueueStatus, join/update/leave visible in Asterisk with the
//! permissions holding, and the call history with its filters, across a restart.

mod common;

use reqwest::Method;
use serde_json::{json, Value};

use common::{dialect_users, started, until, Asterisk, Bridge};

const SALES: &str = "000000000000000000000001";
const SUPPORT: &str = "000000000000000000000002";
const AGENT3: &str = "Local/agent3@agents/n";

struct Tx<'a> {
    bridge: &'a Bridge,
}

impl Tx<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .bridge
            .http
            .request(method, format!("{}{path}", self.bridge.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn login(&self, user: &str, password: &str) -> String {
        let (s, v) = self
            .call(
                Method::POST,
                "/auth/login",
                Some(json!({"username": user, "password": password})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().expect("token").to_owned()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_by_query_and_cookie_expire_on_logout() {
    let ast = Asterisk::start();
    let bridge = Bridge::start_extra(ast.port, &dialect_users());
    bridge.wait_health(200).await;
    let tx = Tx { bridge: &bridge };

    let (s, v) = tx
        .call(
            Method::POST,
            "/auth/login",
            Some(json!({"username": "tweber", "password": "x"})),
        )
        .await;
    assert_eq!((s, v["error"].clone()), (401, json!("credentials_invalid")));
    let (s, v) = tx
        .call(
            Method::POST,
            "/auth/login",
            Some(json!({"username": "tweber"})),
        )
        .await;
    assert_eq!((s, v["error"].clone()), (400, json!("bad_request")));
    let r = bridge
        .http
        .post(format!("{}/auth/login", bridge.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);

    let (s, v) = tx
        .call(
            Method::POST,
            "/auth/login",
            Some(json!({"username": "tweber", "password": "agent-pw"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["expiresInMinutes"], 15);
    assert_eq!(v["accessLevel"], "PERSONAL");
    let employee = v["employee"].as_str().expect("employee").to_owned();
    assert_eq!(employee.len(), 24);
    let token = v["token"].as_str().expect("token").to_owned();
    let (s, v) = tx.get(&format!("/auth/validateToken?token={token}")).await;
    assert_eq!((s, v["employee"].clone()), (200, json!(employee)));
    let (s, _) = tx.get("/auth/validateToken?token=nope&simple=true").await;
    assert_eq!(s, 403);
    let (s, _) = tx
        .get(&format!(
            "/auth/validateToken?token={token}&simple=true&extend=true"
        ))
        .await;
    assert_eq!(s, 200);

    // The cookie carries the token too.
    let r = bridge
        .http
        .get(format!(
            "{}/auth/login?username=boss&password=boss-pw&cookie=true&persist=true",
            bridge.base
        ))
        .send()
        .await
        .expect("login");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        (v["expiresInMinutes"].clone(), v["accessLevel"].clone()),
        (json!(-1), json!("MANAGER"))
    );
    let pair = cookie.split(';').next().expect("pair").to_owned();
    let r = bridge
        .http
        .get(format!("{}/pbx/app/queues", bridge.base))
        .header("cookie", format!("theme=dark; {pair}"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);

    // No token, a junk token, a revoked token.
    let (s, v) = tx.get("/pbx/app/queues").await;
    assert_eq!((s, v["error"].clone()), (401, json!("credentials_invalid")));
    let (s, v) = tx.get("/pbx/app/queues?token=junk").await;
    assert_eq!((s, v["error"].clone()), (401, json!("expired")));
    let second = tx.login("tweber", "agent-pw").await;
    let (s, v) = tx.get(&format!("/auth/logout?token={token}")).await;
    assert_eq!((s, v), (200, json!({"success": true})));
    for t in [&token, &second] {
        let (s, v) = tx.get(&format!("/pbx/app/queues?token={t}")).await;
        assert_eq!(
            (s, v["error"].clone()),
            (401, json!("expired")),
            "logout ends every token"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_callers_members_and_history_equal_asterisk() {
    let (ast, mut driver, bridge) = started(&dialect_users()).await;
    let tx = Tx { bridge: &bridge };
    let agent = tx.login("tweber", "agent-pw").await;
    let colleague = tx.login("mmeyer", "agent-pw").await;
    let boss = tx.login("boss", "boss-pw").await;

    // The queue object and visibility.
    let (s, q) = tx
        .get(&format!("/pbx/queue/{SALES}?token={boss}&members=true"))
        .await;
    assert_eq!(s, 200, "{q}");
    assert_eq!(
        (q["_id"].clone(), q["type"].clone(), q["strategy"].clone()),
        (json!(SALES), json!("QUEUE"), json!("CONCURRENT"))
    );
    let members = q["members"].as_array().expect("members");
    assert_eq!(members.len(), 2);
    assert!(members
        .iter()
        .all(|m| m["permanent"] == true && m["priority"] == 1));
    let (s, v) = tx
        .get(&format!("/pbx/queue/{SUPPORT}?token={colleague}"))
        .await;
    assert_eq!((s, v["error"].clone()), (403, json!("access_denied")));
    for bad in [
        "000000000000000000000063",
        "nothex",
        "00000000000000000000000g",
    ] {
        let (s, v) = tx
            .get(&format!("/pbx/queue/{bad}/callers?token={boss}"))
            .await;
        assert_eq!((s, v["error"].clone()), (404, json!("id")), "{bad}");
    }
    let (s, apps) = tx.get(&format!("/pbx/app/queues?token={agent}")).await;
    assert_eq!(s, 200);
    let sales = apps
        .as_array()
        .and_then(|a| a.iter().find(|q| q["_id"] == SALES))
        .expect("sales");
    assert_eq!(
        (
            sales["dynamic"].clone(),
            sales["member"].clone(),
            sales["members"].clone()
        ),
        (json!(true), json!(false), json!(2))
    );

    // Callers: one answered and talking in sales, one private caller waiting in support.
    driver.devstate("agent1", "NOT_INUSE").await;
    driver.devstate("agent2", "NOT_INUSE").await;
    driver.devstate("agent3", "NOT_INUSE").await;
    driver.agent_mode("agent2", Some("noanswer")).await;
    driver.agent_mode("agent3", Some("noanswer")).await;
    driver.command("database put qb talk_agent1 4").await;
    driver
        .call("sales", ("5551001", "Alice"), 60, 60, None)
        .await;
    driver
        .call_with(
            "support",
            ("5551002", "Bob"),
            60,
            60,
            &[("PRIVATE", "1"), ("QTIMEOUT", "6")],
        )
        .await;
    let answered = until("Alice answered and listed", async || {
        let (_, v) = tx
            .get(&format!("/pbx/queue/{SALES}/callers?token={boss}"))
            .await;
        let c = v.as_array()?.first()?.clone();
        (!c["answered"].is_null()).then_some(c)
    })
    .await;
    assert_eq!(
        (answered["number"].clone(), answered["name"].clone()),
        (json!("5551001"), json!("Alice"))
    );
    assert_eq!(answered["answeredByNumber"], "201");
    // Answered and talking is not "waiting to be answered": a client counting QUEUED counts
    // only the callers who wait.
    assert_eq!(answered["state"], "ANSWERED");
    assert_eq!(answered["presentation"], "sales");
    assert_eq!(answered["privacy"], false);
    let waiting = until("Bob waits in support", async || {
        let (_, v) = tx
            .get(&format!("/pbx/queue/{SUPPORT}/callers?token={boss}"))
            .await;
        (!v.as_array()?.is_empty()).then_some(v)
    })
    .await;
    let truth = driver.queue_status("support").await;
    let entry = truth
        .iter()
        .find(|m| m.event_name() == Some("QueueEntry"))
        .expect("Bob waits in Asterisk");
    let bob = &waiting[0];
    // `<channel-id>-<hostname>`: Asterisk runs on this machine (127.0.0.1), so its name.
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    assert_eq!(
        bob["_id"],
        format!("{}-{host}", entry.get("Uniqueid").unwrap_or_default())
    );
    assert_eq!(
        (
            bob["state"].clone(),
            bob["number"].clone(),
            bob["privacy"].clone()
        ),
        (json!("QUEUED"), json!("5551002"), json!(true))
    );
    assert!(bob["answered"].is_null());
    assert_eq!(
        bob["entered"].as_str().map(str::len),
        Some(24),
        "ISO date with milliseconds"
    );

    // A path without its queue id is the client's mistake.
    for path in [
        "/pbx/queue",
        "/pbx/queue/",
        "/pbx/queue//callers",
        "/pbx/queue//member/x",
    ] {
        let (s, v) = tx.get(&format!("{path}?token={boss}")).await;
        assert_eq!(
            (s, v["error"].clone()),
            (400, json!("bad_request")),
            "{path}: {v}"
        );
    }
    // A supervisor who is not an agent (no interface) cannot join; they are told why.
    let watcher = tx.login("watcher", "boss-pw").await;
    let (s, v) = tx
        .call(
            Method::POST,
            &format!("/pbx/queue/{SALES}/member?token={watcher}"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("not an agent"), "{v}");

    // An agent cannot choose their own priority (penalty): that is a supervisor's decision,
    // in every front end; nothing reaches Asterisk.
    let (s, v) = tx
        .call(
            Method::POST,
            &format!("/pbx/queue/{SALES}/member?token={agent}"),
            Some(json!({"priority": 3})),
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (403, json!("access_denied")),
        "{v}"
    );
    assert!(driver.member("sales", AGENT3).await.is_none());
    // Join (self, with the configured penalty 0 = priority 1), visible in Asterisk.
    let (s, v) = tx
        .call(
            Method::POST,
            &format!("/pbx/queue/{SALES}/member?token={agent}"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let me = v[0].clone();
    assert_eq!(
        (
            me["name"].clone(),
            me["priority"].clone(),
            me["permanent"].clone()
        ),
        (json!("Thomas Weber"), json!(1), json!(false))
    );
    let m = driver
        .member("sales", AGENT3)
        .await
        .expect("joined in Asterisk");
    assert_eq!(
        (m.get("Membership"), m.get("Penalty")),
        (Some("dynamic"), Some("0"))
    );
    let member_id = me["_id"].as_str().expect("_id").to_owned();

    // Update: priority is a supervisor's decision.
    let path = format!("/pbx/queue/{SALES}/member/{member_id}");
    let (s, v) = tx
        .call(
            Method::POST,
            &format!("{path}?token={agent}"),
            Some(json!({"priority": 5})),
        )
        .await;
    assert_eq!((s, v["error"].clone()), (403, json!("access_denied")));
    let (s, v) = tx.get(&format!("{path}?token={boss}&priority=5")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["priority"], 5);
    assert_eq!(
        driver
            .member("sales", AGENT3)
            .await
            .and_then(|m| m.get("Penalty").map(str::to_owned)),
        Some("4".into())
    );
    for (body, what) in [
        (json!({"priority": 0}), "priority 0"),
        (json!({"priority": "x"}), "not a number"),
        (json!({"colour": 1}), "unknown field"),
    ] {
        let (s, v) = tx
            .call(Method::POST, &format!("{path}?token={boss}"), Some(body))
            .await;
        assert_eq!(
            (s, v["error"].clone()),
            (400, json!("bad_request")),
            "{what}"
        );
    }

    // Leave: not a colleague's entry, not a permanent one; one's own, yes.
    let (s, v) = tx
        .call(Method::DELETE, &format!("{path}?token={colleague}"), None)
        .await;
    assert_eq!((s, v["error"].clone()), (403, json!("access_denied")));
    assert!(
        driver.member("sales", AGENT3).await.is_some(),
        "nothing changed in Asterisk"
    );
    let (_, list) = tx
        .get(&format!("/pbx/queue/{SALES}/member?token={boss}"))
        .await;
    let permanent = list
        .as_array()
        .and_then(|l| l.iter().find(|m| m["permanent"] == true))
        .expect("a static member");
    let (s, v) = tx
        .call(
            Method::DELETE,
            &format!(
                "/pbx/queue/{SALES}/member/{}?token={boss}",
                permanent["_id"].as_str().unwrap_or_default()
            ),
            None,
        )
        .await;
    assert_eq!((s, v["error"].clone()), (403, json!("dynamic")));
    let (s, v) = tx
        .call(
            Method::DELETE,
            &format!("/pbx/queue/{SALES}/member/{SALES}?token={boss}"),
            None,
        )
        .await;
    assert_eq!((s, v["error"].clone()), (404, json!("member")));
    let (s, v) = tx
        .call(Method::DELETE, &format!("{path}?token={agent}"), None)
        .await;
    assert_eq!((s, v), (200, json!({"success": true})));
    assert!(driver.member("sales", AGENT3).await.is_none());
    // The GET join form, by a supervisor for the agent.
    let ext = me["extension"].as_str().expect("extension");
    let (s, v) = tx
        .get(&format!(
            "/pbx/queue/{SALES}/member/join?token={boss}&extension={ext}"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(driver.member("sales", AGENT3).await.is_some());
    bridge.assert_exact(&mut driver, "pbx1", "sales").await;

    // History: Bob timed out, Alice was answered, Carol hung up while waiting.
    driver
        .call_with("support", ("5551003", "Carol"), 60, 2, &[])
        .await;
    let mut polls = 0;
    let history = until("three calls in the history", async || {
        polls += 1;
        let (_, sup) = tx
            .get(&format!("/pbx/queue/{SUPPORT}/calls?token={boss}"))
            .await;
        let (_, sal) = tx
            .get(&format!("/pbx/queue/{SALES}/calls?token={boss}"))
            .await;
        let statuses = |v: &Value| -> Vec<String> {
            v["calls"].as_array().map_or(Vec::new(), |c| {
                c.iter()
                    .map(|c| c["status"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
        };
        let (a, b) = (statuses(&sup), statuses(&sal));
        // Shown only if the test fails.
        eprintln!("history: support {a:?}, sales {b:?}");
        if polls == 100 {
            // For a rare failure (Alice's answered call missing): what Asterisk still has up,
            // queuebridge's view of sales, and its log.
            let channels = driver.command("core show channels concise").await;
            let output: Vec<&str> = channels.response.get_all("Output").collect();
            eprintln!("Asterisk's channels:\n{}", output.join("\n"));
            let (_, ours) = tx
                .get(&format!("/pbx/queue/{SALES}/callers?token={boss}"))
                .await;
            eprintln!("queuebridge's sales callers: {ours}");
            eprintln!("queuebridge's log:\n{}", bridge.log());
        }
        (a.contains(&"TIMEOUT".to_owned())
            && a.contains(&"CANCELLED".to_owned())
            && b == ["ANSWERED"])
        .then_some((sup, sal))
    })
    .await;
    let (support_calls, sales_calls) = history;
    assert_eq!(support_calls["total"], 2);
    let alice = &sales_calls["calls"][0];
    assert_eq!(
        (alice["aNumber"].clone(), alice["aNumberName"].clone()),
        (json!("5551001"), json!("Alice"))
    );
    assert_eq!(alice["answeredByExtensionName"], "mmeyer");
    assert!(
        alice["talkSeconds"]
            .as_i64()
            .is_some_and(|t| (3..=6).contains(&t)),
        "{alice}"
    );
    let (_, v) = tx
        .get(&format!(
            "/pbx/queue/{SUPPORT}/calls?token={boss}&status=!TIMEOUT"
        ))
        .await;
    assert_eq!(
        (v["total"].clone(), v["calls"][0]["aNumber"].clone()),
        (json!(1), json!("5551003"))
    );
    let (_, v) = tx
        .get(&format!(
            "/pbx/queue/{SUPPORT}/calls?token={boss}&reverse=true&limit=1"
        ))
        .await;
    let (_, all) = tx
        .get(&format!("/pbx/queue/{SUPPORT}/calls?token={boss}"))
        .await;
    assert_eq!(
        (v["limit"].clone(), v["total"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(
        v["calls"][0], all["calls"][1],
        "newest first is the reverse order"
    );
    let (_, v) = tx
        .get(&format!(
            "/pbx/queue/{SUPPORT}/calls?token={boss}&from=2000-01-01&to=2000-01-02"
        ))
        .await;
    assert_eq!(v["total"], 0);
    for bad in [
        "limit=0",
        "limit=501",
        "offset=-1",
        "status=LOST",
        "from=yesterday",
        "reverse=maybe",
    ] {
        let (s, v) = tx
            .get(&format!("/pbx/queue/{SUPPORT}/calls?token={boss}&{bad}"))
            .await;
        assert_eq!(
            (s, v["error"].clone()),
            (400, json!("bad_request")),
            "{bad}"
        );
    }
    // Today's counts on the member list come from the history.
    let (_, list) = tx
        .get(&format!("/pbx/queue/{SALES}/member?token={boss}"))
        .await;
    let one = list
        .as_array()
        .and_then(|l| l.iter().find(|m| m["name"] == "mmeyer"))
        .expect("mmeyer");
    assert_eq!(one["calls"], 1);
    assert!(one["lastCallEnded"].is_string());

    // The history survives a restart of queuebridge.
    let (exit, state_dir) = bridge.terminate();
    assert!(exit.success());
    let bridge = Bridge::start_extra_in(ast.port, &dialect_users(), state_dir);
    bridge.wait_health(200).await;
    let tx = Tx { bridge: &bridge };
    let boss = tx.login("boss", "boss-pw").await;
    let (_, v) = tx
        .get(&format!("/pbx/queue/{SUPPORT}/calls?token={boss}"))
        .await;
    assert_eq!(v["total"], 2, "{v}");
}
