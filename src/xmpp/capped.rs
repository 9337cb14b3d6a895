//! The component link's socket, with a cap on what one stanza may take.
//!
//! The XML parser buffers a stanza until it is complete, so a server (or a client it relays
//! without a limit of its own) could make queuebridge hold any amount of memory for one stanza.
//! [`Capped`] counts the bytes read since the link last delivered a stanza ([`Budget::reset`]);
//! past [`MAX_STANZA_BYTES`] a read fails, which ends the link — the stream cannot be resumed in
//! the middle of an element — and it is reconnected like any lost link, with the clients told
//! what changed meanwhile.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes one stanza (or the stream header) may take.
pub const MAX_STANZA_BYTES: usize = 1024 * 1024;

/// Bytes read since the last complete stanza; shared by the socket and the link.
#[derive(Clone, Debug, Default)]
pub struct Budget(Arc<AtomicUsize>);

impl Budget {
    /// A stanza was delivered: the next one starts from zero.
    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// A socket whose reads fail once more than [`MAX_STANZA_BYTES`] were read without a
/// [`Budget::reset`].
#[derive(Debug)]
pub struct Capped<S> {
    inner: S,
    used: Budget,
}

impl<S> Capped<S> {
    pub fn new(inner: S, used: Budget) -> Self {
        Self { inner, used }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Checked before reading, so a failed read has read nothing: the cap may be passed by
        // one read (the buffer's size), never more.
        if self.used.0.load(Ordering::Relaxed) > MAX_STANZA_BYTES {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a stanza larger than {MAX_STANZA_BYTES} bytes"),
            )));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.used.0.fetch_add(read, Ordering::Relaxed);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn reads_fail_past_the_cap_until_a_stanza_resets_it() {
        let data = vec![b'x'; MAX_STANZA_BYTES + 10];
        let budget = Budget::default();
        let mut capped = Capped::new(&data[..], budget.clone());
        let mut buf = vec![0u8; MAX_STANZA_BYTES / 2];
        capped.read_exact(&mut buf).await.expect("half");
        budget.reset();
        capped
            .read_exact(&mut buf)
            .await
            .expect("another half after a stanza");
        let mut rest = vec![0u8; 20];
        let e = capped.read(&mut rest).await;
        assert!(e.is_ok(), "10 bytes over half: still fine");
        let big = vec![b'y'; MAX_STANZA_BYTES + 1];
        let mut capped = Capped::new(&big[..], Budget::default());
        let mut all = Vec::new();
        let e = capped.read_to_end(&mut all).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
