//! Resync benchmark (`cargo bench --bench resync`): figures go to BENCHMARKS.md.
//!
//! A full QueueStatus of Q queues × 2 members with 5,000 callers waiting, folded through the
//! hub (the state, the ring of recent changes kept for SSE resumption, the broadcast) as the
//! daemon does after login, then the same snapshot again, as the periodic reconciliation does:
//! that second fold must publish nothing. Each size runs in a fresh child process so that its
//! resident memory is its own. Sizes: `QB_BENCH_QUEUES` (comma-separated, default
//! 1000,10000,40000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cap::Cap;
use queuebridge::ami::Message;
use queuebridge::hub::Hub;
use queuebridge::state::{Input, LinkChange, QueueIds, QueueStatus, Scope, State, What};

/// The daemon's allocator (jemalloc, src/main.rs), counting the bytes allocated and not yet
/// freed: what the state holds, exactly, whatever the allocator keeps for reuse.
#[global_allocator]
static ALLOCATOR: Cap<tikv_jemallocator::Jemalloc> =
    Cap::new(tikv_jemallocator::Jemalloc, usize::MAX);

const SERVER: &str = "pbx1";
const MEMBERS_PER_QUEUE: usize = 2;
const CALLERS: usize = 5_000;

fn params(queue: &str, calls: usize) -> Message {
    Message::new()
        .with("Event", "QueueParams")
        .with("Queue", queue)
        .with("Max", "0")
        .with("Strategy", "rrmemory")
        .with("Calls", &calls.to_string())
        .with("Holdtime", "12")
        .with("TalkTime", "140")
        .with("Completed", "31")
        .with("Abandoned", "2")
        .with("ServiceLevel", "60")
        .with("ServicelevelPerf", "93.5")
        .with("ServicelevelPerf2", "90.1")
        .with("Weight", "0")
}

fn member(queue: &str, n: usize) -> Message {
    let interface = format!("PJSIP/{n}");
    Message::new()
        .with("Event", "QueueMember")
        .with("Queue", queue)
        .with("Name", &format!("Agent {n}"))
        .with("Location", &interface)
        .with("StateInterface", &interface)
        .with("Membership", "dynamic")
        .with("Penalty", "0")
        .with("CallsTaken", "12")
        .with("LastCall", "1763700000")
        .with("LastPause", "0")
        .with("LoginTime", "1763690000")
        .with("InCall", "0")
        .with("Status", "1")
        .with("Paused", "0")
        .with("PausedReason", "")
        .with("Wrapuptime", "0")
}

fn entry(queue: &str, position: usize, n: usize) -> Message {
    Message::new()
        .with("Event", "QueueEntry")
        .with("Queue", queue)
        .with("Position", &position.to_string())
        .with("Channel", &format!("PJSIP/trunk-{n:08x}"))
        .with("Uniqueid", &format!("1763700000.{n}"))
        .with("CallerIDNum", &format!("4930{n:07}"))
        .with("CallerIDName", &format!("Caller {n}"))
        .with("ConnectedLineNum", "unknown")
        .with("ConnectedLineName", "unknown")
        .with("Wait", "17")
        .with("Priority", "0")
}

/// The items of a full QueueStatus: callers spread over the first queues, 50 each.
fn snapshot(queues: usize) -> Vec<Message> {
    let per_queue = 50;
    let mut items = Vec::with_capacity(queues * (1 + MEMBERS_PER_QUEUE) + CALLERS);
    let mut caller = 0;
    for q in 0..queues {
        let name = format!("q{q:05}");
        let waiting = (CALLERS - caller).min(per_queue);
        items.push(params(&name, waiting));
        for m in 0..MEMBERS_PER_QUEUE {
            items.push(member(&name, q * MEMBERS_PER_QUEUE + m));
        }
        for p in 1..=waiting {
            items.push(entry(&name, p, caller));
            caller += 1;
        }
    }
    items
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time of this process (user + system).
fn cpu() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_owned();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn one(queues: usize) {
    let server: Arc<str> = Arc::from(SERVER);
    let input = |what| Input {
        server: server.clone(),
        at_ms: 1_763_700_100_000,
        what,
    };
    let hub = Hub::new(State::new([SERVER], QueueIds::default()));
    hub.apply(&input(What::Link(LinkChange::Up)));
    let base = ALLOCATOR.allocated();
    let items = snapshot(queues);
    let snap = |items: Vec<Message>| {
        input(What::Snapshot(QueueStatus {
            scope: Scope::All,
            items,
        }))
    };
    let first = snap(items.clone());
    let again = snap(items);
    let (wall, cpu0) = (Instant::now(), cpu());
    let changes = hub.apply(&first);
    let (first_wall, first_cpu) = (wall.elapsed(), cpu() - cpu0);
    drop(first);
    let (wall, cpu0) = (Instant::now(), cpu());
    let repeated = hub.apply(&again);
    let (again_wall, again_cpu) = (wall.elapsed(), cpu() - cpu0);
    drop(again);
    let held = ALLOCATOR.allocated().saturating_sub(base);
    let members = queues * MEMBERS_PER_QUEUE;
    println!(
        "{queues:>6} queues × {MEMBERS_PER_QUEUE} members + {CALLERS} callers: \
         first fold {:.3} s ({:.2} s CPU), {changes} changes; \
         same snapshot again {:.3} s ({:.2} s CPU), {repeated} changes; \
         heap held by state + recent changes {:.1} MiB = {:.0} B per member; \
         process RSS {:.1} MiB",
        first_wall.as_secs_f64(),
        first_cpu.as_secs_f64(),
        again_wall.as_secs_f64(),
        again_cpu.as_secs_f64(),
        held as f64 / 1048576.0,
        held as f64 / members as f64,
        rss_kib() as f64 / 1024.0,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args.iter().position(|a| a == "--one") {
        if let Some(q) = args.get(n + 1).and_then(|v| v.parse().ok()) {
            one(q);
        }
        return;
    }
    // `cargo test --benches` runs bench targets with --bench absent: keep that fast.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let sizes = std::env::var("QB_BENCH_QUEUES").unwrap_or_else(|_| "1000,10000,40000".into());
    for q in sizes
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
    {
        let exe = std::env::current_exe().expect("own path");
        let status = std::process::Command::new(exe)
            .args(["--one", &q.to_string()])
            .status()
            .expect("run one size");
        assert!(status.success(), "size {q} failed");
    }
}
