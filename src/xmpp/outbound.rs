//! What the link writes: ordinary stanzas, and event headlines rendered to bytes.
//!
//! An event goes to up to thousands of sessions. Cloning its `<cmd/>` element into one
//! `Message` per session and walking each through the generic serializer cost about 30 µs per
//! stanza; sharing the payload's XML items and encoding them per session still cost about 4 µs
//! (BENCHMARKS.md). A [`Payload`] is now encoded once per event, and each recipient's headline
//! is `<message from to type="headline">`, those bytes, `</message>`, copied into a
//! [`Rendered`] chunk that the link writes to the socket as it is.
//!
//! The chunks hold a share of a byte budget ([`Backlog`]) until the link has written them, so
//! what waits for the link is bounded in bytes, whatever the number of recipients of an event.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_xmpp::minidom::rxml::writer::Encoder;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::Stanza;
use xso::error::Error;
use xso::{AsXml, Item};

/// A stanza for the link.
#[derive(Debug)]
pub enum Outbound {
    Stanza(Box<Stanza>),
    /// Headlines, complete stanzas as bytes.
    Headlines(Rendered),
}

/// The payload of one event encoded as XML, shared by all its headlines. Encoding it is also
/// the check that it serializes: one that would not is an error here, never a failed write in
/// the middle of the link's stream.
#[derive(Debug)]
pub struct Payload(Vec<u8>);

impl Payload {
    pub fn new(element: &Element) -> Result<Self, Error> {
        let mut out = bytes::BytesMut::new();
        encode(element.as_xml_iter()?, &mut out)?;
        Ok(Self(out.to_vec()))
    }
}

/// Encodes `items` as one standalone element into `out`.
fn encode<'x>(
    items: impl Iterator<Item = Result<Item<'x>, Error>>,
    out: &mut bytes::BytesMut,
) -> Result<(), Error> {
    let mut encoder = Encoder::new();
    for item in items {
        encoder
            .encode_into_bytes(item?.as_rxml_item(), out)
            .map_err(|_| Error::Other("the stanza does not serialize as XML"))?;
    }
    Ok(())
}

/// Whether these items serialize, tried on a scratch buffer. A stanza that fails half-way
/// through the real stream would leave half an element there and break the stream for every
/// client; tried first, it is skipped alone.
pub fn encodable<'x>(items: impl Iterator<Item = Result<Item<'x>, Error>>) -> Result<(), Error> {
    encode(items, &mut bytes::BytesMut::new())
}

impl Outbound {
    /// Whether the link can write it (see [`encodable`]); headlines were checked with their
    /// payload.
    pub fn check(&self) -> Result<(), Error> {
        match self {
            Outbound::Stanza(s) => encodable(s.as_xml_iter()?),
            Outbound::Headlines(_) => Ok(()),
        }
    }
}

/// The bytes of headlines waiting for the link, at most: the fan-out waits beyond it.
pub const BACKLOG_BYTES: usize = 4 << 20;
/// Headlines are queued in chunks of about this many bytes.
pub const CHUNK_BYTES: usize = 32 << 10;

/// The byte budget of the headlines queued for the link.
#[derive(Clone, Debug)]
pub struct Backlog(Arc<Semaphore>);

impl Default for Backlog {
    fn default() -> Self {
        Self(Arc::new(Semaphore::new(BACKLOG_BYTES)))
    }
}

impl Backlog {
    /// Waits for room for `bytes` (all of the budget for a chunk larger than it).
    async fn take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let n = bytes.clamp(1, BACKLOG_BYTES) as u32;
        self.0.clone().acquire_many_owned(n).await.ok()
    }
}

/// Complete headline stanzas, ready for the socket, holding their share of the budget until
/// they are written.
#[derive(Debug)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub stanzas: usize,
    /// When the changes these headlines tell of were folded (None for a catch-up from the
    /// state): the link measures delivery from it.
    pub folded: Option<Instant>,
    _budget: OwnedSemaphorePermit,
}

/// Headlines being rendered, in chunks of about [`CHUNK_BYTES`].
pub struct Renderer<'a> {
    /// `<message from="…" to="`, rendered once; None when the sender's address holds a
    /// character XML cannot carry.
    head: Option<Vec<u8>>,
    backlog: &'a Backlog,
    bytes: Vec<u8>,
    stanzas: usize,
    folded: Option<Instant>,
}

impl<'a> Renderer<'a> {
    /// Headlines from `from` about changes folded at `folded`.
    pub fn new(from: &str, backlog: &'a Backlog, folded: Option<Instant>) -> Self {
        let head = attribute_safe(from).then(|| {
            let mut head = b"<message from=\"".to_vec();
            escape_attribute(&mut head, from);
            head.extend_from_slice(b"\" to=\"");
            head
        });
        Self {
            head,
            backlog,
            bytes: Vec::new(),
            stanzas: 0,
            folded,
        }
    }

    /// Adds `<message from to type="headline">payload</message>`; false when an address holds
    /// a character XML cannot carry (the stanza is not added).
    pub fn add(&mut self, to: &str, payload: &Payload) -> bool {
        let Some(head) = &self.head else {
            return false;
        };
        if !attribute_safe(to) {
            return false;
        }
        let out = &mut self.bytes;
        out.extend_from_slice(head);
        escape_attribute(out, to);
        out.extend_from_slice(b"\" type=\"headline\">");
        out.extend_from_slice(&payload.0);
        out.extend_from_slice(b"</message>");
        self.stanzas += 1;
        true
    }

    /// The chunk, once it is big enough (or whatever there is, with `all`), with its share of
    /// the budget: waits for room. None when there is nothing to send yet.
    pub async fn chunk(&mut self, all: bool) -> Option<Rendered> {
        if self.stanzas == 0 || (!all && self.bytes.len() < CHUNK_BYTES) {
            return None;
        }
        let budget = self.backlog.take(self.bytes.len()).await?;
        let bytes = std::mem::replace(&mut self.bytes, Vec::with_capacity(CHUNK_BYTES));
        Some(Rendered {
            bytes,
            stanzas: std::mem::take(&mut self.stanzas),
            folded: self.folded,
            _budget: budget,
        })
    }
}

/// Whether XML 1.0 can carry `s` in an attribute value (no control characters but tab, line
/// feed and carriage return, which are escaped).
fn attribute_safe(s: &str) -> bool {
    s.chars().all(|c| {
        !matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
    })
}

/// Writes `s` as a double-quoted attribute value.
fn escape_attribute(out: &mut Vec<u8>, s: &str) {
    let mut rest = s.as_bytes();
    while let Some(i) = rest
        .iter()
        .position(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\t' | b'\n' | b'\r'))
    {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(match rest[i] {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' => b"&quot;",
            b'\t' => b"&#9;",
            b'\n' => b"&#10;",
            _ => b"&#13;",
        });
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio_xmpp::jid::Jid;
    use tokio_xmpp::parsers::message::Message;

    /// The elements of a component stream's content.
    fn parse_stream(content: &[u8]) -> Vec<Element> {
        let text = std::str::from_utf8(content).expect("utf-8");
        let root: Element = format!("<stream xmlns=\"jabber:component:accept\">{text}</stream>")
            .parse()
            .expect(text);
        root.children().cloned().collect()
    }

    fn message(to: &str, payload: Element) -> Element {
        let mut message = Message::headline(Some(Jid::new(to).expect("jid")));
        message.from = Some(Jid::new("pbx.example.test").expect("jid"));
        message.payloads.push(payload);
        message.into()
    }

    #[tokio::test]
    async fn headlines_are_what_the_messages_would_be() {
        let payload: Element =
            r#"<cmd xmlns="http://www.pascom.net/mobydick" module="queue"><QueueLeaveEvent jid="q_1" name="support &amp; co &lt;1&gt; &quot;x&quot;"><x/></QueueLeaveEvent></cmd>"#
                .parse()
                .expect("payload");
        let budget = Backlog::default();
        let mut renderer = Renderer::new("pbx.example.test", &budget, None);
        let encoded = Payload::new(&payload).expect("payload");
        let to = [
            "tweber@example.test/desk",
            "tweber@example.test/a&b \"quoted\" <x>",
        ];
        for to in to {
            assert!(renderer.add(to, &encoded));
        }
        let rendered = renderer.chunk(true).await.expect("a chunk");
        assert_eq!(rendered.stanzas, 2);
        let ours = parse_stream(&rendered.bytes);
        let theirs: Vec<Element> = to.iter().map(|t| message(t, payload.clone())).collect();
        assert_eq!(ours, theirs);
        assert!(renderer.chunk(true).await.is_none(), "nothing left");
    }

    #[test]
    fn what_would_not_serialize_is_found_before_the_stream() {
        let mut bad = Element::bare("x", "urn:test");
        bad.append_text("Eve\u{1}");
        assert!(Payload::new(&bad).is_err());
        let stanza = Outbound::Stanza(Box::new(Stanza::Message({
            let mut m = Message::headline(Some(Jid::new("a@b/c").expect("jid")));
            m.payloads.push(bad);
            m
        })));
        assert!(stanza.check().is_err());
        let mut good = Element::bare("x", "urn:test");
        good.append_text("Eve");
        let good = Payload::new(&good).expect("serializes");
        let budget = Backlog::default();
        let mut renderer = Renderer::new("pbx.example.test", &budget, None);
        assert!(
            !renderer.add("a@b/Eve\u{1}", &good),
            "a control character in the address"
        );
        assert_eq!(renderer.stanzas, 0);
        assert!(renderer.add("a@b/tab\there", &good));
    }

    #[tokio::test]
    async fn chunks_wait_for_room_in_the_budget() {
        let payload = Payload::new(&Element::bare("x", "urn:test")).expect("payload");
        let budget = Backlog::default();
        let mut renderer = Renderer::new("pbx.example.test", &budget, None);
        while renderer.bytes.len() < BACKLOG_BYTES {
            renderer.add("a@b/c", &payload);
        }
        let held = renderer.chunk(false).await.expect("room: the whole budget");
        renderer.add("a@b/c", &payload);
        let waiting = tokio::time::timeout(Duration::from_millis(50), renderer.chunk(true)).await;
        assert!(
            waiting.is_err(),
            "the budget is spent until the link writes a chunk"
        );
        drop(held);
        assert!(renderer.chunk(true).await.is_some());
    }
}
