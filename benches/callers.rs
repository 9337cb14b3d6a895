//! Fold cost against the number of callers waiting (`cargo bench --bench callers`): figures go
//! to BENCHMARKS.md.
//!
//! One queue with N callers waiting at all times (N = 10, 300, 5,000 by default; set
//! `QB_BENCH_WAITING=10,300,5000`). After the N joins that fill it, a steady stream of 1,000,000
//! messages: a caller joins at a random position among the first five (as the peer harness's
//! stream does), a random waiting caller is rung, not answered, rung again, then leaves, and a
//! member changes state. Each message goes through the codec and the fold (`replay`), as in the
//! daemon. A fold whose cost does not depend on N shows the same rate for every N.

use std::fmt::Write;
use std::time::Duration;

const MEMBERS: usize = 20;

fn caller(out: &mut String, event: &str, n: u64, extra: &str) {
    let _ = write!(
        out,
        "Event: {event}\r\nPrivilege: agent,all\r\nChannel: PJSIP/trunk-{n:08x}\r\nChannelState: 6\r\n\
         ChannelStateDesc: Up\r\nCallerIDNum: 4930{n:07}\r\nCallerIDName: Caller {n}\r\n\
         ConnectedLineNum: <unknown>\r\nConnectedLineName: <unknown>\r\nLanguage: en\r\n\
         AccountCode: \r\nContext: from-trunk\r\nExten: 100\r\nPriority: 3\r\n\
         Uniqueid: 1763700000.{n}\r\nLinkedid: 1763700000.{n}\r\nQueue: support\r\n{extra}\r\n"
    );
}

fn member(out: &mut String, m: usize, status: u32) {
    let _ = write!(
        out,
        "Event: QueueMemberStatus\r\nPrivilege: agent,all\r\nQueue: support\r\nMemberName: Agent {m}\r\n\
         Interface: PJSIP/{m}\r\nStateInterface: PJSIP/{m}\r\nMembership: dynamic\r\nPenalty: 0\r\n\
         CallsTaken: 12\r\nLastCall: 1763700000\r\nLastPause: 0\r\nLoginTime: 1763690000\r\n\
         InCall: 0\r\nStatus: {status}\r\nPaused: 0\r\nPausedReason: \r\nRinginuse: 0\r\n\
         Wrapuptime: 0\r\n\r\n"
    );
}

/// The bytes (banner included), the messages of the steady part, and where it starts.
fn stream(waiting: usize, messages: usize) -> (Vec<u8>, usize) {
    let mut rng = fastrand::Rng::with_seed(16);
    let mut out = String::with_capacity((waiting + messages) * 500);
    out.push_str("Asterisk Call Manager/11.0.0\r\n");
    let mut queue: Vec<u64> = Vec::with_capacity(waiting + 1);
    let mut next: u64 = 0;
    for _ in 0..waiting {
        next += 1;
        queue.push(next);
        let at = queue.len();
        caller(
            &mut out,
            "QueueCallerJoin",
            next,
            &format!("Position: {at}\r\nCount: {at}\r\n"),
        );
    }
    let mut count = 0;
    while count < messages {
        next += 1;
        let at = rng.usize(1..=5.min(queue.len() + 1));
        queue.insert(at - 1, next);
        let n = queue.len();
        caller(
            &mut out,
            "QueueCallerJoin",
            next,
            &format!("Position: {at}\r\nCount: {n}\r\n"),
        );
        let i = rng.usize(..queue.len());
        let id = queue[i];
        let m = rng.usize(..MEMBERS);
        let agent = format!("Interface: PJSIP/{m}\r\nMemberName: Agent {m}\r\n");
        caller(&mut out, "AgentCalled", id, &agent);
        caller(
            &mut out,
            "AgentRingNoAnswer",
            id,
            &format!("{agent}RingTime: 15\r\n"),
        );
        caller(&mut out, "AgentCalled", id, &agent);
        queue.remove(i);
        let left = queue.len();
        caller(
            &mut out,
            "QueueCallerLeave",
            id,
            &format!("Position: {}\r\nCount: {left}\r\n", i + 1),
        );
        member(&mut out, m, rng.u32(1..9));
        count += 6;
    }
    (out.into_bytes(), waiting)
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent: keep that fast.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sizes = std::env::var("QB_BENCH_WAITING").unwrap_or_else(|_| "10,300,5000".into());
    let messages = 1_000_000;
    for waiting in sizes
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
    {
        let (bytes, fill) = stream(waiting, messages);
        let _ = queuebridge::replay::replay(&bytes, "bench", 1 << 20);
        let mut best = Duration::MAX;
        let mut result = None;
        for _ in 0..3 {
            let r = queuebridge::replay::replay(&bytes, "bench", 1 << 20);
            best = best.min(r.elapsed);
            result = Some(r);
        }
        let Some(r) = result else { continue };
        let still = r
            .state
            .queue("bench", "support")
            .map_or(0, |q| q.callers.len());
        println!(
            "{waiting:>5} waiting: {} messages ({fill} to fill the queue) in {:.3} s = {:.2} M messages/s; {still} waiting at the end",
            r.messages,
            best.as_secs_f64(),
            r.messages as f64 / best.as_secs_f64() / 1e6,
        );
    }
}
