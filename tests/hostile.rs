//! Hostile input and overload against the real binary and a real Asterisk: each case states what
//! the client gets, and that nothing else changed (Asterisk's state, the AMI link, other users).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{started, until, Bridge, Driver, TOKEN};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AGENT3: &str = "Local/agent3@agents/n";

/// A client whose connections come from `127.0.0.<last>`: the login throttle counts failures
/// per source address, so each scenario gets its own.
fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        // Yeastar's API needs one.
        .user_agent("OpenAPI")
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn send(
    http: &reqwest::Client,
    bridge: &Bridge,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, format!("{}{path}", bridge.base));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn raw(bridge: &Bridge, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, String) {
    let r = bridge
        .http
        .request(method, format!("{}{path}", bridge.base))
        .header("content-type", "application/json")
        .header("user-agent", "OpenAPI")
        .body(body)
        .send()
        .await
        .expect("request");
    (r.status(), r.text().await.unwrap_or_default())
}

async fn portsip_token(bridge: &Bridge, user: &str, password: &str) -> String {
    let (s, v) = send(
        &client_from(1),
        bridge,
        Method::POST,
        "/api/auth/sign_in",
        Some(json!({"username": user, "password": password})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["access_token"].as_str().expect("token").to_owned()
}

/// The link to Asterisk stayed up the whole time: no "ami link down" in the log.
fn assert_link_never_dropped(bridge: &Bridge) {
    let log = bridge.log();
    assert!(
        !log.contains("ami link down"),
        "the AMI link dropped:\n{log}"
    );
}

/// The first case, a 6 KB URL that overflowed the stack, and the other malformed
/// requests: each gets the dialect's clear error; the daemon and its AMI link carry on.
#[tokio::test]
async fn malformed_requests_get_clear_errors_and_change_nothing() {
    let (_ast, mut driver, bridge) = started(&common::dialect_users()).await;
    let token = portsip_token(&bridge, "tweber", "agent-pw").await;
    let portsip = |query: &str| {
        bridge
            .http
            .get(format!("{}/api/call_queues?{query}", bridge.base))
            .bearer_auth(&token)
            .send()
    };
    let deep = format!("{}name eq 'x'{}", "(".repeat(3000), ")".repeat(3000));
    for (query, status, needle) in [
        (format!("filter={deep}"), 400, "longer than 2048"),
        (
            format!("filter={}name eq 'x'{}", "(".repeat(40), ")".repeat(40)),
            400,
            "nested deeper than 32",
        ),
        (
            format!("search={}", "a".repeat(5000)),
            400,
            "longer than 2048",
        ),
        ("top=99999999999999999999999".into(), 400, "top"),
        ("top=-1".into(), 400, "top"),
        ("skip=-1".into(), 400, "skip"),
        // Duplicate parameters: the last one counts.
        ("top=1&top=500".into(), 400, "top"),
        ("top=500&top=1".into(), 200, "count"),
        ("filter=%FF%FE".into(), 400, ""),
    ] {
        let r = portsip(&query).await.expect("portsip");
        let code = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(code, status, "{query}: {body}");
        assert!(body.contains(needle), "{query}: {body}");
        if status == 400 && !needle.is_empty() {
            assert!(body.contains("VALIDATE_FAILED"), "{query}: {body}");
        }
    }
    // Invalid UTF-8 and broken JSON in bodies, in every dialect.
    for (path, bad, status, needle) in [
        ("/auth/login", b"{\"username\": \"\xff\xfe\"}".to_vec(), 400, "bad_request"),
        ("/api/auth/sign_in", b"\xff\xfe\xfd".to_vec(), 400, "VALIDATE_FAILED"),
        ("/openapi/v1.0/get_token", b"{\"username\":".to_vec(), 200, "40002"),
        (
            "/api/v1/queues/pbx1/sales/members",
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_vec(),
            401,
            "bearer",
        ),
    ] {
        let (s, body) = raw(&bridge, Method::POST, path, bad).await;
        assert_eq!(s.as_u16(), status, "{path}: {body}");
        assert!(body.contains(needle), "{path}: {body}");
    }
    // Deeply nested JSON (serde_json's recursion limit) with the right token: 400, no crash.
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = bridge
        .http
        .post(format!("{}/api/v1/queues/pbx1/sales/members", bridge.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(nested)
        .send()
        .await
        .expect("nested");
    assert_eq!(r.status(), 413, "100 KB is over the body limit");
    let r = bridge
        .http
        .post(format!("{}/api/v1/queues/pbx1/sales/members", bridge.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)))
        .send()
        .await
        .expect("nested");
    assert_eq!(r.status(), 400);
    // A body over the limit: 413.
    let big = json!({"username": "x".repeat(100 * 1024), "password": "y"});
    let (s, _) = send(
        &bridge.http,
        &bridge,
        Method::POST,
        "/api/auth/sign_in",
        Some(big),
    )
    .await;
    assert_eq!(s, 413);
    // Invalid UTF-8 in a query string and huge or negative numbers, Yeastar and Telecom X.
    let yeastar = client_from(1);
    let (s, v) = send(
        &yeastar,
        &bridge,
        Method::GET,
        "/openapi/v1.0/queue/list?access_token=%FF%FE",
        None,
    )
    .await;
    assert!(s == 200 || s == 400, "{s}: {v}");
    assert_ne!(s.as_u16() / 100, 5);
    // One dialect's token on another dialect, and as the native API's token: refused.
    let (s, v) = send(
        &bridge.http,
        &bridge,
        Method::GET,
        &format!("/pbx/app/queues?token={token}"),
        None,
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (401, Some("expired")),
        "{v}"
    );
    let (s, v) = send(
        &yeastar,
        &bridge,
        Method::GET,
        &format!("/openapi/v1.0/queue/list?access_token={token}"),
        None,
    )
    .await;
    assert_eq!(v["errcode"], 10004, "{s}: {v}");
    let r = bridge
        .http
        .get(format!("{}/api/v1/queues", bridge.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("native");
    assert_eq!(r.status(), 401);
    // Nothing changed in Asterisk, the daemon runs, the link never dropped.
    bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    bridge.wait_health(200).await;
    assert_link_never_dropped(&bridge);
}

/// Logins cannot exhaust the machine (a bounded number of argon2 checks, then "try later")
/// nor guess passwords (failures throttled per name and per address), and a failure is
/// logged with the name and the address, never the password.
#[tokio::test]
async fn logins_are_bounded_and_throttled() {
    let ast = common::Asterisk::start();
    let bridge = Bridge::start_http(
        ast.port,
        "max_password_checks = 1",
        &common::dialect_users(),
    );
    bridge.wait_health(200).await;
    // A flood from one address with names that do not exist: every answer is a refusal,
    // some of them "try later" because the one check slot stayed busy; none is a server error.
    let flood = client_from(2);
    let answers = futures_util::future::join_all((0..24).map(|i| {
        send(
            &flood,
            &bridge,
            Method::POST,
            "/api/auth/sign_in",
            Some(json!({"username": format!("mallory{i}"), "password": "guess"})),
        )
    }))
    .await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| s.as_u16()).collect();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    let busy = answers.iter().find(|(s, _)| *s == 429).expect("a 429");
    assert_eq!(
        busy.1["errors"][0]["code"], "TOO_MANY_REQUESTS",
        "{}",
        busy.1
    );
    // More failures from that address, until it is throttled …
    let mut throttled = false;
    for i in 0..10 {
        let (s, _) = send(
            &flood,
            &bridge,
            Method::POST,
            "/api/auth/sign_in",
            Some(json!({"username": format!("mallory-x{i}"), "password": "guess"})),
        )
        .await;
        if s == 429 {
            throttled = true;
            break;
        }
        assert_eq!(s, 401);
    }
    assert!(throttled, "never throttled");
    // … whatever the name, and in every dialect.
    let (s, v) = send(
        &flood,
        &bridge,
        Method::POST,
        "/auth/login",
        Some(json!({"username": "tweber", "password": "agent-pw"})),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (429, Some("too_many_requests")),
        "{v}"
    );
    // A user's name is throttled after three failures, from any address, even with the right
    // password; once the delay is over the right password works and clears it.
    let guesser = client_from(3);
    for i in 0..4 {
        let (s, v) = send(
            &guesser,
            &bridge,
            Method::POST,
            "/openapi/v1.0/get_token",
            Some(json!({"username": "tweber", "password": format!("wrong-pw-{i}")})),
        )
        .await;
        assert_eq!(
            (s.as_u16(), v["errcode"].clone()),
            (200, json!(-1)),
            "{i}: {v}"
        );
    }
    let elsewhere = client_from(4);
    let login = json!({"username": "tweber", "password": "agent-pw"});
    let (_, v) = send(
        &elsewhere,
        &bridge,
        Method::POST,
        "/openapi/v1.0/get_token",
        Some(login.clone()),
    )
    .await;
    assert_eq!(v["errcode"], 10006, "{v}");
    let v = until("the throttle's delay to pass", async || {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, v) = send(
            &elsewhere,
            &bridge,
            Method::POST,
            "/openapi/v1.0/get_token",
            Some(login.clone()),
        )
        .await;
        (v["errcode"] == 0).then_some(v)
    })
    .await;
    assert!(v["access_token"].is_string(), "{v}");
    // Another user is not held up by any of it.
    portsip_token(&bridge, "boss", "boss-pw").await;
    let log = bridge.log();
    assert!(
        log.lines().any(|l| l.contains("login failed")
            && l.contains("user=\"tweber\"")
            && l.contains("source=127.0.0.3")),
        "{log}"
    );
    assert!(!log.contains("wrong-pw-"), "a password reached the log");
    assert!(!log.contains("agent-pw"), "a password reached the log");
    assert_link_never_dropped(&bridge);
}

/// Ten thousand idle or half-sent connections, and a thousand event streams at once: a
/// normal request still gets its answer, a slow client is cut off, the AMI link stays up.
#[tokio::test]
async fn connection_floods_do_not_keep_anyone_out() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let ast = common::Asterisk::start();
    let mut driver = Driver::connect(ast.port).await;
    let bridge = Bridge::start_http(
        ast.port,
        "max_connections = 2048\nrequest_timeout = 2.0\nmax_event_streams = 256",
        "",
    );
    bridge.wait_health(200).await;
    let addr = bridge.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for i in 0..10_000 {
        let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
            continue;
        };
        if i % 2 == 1 {
            let _ = s
                .write_all(b"GET /api/v1/queues HTTP/1.1\r\nHost: x\r\n")
                .await;
        }
        held.push(s);
    }
    assert!(held.len() > 9_000, "only {} connections", held.len());
    // A normal request, on a new connection, is answered.
    let fresh = reqwest::Client::new();
    let r = fresh
        .get(format!("{}/api/v1/queues", bridge.base))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("a normal request among ten thousand idle connections");
    assert_eq!(r.status(), 200);
    drop(held);
    // A slow client that never finishes its request head is cut off.
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a half-sent request head was never cut off");
    // A thousand event streams at once: at most max_event_streams are served, the rest are
    // told 503; nobody waits forever.
    let sse = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let streams = futures_util::future::join_all((0..1000).map(|_| {
        sse.get(format!("{}/api/v1/events", bridge.base))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(30))
            .send()
    }))
    .await;
    let ok = streams
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 200))
        .count();
    let busy = streams
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 503))
        .count();
    assert!(ok > 0 && ok <= 256, "{ok} streams served");
    assert_eq!(ok + busy, 1000, "{ok} served, {busy} refused");
    drop(streams);
    // The streams are given back: a new one is served and gets its snapshot.
    let mut rx = until("an event stream after the flood", async || {
        let r = sse
            .get(format!("{}/api/v1/events", bridge.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(r.bytes_stream())
    })
    .await;
    let first = tokio::time::timeout(Duration::from_secs(10), rx.next()).await;
    assert!(matches!(first, Ok(Some(Ok(_)))), "no snapshot");
    bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    assert_link_never_dropped(&bridge);
}

/// What Asterisk sends back is outside input too: a caller id name with control characters
/// is served as JSON intact (escaped), and a pause reason with CR/LF is confirmed as Asterisk
/// stores it, not reported as a timeout; a NUL is refused before anything is sent.
#[tokio::test]
async fn odd_text_from_callers_and_agents_is_carried_exactly() {
    // No pause reasons configured: any reason text is taken.
    let users = common::dialect_users().replace(common::PAUSE_REASONS, "");
    let (_ast, mut driver, bridge) = started(&users).await;
    driver.devstate("agent1", "UNAVAILABLE").await;
    driver.devstate("agent2", "UNAVAILABLE").await;
    driver
        .call("sales", ("5550001", "Eve\u{1}\u{1b}[31m"), 30, 30, None)
        .await;
    let q = until("the caller with a control character", async || {
        let q = bridge.json("/api/v1/queues/pbx1/sales").await;
        (q["callers"].as_array()?.len() == 1).then_some(q)
    })
    .await;
    assert_eq!(
        q["callers"][0]["caller_id_name"],
        "Eve\u{1}\u{1b}[31m",
        "{}",
        bridge.log()
    );
    bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    let token = {
        let (s, v) = send(
            &bridge.http,
            &bridge,
            Method::POST,
            "/auth/login",
            Some(json!({"username": "boss", "password": "boss-pw"})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().expect("token").to_owned()
    };
    let (s, v) = send(
        &bridge.http,
        &bridge,
        Method::GET,
        &format!("/pbx/queue/000000000000000000000001/callers?token={token}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["name"], "Eve\u{1}\u{1b}[31m");

    let pause = format!(
        "/api/v1/queues/pbx1/support/members/{}/pause",
        AGENT3.replace('/', "%2F").replace('@', "%40")
    );
    let (s, v) = bridge
        .call(
            "POST",
            &pause,
            Some(json!({"paused": true, "reason": "Lunch\r\nAction: Logoff"})),
        )
        .await;
    assert_eq!((s, v["result"].as_str()), (200, Some("applied")), "{v}");
    let m = driver.member("support", AGENT3).await.expect("member");
    assert_eq!(m.get("PausedReason"), Some("Lunch  Action: Logoff"));
    let (s, v) = bridge
        .call(
            "POST",
            &pause,
            Some(json!({"paused": true, "reason": "Lu\u{0}nch"})),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_request")), "{v}");
    // The same through a query string (Yeastar's agent/pause): refused by the command layer.
    let yeastar = client_from(5);
    let (_, v) = send(
        &yeastar,
        &bridge,
        Method::POST,
        "/openapi/v1.0/get_token",
        Some(json!({"username": "boss", "password": "boss-pw"})),
    )
    .await;
    let t = v["access_token"].as_str().expect("token").to_owned();
    let (_, v) = send(
        &yeastar,
        &bridge,
        Method::GET,
        &format!(
            "/openapi/v1.0/agent/pause?access_token={t}&ext_id=203&operation=pause&reason=Lu%00nch"
        ),
        None,
    )
    .await;
    assert_eq!(v["errcode"], 40002, "{v}");
    let m = driver.member("support", AGENT3).await.expect("member");
    assert_eq!(
        m.get("PausedReason"),
        Some("Lunch  Action: Logoff"),
        "unchanged"
    );
    bridge.assert_exact(&mut driver, "pbx1", "support").await;
    assert_link_never_dropped(&bridge);
}
