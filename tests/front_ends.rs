//! The front ends' auth, errors and views through `router(state).oneshot(...)`: no socket, no
//! Asterisk, no root. The state is folded from plain inputs (a QueueStatus snapshot) into the
//! daemon's own hub; the one configured AMI server points at a closed port, so its link stays
//! down and nothing but these inputs moves the state. What real Asterisk adds (commands, events,
//! exactness against QueueStatus) is proven by each dialect's own end-to-end test.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use queuebridge::ami::Message;
use queuebridge::config::Config;
use queuebridge::state::{Input, LinkChange, QueueStatus, Scope, What};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const TOKEN: &str = "front-end-token-0123456789";

struct Front {
    router: axum::Router,
    _dir: tempfile::TempDir,
    _shutdown: CancellationToken,
}

fn message(pairs: &[(&str, &str)]) -> Message {
    pairs.iter().copied().collect()
}

fn params(queue: &str) -> Message {
    message(&[
        ("Event", "QueueParams"),
        ("Queue", queue),
        ("Max", "0"),
        ("Strategy", "ringall"),
        ("Calls", "0"),
        ("Holdtime", "0"),
        ("TalkTime", "0"),
        ("Completed", "0"),
        ("Abandoned", "0"),
        ("ServiceLevel", "60"),
        ("ServicelevelPerf", "0.0"),
        ("Weight", "0"),
    ])
}

fn member(queue: &str, interface: &str, name: &str, status: &str) -> Message {
    message(&[
        ("Event", "QueueMember"),
        ("Queue", queue),
        ("Name", name),
        ("Location", interface),
        ("StateInterface", interface),
        ("Membership", "dynamic"),
        ("Penalty", "0"),
        ("CallsTaken", "0"),
        ("LastCall", "0"),
        ("LastPause", "0"),
        ("LoginTime", "1763700000"),
        ("InCall", "0"),
        ("Status", status),
        ("Paused", "0"),
        ("PausedReason", ""),
        ("Wrapuptime", "0"),
    ])
}

/// Boss (admin), Thomas (an agent of sales, logged in), Lena (an agent of sales, not logged
/// in) and Otto (an agent of support, in a call).
async fn front() -> Front {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = queuebridge::access::hash_password("pw").expect("hash");
    let user = |name: &str, roles: &str, iface: &str, ext: &str, queue: &str| {
        let iface = match iface {
            "" => String::new(),
            i => format!("interface = \"{i}\"\n"),
        };
        let queues = match queue {
            "" => String::new(),
            q => format!("queues = [\"{q}\"]\n"),
        };
        format!(
            "[[users]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\nroles = [{roles}]\n\
             {iface}extension = \"{ext}\"\n{queues}"
        )
    };
    let text = format!(
        "state_dir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\
         [[ami]]\nid = \"pbx1\"\nhost = \"127.0.0.1\"\nport = 1\nusername = \"u\"\nsecret = \"s\"\n\
         reconnect_max = 60.0\n\
         [[queues]]\nserver = \"pbx1\"\nname = \"sales\"\nid = 1\n\
         [[queues]]\nserver = \"pbx1\"\nname = \"support\"\nid = 2\n{}{}{}{}",
        dir.path().display().to_string(),
        user("boss", "\"admin\"", "", "100", ""),
        user("tweber", "", "Local/201@agents/n", "201", "sales"),
        user("lena", "", "Local/203@agents/n", "203", "sales"),
        user("otto", "", "Local/202@agents/n", "202", "support"),
    );
    let config = Config::parse(&text, "front_ends").expect("config");
    let shutdown = CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let parts = queuebridge::wiring::start(
        &config,
        queuebridge::systemd::Notifier::silent(),
        &tasks,
        &shutdown,
    )
    .expect("parts");
    let input = |what| Input {
        server: Arc::from("pbx1"),
        at_ms: 1_763_700_100_000,
        what,
    };
    parts.hub.apply_all(&[
        input(What::Link(LinkChange::Up)),
        input(What::Snapshot(QueueStatus {
            scope: Scope::All,
            items: vec![
                params("sales"),
                member("sales", "Local/201@agents/n", "Agent 201", "1"),
                params("support"),
                member("support", "Local/202@agents/n", "Agent 202", "2"),
            ],
        })),
    ]);
    let app = queuebridge::http::AppState::new(&parts, &config, shutdown.clone());
    Front {
        router: queuebridge::http::router(app),
        _dir: dir,
        _shutdown: shutdown,
    }
}

impl Front {
    /// One request; the JSON body (or `Null`), the status and the `X-Request-Id`.
    async fn call(&self, method: &str, path: &str, auth: Option<&str>, body: Value) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .header("user-agent", "front-end-test");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let body = match body {
            Value::Null => Body::empty(),
            v => Body::from(v.to_string()),
        };
        let response = self
            .router
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        Answer {
            status,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            request_id,
        }
    }

    async fn get(&self, path: &str, auth: Option<&str>) -> Answer {
        self.call("GET", path, auth, Value::Null).await
    }

    async fn token(&self, path: &str, field: &str, user: &str) -> String {
        let a = self
            .call(
                "POST",
                path,
                None,
                json!({"username": user, "password": "pw"}),
            )
            .await;
        a.json[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} from {path}: {:?}", a.json))
            .to_owned()
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    json: Value,
    request_id: Option<String>,
}

#[tokio::test]
async fn native_api_needs_its_token_and_shows_device_states_by_number_and_name() {
    let f = front().await;
    let a = f.get("/api/v1/queues", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json["error"], "unauthorized");
    assert!(a.request_id.is_some(), "every answer carries a request id");
    let a = f.get("/api/v1/queues", Some("Bearer wrong")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = f
        .get(
            "/api/v1/queues/pbx1/support",
            Some(&format!("Bearer {TOKEN}")),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json);
    let m = &a.json["members"][0];
    assert_eq!(m["interface"], "Local/202@agents/n");
    assert_eq!(
        (m["status"].clone(), m["status_name"].clone()),
        (json!(2), json!("In use"))
    );
    assert_eq!(m["membership"], "dynamic");
    // healthz without the token says only up or down.
    let a = f.get("/healthz", None).await;
    assert!(a.json.get("servers").is_none(), "{:?}", a.json);
}

#[tokio::test]
async fn yeastar_answers_with_its_error_codes_and_shows_only_visible_queues() {
    let f = front().await;
    let a = f.get("/openapi/v1.0/queue/list", None).await;
    assert_eq!(a.json, json!({"errcode": 10004, "errmsg": "TOKEN EXPIRED"}));
    let a = f
        .call(
            "POST",
            "/openapi/v1.0/get_token",
            None,
            json!({"username": "tweber", "password": "nope"}),
        )
        .await;
    assert_ne!(a.json["errcode"], 0, "{:?}", a.json);
    assert!(a.json.get("access_token").is_none());

    let agent = f
        .token("/openapi/v1.0/get_token", "access_token", "tweber")
        .await;
    let a = f
        .get(
            &format!("/openapi/v1.0/queue/list?access_token={agent}"),
            None,
        )
        .await;
    assert_eq!(a.json["errcode"], 0, "{:?}", a.json);
    let names: Vec<&str> = a.json["queue_list"]
        .as_array()
        .expect("queue_list")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(names, ["sales"], "an agent sees their own queues only");
    let a = f
        .get(
            &format!("/openapi/v1.0/queue/get?access_token={agent}&id=2"),
            None,
        )
        .await;
    assert_eq!(a.json["errcode"], 20001, "{:?}", a.json);
    let a = f
        .get(
            &format!("/openapi/v1.0/queue/get?access_token={agent}&id=99"),
            None,
        )
        .await;
    assert_eq!(a.json["errcode"], 40004, "{:?}", a.json);
    // Pausing in a queue the agent cannot see is refused before any command is built.
    let a = f
        .get(
            &format!(
                "/openapi/v1.0/queue/agent_pause?access_token={agent}&ext_ids=201&queue_id=2&operation=pause"
            ),
            None,
        )
        .await;
    assert_eq!(a.json["errcode"], 20001, "{:?}", a.json);

    let boss = f
        .token("/openapi/v1.0/get_token", "access_token", "boss")
        .await;
    let a = f
        .get(
            &format!("/openapi/v1.0/queue/agent_status?access_token={boss}&id=2"),
            None,
        )
        .await;
    assert_eq!(a.json["errcode"], 0, "{:?}", a.json);
    let otto = &a.json["data"][0];
    assert_eq!(
        (otto["number"].clone(), otto["call_status"].clone()),
        (json!("202"), json!(2))
    );
}

#[tokio::test]
async fn telecomx_tells_a_missing_token_from_an_expired_one_and_hides_other_queues() {
    let f = front().await;
    let a = f.get("/pbx/app/queues", None).await;
    assert_eq!(
        (a.status, a.json["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("credentials_invalid"))
    );
    let a = f.get("/pbx/app/queues?token=0123", None).await;
    assert_eq!(
        (a.status, a.json["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("expired"))
    );

    let agent = f.token("/auth/login", "token", "tweber").await;
    let support = format!("{:024x}", 2);
    let a = f
        .get(&format!("/pbx/queue/{support}?token={agent}"), None)
        .await;
    assert_eq!(
        (a.status, a.json["error"].clone()),
        (StatusCode::FORBIDDEN, json!("access_denied"))
    );
    let a = f
        .get(&format!("/pbx/queue/{:024x}?token={agent}", 99), None)
        .await;
    assert_eq!(
        (a.status, a.json["error"].clone()),
        (StatusCode::NOT_FOUND, json!("id"))
    );
    let a = f.get("/pbx/queue/nothex?token=x", None).await;
    assert_eq!(
        a.status,
        StatusCode::UNAUTHORIZED,
        "the token is checked before the id"
    );

    let a = f
        .get(
            &format!("/pbx/queue/{:024x}?token={agent}&members=true", 1),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json);
    let names: Vec<&str> = a.json["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    // The configured user's display name, not Asterisk's member name.
    assert_eq!(names, ["tweber"], "{:?}", a.json);
}

#[tokio::test]
async fn portsip_signs_in_checks_admins_and_lists_logged_out_agents_too() {
    let f = front().await;
    let a = f.get("/api/call_queues", None).await;
    assert_eq!(
        (a.status, a.json["errors"][0]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("UNAUTHORIZED"))
    );

    let agent = f.token("/api/auth/sign_in", "access_token", "tweber").await;
    let bearer = format!("Bearer {agent}");
    let a = f.get("/api/call_queue_servers", Some(&bearer)).await;
    assert_eq!(
        (a.status, a.json["errors"][0]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("FORBIDDEN"))
    );
    let a = f.get("/api/call_queues/1/agents", Some(&bearer)).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json);
    let numbers: Vec<&str> = a.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["extension_number"].as_str())
        .collect();
    assert_eq!(
        numbers,
        ["201", "203"],
        "the member, then the configured agent not logged in"
    );
    let a = f.get("/api/call_queues/2", Some(&bearer)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{:?}", a.json);

    // One dialect's token is nobody on another.
    let yeastar = f
        .token("/openapi/v1.0/get_token", "access_token", "boss")
        .await;
    let a = f
        .get("/api/call_queues", Some(&format!("Bearer {yeastar}")))
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = f.get(&format!("/pbx/app/queues?token={agent}"), None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    let boss = f.token("/api/auth/sign_in", "access_token", "boss").await;
    let a = f
        .get("/api/call_queue_servers", Some(&format!("Bearer {boss}")))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json);
}

/// Every read endpoint of every dialect answers an admin with its success shape, and never a
/// server error; the snapshot's queues are what they show.
#[tokio::test]
async fn every_read_endpoint_answers_an_admin() {
    let f = front().await;
    let native = format!("Bearer {TOKEN}");
    for path in [
        "/api/v1/queues",
        "/api/v1/queues/sales",
        "/api/v1/queues/pbx1/sales",
        "/api/v1/pause_reasons",
        "/healthz",
    ] {
        let a = f.get(path, Some(&native)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {:?}", a.json);
    }

    let yeastar = f
        .token("/openapi/v1.0/get_token", "access_token", "boss")
        .await;
    for path in [
        "queue_pause_reason/list",
        "queue/list",
        "queue/search?search_value=sal",
        "queue/get?id=1",
        "queue/query?ids=1,2",
        "queue/call_status?id=1",
        "queue/agent_status?id=1",
    ] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let a = f
            .get(
                &format!("/openapi/v1.0/{path}{sep}access_token={yeastar}"),
                None,
            )
            .await;
        assert_eq!(
            (a.status, a.json["errcode"].clone()),
            (StatusCode::OK, json!(0)),
            "{path}: {:?}",
            a.json
        );
    }

    let telecomx = f.token("/auth/login", "token", "boss").await;
    let sales = format!("{:024x}", 1);
    for path in [
        "/auth/validateToken".to_owned(),
        "/pbx/app/queues".to_owned(),
        format!("/pbx/queue/{sales}"),
        format!("/pbx/queue/{sales}/callers"),
        format!("/pbx/queue/{sales}/calls"),
        format!("/pbx/queue/{sales}/member"),
    ] {
        let a = f.get(&format!("{path}?token={telecomx}"), None).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {:?}", a.json);
    }

    let portsip = format!(
        "Bearer {}",
        f.token("/api/auth/sign_in", "access_token", "boss").await
    );
    for path in [
        "/api/auth/user",
        "/api/call_queues",
        "/api/call_queues/1",
        "/api/call_queues/1/status",
        "/api/call_queues/1/waiting",
        "/api/call_queues/1/agents",
        "/api/call_queues/1/agents/201",
        "/api/users/tweber/call_queues",
        "/api/users/tweber/call_queues/1/agent",
        "/api/call_queue_servers",
        "/api/call_queue_servers/pbx1",
    ] {
        let a = f.get(path, Some(&portsip)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {:?}", a.json);
    }
}

/// With the AMI link down, a command is answered at once with each dialect's "unavailable" —
/// never left hanging, never reported done.
#[tokio::test]
async fn a_command_while_asterisk_is_unreachable_is_answered_not_connected() {
    let f = front().await;
    let a = f
        .call(
            "POST",
            "/api/v1/queues/pbx1/sales/members/Local%2F201%40agents%2Fn/pause",
            Some(&format!("Bearer {TOKEN}")),
            json!({"paused": true, "reason": "Lunch"}),
        )
        .await;
    assert_eq!(
        (a.status, a.json["error"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("not_connected")),
        "{:?}",
        a.json
    );

    let yeastar = f
        .token("/openapi/v1.0/get_token", "access_token", "boss")
        .await;
    let a = f
        .get(
            &format!("/openapi/v1.0/agent/pause?access_token={yeastar}&ext_id=201&operation=pause"),
            None,
        )
        .await;
    assert_eq!(a.json["errcode"], 50001, "{:?}", a.json);

    let portsip = format!(
        "Bearer {}",
        f.token("/api/auth/sign_in", "access_token", "boss").await
    );
    let a = f
        .call(
            "POST",
            "/api/call_queues/1/agents/201",
            Some(&portsip),
            json!({"status": "BREAK"}),
        )
        .await;
    assert_eq!(
        (a.status, a.json["errors"][0]["code"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("UNAVAILABLE")),
        "{:?}",
        a.json
    );
}
