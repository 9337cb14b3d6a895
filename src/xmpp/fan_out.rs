//! The fan-out: state changes turned into the queue module's events, and a headline queued for
//! every subscribed session, rendered once per event.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::events::Published;
use super::outbound::{Outbound, Payload, Renderer};

use super::{events, Front};

/// Turns state changes into events and queues them for every subscribed session.
///
/// While the component link is down nothing can reach a client, so changes are not taken into
/// the published picture; when it is back, the clients get exactly the differences between
/// what they were told and the state now.
pub(super) async fn fan_out(front: Arc<Front>, shutdown: CancellationToken) {
    let mut changes = front.hub.subscribe();
    let mut link = front.connected.subscribe();
    let mut published = front
        .hub
        .read(|s| Published::of(s, &front.access.directory()));
    let mut behind = false;
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            up = link.changed() => match up {
                Ok(()) => None,
                Err(_) => return,
            },
            next = changes.recv() => Some(next),
        };
        let dir = front.access.directory();
        let up = *link.borrow_and_update();
        let folded = match &next {
            Some(Ok(batch)) if !behind => Some(batch.folded()),
            _ => None,
        };
        let events = match next {
            Some(Err(RecvError::Closed)) => return,
            _ if !up => {
                behind = true;
                continue;
            }
            None if !behind => continue,
            None => {
                info!("XMPP link back: sending the clients what changed meanwhile");
                behind = false;
                front.hub.read(|s| published.catch_up(s, &dir))
            }
            Some(Ok(batch)) if !behind => batch
                .iter()
                .flat_map(|c| published.apply(c, &dir))
                .collect(),
            Some(Ok(_)) | Some(Err(RecvError::Lagged(_))) => {
                if !behind {
                    warn!("XMPP fan-out fell behind; catching up from the state");
                }
                behind = false;
                front.hub.read(|s| published.catch_up(s, &dir))
            }
        };
        front.deliver(&events, &published, folded).await;
    }
}

impl Front {
    /// Queues one headline per event for every session that gets it (each at most once),
    /// rendered in chunks; waits while the link's backlog is full. `folded`: when the changes
    /// behind the events were folded, if they come from one batch.
    pub async fn deliver(
        &self,
        events: &[events::Event],
        published: &Published,
        folded: Option<Instant>,
    ) {
        if events.is_empty() || !*self.connected.borrow() {
            return;
        }
        let dir = self.access.directory();
        let mut headlines = Renderer::new(&self.component_str, &self.backlog, folded);
        for event in events {
            let recipients = self.sessions().recipients(event, &dir, published);
            if recipients.is_empty() {
                continue;
            }
            let payload = match Payload::new(&event.element()) {
                Ok(p) => p,
                Err(e) => {
                    warn!(%e, "event not serializable");
                    continue;
                }
            };
            for to in recipients {
                if !headlines.add(to.as_str(), &payload) {
                    warn!(%to, "address not serializable: headline skipped");
                }
                if let Some(chunk) = headlines.chunk(false).await {
                    if self.out.send(Outbound::Headlines(chunk)).await.is_err() {
                        return;
                    }
                }
            }
        }
        if let Some(chunk) = headlines.chunk(true).await {
            let _ = self.out.send(Outbound::Headlines(chunk)).await;
        }
    }
}
