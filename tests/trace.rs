//! Recorded AMI sessions from a real Asterisk 22.10.1, replayed offline.
//!
//! `traces/session.ami` is every byte queuebridge's login (`bridge`, `Events: agent,system`) read
//! while a driver paused a member, placed an answered and an abandoned call and added a dynamic
//! member; it contains full and per-queue QueueStatus replies with queuebridge's ActionIDs.
//! `traces/session.truth.ami` is Asterisk's own QueueStatus taken right after.

mod common;

use bytes::BytesMut;
use proptest::prelude::*;
use queuebridge::ami::{AmiCodec, Frame, Message};
use tokio_util::codec::{Decoder, Encoder};

const SESSION: &[u8] = include_bytes!("traces/session.ami");
const TRUTH: &[u8] = include_bytes!("traces/session.truth.ami");

fn decode_chunks(input: &[u8], sizes: &[usize]) -> Vec<Frame> {
    let mut codec = AmiCodec::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(usize::MAX)
            .clamp(1, rest.len());
        i += 1;
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(f) = codec.decode(&mut buf).expect("decode") {
            out.push(f);
        }
    }
    while let Some(f) = codec.decode_eof(&mut buf).expect("decode_eof") {
        out.push(f);
    }
    out
}

fn truth_items(queue: &str) -> Vec<Message> {
    decode_chunks(TRUTH, &[usize::MAX])
        .into_iter()
        .filter_map(|f| match f {
            Frame::Message(m) if m.get("Queue") == Some(queue) && m.event_name().is_some() => {
                Some(m)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn replayed_session_equals_asterisks_queue_status() {
    let r = queuebridge::replay::replay(SESSION, "pbx1", 1 << 20);
    assert_eq!(r.skipped, 0);
    let snapshot = serde_json::to_value(r.state.snapshot()).expect("json");
    for name in ["sales", "support"] {
        let ours = snapshot["queues"]
            .as_array()
            .and_then(|qs| qs.iter().find(|q| q["name"] == name))
            .cloned()
            .expect("queue");
        if let Some(d) = common::diff(&truth_items(name), &ours) {
            panic!("{name}: {d}\n{ours:#}");
        }
    }
    assert_eq!(snapshot["servers"][0]["synced"], true);
}

#[test]
fn recorded_session_decodes_every_message() {
    let frames = decode_chunks(SESSION, &[usize::MAX]);
    assert!(matches!(&frames[0], Frame::Banner(b) if b == "Asterisk Call Manager/11.0.0"));
    assert!(frames[1..].iter().all(|f| matches!(f, Frame::Message(_))));
    assert!(frames.len() > 30, "{} frames", frames.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any split of a recorded stream into chunks decodes to the same messages.
    #[test]
    fn any_chunking_decodes_the_same(sizes in proptest::collection::vec(1usize..700, 1..40)) {
        let whole = decode_chunks(SESSION, &[usize::MAX]);
        prop_assert_eq!(decode_chunks(SESSION, &sizes), whole);
    }

    /// Encoding a message and decoding it gives the message back.
    #[test]
    fn encode_then_decode_round_trips(
        headers in proptest::collection::vec(("[A-Za-z][A-Za-z0-9()/_-]{0,20}", "[^\r\n]{0,40}"), 1..20)
    ) {
        let mut m = Message::new();
        for (k, v) in &headers {
            m.push(k, v);
        }
        let mut buf = BytesMut::new();
        AmiCodec::default().encode(&m, &mut buf).expect("encode");
        let frames = decode_chunks(&buf, &[usize::MAX]);
        // Values are split at the first ": ", so a key never gains what a value holds.
        prop_assert_eq!(frames, vec![Frame::Message(m)]);
    }
}
