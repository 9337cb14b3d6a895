//! Throughput benchmark (`cargo bench --bench throughput`): figures go to BENCHMARKS.md.
//!
//! 1. decode only, and decode + fold, of a generated stream of 1,000,000 realistic queue
//!    messages, in memory, on one core (the `replay` path);
//! 2. the live path: a loopback TCP AMI server streams the same messages to the real client
//!    task, which forwards them to a folding consumer; we count what arrived (zero lost).
//!
//! Set `QB_BENCH_MESSAGES` to change the count, `QB_BENCH_DUMP=FILE` to only write the stream
//! to FILE (then profile `queuebridge replay FILE`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::StreamExt;
use queuebridge::ami::client::{self, AmiHandle, Auth, ClientConfig};
use queuebridge::ami::{AmiCodec, Frame};
use queuebridge::state::{self, QueueIds, State, What};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::CancellationToken;

const MEMBERS: [&str; 8] = [
    "PJSIP/201",
    "PJSIP/202",
    "PJSIP/203",
    "PJSIP/204",
    "PJSIP/205",
    "PJSIP/206",
    "PJSIP/207",
    "PJSIP/208",
];
const QUEUES: [&str; 4] = ["sales", "support", "billing", "vip"];

fn member_block(
    out: &mut String,
    event: &str,
    queue: &str,
    iface: &str,
    status: u32,
    paused: bool,
) {
    out.push_str(&format!(
        "Event: {event}\r\nPrivilege: agent,all\r\nQueue: {queue}\r\nMemberName: Agent {iface}\r\nInterface: {iface}\r\n\
         StateInterface: {iface}\r\nMembership: dynamic\r\nPenalty: 0\r\nCallsTaken: 12\r\nLastCall: 1763700000\r\n\
         LastPause: 1763690000\r\nLoginTime: 1763680000\r\nInCall: 0\r\nStatus: {status}\r\nPaused: {}\r\n\
         PausedReason: {}\r\nRinginuse: 0\r\nWrapuptime: 0\r\n\r\n",
        paused as u8,
        if paused { "Lunch" } else { "" }
    ));
}

fn caller_block(out: &mut String, event: &str, queue: &str, n: u64, extra: &str) {
    out.push_str(&format!(
        "Event: {event}\r\nPrivilege: agent,all\r\nChannel: PJSIP/trunk-{n:08x}\r\nChannelState: 6\r\n\
         ChannelStateDesc: Up\r\nCallerIDNum: 4930{n:07}\r\nCallerIDName: Caller {n}\r\nConnectedLineNum: <unknown>\r\n\
         ConnectedLineName: <unknown>\r\nLanguage: en\r\nAccountCode: \r\nContext: from-trunk\r\nExten: 100\r\n\
         Priority: 3\r\nUniqueid: 1763700000.{n}\r\nLinkedid: 1763700000.{n}\r\nQueue: {queue}\r\n{extra}\r\n"
    ));
}

/// Realistic traffic: callers join, ring, connect and complete or abandon; members change state
/// and pause. Returns the bytes (banner included) and the number of messages.
fn generate(messages: usize) -> (Vec<u8>, usize) {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut out = String::with_capacity(messages * 700);
    out.push_str("Asterisk Call Manager/11.0.0\r\n");
    let mut count = 0;
    let mut n: u64 = 0;
    let mut waiting: Vec<(u64, &str)> = Vec::new();
    while count < messages {
        match rng.u32(0..10) {
            0..=2 => {
                n += 1;
                let q = QUEUES[rng.usize(..QUEUES.len())];
                let pos = waiting.iter().filter(|w| w.1 == q).count() + 1;
                caller_block(
                    &mut out,
                    "QueueCallerJoin",
                    q,
                    n,
                    &format!("Position: {pos}\r\nCount: {pos}\r\n"),
                );
                waiting.push((n, q));
                count += 1;
            }
            3..=4 if !waiting.is_empty() => {
                let (id, q) = waiting.remove(0);
                let m = MEMBERS[rng.usize(..MEMBERS.len())];
                let agent = format!("Interface: {m}\r\nMemberName: Agent {m}\r\n");
                caller_block(&mut out, "AgentCalled", q, id, &agent);
                caller_block(
                    &mut out,
                    "QueueCallerLeave",
                    q,
                    id,
                    "Position: 1\r\nCount: 0\r\n",
                );
                caller_block(
                    &mut out,
                    "AgentConnect",
                    q,
                    id,
                    &format!("{agent}HoldTime: 12\r\nRingTime: 3\r\n"),
                );
                caller_block(
                    &mut out,
                    "AgentComplete",
                    q,
                    id,
                    &format!("{agent}HoldTime: 12\r\nTalkTime: 95\r\nReason: caller\r\n"),
                );
                count += 4;
            }
            5 if !waiting.is_empty() => {
                let (id, q) = waiting.remove(0);
                caller_block(
                    &mut out,
                    "QueueCallerAbandon",
                    q,
                    id,
                    "Position: 1\r\nOriginalPosition: 1\r\nHoldTime: 30\r\n",
                );
                caller_block(
                    &mut out,
                    "QueueCallerLeave",
                    q,
                    id,
                    "Position: 1\r\nCount: 0\r\n",
                );
                count += 2;
            }
            6 => {
                let q = QUEUES[rng.usize(..QUEUES.len())];
                member_block(
                    &mut out,
                    "QueueMemberPause",
                    q,
                    MEMBERS[rng.usize(..MEMBERS.len())],
                    1,
                    rng.bool(),
                );
                count += 1;
            }
            _ => {
                let q = QUEUES[rng.usize(..QUEUES.len())];
                let status = [1, 2, 6, 1, 5][rng.usize(..5)];
                member_block(
                    &mut out,
                    "QueueMemberStatus",
                    q,
                    MEMBERS[rng.usize(..MEMBERS.len())],
                    status,
                    false,
                );
                count += 1;
            }
        }
    }
    (out.into_bytes(), count)
}

fn decode_only(bytes: &[u8]) -> (usize, Duration) {
    let started = Instant::now();
    let mut codec = AmiCodec::default();
    let mut buf = BytesMut::from(bytes);
    let mut n = 0;
    while let Ok(Some(frame)) = codec.decode_eof(&mut buf) {
        if let Frame::Message(m) = frame {
            n += 1;
            std::hint::black_box(&m);
        }
    }
    (n, started.elapsed())
}

/// A minimal AMI server: banner, answers Login/Ping/QueueStatus, then streams `bytes`.
async fn serve(listener: TcpListener, bytes: Arc<Vec<u8>>) {
    let Ok((sock, _)) = listener.accept().await else {
        return;
    };
    let (rd, mut wr) = sock.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let _ = tx.send(b"Asterisk Call Manager/11.0.0\r\n".to_vec()).await;
    let mut actions = FramedRead::new(rd, AmiCodec::without_banner(1 << 20));
    let replies = tx.clone();
    let responder = tokio::spawn(async move {
        while let Some(Ok(Frame::Message(m))) = actions.next().await {
            let id = m.action_id().unwrap_or_default().to_owned();
            let reply = match m.get("Action").unwrap_or_default() {
                "QueueStatus" => format!(
                    "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Queue status will follow\r\n\r\n\
                     Event: QueueStatusComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n"
                ),
                "Login" => format!("Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\nEvent: FullyBooted\r\nPrivilege: system,all\r\nUptime: 1\r\nLastReload: 1\r\nStatus: Fully Booted\r\n\r\n"),
                _ => format!("Response: Success\r\nActionID: {id}\r\nPing: Pong\r\n\r\n"),
            };
            if replies.send(reply.into_bytes()).await.is_err() {
                return;
            }
        }
    });
    // Let the login and first resync settle, then stream in whole-message chunks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = &bytes["Asterisk Call Manager/11.0.0\r\n".len()..];
    let mut start = 0;
    while start < body.len() {
        let mut end = (start + 256 * 1024).min(body.len());
        while end < body.len() && &body[end - 4..end] != b"\r\n\r\n" {
            end += 1;
        }
        if tx.send(body[start..end].to_vec()).await.is_err() {
            break;
        }
        start = end;
    }
    drop(tx);
    let _ = responder.await;
    let _ = writer.await;
}

async fn live(bytes: Arc<Vec<u8>>, expected: usize) -> (usize, Duration) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(serve(listener, bytes));
    let cfg = ClientConfig {
        id: Arc::from("bench"),
        host: "127.0.0.1".into(),
        port,
        username: "bench".into(),
        secret: "bench".into(),
        auth: Auth::Plain,
        max_frame: 1 << 20,
        connect_timeout: Duration::from_secs(5),
        action_timeout: Duration::from_secs(30),
        ping_interval: Duration::from_secs(30),
        reconcile_interval: Duration::from_secs(3600),
        backoff_max: Duration::from_secs(1),
    };
    let (handle, requests) = AmiHandle::new(cfg.id.clone());
    let (tx, mut rx) = mpsc::channel(queuebridge::hub::INPUT_QUEUE);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(client::run(cfg, requests, tx, shutdown.clone()));
    let mut st = State::new(["bench"], QueueIds::default());
    let mut events = 0;
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while events < expected && Instant::now() < deadline {
        let Ok(Some(input)) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await else {
            break;
        };
        if matches!(input.what, What::Event(_)) {
            started.get_or_insert_with(Instant::now);
            events += 1;
        }
        state::apply(&mut st, &input);
    }
    let elapsed = started.map_or(Duration::ZERO, |s| s.elapsed());
    shutdown.cancel();
    drop(handle);
    let _ = task.await;
    (events, elapsed)
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent: keep that fast.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let messages: usize = std::env::var("QB_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (bytes, count) = generate(messages);
    if let Ok(path) = std::env::var("QB_BENCH_DUMP") {
        // For profiling the same stream with `queuebridge replay FILE`.
        std::fs::write(&path, &bytes).expect("write QB_BENCH_DUMP");
        println!("stream written to {path}");
        return;
    }
    println!(
        "stream: {count} messages, {:.1} MiB",
        bytes.len() as f64 / 1048576.0
    );
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);

    // Warm-up: the first pass pays for first-touch page faults of the input and the allocator.
    let _ = decode_only(&bytes);
    let (n, d) = decode_only(&bytes);
    println!(
        "decode only:        {n} messages in {:.3} s = {:>10.0} messages/s",
        d.as_secs_f64(),
        rate(n, d)
    );
    let _ = queuebridge::replay::replay(&bytes, "bench", 1 << 20);
    let r = queuebridge::replay::replay(&bytes, "bench", 1 << 20);
    let fold = rate(r.messages as usize, r.elapsed);
    println!(
        "decode + fold:      {} messages in {:.3} s = {:>10.0} messages/s ({} changes)",
        r.messages,
        r.elapsed.as_secs_f64(),
        fold,
        r.changes
    );
    println!(
        "fold share of decode+fold time: {:.0}%",
        100.0 * (1.0 - d.as_secs_f64() / r.elapsed.as_secs_f64())
    );
    println!(
        "ratio decode+fold / decode only: {:.2}",
        r.elapsed.as_secs_f64() / d.as_secs_f64()
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let bytes = Arc::new(bytes);
    let (received, d) = runtime.block_on(live(bytes, count));
    println!(
        "live over TCP:      {received} of {count} messages in {:.3} s = {:>10.0} messages/s, lost {}",
        d.as_secs_f64(),
        rate(received, d),
        count - received
    );
}
