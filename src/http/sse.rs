//! `GET /api/v1/events`: the change stream as Server-Sent Events.
//!
//! A new client gets `event: snapshot` (the whole state, `id:` = its sequence number), then one
//! `event: change` per change with `id:` = the change's sequence number. A client that
//! reconnects with `Last-Event-ID` gets exactly the changes after that id, or a fresh snapshot
//! when the id is older than the hub's ring (or from before a restart we cannot bridge).
//! A client that reads too slowly to keep up loses its place in the broadcast and receives a
//! fresh snapshot instead — it never slows anyone else down.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::{ApiError, AppState};
use crate::hub::{Batch, Hub, Resume};
use crate::state::{Change, Snapshot};

/// Comment lines sent on an idle stream so proxies and clients see it is alive.
const KEEPALIVE: Duration = Duration::from_secs(15);

struct Subscription {
    hub: Arc<Hub>,
    rx: broadcast::Receiver<Batch>,
    cursor: u64,
    queued: VecDeque<Event>,
    /// The batch being sent, and how far.
    batch: Option<(Batch, usize)>,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
}

fn snapshot_event(s: &Snapshot) -> Event {
    Event::default()
        .event("snapshot")
        .id(s.seq.to_string())
        .json_data(s)
        .unwrap_or_else(|_| Event::default().comment("snapshot not serialisable"))
}

fn change_event(c: &Change) -> Event {
    Event::default()
        .event("change")
        .id(c.seq.to_string())
        .json_data(c)
        .unwrap_or_else(|_| Event::default().comment("change not serialisable"))
}

/// The SSE handler.
pub async fn events(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
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
    let (cursor, queued) = match app.hub.resume(last) {
        Resume::Snapshot(s) => (s.seq, VecDeque::from([snapshot_event(&s)])),
        Resume::Backlog(changes) => (
            changes.last().map_or(last.unwrap_or(0), |c| c.seq),
            changes.iter().map(|c| change_event(c)).collect(),
        ),
    };
    let sub = Subscription {
        hub: app.hub.clone(),
        rx,
        cursor,
        queued,
        batch: None,
        shutdown: app.shutdown.clone(),
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(sub, |mut sub| async move {
        loop {
            if let Some(event) = sub.queued.pop_front() {
                return Some((Ok(event), sub));
            }
            if let Some((batch, next)) = &mut sub.batch {
                while let Some(change) = batch.get(*next) {
                    *next += 1;
                    if change.seq > sub.cursor {
                        sub.cursor = change.seq;
                        return Some((Ok(change_event(change)), sub));
                    }
                }
                sub.batch = None;
            }
            tokio::select! {
                _ = sub.shutdown.cancelled() => return None,
                received = sub.rx.recv() => match received {
                    Ok(batch) => sub.batch = Some((batch, 0)),
                    Err(RecvError::Lagged(_)) => {
                        let snapshot = sub.hub.read(|s| s.snapshot());
                        sub.cursor = snapshot.seq;
                        return Some((Ok(snapshot_event(&snapshot)), sub));
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEPALIVE)))
}
