//! `GET /api/v1/events`: the change stream as Server-Sent Events.
//!
//! A new client gets `event: snapshot` (the whole state, `id:` = its sequence number), then one
//! `event: change` per change with `id:` = the change's sequence number. A client that
//! reconnects with `Last-Event-ID` gets exactly the changes after that id, or a fresh snapshot
//! when the id is older than the hub's ring (or from before a restart we cannot bridge).
//! A client that reads too slowly to keep up loses its place in the broadcast and receives a
//! fresh snapshot instead — it never slows anyone else down.
//!
//! A stream that is sent a batch gathers what else comes within [`GATHER`] and writes it all
//! at once: at a busy site (2,000 changes a second, 500 streams) each stream then wakes and
//! writes at most 250 times a second instead of once for every change.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::http::{ApiError, AppState};
use crate::hub::{Batch, Hub, Resume};
use crate::state::{Change, Snapshot};

/// Comment lines sent on an idle stream so proxies and clients see it is alive.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// How long a stream that was sent a batch gathers what follows before it writes: the most an
/// event waits for the ones after it. 4 ms keeps the p99 of a big site's 500 streams under
/// 20 ms; 10 ms cost 6–8 ms more for 10–15 % less of a core (BENCHMARKS.md, "Fan-out").
pub const GATHER: Duration = Duration::from_millis(4);

struct Subscription {
    hub: Arc<Hub>,
    rx: broadcast::Receiver<Batch>,
    cursor: u64,
    /// What the stream starts with: a snapshot, or the changes since `Last-Event-ID`.
    first: Option<Bytes>,
    /// Rendered batches gathered, to be written one after the other.
    pending: VecDeque<Bytes>,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
}

/// Appends one event (`event:`, `id:`, `data:` as JSON) to `out`; a value that does not
/// serialize becomes a comment.
fn event(out: &mut Vec<u8>, name: &str, id: u64, data: &impl Serialize) {
    let start = out.len();
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\nid: ");
    // serde_json writes a number with itoa: cheaper than `write!` for every change.
    let numbered = serde_json::to_writer(&mut *out, &id).is_ok();
    out.extend_from_slice(b"\ndata: ");
    if numbered && serde_json::to_writer(&mut *out, data).is_ok() {
        out.extend_from_slice(b"\n\n");
    } else {
        out.truncate(start);
        let _ = write!(out, ": {name} {id} not serialisable\n\n");
    }
}

/// `event: snapshot` of `snapshot`.
fn snapshot(snapshot: &Snapshot) -> Bytes {
    let mut out = Vec::new();
    event(&mut out, "snapshot", snapshot.seq, snapshot);
    Bytes::from(out)
}

/// `event: change` for each of `changes`.
fn changes<'c>(changes: impl IntoIterator<Item = &'c Arc<Change>>) -> Bytes {
    let mut out = Vec::new();
    for c in changes {
        event(&mut out, "change", c.seq, &**c);
    }
    Bytes::from(out)
}

/// What one message of the broadcast gives a stream.
enum Step {
    /// Bytes to write after what is pending.
    Send(Bytes),
    /// A fresh snapshot, which replaces whatever is pending.
    Restart(Bytes),
    /// Nothing the client has not had.
    Skip,
    End,
}

impl Subscription {
    /// The next bytes for the client: a batch of changes (rendered once for every stream), a
    /// fresh snapshot after lagging behind, or a keepalive comment; None at the end.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if let Some(bytes) = self.pending.pop_front() {
            return Some(bytes);
        }
        loop {
            let received = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                r = tokio::time::timeout(KEEPALIVE, self.rx.recv()) => r,
            };
            let Ok(received) = received else {
                return Some(Bytes::from_static(b":\n\n"));
            };
            match self.step(received) {
                Step::End => return None,
                Step::Skip => continue,
                Step::Send(bytes) | Step::Restart(bytes) => self.pending.push_back(bytes),
            }
            // What follows within GATHER goes out with it: the frames are ready one after
            // the other, so the server writes them together.
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(GATHER) => {}
            }
            loop {
                let received = match self.rx.try_recv() {
                    Ok(batch) => Ok(batch),
                    Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                };
                match self.step(received) {
                    Step::Send(bytes) => self.pending.push_back(bytes),
                    Step::Restart(bytes) => {
                        self.pending.clear();
                        self.pending.push_back(bytes);
                    }
                    Step::Skip | Step::End => {}
                }
            }
            return self.pending.pop_front();
        }
    }

    /// What a message of the broadcast gives the client, with the cursor moved past it.
    fn step(&mut self, received: Result<Batch, RecvError>) -> Step {
        match received {
            Ok(batch) => {
                let Some(last) = batch.last().map(|c| c.seq) else {
                    return Step::Skip;
                };
                if last <= self.cursor {
                    return Step::Skip;
                }
                let cursor = std::mem::replace(&mut self.cursor, last);
                // Only a batch that overlaps what the client started with is cut.
                Step::Send(if batch.first().is_some_and(|c| c.seq > cursor) {
                    batch.rendered(|all| changes(all))
                } else {
                    changes(batch.iter().filter(|c| c.seq > cursor))
                })
            }
            Err(RecvError::Lagged(_)) => {
                let fresh = self.hub.read(|s| s.snapshot());
                self.cursor = fresh.seq;
                Step::Restart(snapshot(&fresh))
            }
            Err(RecvError::Closed) => Step::End,
        }
    }
}

/// The SSE handler.
pub async fn events(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest("Last-Event-ID must be a sequence number".into())
                })?,
        ),
    };
    let permit = app
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Unavailable("too many event streams open".into()))?;
    // Subscribe before reading the state, so nothing falls between the two.
    let rx = app.hub.subscribe();
    let (cursor, first) = match app.hub.resume(last) {
        Resume::Snapshot(s) => (s.seq, snapshot(&s)),
        Resume::Backlog(backlog) => (
            backlog.last().map_or(last.unwrap_or(0), |c| c.seq),
            changes(&backlog),
        ),
    };
    let sub = Subscription {
        hub: app.hub.clone(),
        rx,
        cursor,
        first: Some(first).filter(|b| !b.is_empty()),
        pending: VecDeque::new(),
        shutdown: app.shutdown.clone(),
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(sub, |mut sub| async move {
        let bytes = sub.next().await?;
        Some((Ok::<_, Infallible>(bytes), sub))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Input, LinkChange, QueueIds, What};

    fn link(change: LinkChange) -> Input {
        Input {
            server: Arc::from("pbx1"),
            at_ms: 1,
            what: What::Link(change),
        }
    }

    fn subscription(hub: &Arc<Hub>, cursor: u64) -> Subscription {
        let permits = Arc::new(tokio::sync::Semaphore::new(1));
        Subscription {
            hub: hub.clone(),
            rx: hub.subscribe(),
            cursor,
            first: None,
            pending: VecDeque::new(),
            shutdown: CancellationToken::new(),
            _permit: permits.try_acquire_owned().expect("permit"),
        }
    }

    /// Folds a link going up and down as one batch; the sequence numbers of its two changes.
    async fn up_and_down(hub: &Hub, raw: &mut broadcast::Receiver<Batch>) -> Vec<u64> {
        let inputs = [link(LinkChange::Up), link(LinkChange::Down("cut".into()))];
        assert_eq!(hub.apply_all(&inputs), 2, "one change per input");
        let batch = raw.recv().await.expect("batch");
        batch.iter().map(|c| c.seq).collect()
    }

    #[tokio::test]
    async fn a_batch_is_rendered_once_for_every_stream_and_cut_only_where_it_overlaps() {
        let hub = Hub::new(crate::state::State::new(["pbx1"], QueueIds::default()));
        let mut fresh = subscription(&hub, 0);
        let mut other = subscription(&hub, 0);
        let mut raw = hub.subscribe();
        let seqs = up_and_down(&hub, &mut raw).await;

        let a = fresh.next().await.expect("bytes");
        let b = other.next().await.expect("bytes");
        assert_eq!(a.as_ptr(), b.as_ptr(), "one rendering, shared");
        let text = std::str::from_utf8(&a).expect("utf-8");
        let events: Vec<&str> = text.split_terminator("\n\n").collect();
        assert_eq!(events.len(), 2, "{text}");
        for (e, seq) in events.iter().zip(&seqs) {
            let lines: Vec<&str> = e.lines().collect();
            assert_eq!(lines[0], "event: change");
            assert_eq!(lines[1], format!("id: {seq}"));
            let data: serde_json::Value =
                serde_json::from_str(lines[2].strip_prefix("data: ").expect("data")).expect("json");
            assert_eq!(data["seq"], *seq);
        }

        // A stream that started after the first change of the next batch gets only the rest.
        let mut late = subscription(&hub, 0);
        let next = up_and_down(&hub, &mut raw).await;
        late.cursor = next[0];
        let cut = late.next().await.expect("bytes");
        let text = std::str::from_utf8(&cut).expect("utf-8");
        assert_eq!(text.matches("event: change").count(), 1, "{text}");
        assert!(text.contains(&format!("id: {}\n", next[1])), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn what_follows_within_the_gather_time_is_ready_with_it() {
        use futures_util::FutureExt;
        let hub = Hub::new(crate::state::State::new(["pbx1"], QueueIds::default()));
        let mut s = subscription(&hub, 0);
        let mut raw = hub.subscribe();
        let one = up_and_down(&hub, &mut raw).await;
        let two = up_and_down(&hub, &mut raw).await;
        let a = s.next().await.expect("bytes");
        assert!(std::str::from_utf8(&a)
            .expect("utf-8")
            .contains(&format!("id: {}\n", one[0])));
        // The second batch is already gathered: ready at once, written with the first.
        let b = s.next().now_or_never().flatten().expect("ready at once");
        assert!(std::str::from_utf8(&b)
            .expect("utf-8")
            .contains(&format!("id: {}\n", two[0])));
        assert!(s.next().now_or_never().is_none(), "nothing else yet");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_lags_while_gathering_gets_only_the_fresh_snapshot() {
        let hub = Hub::new(crate::state::State::new(["pbx1"], QueueIds::default()));
        let mut s = subscription(&hub, 0);
        hub.apply(&link(LinkChange::Up));
        // One batch is received; then more than the broadcast holds go by while it gathers.
        let mut lagging = Box::pin(s.next());
        assert!(futures_util::poll!(lagging.as_mut()).is_pending());
        for i in 0..crate::hub::BROADCAST_CAPACITY + 1 {
            let change = if i % 2 == 0 {
                LinkChange::Down("cut".into())
            } else {
                LinkChange::Up
            };
            hub.apply(&link(change));
        }
        let first = lagging.await.expect("bytes");
        let text = std::str::from_utf8(&first).expect("utf-8");
        assert!(text.starts_with("event: snapshot"), "{text}");
        assert_eq!(s.cursor, hub.read(|st| st.snapshot().seq));
        assert!(s.pending.is_empty());
    }
}
