//! What the vendors' event pushes share (Yeastar's `/openapi/v1.0/subscribe`, PortSIP's `/wsi`):
//! bounded writes, the closing frame, and the per-user socket count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use tokio::time::timeout;

/// A frame not written within this is a stalled client: the socket is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Push sockets one user may hold open at once, per push.
pub const SOCKETS_PER_USER: usize = 4;

pub type Sink = SplitSink<WebSocket, Message>;

/// Writes `texts` in order; `false` when the client is gone or did not take a frame within
/// [`WRITE_TIMEOUT`] (the socket is then dropped, not waited for).
pub async fn send_all(tx: &mut Sink, texts: impl IntoIterator<Item = String>) -> bool {
    for text in texts {
        match timeout(WRITE_TIMEOUT, tx.send(Message::Text(text.into()))).await {
            Ok(Ok(())) => {}
            _ => return false,
        }
    }
    true
}

/// Closes with code 1000 and the reason, if the client still takes it.
pub async fn close(tx: &mut Sink, why: &'static str) {
    let frame = Message::Close(Some(CloseFrame {
        code: close_code::NORMAL,
        reason: why.into(),
    }));
    let _ = timeout(WRITE_TIMEOUT, tx.send(frame)).await;
}

/// Open sockets per user name.
#[derive(Debug, Default)]
pub struct PerUser(Mutex<HashMap<String, usize>>);

/// One open socket of a user; gives its place back when dropped.
pub struct Slot(Arc<PerUser>, String);

impl PerUser {
    /// A place for one more socket of `user`, unless they hold [`SOCKETS_PER_USER`].
    pub fn claim(self: &Arc<Self>, user: &str) -> Option<Slot> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(user.to_owned()).or_default();
        if *n >= SOCKETS_PER_USER {
            return None;
        }
        *n += 1;
        Some(Slot(self.clone(), user.to_owned()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_four_sockets() {
        let sockets = Arc::new(PerUser::default());
        let held: Vec<Slot> = (0..SOCKETS_PER_USER)
            .map(|_| sockets.claim("tweber").expect("room"))
            .collect();
        assert!(sockets.claim("tweber").is_none());
        assert!(sockets.claim("boss").is_some());
        drop(held);
        assert!(sockets.claim("tweber").is_some());
    }
}
