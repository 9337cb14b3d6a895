//! A loopback TCP proxy between queuebridge and Asterisk that a test can cut, stall (a half-open
//! link: nothing flows, nothing closes), slow down (latency from Asterisk to queuebridge), or
//! use to inject bytes into the server-to-client direction (malformed and oversized AMI frames).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, Mutex};

pub struct Proxy {
    pub port: u16,
    cut: broadcast::Sender<()>,
    stall: broadcast::Sender<()>,
    inject: Arc<Mutex<Vec<u8>>>,
    refuse: Arc<AtomicBool>,
    latency_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (cut, _) = broadcast::channel(4);
        let (stall, _) = broadcast::channel(4);
        let inject = Arc::new(Mutex::new(Vec::new()));
        let refuse = Arc::new(AtomicBool::new(false));
        let latency_ms = Arc::new(AtomicU64::new(0));
        let (cut2, stall2, inject2) = (cut.clone(), stall.clone(), inject.clone());
        let (refuse2, latency2) = (refuse.clone(), latency_ms.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if refuse2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let mut stop = cut2.subscribe();
                let mut stalled = stall2.subscribe();
                let inject = inject2.clone();
                let latency = latency2.clone();
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async { tokio::io::copy(&mut cr, &mut sw).await };
                    // Asterisk's bytes, stamped with when they are due at the client.
                    let (chunks, mut due) = tokio::sync::mpsc::unbounded_channel();
                    let (sr_ref, latency) = (&mut sr, &latency);
                    // Owns `chunks`: when Asterisk closes, the writer drains and ends too.
                    let read = async move {
                        let mut buf = vec![0u8; 16384];
                        loop {
                            let n = sr_ref.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            let at = Instant::now()
                                + Duration::from_millis(latency.load(Ordering::SeqCst));
                            if chunks.send((at, buf[..n].to_vec())).is_err() {
                                return Ok(());
                            }
                        }
                    };
                    let write = async {
                        while let Some((at, chunk)) = due.recv().await {
                            tokio::time::sleep_until(at.into()).await;
                            cw.write_all(&chunk).await?;
                            if !chunk.ends_with(b"\r\n\r\n") {
                                continue; // inject only at a frame boundary
                            }
                            let extra = std::mem::take(&mut *inject.lock().await);
                            if !extra.is_empty() {
                                cw.write_all(&extra).await?;
                            }
                        }
                        Ok::<_, std::io::Error>(())
                    };
                    let down = async { tokio::join!(read, write) };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = stop.recv() => return,
                        // Stop copying but keep all four halves open until cut or dropped.
                        _ = stalled.recv() => {
                            let _ = stop.recv().await;
                        }
                    }
                    drop((cr, cw, sr, sw));
                });
            }
        });
        Proxy {
            port,
            cut,
            stall,
            inject,
            refuse,
            latency_ms,
            task,
        }
    }

    /// Drops every open connection (new ones are still accepted).
    pub fn cut(&self) {
        let _ = self.cut.send(());
    }

    /// Freezes every open connection: no byte passes either way and no socket closes, as when
    /// a NAT or firewall forgets the flow. New connections pass normally.
    pub fn stall(&self) {
        let _ = self.stall.send(());
    }

    /// While on, new connections are closed at once (the upstream is unreachable).
    pub fn refuse(&self, on: bool) {
        self.refuse.store(on, Ordering::SeqCst);
    }

    /// Delays everything Asterisk sends by this much from now on (the order is kept).
    pub fn latency(&self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.latency_ms.store(ms, Ordering::SeqCst);
    }

    /// Bytes to write to the client after the next chunk from Asterisk that ends a frame.
    pub async fn inject(&self, bytes: &[u8]) {
        self.inject.lock().await.extend_from_slice(bytes);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
