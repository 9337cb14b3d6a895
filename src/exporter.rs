//! The Prometheus exporter: `GET /metrics`, with every gauge read from the state at scrape
//! time, and the counters kept from the hub's change stream. The names, help texts and
//! recording functions are [`crate::metrics`]'s; the XMPP gauges come through
//! [`SessionGauges`], which the component implements.

use std::collections::BTreeSet;
use std::sync::Arc;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::hub::Hub;
use crate::metrics::*;
use crate::state::{Change, ChangeKind, State};
use crate::view::Availability;

/// The scrape side: the recorder's handle plus what the gauges are read from.
#[derive(Clone)]
pub struct Exporter {
    handle: PrometheusHandle,
    hub: Arc<Hub>,
    sessions: Option<Arc<dyn SessionGauges>>,
}

impl Exporter {
    /// Renders `handle`'s metrics with the gauges read from `hub`.
    pub fn new(handle: PrometheusHandle, hub: Arc<Hub>) -> Self {
        Exporter {
            handle,
            hub,
            sessions: None,
        }
    }

    /// Reads the XMPP gauges from this front end.
    pub fn with_sessions(mut self, front: Option<Arc<dyn SessionGauges>>) -> Self {
        self.sessions = front;
        self
    }

    /// The exposition, with every gauge read from the state now.
    pub fn render(&self) -> String {
        let now = crate::clock::now_secs();
        self.hub.read(|s| set_gauges(s, now));
        if let Some(front) = &self.sessions {
            let (up, sessions, subscriptions) = front.session_gauges();
            gauge!(XMPP_LINK_UP).set(f64::from(u8::from(up)));
            gauge!(XMPP_SESSIONS).set(sessions as f64);
            gauge!(XMPP_SUBSCRIPTIONS).set(subscriptions as f64);
        }
        self.handle.render()
    }
}

fn set_gauges(state: &State, now: i64) {
    let resync = resync_durations();
    for server in state.servers.values() {
        gauge!(AMI_LINK_UP, "server" => server.id.to_string())
            .set(f64::from(u8::from(server.link.connected)));
        if let Some(took) = resync.get(&*server.id) {
            gauge!(AMI_RESYNC_DURATION, "server" => server.id.to_string()).set(*took);
        }
    }
    for q in state.queues() {
        let labels = [
            ("server", q.server.to_string()),
            ("queue", q.name.to_string()),
        ];
        gauge!(QUEUE_CALLERS_WAITING, &labels).set(q.callers.len() as f64);
        let longest = q
            .callers
            .iter()
            .map(|c| now.saturating_sub(c.entered).max(0))
            .max()
            .unwrap_or(0);
        gauge!(QUEUE_LONGEST_WAIT, &labels).set(longest as f64);
        gauge!(QUEUE_MEMBERS_LOGGED_IN, &labels).set(q.members.len() as f64);
        for state in Availability::ALL {
            let n = q
                .members
                .values()
                .filter(|m| Availability::of(m) == state)
                .count();
            let labels = [
                ("server", q.server.to_string()),
                ("queue", q.name.to_string()),
                ("state", state.as_str().to_owned()),
            ];
            gauge!(QUEUE_MEMBERS, &labels).set(n as f64);
        }
        gauge!(QUEUE_SERVICE_LEVEL, &labels).set(q.stats.service_level_perf / 100.0);
    }
}

/// Counts callers joined, answered and abandoned, wait and talk times, and AMI reconnects,
/// from the hub's change stream. A lag (more than the broadcast's capacity behind) loses
/// counts and is logged; it never slows the state.
pub async fn count_changes(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut changes = hub.subscribe();
    let mut logged_in: BTreeSet<Arc<str>> = BTreeSet::new();
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = changes.recv() => match c {
                Ok(batch) => batch,
                Err(RecvError::Lagged(n)) => {
                    warn!(missed = n, "metrics fell behind the change stream; counts are low");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        for change in batch.iter() {
            count(change, &mut logged_in);
        }
    }
}

/// Counts one change.
fn count(change: &Change, logged_in: &mut BTreeSet<Arc<str>>) {
    let server = change.server.to_string();
    match &change.kind {
        ChangeKind::Link(link) if link.connected && !link.synced => {
            // A login after the first is a reconnect.
            let again = !logged_in.insert(change.server.clone());
            counter!(AMI_RECONNECTS, "server" => server).increment(u64::from(again));
        }
        ChangeKind::CallerJoined { queue, .. } => {
            counter!(QUEUE_CALLERS_JOINED, "server" => server, "queue" => queue.to_string())
                .increment(1);
        }
        ChangeKind::CallConnected { queue, call } => {
            let labels = [("server", server), ("queue", queue.to_string())];
            counter!(QUEUE_CALLERS_ANSWERED, &labels).increment(1);
            histogram!(QUEUE_WAIT, &labels).record(call.hold_time as f64);
        }
        ChangeKind::CallCompleted {
            queue,
            talk_time,
            reason,
            ..
        } if reason != "dump" => {
            histogram!(QUEUE_TALK, "server" => server, "queue" => queue.to_string())
                .record(*talk_time as f64);
        }
        ChangeKind::CallerLeft {
            queue,
            abandoned: true,
            ..
        } => {
            counter!(QUEUE_CALLERS_ABANDONED, "server" => server, "queue" => queue.to_string())
                .increment(1);
        }
        _ => {}
    }
}

/// `GET /metrics`.
pub fn router(exporter: Exporter) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let exporter = exporter.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    exporter.render(),
                )
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_label_takes_the_five_availabilities_in_order() {
        let names = Availability::ALL.map(Availability::as_str);
        assert_eq!(names, MEMBER_STATES);
    }
}
