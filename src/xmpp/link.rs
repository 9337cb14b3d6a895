//! The component link: log in to the XMPP server, read stanzas, write the outbound queue in
//! batches, ping when quiet, reconnect with backoff.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::component::Handshake;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::xmlstream::{
    initiate_stream, FallibleStreamElement, ReadError, StreamHeader, Timeouts, XmppStreamElement,
};
use tokio_xmpp::Stanza;
use tracing::{debug, info, warn};

use crate::config::XmppConfig;
use crate::metrics;

use super::capped::{Budget, Capped};
use super::outbound::Outbound;

use super::{Front, Stream, LOGIN_DEADLINE, WRITE_BATCH, WRITE_TIMEOUT};

/// Keeps the component logged in, forever, with backoff between attempts.
pub(super) async fn link(
    front: Arc<Front>,
    mut out_rx: mpsc::Receiver<Outbound>,
    shutdown: CancellationToken,
) {
    let config = &front.config;
    let first = Duration::from_millis(500);
    let max = Duration::from_secs_f64(config.reconnect_max).max(first);
    let mut backoff = first;
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(LOGIN_DEADLINE, connect(config)) => r,
        };
        match attempt {
            Ok(Ok((stream, budget))) => {
                info!(server = %config.server, component = %config.component, "XMPP component connected");
                backoff = first;
                front.connected.send_replace(true);
                let end = serve(&front, stream, &budget, &mut out_rx, &shutdown).await;
                front.connected.send_replace(false);
                if shutdown.is_cancelled() {
                    return;
                }
                warn!(server = %config.server, "XMPP link lost: {end}");
            }
            Ok(Err(e)) => warn!(server = %config.server, "XMPP component login failed: {e:#}"),
            Err(_) => warn!(server = %config.server, "XMPP component login timed out"),
        }
        // Wait, dropping what is queued: nothing can reach a client while the link is down.
        let wait = backoff.mul_f64(0.75 + fastrand::f64() / 2.0);
        let until = tokio::time::sleep(wait);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = &mut until => break,
                s = out_rx.recv() => if s.is_none() { return },
            }
        }
        backoff = (backoff * 2).min(max);
    }
}

/// Connects and performs the component handshake (XEP-0114).
pub(super) async fn connect(config: &XmppConfig) -> anyhow::Result<(Stream, Budget)> {
    let jid = Jid::new(&config.component)?;
    let ping = Duration::from_secs_f64(config.ping_interval);
    let timeouts = Timeouts {
        read_timeout: ping,
        response_timeout: ping.clamp(Duration::from_secs(5), Duration::from_secs(60)),
    };
    // tokio-xmpp connects to an IP address only: resolve a host name (a compose service …) here.
    let addr = tokio::net::lookup_host(&config.server)
        .await
        .with_context(|| format!("resolving {}", config.server))?
        .next()
        .ok_or_else(|| anyhow!("{} resolves to no address", config.server))?;
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    // Stanzas are written in batches already; Nagle would hold a small batch back until the
    // server acknowledges the one before (up to its delayed-ACK time, 40 ms on Linux).
    tcp.set_nodelay(true)
        .with_context(|| format!("setting TCP_NODELAY on {addr}"))?;
    let budget = Budget::default();
    let header = StreamHeader {
        to: Some(Cow::Borrowed(jid.domain().as_str())),
        from: None,
        id: None,
    };
    let io = BufStream::new(Capped::new(tcp, budget.clone()));
    let mut pending = initiate_stream(io, ns::COMPONENT, header, timeouts).await?;
    let header = pending.take_header();
    let stream_id = header
        .id
        .ok_or_else(|| anyhow!("the server sent no stream id"))?
        .into_owned();
    let mut stream: Stream = pending.skip_features();
    let handshake = Handshake::from_stream_id_and_password(stream_id, &config.secret);
    stream
        .send(&XmppStreamElement::ComponentHandshake(handshake))
        .await?;
    loop {
        match stream.next().await {
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::ComponentHandshake(_)))) => {
                return Ok((stream, budget))
            }
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                return Err(anyhow!("the server refused the component: {e:?}"))
            }
            Some(Err(ReadError::SoftTimeout)) => {}
            Some(Ok(other)) => {
                return Err(anyhow!("unexpected answer to the handshake: {other:?}"))
            }
            Some(Err(e)) => return Err(anyhow!("handshake: {e}")),
            None => return Err(anyhow!("the server closed the stream during the handshake")),
        }
    }
}

/// Serves one connected stream until it ends; returns why.
pub(super) async fn serve(
    front: &Arc<Front>,
    mut stream: Stream,
    budget: &Budget,
    out_rx: &mut mpsc::Receiver<Outbound>,
    shutdown: &CancellationToken,
) -> String {
    let mut pings = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // The answers of the last commands are queued: write them, then close.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Ok(stanza) = out_rx.try_recv() {
                        write_batch(&mut stream, stanza, out_rx).await?;
                    }
                    SinkExt::<&XmppStreamElement>::close(&mut stream).await
                })
                .await;
                return "shutting down".into();
            }
            stanza = out_rx.recv() => {
                let Some(stanza) = stanza else { return "outbound queue closed".into() };
                match tokio::time::timeout(WRITE_TIMEOUT, write_batch(&mut stream, stanza, out_rx)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return format!("write failed: {e}"),
                    Err(_) => return format!("write timed out after {} s: the server stopped reading", WRITE_TIMEOUT.as_secs()),
                }
            }
            item = stream.next() => {
                // A stanza (or an element skipped whole) arrived: the next one starts from an
                // empty budget. A quiet link does not reset it, so a stanza trickled in slowly
                // is capped all the same.
                if !matches!(item, Some(Err(ReadError::SoftTimeout))) {
                    budget.reset();
                }
                match item {
                    Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Stanza(s)))) => front.inbound(s),
                    Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                        return format!("stream error from the server: {e:?}");
                    }
                    Some(Ok(FallibleStreamElement::Ok(other))) => debug!(?other, "unexpected nonza ignored"),
                    Some(Ok(FallibleStreamElement::Err(e))) => front.malformed(e),
                    Some(Err(ReadError::ParseError(e))) => warn!(%e, "unparseable element skipped"),
                    Some(Err(ReadError::SoftTimeout)) => {
                        // Quiet link: ask the server for an answer before the hard timeout.
                        pings += 1;
                        let ping = Iq::Get {
                            from: Some(front.component.clone()),
                            to: Jid::new(&front.config.domain).ok(),
                            id: format!("qb-ping-{pings}"),
                            payload: Element::bare("ping", ns::PING),
                        };
                        let sent = tokio::time::timeout(WRITE_TIMEOUT, stream.send(&XmppStreamElement::Stanza(Stanza::Iq(ping)))).await;
                        match sent {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return format!("ping failed: {e}"),
                            Err(_) => return "ping write timed out: the server stopped reading".into(),
                        }
                    }
                    Some(Err(ReadError::HardError(e))) => return format!("read failed: {e}"),
                    Some(Err(ReadError::StreamFooterReceived)) => return "the server closed the stream".into(),
                    None => return "the connection closed".into(),
                }
            }
        }
    }
}

/// Writes `first` and whatever else is queued (up to [`WRITE_BATCH`]), then flushes.
///
/// Stanzas go through the XML stream's encoder; rendered headlines are complete stanzas and
/// go to the socket as they are, after what the encoder holds (between two top-level stanzas
/// the stream's encoder has nothing open, so the bytes fit in as one more stanza).
pub(super) async fn write_batch(
    stream: &mut Stream,
    first: Outbound,
    out_rx: &mut mpsc::Receiver<Outbound>,
) -> std::io::Result<()> {
    let mut next = Some(first);
    let mut written = 0;
    let mut fed = false;
    while let Some(item) = next.take() {
        if let Err(e) = item.check() {
            // Skipped alone: written, it would break the stream for every client.
            warn!(%e, "stanza not serializable: skipped");
        } else {
            match item {
                Outbound::Stanza(s) => {
                    stream.feed(&XmppStreamElement::Stanza(*s)).await?;
                    fed = true;
                }
                Outbound::Headlines(h) => {
                    if std::mem::take(&mut fed) {
                        SinkExt::<&XmppStreamElement>::flush(stream).await?;
                    }
                    write_raw(stream, &h.bytes).await?;
                    if let Some(folded) = h.folded {
                        metrics::xmpp_delivery(folded.elapsed());
                    }
                }
            }
        }
        written += 1;
        if written < WRITE_BATCH {
            next = out_rx.try_recv().ok();
        }
    }
    SinkExt::<&XmppStreamElement>::flush(stream).await
}

/// Writes `bytes` to the link's socket, past the XML stream (which must have nothing
/// buffered).
pub(super) async fn write_raw(stream: &Stream, mut bytes: &[u8]) -> std::io::Result<()> {
    let socket = stream.get_stream().get_ref().get_ref();
    while !bytes.is_empty() {
        socket.writable().await?;
        match socket.try_write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
