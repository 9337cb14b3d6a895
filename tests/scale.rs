//! At the scale of the largest sites (Asterisk issue #1214: 40,000 queues): a real Asterisk 22
//! with 40,000 generated queues of two members each. queuebridge logs in, and does its full
//! resync, while callers join, wait and give up in another queue, then keeps the site exact
//! through its reconciliations (targeted at this size) as callers keep coming. Asterisk drops
//! a manager session that does not read within its `writetimeout` (100 ms): the reader must
//! never stop for a fold, and nothing may end the link.

mod common;

use std::time::{Duration, Instant};

use common::{Asterisk, Bridge, Driver};

const QUEUES: usize = 40_000;

fn generated() -> String {
    let mut conf = String::with_capacity(QUEUES * 160);
    for q in 0..QUEUES {
        conf.push_str(&format!(
            "[big{q:05}]\nstrategy = rrmemory\n\
             member => Local/b{q}a@agents/n,0,Big {q} A,Custom:b{q}a\n\
             member => Local/b{q}b@agents/n,0,Big {q} B,Custom:b{q}b\n"
        ));
    }
    conf
}

#[tokio::test(flavor = "multi_thread")]
async fn forty_thousand_queues_resync_while_calls_flow_without_a_disconnect() {
    let ast = Asterisk::start_with_queues(&generated());
    // Asterisk itself needs minutes to load that many queues (over two on the test machine).
    let mut driver = Driver::connect_within(ast.port, Duration::from_secs(600)).await;
    // Nobody answers in "sales": callers wait there until they give up.
    for a in ["agent1", "agent2"] {
        driver.devstate(a, "UNAVAILABLE").await;
    }
    let mut n = 0;
    let mut calls = async |driver: &mut Driver| {
        for _ in 0..3 {
            n += 1;
            driver
                .call("sales", (&format!("4930{n:05}"), "Caller"), 5, 4, None)
                .await;
        }
        n
    };
    calls(&mut driver).await;
    // The first full resync runs while callers come and go; they keep coming for 20 s after.
    let bridge = Bridge::start(ast.port);
    let started = Instant::now();
    let mut synced_at: Option<Instant> = None;
    while synced_at.is_none_or(|t| t.elapsed() < Duration::from_secs(20)) {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "never synced; log:\n{}",
            bridge.log()
        );
        calls(&mut driver).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        if synced_at.is_none() && bridge.get("/healthz").await.status().as_u16() == 200 {
            synced_at = Some(Instant::now());
        }
    }
    let n = calls(&mut driver).await;

    // Every resync ended exact: the busy queue and queues at both ends of the list.
    bridge.assert_exact(&mut driver, "pbx1", "sales").await;
    for q in ["big00000", "big20000", "big39999"] {
        bridge.assert_exact(&mut driver, "pbx1", q).await;
    }
    let all = bridge.json("/api/v1/queues").await;
    assert_eq!(
        all["queues"].as_array().map(Vec::len),
        Some(QUEUES + 2),
        "every queue is known"
    );
    let log = bridge.log();
    assert!(
        !log.contains("ami link down"),
        "the AMI link dropped during the resyncs:\n{log}"
    );
    assert!(
        !log.contains("dropping AMI input"),
        "the state task fell behind:\n{log}"
    );
    eprintln!("{n} callers");
}
