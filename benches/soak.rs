//! Soak benchmark (`cargo bench --bench soak`; not a CI test): the real daemon, for a long run
//! at a steady AMI event rate, with event streams and pascom sessions attached. Figures go to
//! BENCHMARKS.md.
//!
//! Everything around the daemon runs in this process, on loopback:
//!
//! * an **AMI server** that logs the daemon in, answers its actions (QueueStatus with the
//!   callers it has in the queue), and writes `QB_SOAK_RATE` events a second: a caller joins
//!   `support` and leaves it a little later; the caller's number is the event's sequence number;
//! * an **XMPP server** (the component side only) that opens `QB_SOAK_XMPP` pascom sessions —
//!   a `ClientInfo` with a subscription from each agent — and stamps every `QueueJoinEvent`
//!   headline it reads;
//! * `QB_SOAK_SSE` **event streams** on `/api/v1/events`, each stamping every `caller_joined`.
//!
//! Every minute it prints the daemon's RSS, the joins each consumer missed (a consumer that was
//! sent a fresh snapshot instead is counted as resynced, not as a loss) and the p50/p99/max
//! latency from the AMI write to the consumer's read, and the bucket the p99 of the daemon's own
//! `queuebridge_xmpp_delivery_seconds` (fold to component socket) falls in. At the end: RSS
//! growth after the warm-up (the first minute), events lost, and whether p99 stayed flat.
//!
//! The warm-up is the first `QB_SOAK_WARMUP` minutes (2): the call history keeps a caller who
//! left unanswered without an abandon for 60 s before it writes the call as `unknown`, so its
//! set of open calls fills through the first minute and a half of a steady load.
//!
//! The daemon's log passes through; its warnings and errors are counted for the summary (a
//! history row dropped or a fan-out that fell behind is a loss too).
//!
//! `QB_SOAK_MINUTES` (30), `QB_SOAK_RATE` (1000), `QB_SOAK_SSE` (200), `QB_SOAK_XMPP` (200);
//! the daemon is `target/release/queuebridge` (`cargo build --release` first) or `QB_SOAK_BIN`.
//!
//! A big site's layout: `QB_SOAK_QUEUES` (1: the queue `support`; more: `q0`, `q1`, …; caller
//! `n` joins `q{n % queues}`), `QB_SOAK_AGENT_QUEUES` (1: the queues each agent is configured
//! for, spread evenly), `QB_SOAK_SUPERVISORS` (0: supervisors among the pascom sessions, each
//! subscribed with `scope='supervisor'` to every queue), `QB_SOAK_SUBSCRIBE` (`QueueJoinEvent`:
//! the subscription's type; `*` asks for every queue event). Issue 16's site is
//! `QB_SOAK_QUEUES=200 QB_SOAK_AGENT_QUEUES=3 QB_SOAK_XMPP=2050 QB_SOAK_SUPERVISORS=50
//! QB_SOAK_SSE=500 QB_SOAK_SUBSCRIBE='*'`. `QB_SOAK_RECONCILE` sets the daemon's
//! `reconcile_interval` (seconds).
//!
//! `QB_SOAK_PROSODY=1` puts a real Prosody (Debian's, with the repository's configuration and
//! `mod_pascom.lua`, as the tests run it) between the daemon and the pascom sessions: the
//! sessions are then XMPP clients that log in over c2s (SASL PLAIN, all of them tasks of one
//! thread), send their `ClientInfo` through Prosody and stamp what Prosody delivers. Each
//! minute's line then also shows the CPU share of the daemon and of Prosody, to see which one
//! is the limit. Thousands of clients need as many file descriptors: `ulimit -n 16384` first.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/c2s.rs"]
mod c2s;
#[path = "support/component.rs"]
mod component;
#[allow(dead_code)] // the tests' slixmpp client is not used here
#[path = "../tests/common/prosody.rs"]
mod prosody;

/// A free loopback port (for `prosody`).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn count(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Joins' write times kept, by sequence number modulo this (a minute and more at 1,000/s).
const RING: usize = 1 << 17;
/// Latency histogram: buckets of 50 µs up to 5 s, and one beyond.
const BUCKET_US: u64 = 50;
const BUCKETS: usize = 100_001;

/// When each join was written, and what every consumer read; lock-free, since hundreds of
/// consumers stamp at once.
struct Ledger {
    epoch: Instant,
    /// Nanoseconds after `epoch` that join `seq` was written, at `seq % RING`.
    sent: Vec<AtomicU64>,
    /// This minute's latencies, all consumers.
    /// Of the event streams (0) and of the pascom sessions (1).
    histogram: [Vec<AtomicU64>; 2],
    /// Consumers below this number are event streams.
    streams: usize,
    /// Joins read, per consumer, and the first one each saw.
    read: Vec<AtomicU64>,
    first: Vec<AtomicU64>,
    /// Fresh snapshots sent to an event stream instead of changes it fell behind on.
    resynced: AtomicU64,
    /// The latest join written.
    latest: AtomicU64,
    /// Pascom headlines read, of every kind.
    headlines: AtomicU64,
    /// Joins before this one are not counted as read or missed: a pascom session opened
    /// while the stream flows is told who is waiting when it subscribes, which may be a
    /// caller from before its first live join.
    counted_from: AtomicU64,
    /// The layout, to know which joins each consumer should read.
    site: Site,
    /// The queues each consumer gets joins of (`None`: every queue).
    queues_of: Vec<Option<Vec<u64>>>,
}

/// Where callers join and who gets what.
#[derive(Clone, Copy)]
struct Site {
    queues: u64,
    agent_queues: u64,
}

impl Site {
    fn name(&self, q: u64) -> String {
        if self.queues == 1 {
            "support".to_owned()
        } else {
            format!("q{q}")
        }
    }

    /// The queue caller `n` joins.
    fn queue_of(&self, n: u64) -> u64 {
        n % self.queues
    }

    /// The queues agent `i` is configured for.
    fn queues_of_agent(&self, i: u64) -> Vec<u64> {
        let step = (self.queues / self.agent_queues).max(1);
        let mut qs: Vec<u64> = (0..self.agent_queues)
            .map(|k| (i + k * step) % self.queues)
            .collect();
        qs.sort_unstable();
        qs.dedup();
        qs
    }

    /// Joins numbered `first..=last` into queue `q`.
    fn joins_into(&self, q: u64, first: u64, last: u64) -> u64 {
        let upto = |n: u64| if n < q { 0 } else { (n - q) / self.queues + 1 };
        upto(last) - if first == 0 { 0 } else { upto(first - 1) }
    }
}

impl Ledger {
    fn new(site: Site, streams: usize, queues_of: Vec<Option<Vec<u64>>>) -> Self {
        let consumers = queues_of.len();
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        Self {
            epoch: Instant::now(),
            sent: zeros(RING),
            histogram: [zeros(BUCKETS), zeros(BUCKETS)],
            streams,
            read: zeros(consumers),
            first: (0..consumers).map(|_| AtomicU64::new(u64::MAX)).collect(),
            resynced: AtomicU64::new(0),
            latest: AtomicU64::new(0),
            headlines: AtomicU64::new(0),
            counted_from: AtomicU64::new(0),
            site,
            queues_of,
        }
    }

    fn sent(&self, seq: u64) {
        let at = self.epoch.elapsed().as_nanos() as u64;
        self.sent[seq as usize % RING].store(at, Ordering::Relaxed);
        self.latest.store(seq, Ordering::Relaxed);
    }

    fn stamp(&self, consumer: usize, seq: u64, at: Instant) {
        let sent = self.sent[seq as usize % RING].load(Ordering::Relaxed);
        let now = at.duration_since(self.epoch).as_nanos() as u64;
        let us = now.saturating_sub(sent) / 1000;
        let bucket = ((us / BUCKET_US) as usize).min(BUCKETS - 1);
        self.histogram[usize::from(consumer >= self.streams)][bucket]
            .fetch_add(1, Ordering::Relaxed);
        if seq < self.counted_from.load(Ordering::Relaxed) {
            return;
        }
        if let (Some(r), Some(f)) = (self.read.get(consumer), self.first.get(consumer)) {
            r.fetch_add(1, Ordering::Relaxed);
            f.fetch_min(seq, Ordering::Relaxed);
        }
    }

    /// This minute's p50, p99 and max of all consumers, the p99 of the event streams and of
    /// the pascom sessions, and fresh histograms for the next.
    fn take_percentiles(&self) -> ((Duration, Duration, Duration), Duration, Duration) {
        let [streams, sessions] = &self.histogram;
        let streams: Vec<u64> = streams
            .iter()
            .map(|b| b.swap(0, Ordering::Relaxed))
            .collect();
        let sessions: Vec<u64> = sessions
            .iter()
            .map(|b| b.swap(0, Ordering::Relaxed))
            .collect();
        let all: Vec<u64> = streams.iter().zip(&sessions).map(|(a, b)| a + b).collect();
        (
            percentiles(&all),
            percentiles(&streams).1,
            percentiles(&sessions).1,
        )
    }
}

/// The p50, p99 and max of a latency histogram.
fn percentiles(counts: &[u64]) -> (Duration, Duration, Duration) {
    let total: u64 = counts.iter().sum();
    let at = |p: f64| {
        let want = ((total as f64) * p).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want.max(1) {
                return Duration::from_micros(i as u64 * BUCKET_US);
            }
        }
        Duration::ZERO
    };
    let max = counts
        .iter()
        .rposition(|c| *c > 0)
        .map_or(Duration::ZERO, |i| {
            Duration::from_micros(i as u64 * BUCKET_US)
        });
    (at(0.5), at(0.99), max)
}

impl Ledger {
    /// The consumers that missed joins up to `last`, with how many (at most `n` of them).
    fn missing(&self, last: u64, n: usize) -> Vec<(usize, u64)> {
        (0..self.read.len())
            .filter_map(|c| {
                let first = self.first[c].load(Ordering::Relaxed);
                let read = self.read[c].load(Ordering::Relaxed);
                let due = match &self.queues_of[c] {
                    _ if first > last => 1,
                    None => last - first + 1,
                    Some(qs) => qs
                        .iter()
                        .map(|q| self.site.joins_into(*q, first, last))
                        .sum(),
                };
                (due > read).then_some((c, due - read))
            })
            .take(n)
            .collect()
    }

    /// Joins up to `last` that consumers did not read, from the first each saw.
    fn missed(&self, last: u64) -> u64 {
        self.read
            .iter()
            .zip(&self.first)
            .zip(&self.queues_of)
            .map(|((r, f), queues)| {
                let first = f.load(Ordering::Relaxed);
                if first > last {
                    return last.min(1);
                }
                let due = match queues {
                    None => last - first + 1,
                    Some(qs) => qs
                        .iter()
                        .map(|q| self.site.joins_into(*q, first, last))
                        .sum(),
                };
                due.saturating_sub(r.load(Ordering::Relaxed))
            })
            .sum()
    }
}

/// The AMI side: login, actions, and the event stream at `rate` a second.
fn ami_server(
    listener: TcpListener,
    rate: u64,
    ledger: Arc<Ledger>,
    sent: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let Ok((sock, _)) = listener.accept() else {
        return;
    };
    let _ = sock.set_nodelay(true);
    let site = ledger.site;
    let waiting: Arc<Mutex<Vec<Vec<u64>>>> =
        Arc::new(Mutex::new(vec![Vec::new(); site.queues as usize]));
    let mut writer = match sock.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let _ = writer.write_all(b"Asterisk Call Manager/11.0.0\r\n");
    let out = Arc::new(Mutex::new(writer));
    // Actions: answered from their own thread, in the order they come.
    {
        let out = out.clone();
        let waiting = waiting.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(sock);
            let mut headers: Vec<(String, String)> = Vec::new();
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let l = line.trim_end();
                if !l.is_empty() {
                    if let Some((k, v)) = l.split_once(": ") {
                        headers.push((k.to_owned(), v.to_owned()));
                    }
                    continue;
                }
                let get = |k: &str| {
                    headers
                        .iter()
                        .find(|(h, _)| h.eq_ignore_ascii_case(k))
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let (action, id) = (get("Action"), get("ActionID"));
                headers.clear();
                let mut reply = String::new();
                match action.to_ascii_lowercase().as_str() {
                    "queuestatus" => {
                        reply.push_str(&format!(
                            "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Queue status will follow\r\n\r\n"
                        ));
                        let queues = waiting.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        let mut items = 0;
                        for (q, callers) in queues.iter().enumerate() {
                            let queue = site.name(q as u64);
                            reply.push_str(&format!(
                                "Event: QueueParams\r\nQueue: {queue}\r\nMax: 0\r\nStrategy: ringall\r\nCalls: {}\r\nHoldtime: 0\r\nTalkTime: 0\r\nCompleted: 0\r\nAbandoned: 0\r\nServiceLevel: 20\r\nServicelevelPerf: 0.0\r\nServicelevelPerf2: 0.0\r\nWeight: 0\r\nActionID: {id}\r\n\r\n",
                                callers.len()
                            ));
                            for (i, n) in callers.iter().enumerate() {
                                reply.push_str(&format!(
                                    "Event: QueueEntry\r\nQueue: {queue}\r\nPosition: {}\r\nChannel: PJSIP/trunk-{n:08x}\r\nUniqueid: 1763700000.{n}\r\nCallerIDNum: {n}\r\nCallerIDName: Caller\r\nConnectedLineNum: unknown\r\nConnectedLineName: unknown\r\nWait: 0\r\nPriority: 0\r\nActionID: {id}\r\n\r\n",
                                    i + 1
                                ));
                            }
                            items += callers.len() + 1;
                        }
                        reply.push_str(&format!(
                            "Event: QueueStatusComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: {items}\r\n\r\n"
                        ));
                    }
                    "ping" => reply.push_str(&format!(
                        "Response: Success\r\nActionID: {id}\r\nPing: Pong\r\n\r\n"
                    )),
                    _ => reply.push_str(&format!(
                        "Response: Success\r\nActionID: {id}\r\nMessage: ok\r\n\r\n"
                    )),
                }
                let login = action.eq_ignore_ascii_case("login");
                let mut w = out.lock().unwrap_or_else(|e| e.into_inner());
                if w.write_all(reply.as_bytes()).is_err() {
                    return;
                }
                if login {
                    let _ = w.write_all(b"Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n");
                }
            }
        });
    }
    // Give the daemon its first sync, then the steady stream: a join, and the leave of the
    // caller that joined `LEAVE_AFTER` events ago.
    std::thread::sleep(Duration::from_secs(2));
    const LEAVE_AFTER: u64 = 20;
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut order = std::collections::VecDeque::new();
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut text = String::new();
        {
            let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
            let q = site.queue_of(n);
            let queue = site.name(q);
            let line = &mut w[q as usize];
            line.push(n);
            order.push_back(n);
            text.push_str(&format!(
                "Event: QueueCallerJoin\r\nChannel: PJSIP/trunk-{n:08x}\r\nCallerIDNum: {n}\r\nCallerIDName: Caller\r\nConnectedLineNum: unknown\r\nConnectedLineName: unknown\r\nUniqueid: 1763700000.{n}\r\nLinkedid: 1763700000.{n}\r\nQueue: {queue}\r\nPosition: {}\r\nCount: {}\r\n\r\n",
                line.len(),
                line.len()
            ));
            // The callers leave in the order they came, so the one leaving is the first of
            // its queue.
            if order.len() as u64 > LEAVE_AFTER {
                if let Some(gone) = order.pop_front() {
                    let q = site.queue_of(gone);
                    let queue = site.name(q);
                    let line = &mut w[q as usize];
                    line.retain(|c| *c != gone);
                    text.push_str(&format!(
                        "Event: QueueCallerLeave\r\nChannel: PJSIP/trunk-{gone:08x}\r\nCallerIDNum: {gone}\r\nCallerIDName: Caller\r\nUniqueid: 1763700000.{gone}\r\nLinkedid: 1763700000.{gone}\r\nQueue: {queue}\r\nPosition: 1\r\nCount: {}\r\n\r\n",
                        line.len()
                    ));
                }
            }
        }
        ledger.sent(n);
        let mut w = out.lock().unwrap_or_else(|e| e.into_inner());
        if w.write_all(text.as_bytes()).is_err() {
            return;
        }
        sent.store(n, Ordering::Relaxed);
    }
}

/// The XMPP server's component side: opens `sessions` pascom sessions, then stamps every
/// QueueJoinEvent headline.
fn xmpp_server(
    listener: TcpListener,
    rate: u64,
    sessions: usize,
    supervisors: usize,
    kind: &str,
    ledger: Arc<Ledger>,
    first: usize,
) {
    let Some((mut sock, mut buf)) = component::accept(&listener) else {
        return;
    };
    for i in 0..sessions {
        let scope = if i >= sessions - supervisors {
            "supervisor"
        } else {
            "user"
        };
        let iq = client_info(
            i,
            &format!(" from='agent{i}@example.test/desk' to='pbx.example.test'"),
            kind,
            scope,
        );
        if sock.write_all(iq.as_bytes()).is_err() {
            return;
        }
    }
    // Sessions opened after the stream began count from two seconds' worth of joins on.
    let latest = ledger.latest.load(Ordering::Relaxed);
    if latest > 0 {
        ledger
            .counted_from
            .store(latest + 2 * rate, Ordering::Relaxed);
    }
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = match sock.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let at = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        let done = stamp_headlines(&buf, at, &ledger, |message| {
            let to = memchr::memmem::find(message, b"to='agent")
                .or_else(|| memchr::memmem::find(message, b"to=\"agent"))
                .map(|p| &message[p + 9..])?;
            Some(first + leading_number(to)? as usize)
        });
        buf.drain(..done);
    }
}

/// The decimal number `text` starts with.
fn leading_number(text: &[u8]) -> Option<u64> {
    let len = text.iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(&text[..len]).ok()?.parse().ok()
}

/// Stamps every QueueJoinEvent headline among the whole `<message>`s in `buf` for the
/// consumer `consumer_of` names; returns how many bytes were whole messages.
fn stamp_headlines(
    buf: &[u8],
    at: Instant,
    ledger: &Ledger,
    consumer_of: impl Fn(&[u8]) -> Option<usize>,
) -> usize {
    let mut start = 0;
    while let Some(end) = memchr::memmem::find(&buf[start..], b"</message>") {
        let message = &buf[start..start + end];
        ledger.headlines.fetch_add(1, Ordering::Relaxed);
        if memchr::memmem::find(message, b"QueueJoinEvent").is_some() {
            let seq = memchr::memmem::find(message, b"<phone>")
                .and_then(|p| leading_number(&message[p + 7..]));
            if let (Some(seq), Some(consumer)) = (seq, consumer_of(message)) {
                ledger.stamp(consumer, seq, at);
            }
        }
        start += end + 10;
    }
    start
}

/// The `ClientInfo` that opens a pascom session subscribed to queue events of `kind`.
fn client_info(id: usize, from_to: &str, kind: &str, scope: &str) -> String {
    format!(
        "<iq{from_to} type='get' id='ci{id}'>\
         <cmd xmlns='http://www.pascom.net/mobydick' module='xmppuser'><ClientInfo><AddSubscription>\
         <Subscription module='queue' type='{kind}' scope='{scope}'/>\
         </AddSubscription></ClientInfo></cmd></iq>"
    )
}

/// The pascom sessions as real clients of a real Prosody, on one thread of their own. Each
/// logs in and sends its `ClientInfo` (at most 64 at a time), then stamps what it reads.
/// The daemon bounds the commands it runs at once and asks the rest to try again, as a
/// client then does. Returns how many have their session, once all have tried.
fn prosody_clients(
    c2s_port: u16,
    sessions: usize,
    supervisors: usize,
    kind: String,
    ledger: Arc<Ledger>,
    first: usize,
) -> usize {
    let (tx, rx) = std::sync::mpsc::channel();
    on_own_thread(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let gate = Arc::new(tokio::sync::Semaphore::new(64));
        let kind: Arc<str> = Arc::from(kind);
        let mut clients = tokio::task::JoinSet::new();
        for i in 0..sessions {
            let (gate, kind, ledger, tx) = (gate.clone(), kind.clone(), ledger.clone(), tx.clone());
            clients.spawn(async move {
                let permit = gate.acquire().await;
                let scope = if i >= sessions - supervisors {
                    "supervisor"
                } else {
                    "user"
                };
                let user = format!("agent{i}");
                let opened = async {
                    let mut s = c2s::login(c2s_port, prosody::DOMAIN, &user, "pw", "desk").await?;
                    for _ in 0..100 {
                        let iq = client_info(i, "", &kind, scope);
                        s.sock.write_all(iq.as_bytes()).await?;
                        let answer = c2s::read_through(&mut s.sock, &mut s.buf, b"</iq>").await?;
                        if memchr::memmem::find(&answer, b"try again").is_none() {
                            return Ok(s);
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(std::io::Error::other(
                        "the daemon never took the ClientInfo",
                    ))
                };
                let mut session = match opened.await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("soak: {user} has no pascom session: {e}");
                        let _ = tx.send(false);
                        return;
                    }
                };
                drop(permit);
                let _ = tx.send(true);
                let mut chunk = vec![0u8; 1 << 16];
                loop {
                    let n = match session.sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let at = Instant::now();
                    session.buf.extend_from_slice(&chunk[..n]);
                    let done = stamp_headlines(&session.buf, at, &ledger, |_| Some(first + i));
                    session.buf.drain(..done);
                }
            });
        }
        drop(tx);
        while clients.join_next().await.is_some() {}
    });
    rx.iter().take(sessions).filter(|ok| *ok).count()
}

/// Runs `task` on a single-threaded runtime on a thread of its own.
fn on_own_thread(task: impl std::future::Future<Output = ()> + Send + 'static) {
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(task);
        }
    });
}

/// One event stream: stamps every `caller_joined`, counts snapshots after the first. The
/// streams are tasks of one single-threaded runtime: as many OS threads as streams would
/// preempt the daemon they measure on a small machine.
async fn sse_client(port: u16, token: &str, consumer: usize, ledger: Arc<Ledger>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let Ok(mut sock) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let req =
        format!("GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    if sock.write_all(req.as_bytes()).await.is_err() {
        return;
    }
    let mut reader = tokio::io::BufReader::with_capacity(1 << 16, sock);
    let mut line = String::new();
    let mut snapshots = 0;
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.starts_with("event: snapshot") {
            snapshots += 1;
            if snapshots > 1 {
                ledger.resynced.fetch_add(1, Ordering::Relaxed);
            }
        } else if line.starts_with("data:") && line.contains("\"caller_joined\"") {
            let at = Instant::now();
            if let Some(p) = line.find("\"caller_id_num\":\"") {
                let digits = &line[p + 17..];
                let len = digits.bytes().take_while(u8::is_ascii_digit).count();
                if let Ok(seq) = digits[..len].parse() {
                    ledger.stamp(consumer, seq, at);
                }
            }
        }
    }
}

/// Runs `streams` event streams on one thread of their own.
fn sse_clients(port: u16, token: &'static str, streams: usize, ledger: Arc<Ledger>) {
    on_own_thread(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..streams {
            tasks.spawn(sse_client(port, token, c, ledger.clone()));
        }
        while tasks.join_next().await.is_some() {}
    });
}

/// CPU time a process has used, in clock ticks (user and system, `/proc/PID/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The fields after the command name, which is in parentheses and may hold spaces.
            let rest = &s[s.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// The soft limit on open files, from `/proc/self/limits`.
fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The daemon's `/metrics` as text (empty when it cannot be read).
fn scrape(port: u16) -> String {
    let mut text = String::new();
    if let Ok(mut sock) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = sock.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
        let _ = sock.read_to_string(&mut text);
    }
    text
}

/// The cumulative buckets of the daemon's delivery histogram: (upper bound, count).
fn delivery_buckets(port: u16) -> Vec<(f64, u64)> {
    scrape(port)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("queuebridge_xmpp_delivery_seconds_bucket{le=\"")?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The bucket the p99 of what was observed between two scrapes falls in, as "≤ bound".
fn delivery_p99(then: &[(f64, u64)], now: &[(f64, u64)]) -> String {
    let delta: Vec<(f64, u64)> = now
        .iter()
        .map(|(le, n)| {
            let before = then.iter().find(|(l, _)| l == le).map_or(0, |(_, c)| *c);
            (*le, n.saturating_sub(before))
        })
        .collect();
    let total = delta.last().map_or(0, |(_, n)| *n);
    if total == 0 {
        return "-".to_owned();
    }
    let want = (total as f64 * 0.99).ceil() as u64;
    match delta.iter().find(|(_, n)| *n >= want) {
        Some((le, _)) if le.is_finite() => format!("≤{}ms", le * 1000.0),
        _ => "≥5s".to_owned(),
    }
}

/// Waits until the daemon's `/metrics` has a line starting with `line`.
fn wait_for_metric(port: u16, line: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let name = line.split(' ').next().unwrap_or(line);
    let mut seen = String::new();
    while Instant::now() < deadline {
        let text = scrape(port);
        if text.lines().any(|l| l.starts_with(line)) {
            return Ok(());
        }
        if let Some(l) = text.lines().find(|l| l.starts_with(name)) {
            seen = l.to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("the daemon's metrics never showed {line:?} (last: {seen:?})")
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let minutes = count("QB_SOAK_MINUTES", 30);
    let warmup = count("QB_SOAK_WARMUP", 2).max(1);
    let rate = count("QB_SOAK_RATE", 1000);
    let sse = count("QB_SOAK_SSE", 200) as usize;
    let xmpp = count("QB_SOAK_XMPP", 200) as usize;
    let site = Site {
        queues: count("QB_SOAK_QUEUES", 1).max(1),
        agent_queues: count("QB_SOAK_AGENT_QUEUES", 1).max(1),
    };
    let supervisors = (count("QB_SOAK_SUPERVISORS", 0) as usize).min(xmpp);
    let kind = std::env::var("QB_SOAK_SUBSCRIBE").unwrap_or_else(|_| "QueueJoinEvent".into());
    let agents = xmpp - supervisors;
    let bin = std::env::var("QB_SOAK_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/queuebridge").to_owned()
    });
    let queues_of = (0..sse + xmpp)
        .map(|c| match c.checked_sub(sse) {
            Some(i) if i < agents => Some(site.queues_of_agent(i as u64)),
            _ => None,
        })
        .collect();
    let ledger = Arc::new(Ledger::new(site, sse, queues_of));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let with_prosody = std::env::var_os("QB_SOAK_PROSODY").is_some();
    let needed = (xmpp + sse) as u64 + 256;
    if with_prosody && open_files_limit() < needed {
        anyhow::bail!("{xmpp} XMPP clients need {needed} open files: `ulimit -n 16384` first");
    }
    let accounts: Vec<(String, String)> = (0..xmpp)
        .filter(|_| with_prosody)
        .map(|i| (format!("agent{i}"), "pw".to_owned()))
        .collect();
    let accounts: Vec<(&str, &str)> = accounts.iter().map(|(u, p)| (&**u, &**p)).collect();
    let prosody = with_prosody
        .then(|| prosody::Prosody::start_with(&accounts, prosody::Accounts::PlainFiles, "warn"));
    let ami = TcpListener::bind("127.0.0.1:0")?;
    let component = TcpListener::bind("127.0.0.1:0")?;
    let http = TcpListener::bind("127.0.0.1:0")?;
    let (ami_port, xmpp_port, http_port) = (
        ami.local_addr()?.port(),
        component.local_addr()?.port(),
        http.local_addr()?.port(),
    );
    drop(http);
    let dir = tempfile::tempdir()?;
    let token = "soak-token-0123456789";
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$Nb2VVW8ykiJJ5U0ew+3LfiJqxgPvXBaCIwlhT1kEgKk";
    let mut config = format!(
        "state_dir = {:?}\n[http]\nlisten = \"127.0.0.1:{http_port}\"\ntoken = \"{token}\"\nmax_event_streams = {}\nmax_connections = {}\n\
         [[ami]]\nid = \"pbx1\"\nhost = \"127.0.0.1\"\nport = {ami_port}\nusername = \"u\"\nsecret = \"s\"\nauth = \"plain\"\n\
         [xmpp]\nserver = \"127.0.0.1:{}\"\ncomponent = \"pbx.example.test\"\nsecret = \"{}\"\ndomain = \"example.test\"\n\
         ping_interval = 3600.0\n",
        dir.path().display().to_string(),
        sse + 16,
        (sse + 64).max(1024),
        prosody.as_ref().map_or(xmpp_port, |p| p.component_port),
        if with_prosody { prosody::SECRET } else { "soak" },
    );
    // The metrics say when the component link is up, and how long headlines took from the
    // fold to the component socket, by the daemon's own clock.
    let metrics_port = free_port();
    config.push_str(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    ));
    for i in 0..xmpp {
        if i < agents {
            let queues: Vec<String> = site
                .queues_of_agent(i as u64)
                .into_iter()
                .map(|q| format!("{:?}", site.name(q)))
                .collect();
            config.push_str(&format!(
                "[[users]]\nname = \"agent{i}\"\npassword_hash = \"{hash}\"\ninterface = \"Local/agent{i}@agents/n\"\nqueues = [{}]\n",
                queues.join(", ")
            ));
        } else {
            config.push_str(&format!(
                "[[users]]\nname = \"agent{i}\"\npassword_hash = \"{hash}\"\nroles = [\"supervisor\"]\n"
            ));
        }
    }
    // `QB_SOAK_RECONCILE`: seconds between the daemon's full reconciliations (its default
    // when unset), to tell their cost from the rest.
    if let Ok(secs) = std::env::var("QB_SOAK_RECONCILE") {
        config = config.replacen(
            "auth = \"plain\"\n",
            &format!("auth = \"plain\"\nreconcile_interval = {secs}\n"),
            1,
        );
    }
    let path = dir.path().join("soak.toml");
    std::fs::write(&path, config)?;
    {
        let (ledger, sent, stop) = (ledger.clone(), sent.clone(), stop.clone());
        std::thread::spawn(move || ami_server(ami, rate, ledger, sent, stop));
    }
    if !with_prosody {
        let (ledger, kind) = (ledger.clone(), kind.clone());
        std::thread::spawn(move || {
            xmpp_server(component, rate, xmpp, supervisors, &kind, ledger, sse)
        });
    }
    let mut daemon = Daemon(
        Command::new(&bin)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| anyhow::anyhow!("{bin}: {e} (cargo build --release first)"))?,
    );
    let pid = daemon.0.id();
    let warnings = Arc::new(AtomicU64::new(0));
    if let Some(log) = daemon.0.stderr.take() {
        let warnings = warnings.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(log).lines().map_while(Result::ok) {
                if line.contains(" WARN ") || line.contains(" ERROR ") {
                    warnings.fetch_add(1, Ordering::Relaxed);
                }
                eprintln!("{line}");
            }
        });
    }
    while TcpStream::connect(("127.0.0.1", http_port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    if with_prosody {
        // Nothing counts until the clients have logged in (`prosody_clients` says from where):
        // the event streams would otherwise count from their first join.
        ledger.counted_from.store(u64::MAX, Ordering::Relaxed);
    }
    sse_clients(http_port, token, sse, ledger.clone());
    if let Some(p) = &prosody {
        wait_for_metric(
            metrics_port,
            "queuebridge_xmpp_link_up 1",
            Duration::from_secs(30),
        )?;
        let t = Instant::now();
        let logged_in = prosody_clients(
            p.c2s_port,
            xmpp,
            supervisors,
            kind.clone(),
            ledger.clone(),
            sse,
        );
        // The joins count from two seconds after the daemon has every session.
        wait_for_metric(
            metrics_port,
            &format!("queuebridge_xmpp_sessions {logged_in}"),
            Duration::from_secs(60),
        )?;
        let latest = ledger.latest.load(Ordering::Relaxed);
        ledger
            .counted_from
            .store(latest + 2 * rate, Ordering::Relaxed);
        println!(
            "soak: {logged_in} of {xmpp} clients logged in to Prosody, and had their sessions, in {:?}",
            t.elapsed()
        );
    }
    println!(
        "soak: {minutes} min at {rate} joins/s (and as many leaves), {} queues, {sse} event streams, {xmpp} pascom sessions ({supervisors} supervisors, agents in {} queues each, subscribed to {kind:?}) (daemon pid {pid})",
        site.queues, site.agent_queues
    );
    println!(
        "minute  rss_kib  joins_sent  missed  resynced  p50  p99  max  p99_streams  p99_pascom  p99_fold_to_socket  headlines/s  cpu_daemon{}",
        if with_prosody { "  cpu_prosody" } else { "" }
    );
    let prosody_pid = prosody.as_ref().and_then(|p| p.pid());
    let mut ticks = (cpu_ticks(pid), prosody_pid.map_or(0, cpu_ticks));
    let mut delivered = delivery_buckets(metrics_port);
    // Clock ticks are 1/100 s on Linux: the ticks of a minute over 60 s are a percentage of one core.
    let share = |now: u64, then: u64| format!("{:.0} %", (now - then) as f64 / 60.0);
    let start = Instant::now();
    let mut warm_rss = 0;
    let mut p99s = Vec::new();
    let mut last_rss = 0;
    for minute in 1..=minutes {
        let due = start + Duration::from_secs(60 * minute);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        // Joins written more than 2 s ago have reached every consumer, unless lost.
        let settled = sent.load(Ordering::Relaxed).saturating_sub(2 * rate);
        let ((p50, p99, max), p99_streams, p99_pascom) = ledger.take_percentiles();
        last_rss = rss_kib(pid);
        if minute == warmup {
            warm_rss = last_rss;
        }
        p99s.push(p99);
        let now = (cpu_ticks(pid), prosody_pid.map_or(0, cpu_ticks));
        let now_delivered = delivery_buckets(metrics_port);
        let prosody_share = match prosody_pid {
            Some(_) => format!("  {}", share(now.1, ticks.1)),
            None => String::new(),
        };
        println!(
            "{minute:>6}  {last_rss:>7}  {:>10}  {:>6}  {:>8}  {p50:?}  {p99:?}  {max:?}  {p99_streams:?}  {p99_pascom:?}  {:>18}  {:>11}  {}{prosody_share}",
            sent.load(Ordering::Relaxed),
            ledger.missed(settled),
            ledger.resynced.load(Ordering::Relaxed),
            delivery_p99(&delivered, &now_delivered),
            ledger.headlines.swap(0, Ordering::Relaxed) / 60,
            share(now.0, ticks.0),
        );
        ticks = now;
        delivered = now_delivered;
    }
    // The exact tally: stop the stream, let the last joins arrive.
    stop.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(5));
    let last = sent.load(Ordering::Relaxed);
    let growth = if warm_rss > 0 {
        (last_rss as f64 - warm_rss as f64) / warm_rss as f64 * 100.0
    } else {
        0.0
    };
    let later = p99s.iter().skip(warmup as usize);
    let (lo, hi) = (
        later.clone().min().copied().unwrap_or_default(),
        later.max().copied().unwrap_or_default(),
    );
    println!(
        "{last} joins to {} consumers: {} missed, {} resyncs; rss after the {warmup}-minute warm-up {warm_rss} KiB, at the end {last_rss} KiB ({growth:+.1} %); p99 {lo:?} to {hi:?} after the warm-up; {} warnings in the daemon's log",
        sse + xmpp,
        ledger.missed(last),
        ledger.resynced.load(Ordering::Relaxed),
        warnings.load(Ordering::Relaxed),
    );
    let missing = ledger.missing(last, 8);
    if !missing.is_empty() {
        println!("consumers that missed joins (the first {} of them; from {sse} on, pascom sessions): {missing:?}", missing.len());
    }
    drop(daemon);
    Ok(())
}
