//! The component link's socket, with a cap on what one stanza may take and how deep it nests.
//!
//! The XML parser buffers a stanza until it is complete, so a server (or a client it relays
//! without a limit of its own) could make queuebridge hold any amount of memory for one stanza.
//! [`Capped`] counts the bytes read since the link last delivered a stanza ([`Budget::reset`]);
//! past [`MAX_STANZA_BYTES`] a read fails.
//!
//! The element tree of a stanza is built, walked and dropped recursively (minidom): ten
//! thousand nested elements — 30 KB, well within a server's stanza limit — overflow a worker's
//! stack and abort the process. [`Capped`] follows the nesting in the bytes as they are read
//! (tags, quoted attribute values) and fails the read of an element deeper than [`MAX_DEPTH`]
//! before the parser sees it.
//!
//! A failed read ends the link — the stream cannot be resumed in the middle of an element — and
//! it is reconnected like any lost link, with the clients told what changed meanwhile.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes one stanza (or the stream header) may take.
pub const MAX_STANZA_BYTES: usize = 1024 * 1024;
/// How deep elements may nest, the stream element counted: a pascom command is 7 deep.
pub const MAX_DEPTH: usize = 64;

/// Where the scan of the bytes stands: inside a tag or not, in which quote, and how deep.
#[derive(Debug, Default)]
struct Nesting {
    depth: usize,
    in_tag: bool,
    /// Just after `<`: the next byte tells an end tag (`/`) or a declaration (`?`, `!`).
    tag_start: bool,
    quote: Option<u8>,
    prev: u8,
}

impl Nesting {
    /// Follows `bytes`; false once an element nests deeper than [`MAX_DEPTH`].
    fn follow(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            if self.tag_start {
                self.tag_start = false;
                match b {
                    b'/' => self.depth = self.depth.saturating_sub(1),
                    b'?' | b'!' => {}
                    _ => {
                        self.depth += 1;
                        if self.depth > MAX_DEPTH {
                            return false;
                        }
                    }
                }
            } else if self.in_tag {
                match (self.quote, b) {
                    (Some(q), _) if b == q => self.quote = None,
                    (Some(_), _) => {}
                    (None, b'"' | b'\'') => self.quote = Some(b),
                    (None, b'>') => {
                        self.in_tag = false;
                        if self.prev == b'/' {
                            self.depth = self.depth.saturating_sub(1);
                        }
                    }
                    _ => {}
                }
            } else if b == b'<' {
                self.in_tag = true;
                self.tag_start = true;
            }
            self.prev = b;
        }
        true
    }
}

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
    nesting: Nesting,
    /// Set once a limit was passed: every later read fails too.
    failed: Option<&'static str>,
}

impl<S> Capped<S> {
    pub fn new(inner: S, used: Budget) -> Self {
        Self {
            inner,
            used,
            nesting: Nesting::default(),
            failed: None,
        }
    }

    /// The socket itself, for writes that bypass the stream (see `write_batch`).
    pub fn get_ref(&self) -> &S {
        &self.inner
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
            self.failed = Some("a stanza larger than the limit (1 MiB)");
        }
        if let Some(why) = self.failed {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, why)));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let me = &mut *self;
        let fresh = &buf.filled()[before..];
        me.used.0.fetch_add(fresh.len(), Ordering::Relaxed);
        if !me.nesting.follow(fresh) {
            // The bytes read stay unseen: the parser must not build the deep element.
            buf.set_filled(before);
            me.failed = Some("elements nested deeper than the limit (64)");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "elements nested deeper than the limit (64)",
            )));
        }
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

    /// Ten thousand nested elements (30 KB) overflowed the stack when minidom dropped them.
    #[tokio::test]
    async fn deep_nesting_fails_the_read_before_the_parser_sees_it() {
        let ok = format!(
            "<stream:stream xmlns='jabber:component:accept'><iq a='/>' b=\"</x>\">{}<c/>{}</iq>",
            "<n>".repeat(MAX_DEPTH - 3),
            "</n>".repeat(MAX_DEPTH - 3)
        );
        let mut capped = Capped::new(ok.as_bytes(), Budget::default());
        let mut all = Vec::new();
        capped.read_to_end(&mut all).await.expect("64 deep is fine");
        assert_eq!(all, ok.as_bytes());
        // Quoted '/>' and '</' do not hide a level.
        let sneaky = format!("<s>{}", "<a v='/>' w=\"</b>\">".repeat(10_000));
        let mut capped = Capped::new(sneaky.as_bytes(), Budget::default());
        let e = capped.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let deep = format!("<s>{}", "<a>".repeat(10_000));
        let mut capped = Capped::new(deep.as_bytes(), Budget::default());
        assert!(capped.read_to_end(&mut Vec::new()).await.is_err());
    }

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
