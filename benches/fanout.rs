//! XMPP fan-out benchmark (`cargo bench --bench fanout`): figures go to BENCHMARKS.md.
//!
//! 1,000 client sessions (agents of one queue, each subscribed to every queue event) and a
//! stream of AMI events (callers joining and leaving), each of which becomes one headline per
//! session. The real XMPP front end runs — the fan-out task, the link task with its component
//! handshake and batched writes — against a minimal component server on loopback that only
//! reads: it stamps each `</message>` as it arrives, so what is measured is queuebridge, from
//! folding the AMI event to its stanzas on the socket.
//!
//! 1. latency at a steady 50 events/s (50,000 stanzas/s): per stanza, from the event's fold to
//!    the stanza read by the server, p50/p99/max; and per event, to its last stanza;
//! 2. sustained rate: events folded back to back, until every stanza arrived.
//!
//! `QB_BENCH_SESSIONS` and `QB_BENCH_EVENTS` change the counts (defaults 1,000 and 2,000).

use std::io::Read;
use std::net::TcpListener;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

#[path = "support/component.rs"]
mod component;

use queuebridge::access::{Access, Directory, UserConfig};
use queuebridge::ami::Message;
use queuebridge::command::Commands;
use queuebridge::config::{Config, XmppConfig};
use queuebridge::hub::Hub;
use queuebridge::servers::Servers;
use queuebridge::state::{Input, Queue, QueueIds, State, What};
use queuebridge::xmpp::pascom::{Scope, Subscription};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_xmpp::jid::FullJid;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A stanza as the server saw it: which event (caller number × 2, + 1 for a leave) and when.
struct Seen {
    event: usize,
    at: Instant,
}

/// A component server that accepts one handshake, then stamps every message it reads.
fn component_server(listener: TcpListener, seen: mpsc::Sender<Seen>) {
    let Some((mut sock, mut buf)) = component::accept(&listener) else {
        return;
    };
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = match sock.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let at = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(end) = memchr::memmem::find(&buf[start..], b"</message>") {
            let message = &buf[start..start + end];
            // The caller number names the event: <phone>N</phone>, and join or leave.
            if let Some(p) = memchr::memmem::find(message, b"<phone>") {
                let digits = &message[p + 7..];
                let len = digits.iter().take_while(|c| c.is_ascii_digit()).count();
                let caller: Option<usize> = std::str::from_utf8(&digits[..len])
                    .ok()
                    .and_then(|s| s.parse().ok());
                let leave = memchr::memmem::find(message, b"QueueLeaveEvent").is_some();
                if let Some(caller) = caller {
                    let event = caller * 2 + leave as usize;
                    if seen.send(Seen { event, at }).is_err() {
                        return;
                    }
                }
            }
            start += end + 10;
        }
        buf.drain(..start);
    }
}

/// The AMI events of caller `n`: its join, or its leave.
fn event(n: usize, join: bool) -> Input {
    let m = Message::new()
        .with(
            "Event",
            if join {
                "QueueCallerJoin"
            } else {
                "QueueCallerLeave"
            },
        )
        .with("Channel", &format!("PJSIP/trunk-{n:08x}"))
        .with("CallerIDNum", &n.to_string())
        .with("CallerIDName", &format!("Caller {n}"))
        .with("Uniqueid", &format!("1763700000.{n}"))
        .with("Linkedid", &format!("1763700000.{n}"))
        .with("Queue", "support")
        .with("Position", "1")
        .with("Count", if join { "1" } else { "0" });
    Input {
        server: Arc::from("pbx1"),
        at_ms: 0,
        what: What::Event(m),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let sessions = count("QB_BENCH_SESSIONS", 1000);
    let events = count("QB_BENCH_EVENTS", 2000);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        // The state: one connected server with the queue "support".
        let mut state = State::new(["pbx1"], QueueIds::default());
        let server = state.server_mut("pbx1");
        server.link.connected = true;
        server.link.synced = true;
        server.queues.insert(
            "support".into(),
            Queue::new(Arc::from("pbx1"), Arc::from("support"), 2),
        );
        let hub = Hub::new(state);
        // The agents: every one belongs to "support".
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$Nb2VVW8ykiJJ5U0ew+3LfiJqxgPvXBaCIwlhT1kEgKk";
        let users: Vec<UserConfig> = (0..sessions)
            .map(|i| UserConfig {
                name: format!("agent{i}"),
                password_hash: hash.into(),
                interface: Some(format!("Local/agent{i}@agents/n")),
                state_interface: None,
                display_name: None,
                extension: None,
                roles: Vec::new(),
                server: None,
                queues: vec!["support".into()],
                penalty: None,
            })
            .collect();
        let directory = Directory::new(&users, &[], &["pbx1"]).map_err(|e| anyhow::anyhow!(e.message))?;
        let access = Access::new(directory);
        let shutdown = CancellationToken::new();
        let (inputs, _unused) = tokio::sync::mpsc::channel(1);
        // The AMI server is never connected (its client is not started): the bench folds the
        // events itself.
        let ami = Config::parse(
            "state_dir = \"/nonexistent\"\n[[ami]]\nid = \"pbx1\"\nhost = \"127.0.0.1\"\nusername = \"u\"\nsecret = \"s\"\n[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"0123456789abcdef\"\n",
            "bench",
        )?;
        let servers = Servers::load(
            vec![("pbx1".into(), ami.ami[0].client())],
            None,
            inputs,
            shutdown.clone(),
        )?;
        let commands = Commands::new(hub.clone(), servers, access);

        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (seen_tx, seen) = mpsc::channel();
        std::thread::spawn(move || component_server(listener, seen_tx));
        let config = XmppConfig {
            server: addr.to_string(),
            component: "pbx.example.test".into(),
            secret: "bench".into(),
            domain: "example.test".into(),
            ping_interval: 3600.0,
            reconnect_max: 1.0,
            max_sessions_per_user: 8,
        };
        let tasks = TaskTracker::new();
        let front = queuebridge::xmpp::start(&config, hub.clone(), commands, &tasks, &shutdown)?;
        for i in 0..sessions {
            let jid = FullJid::new(&format!("agent{i}@example.test/desk"))?;
            let everything = Subscription {
                module: "queue".into(),
                kind: "*".into(),
                scope: Scope::User,
                filters: Vec::new(),
            };
            front.subscribe(&jid, &format!("agent{i}"), vec![everything]);
        }
        // Until the link is up, events are dropped: wait for the first one to arrive.
        let mut n = 0;
        loop {
            n += 1;
            hub.apply(&event(n, true));
            hub.apply(&event(n, false));
            if seen.recv_timeout(Duration::from_millis(200)).is_ok() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        while seen.try_recv().is_ok() {}
        let base = 1_000_000;

        // 1. Latency at 50 events/s.
        let paced = events.min(500);
        let mut folded = Vec::with_capacity(paced);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for i in 0..paced {
            tick.tick().await;
            folded.push(Instant::now());
            hub.apply(&event(base + i / 2, i % 2 == 0));
        }
        let expected = paced * sessions;
        let mut per_stanza = Vec::with_capacity(expected);
        let mut last = vec![Duration::ZERO; paced];
        while per_stanza.len() < expected {
            let s = seen.recv_timeout(Duration::from_secs(30)).map_err(|e| {
                anyhow::anyhow!("{e} after {} of {expected} stanzas", per_stanza.len())
            })?;
            let Some(i) = s.event.checked_sub(2 * base).filter(|i| *i < paced) else {
                continue;
            };
            let d = s.at.duration_since(folded[i]);
            last[i] = last[i].max(d);
            per_stanza.push(d);
        }
        per_stanza.sort();
        last.sort();
        println!(
            "latency at 50 events/s, {sessions} sessions, {paced} events ({expected} stanzas):"
        );
        println!(
            "  per stanza: p50 {:?}  p99 {:?}  max {:?}",
            percentile(&per_stanza, 0.5),
            percentile(&per_stanza, 0.99),
            per_stanza[per_stanza.len() - 1]
        );
        println!(
            "  per event, to its last stanza: p50 {:?}  p99 {:?}  max {:?}",
            percentile(&last, 0.5),
            percentile(&last, 0.99),
            last[last.len() - 1]
        );

        // 2. Sustained: back to back.
        let base = 2_000_000;
        let start = Instant::now();
        for i in 0..events {
            hub.apply(&event(base + i / 2, i % 2 == 0));
        }
        let folded_in = start.elapsed();
        let expected = events * sessions;
        let mut got = 0;
        while got < expected {
            let s = seen
                .recv_timeout(Duration::from_secs(60))
                .map_err(|e| anyhow::anyhow!("{e} after {got} of {expected} stanzas"))?;
            if s.event >= 2 * base {
                got += 1;
            }
        }
        let took = start.elapsed();
        println!(
            "sustained: {events} events ({expected} stanzas) in {:.3} s (folded in {:.3} s): {:.0} events/s, {:.0} stanzas/s",
            took.as_secs_f64(),
            folded_in.as_secs_f64(),
            events as f64 / took.as_secs_f64(),
            expected as f64 / took.as_secs_f64()
        );
        shutdown.cancel();
        tasks.close();
        Ok(())
    })
}
