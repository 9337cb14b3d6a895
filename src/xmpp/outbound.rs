//! What the link writes: ordinary stanzas, and event headlines whose payload is serialized once
//! per event and shared by every recipient.
//!
//! An event goes to up to thousands of sessions. Cloning its `<cmd/>` element into one
//! `Message` per session, and walking each through the generic serializer, cost about 30 µs per
//! stanza (BENCHMARKS.md). A [`Headline`] holds the payload's XML items once, behind an `Arc`,
//! and writes `<message from to type="headline">`, those items, `</message>` — the same bytes,
//! without a copy of the payload per session.

use std::borrow::Cow;
use std::sync::Arc;

use tokio_xmpp::minidom::rxml::{Namespace, NcNameStr};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::Stanza;
use xso::error::Error;
use xso::{AsXml, Item};

/// A stanza for the link.
#[derive(Debug)]
pub enum Outbound {
    Stanza(Box<Stanza>),
    Headline(Headline),
}

/// The serialized payload of one event, shared by all its headlines.
#[derive(Debug)]
pub struct Payload(Vec<Item<'static>>);

impl Payload {
    /// The payload's items, checked once (for all its recipients) to serialize: one that would
    /// not is an error here, never a failed write in the middle of the link's stream.
    pub fn new(element: &Element) -> Result<Arc<Self>, Error> {
        let items = element
            .as_xml_iter()?
            .map(|i| i.map(Item::into_owned))
            .collect::<Result<Vec<_>, _>>()?;
        encodable(items.iter().map(|i| Ok(reborrow(i))))?;
        Ok(Arc::new(Self(items)))
    }
}

/// Whether these items serialize, tried on a scratch buffer. A stanza that fails half-way
/// through the real stream would leave half an element there and break the stream for every
/// client; tried first, it is skipped alone.
pub fn encodable<'x>(items: impl Iterator<Item = Result<Item<'x>, Error>>) -> Result<(), Error> {
    let mut encoder = tokio_xmpp::minidom::rxml::writer::Encoder::new();
    let mut scratch = bytes::BytesMut::new();
    for item in items {
        encoder
            .encode_into_bytes(item?.as_rxml_item(), &mut scratch)
            .map_err(|_| Error::Other("the stanza does not serialize as XML"))?;
        scratch.clear();
    }
    Ok(())
}

impl Outbound {
    /// Whether the link can write it (see [`encodable`]); headlines were checked with their
    /// payload.
    pub fn check(&self) -> Result<(), Error> {
        match self {
            Outbound::Stanza(s) => encodable(s.as_xml_iter()?),
            Outbound::Headline(_) => Ok(()),
        }
    }
}

/// `<message from to type="headline">payload</message>`.
#[derive(Debug)]
pub struct Headline {
    pub from: Arc<str>,
    pub to: String,
    pub payload: Arc<Payload>,
}

/// The stanza's own items, before the payload.
const HEAD: usize = 5;

fn name(n: &'static str) -> Result<Cow<'static, NcNameStr>, Error> {
    <&NcNameStr>::try_from(n)
        .map(Cow::Borrowed)
        .map_err(|_| Error::Other("invalid element or attribute name"))
}

/// The same item, borrowing from `item`.
fn reborrow<'x>(item: &'x Item<'static>) -> Item<'x> {
    match item {
        Item::XmlDeclaration(v) => Item::XmlDeclaration(*v),
        Item::ElementHeadStart(ns, n) => {
            Item::ElementHeadStart(Namespace::from(&**ns), Cow::Borrowed(&**n))
        }
        Item::Attribute(ns, n, v) => Item::Attribute(
            Namespace::from(&**ns),
            Cow::Borrowed(&**n),
            Cow::Borrowed(&**v),
        ),
        Item::ElementHeadEnd => Item::ElementHeadEnd,
        Item::Text(t) => Item::Text(Cow::Borrowed(&**t)),
        Item::ElementFoot => Item::ElementFoot,
    }
}

pub struct HeadlineItems<'x> {
    headline: &'x Headline,
    next: usize,
}

impl<'x> Iterator for HeadlineItems<'x> {
    type Item = Result<Item<'x>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let h = self.headline;
        let i = self.next;
        self.next += 1;
        let item = match i {
            0 => name("message").map(|n| Item::ElementHeadStart(Namespace::from(ns::COMPONENT), n)),
            1 => name("from").map(|n| Item::Attribute(Namespace::NONE, n, Cow::Borrowed(&*h.from))),
            2 => name("to").map(|n| Item::Attribute(Namespace::NONE, n, Cow::Borrowed(&*h.to))),
            3 => {
                name("type").map(|n| Item::Attribute(Namespace::NONE, n, Cow::Borrowed("headline")))
            }
            4 => Ok(Item::ElementHeadEnd),
            i if i - HEAD < h.payload.0.len() => Ok(reborrow(&h.payload.0[i - HEAD])),
            i if i - HEAD == h.payload.0.len() => Ok(Item::ElementFoot),
            _ => return None,
        };
        Some(item)
    }
}

impl AsXml for Headline {
    type ItemIter<'x> = HeadlineItems<'x>;

    fn as_xml_iter(&self) -> Result<HeadlineItems<'_>, Error> {
        Ok(HeadlineItems {
            headline: self,
            next: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_xmpp::jid::Jid;
    use tokio_xmpp::parsers::message::Message;

    fn text(items: impl Iterator<Item = Result<Item<'static>, Error>>) -> String {
        let mut writer = tokio_xmpp::minidom::rxml::writer::Encoder::new();
        let mut out = bytes::BytesMut::new();
        for item in items {
            let item = item.expect("item");
            writer
                .encode_into_bytes(item.as_rxml_item(), &mut out)
                .expect("encode");
        }
        String::from_utf8(out.to_vec()).expect("utf-8")
    }

    #[test]
    fn a_headline_writes_what_the_message_would() {
        let payload: Element =
            r#"<cmd xmlns="http://www.pascom.net/mobydick" module="queue"><QueueLeaveEvent jid="q_1" name="support &amp; co"><x/></QueueLeaveEvent></cmd>"#
                .parse()
                .expect("payload");
        let headline = Headline {
            from: Arc::from("pbx.example.test"),
            to: "tweber@example.test/desk".into(),
            payload: Payload::new(&payload).expect("payload items"),
        };
        let mut message =
            Message::headline(Some(Jid::new("tweber@example.test/desk").expect("jid")));
        message.from = Some(Jid::new("pbx.example.test").expect("jid"));
        message.payloads.push(payload);
        let ours = text(
            headline
                .as_xml_iter()
                .expect("iter")
                .map(|i| i.map(Item::into_owned)),
        );
        let theirs = text(
            message
                .as_xml_iter()
                .expect("iter")
                .map(|i| i.map(Item::into_owned)),
        );
        let parse = |s: &str| s.parse::<Element>().expect(s);
        assert_eq!(parse(&ours), parse(&theirs), "{ours}\n{theirs}");
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
        assert!(Payload::new(&good).is_ok());
    }
}
