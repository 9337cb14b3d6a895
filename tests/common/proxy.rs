//! A loopback TCP proxy between queuebridge and Asterisk that a test can cut, stall (a half-open
//! link: nothing flows, nothing closes), or use to inject bytes into the server-to-client
//! direction (malformed and oversized AMI frames).

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, Mutex};

pub struct Proxy {
    pub port: u16,
    cut: broadcast::Sender<()>,
    stall: broadcast::Sender<()>,
    inject: Arc<Mutex<Vec<u8>>>,
    refuse: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (cut, _) = broadcast::channel(4);
        let (stall, _) = broadcast::channel(4);
        let inject = Arc::new(Mutex::new(Vec::new()));
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cut2, stall2, inject2) = (cut.clone(), stall.clone(), inject.clone());
        let refuse2 = refuse.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if refuse2.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let mut stop = cut2.subscribe();
                let mut stalled = stall2.subscribe();
                let inject = inject2.clone();
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async { tokio::io::copy(&mut cr, &mut sw).await };
                    let down = async {
                        let mut buf = vec![0u8; 16384];
                        loop {
                            let n = sr.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            cw.write_all(&buf[..n]).await?;
                            if !buf[..n].ends_with(b"\r\n\r\n") {
                                continue; // inject only at a frame boundary
                            }
                            let extra = std::mem::take(&mut *inject.lock().await);
                            if !extra.is_empty() {
                                cw.write_all(&extra).await?;
                            }
                        }
                    };
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
        self.refuse.store(on, std::sync::atomic::Ordering::SeqCst);
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
