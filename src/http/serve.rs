//! The HTTP listener: a bounded number of connections, and no client that can hold one without
//! sending a request.
//!
//! * **Connections.** At most `max_connections` are open. A new one beyond that takes the place
//!   of the oldest *idle* connection — one that is between requests, or has not finished sending
//!   a request head — which is closed. When every connection is busy with a request (a command
//!   waiting for Asterisk, an event stream), the new one is answered `503` and closed. So ten
//!   thousand idle or half-sent connections cost at most `max_connections` sockets and never
//!   keep a normal request out, and the sockets the AMI links reconnect with are never used up
//!   (the cap stays well under the open-file limit: [`fit_to_open_files`]).
//! * **Slow and idle clients.** A request head must arrive within `request_timeout` of the
//!   connection being ready for it (hyper's header read timeout); the same timer closes a
//!   keep-alive connection that sends nothing for that long. A request body must arrive whole
//!   within `request_timeout` of its head (else the request fails as a bad request). Heads are
//!   at most [`MAX_HEAD_BYTES`] (`431` beyond), bodies as [`super::body`] bounds them.
//!
//! The peer address is put in each request's extensions as axum's `ConnectInfo`, for the login
//! throttle ([`super::auth`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;
use tracing::{debug, warn};

/// The largest request head (request line and headers), bytes.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// File descriptors kept free of HTTP connections for everything else: AMI links, the XMPP
/// link, the metrics listener, the history database.
pub const RESERVED_FILES: usize = 256;

/// The listener's limits (`[http]`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub request_timeout: Duration,
}

/// `max_connections` lowered, if need be, to leave [`RESERVED_FILES`] of the process's
/// open-file limit for the rest of the daemon; `open_files` is that limit.
pub fn fit_to_open_files(max_connections: usize, open_files: u64) -> usize {
    let room = usize::try_from(open_files)
        .unwrap_or(usize::MAX)
        .saturating_sub(RESERVED_FILES);
    max_connections.min(room).max(1)
}

/// One open connection, as the listener sees it.
#[derive(Debug, Default)]
struct Conn {
    /// Requests in flight, counting a response until its body has been sent.
    busy: AtomicUsize,
    /// Cancelled to close the connection at once.
    evict: CancellationToken,
}

/// The open connections, oldest first.
#[derive(Debug, Default)]
struct Conns {
    next: u64,
    open: BTreeMap<u64, Arc<Conn>>,
}

impl Conns {
    /// Makes room for one more connection under `max`: true when there is room (closing the
    /// oldest idle one if need be).
    fn make_room(&mut self, max: usize) -> bool {
        if self.open.len() < max {
            return true;
        }
        let idle = self
            .open
            .iter()
            .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id);
        match idle.and_then(|id| self.open.remove(&id)) {
            Some(c) => {
                c.evict.cancel();
                true
            }
            None => false,
        }
    }
}

/// Serves `router` on `listener` until `shutdown`; then stops accepting, lets every connection
/// finish the request it is serving, and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let conns = Arc::new(Mutex::new(Conns::default()));
    let tasks = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.request_timeout)
        .max_header_size(MAX_HEAD_BYTES);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or the peer gave up before accept: wait a
                    // little rather than spin, and carry on.
                    warn!(%e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Responses and stream events are written whole; Nagle would hold an event written
        // behind an unacknowledged one until the client's delayed ACK (40 ms on Linux).
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%e, %peer, "TCP_NODELAY not set");
        }
        let (id, conn) = {
            let mut all = conns.lock().unwrap_or_else(|e| e.into_inner());
            if !all.make_room(limits.max_connections) {
                drop(all);
                tasks.spawn(refuse(stream));
                continue;
            }
            let id = all.next;
            all.next += 1;
            let conn = Arc::new(Conn::default());
            all.open.insert(id, conn.clone());
            (id, conn)
        };
        let service = ConnService {
            router: router.clone(),
            peer,
            conn: conn.clone(),
            request_timeout: limits.request_timeout,
        };
        // With upgrades: a WebSocket (the vendors' event pushes) leaves the connection count once
        // it is handed over; push sockets are bounded by their own permits.
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let conns = conns.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            tokio::pin!(connection);
            let mut closing = false;
            loop {
                tokio::select! {
                    r = connection.as_mut() => {
                        if let Err(e) = r {
                            debug!(%e, %peer, "http connection ended");
                        }
                        break;
                    }
                    _ = conn.evict.cancelled() => {
                        debug!(%peer, "idle http connection closed to make room");
                        break;
                    }
                    _ = shutdown.cancelled(), if !closing => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
            conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .open
                .remove(&id);
        });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// Answers a connection there is no room for: `503`, then close.
async fn refuse(mut stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
        content-type: application/json\r\ncontent-length: 62\r\n\r\n\
        {\"error\":\"busy\",\"message\":\"too many connections; try again\"}";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
}

/// The router, for one connection: adds the peer address, bounds the time to read the body, and
/// counts the request as busy until its response body has been sent.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    conn: Arc<Conn>,
    request_timeout: Duration,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = hyper::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let busy = Busy::new(self.conn.clone());
        let mut router = self.router.clone();
        let timeout = self.request_timeout;
        let peer = self.peer;
        Box::pin(async move {
            let mut req = req.map(|body| Body::new(super::body::Deadline::new(body, timeout)));
            req.extensions_mut().insert(ConnectInfo(peer));
            let response = match router.call(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            // The response body holds the guard, so the connection stays busy until it is sent
            // (or dropped).
            Ok(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _busy = &busy;
                    frame
                }))
            }))
        })
    }
}

/// One request in flight on a connection.
struct Busy(Arc<Conn>);

impl Busy {
    fn new(conn: Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Self(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_idle_connection_makes_room() {
        let mut conns = Conns::default();
        for id in 0..3 {
            conns.open.insert(id, Arc::new(Conn::default()));
        }
        conns.next = 3;
        let first_busy = Busy::new(conns.open[&0].clone());
        let evicted = conns.open[&1].evict.clone();
        assert!(conns.make_room(3));
        assert!(evicted.is_cancelled(), "the oldest idle one goes");
        assert!(conns.open.contains_key(&0), "a busy one stays");
        assert!(conns.make_room(3), "there is room now");
        let _busy = [Busy::new(conns.open[&2].clone())];
        conns.open.insert(3, Arc::new(Conn::default()));
        let _also = Busy::new(conns.open[&3].clone());
        assert!(!conns.make_room(3), "every connection busy: no room");
        drop(first_busy);
        assert!(conns.make_room(3));
    }

    #[test]
    fn the_cap_leaves_room_for_the_rest_of_the_daemon() {
        assert_eq!(fit_to_open_files(1024, 65_536), 1024);
        assert_eq!(fit_to_open_files(1024, 1024), 768);
        assert_eq!(fit_to_open_files(1024, 100), 1);
    }
}
