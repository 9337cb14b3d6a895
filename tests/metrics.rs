//! The Prometheus endpoint end to end: a real Asterisk with waiting callers and paused members,
//! `promtool check metrics` on the exposition, and a real Prometheus that scrapes queuebridge
//! and answers queries with the values Asterisk's own QueueStatus implies.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::prometheus::Prometheus;
use common::{dialect_users, free_port, sample, until, Asterisk, Bridge, Driver};
use queuebridge::ami::Message;

/// What Asterisk says about a queue: callers waiting, members, paused members.
async fn truth(driver: &mut Driver, queue: &str) -> (f64, f64, f64) {
    let items = driver.queue_status(queue).await;
    let count = |event: &str, paused: bool| {
        items
            .iter()
            .filter(|m| m.event_name() == Some(event))
            .filter(|m| !paused || m.get("Paused") == Some("1"))
            .count() as f64
    };
    (
        count("QueueEntry", false),
        count("QueueMember", false),
        count("QueueMember", true),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn exposition_passes_promtool_and_prometheus_sees_asterisk() {
    let ast = Asterisk::start();
    let mut driver = Driver::connect(ast.port).await;
    for agent in ["agent1", "agent2", "agent3"] {
        driver.agent_mode(agent, Some("noanswer")).await;
        driver.devstate(agent, "NOT_INUSE").await;
    }
    let port = free_port();
    let bridge = Bridge::start_extra(
        ast.port,
        &format!(
            "{}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            dialect_users()
        ),
    );
    bridge.wait_health(200).await;

    // Two callers waiting in support, one member of sales paused, one unavailable.
    driver
        .call("support", ("5551001", "Alice"), 60, 60, None)
        .await;
    driver
        .call("support", ("5551002", "Bob"), 60, 60, None)
        .await;
    let r = driver
        .send(
            Message::action("QueuePause")
                .with("Queue", "sales")
                .with("Interface", "Local/agent1@agents/n")
                .with("Paused", "true")
                .with("Reason", "Lunch"),
        )
        .await;
    assert!(r.is_success(), "{:?}", r.response);
    driver.devstate("agent2", "UNAVAILABLE").await;

    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/metrics");
    // Originate is asynchronous: wait until Asterisk itself has both callers in the queue.
    until("Asterisk to queue both callers", async || {
        (truth(&mut driver, "support").await.0 == 2.0).then_some(())
    })
    .await;
    let (support, sales) = (
        truth(&mut driver, "support").await,
        truth(&mut driver, "sales").await,
    );
    assert_eq!((support.0, sales.2), (2.0, 1.0), "Asterisk's own view");
    let text = until(
        "the exposition to show the calls and the pause",
        async || {
            let text = http.get(&url).send().await.ok()?.text().await.ok()?;
            let waiting = sample(
                &text,
                "queuebridge_queue_callers_waiting",
                &[("queue", "support")],
            );
            let paused = sample(
                &text,
                "queuebridge_queue_members",
                &[("queue", "sales"), ("state", "paused")],
            );
            let unavailable = sample(
                &text,
                "queuebridge_queue_members",
                &[("queue", "sales"), ("state", "unavailable")],
            );
            (waiting == Some(support.0) && paused == Some(sales.2) && unavailable == Some(1.0))
                .then_some(text)
        },
    )
    .await;

    // Exactly what Asterisk implies.
    let get = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    assert_eq!(
        get("queuebridge_queue_members_logged_in", &[("queue", "sales")]),
        sales.1
    );
    assert_eq!(
        get(
            "queuebridge_queue_members_logged_in",
            &[("queue", "support")]
        ),
        support.1
    );
    assert_eq!(
        get(
            "queuebridge_queue_callers_joined_total",
            &[("queue", "support")]
        ),
        2.0
    );
    assert!(
        get(
            "queuebridge_queue_longest_wait_seconds",
            &[("queue", "support")]
        ) >= 0.0
    );
    assert_eq!(get("queuebridge_ami_link_up", &[("server", "pbx1")]), 1.0);
    assert!(
        get(
            "queuebridge_ami_messages_total",
            &[("event", "QueueCallerJoin")]
        ) >= 2.0
    );
    assert!(
        get(
            "queuebridge_ami_action_duration_seconds_count",
            &[("server", "pbx1")]
        ) >= 1.0
    );
    assert!(
        get(
            "queuebridge_ami_last_resync_duration_seconds",
            &[("server", "pbx1")]
        ) > 0.0
    );
    assert!(
        get(
            "queuebridge_http_requests_total",
            &[("route", "/healthz"), ("status", "200")]
        ) >= 1.0
    );
    for state in queuebridge::metrics::MEMBER_STATES {
        get(
            "queuebridge_queue_members",
            &[("queue", "support"), ("state", state)],
        );
    }
    // No unbounded label: no channel, uniqueid or caller number anywhere.
    for secret in ["5551001", "Local/support@callers", "agents/n"] {
        assert!(!text.contains(secret), "{secret} in the exposition");
    }

    // promtool agrees it is a well-formed exposition following the conventions.
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real Prometheus scrapes it and answers queries with Asterisk's values.
    let prometheus = Prometheus::start(&format!("127.0.0.1:{port}"));
    let q = |s: &str| s.to_owned();
    for (query, want) in [
        (
            q(r#"queuebridge_queue_callers_waiting{queue="support"}"#),
            support.0,
        ),
        (
            q(r#"queuebridge_queue_members{queue="sales",state="paused"}"#),
            sales.2,
        ),
        (
            q(r#"sum(queuebridge_queue_members_logged_in)"#),
            support.1 + sales.1,
        ),
        (q(r#"up{job="queuebridge"}"#), 1.0),
    ] {
        until(
            &format!("Prometheus to answer {query} = {want}"),
            async || (prometheus.query(&http, &query).await == Some(want)).then_some(()),
        )
        .await;
    }

    // A caller leaves: the gauge follows at the next scrape, the counters keep counting.
    let hangup = driver
        .send(Message::action("Hangup").with("Channel", "/^Local\\/support@callers-.*;2$/"))
        .await;
    assert!(hangup.is_success(), "{:?}", hangup.response);
    until("Prometheus to see the callers gone", async || {
        let now = truth(&mut driver, "support").await.0;
        (prometheus
            .query(
                &http,
                r#"queuebridge_queue_callers_waiting{queue="support"}"#,
            )
            .await
            == Some(now)
            && now == 0.0)
            .then_some(())
    })
    .await;
    until("Prometheus to count the abandons", async || {
        (prometheus
            .query(
                &http,
                r#"queuebridge_queue_callers_abandoned_total{queue="support"}"#,
            )
            .await
            == Some(2.0))
        .then_some(())
    })
    .await;
}
