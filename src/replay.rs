//! `queuebridge replay FILE`: fold a recorded AMI byte stream offline.
//!
//! The file is exactly what was read from the socket, banner included. It goes through the same
//! codec, the same reply routing and the same fold as the live daemon; QueueStatus replies are
//! folded with the scope their ActionID names (see [`scope_of`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::ami::client::scope_of;
use crate::ami::demux::{Demux, Routed};
use crate::ami::{AmiCodec, Frame};
use crate::state::{self, Input, QueueIds, QueueStatus, State, What};

/// What a replay found.
#[derive(Debug)]
pub struct Replay {
    pub state: State,
    /// Messages decoded (events, responses and list items).
    pub messages: u64,
    /// Frames skipped as malformed, oversized or truncated.
    pub skipped: u64,
    /// Changes the fold produced.
    pub changes: u64,
    pub elapsed: Duration,
}

/// Folds `bytes` as the stream of server `server`.
pub fn replay(bytes: &[u8], server: &str, max_frame: usize) -> Replay {
    let server: Arc<str> = Arc::from(server);
    let mut state = State::new([&*server], QueueIds::default());
    // A capture has no login: treat the link as up, so a full QueueStatus marks it synced.
    let up = Input {
        server: server.clone(),
        at_ms: 0,
        what: What::Link(state::LinkChange::Up),
    };
    state::apply(&mut state, &up);
    let mut codec = AmiCodec::new(max_frame);
    let mut demux = Demux::default();
    let mut buf = BytesMut::from(bytes);
    let (mut messages, mut skipped, mut changes) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    while let Ok(Some(frame)) = codec.decode_eof(&mut buf) {
        let message = match frame {
            Frame::Message(m) => m,
            Frame::Skipped(_) => {
                skipped += 1;
                continue;
            }
            Frame::Banner(_) => continue,
        };
        messages += 1;
        // An event's prelude puts `Timestamp` third, after Event and Privilege (ami.md §1.6):
        // looking only there spares a scan of every header of every message.
        let at_ms = message
            .headers()
            .take(3)
            .find(|(k, _)| *k == "Timestamp")
            .and_then(|(_, t)| t.parse::<f64>().ok())
            .map_or(0, |t| (t * 1000.0) as u64);
        let what = match demux.push(message) {
            Routed::Pending => continue,
            Routed::Event(m) => What::Event(m),
            Routed::Reply { action_id, reply } => {
                if reply.response.get("Message") != Some("Queue status will follow") {
                    continue;
                }
                What::Snapshot(QueueStatus {
                    scope: scope_of(&action_id, &reply.items),
                    items: reply.items,
                })
            }
        };
        let input = Input {
            server: server.clone(),
            at_ms,
            what,
        };
        changes += state::apply(&mut state, &input).len() as u64;
    }
    Replay {
        state,
        messages,
        skipped,
        changes,
        elapsed: started.elapsed(),
    }
}
