//! One AMI message: the ordered multimap of `Key: value` headers (ami.md §1.3).
//!
//! A message shares the bytes of its frame with the read buffer (a [`ByteString`], checked as
//! UTF-8 once) and keeps byte ranges into them, so decoding a frame copies nothing but one small
//! vector of ranges, and reading a header allocates nothing. Repeated keys (`Output`,
//! `ChanVariable`, `Variable`) are kept in wire order.
//!
//! Sharing means a message keeps the read-buffer chunk it came from alive. Messages are folded
//! and dropped at once, and every queue that holds them is bounded (the state task's input
//! queue, a reply's list items), so the memory held this way is bounded too.

use std::fmt;
use std::ops::Range;

use bytestring::ByteString;

/// Byte ranges of one header inside [`Message::text`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    key: Range<u32>,
    value: Range<u32>,
}

impl Field {
    /// A header at these byte ranges of a message text the parser has found shorter than
    /// 4 GiB, so that every offset fits in 32 bits.
    pub(crate) fn within(key: Range<usize>, value: Range<usize>) -> Self {
        Field {
            key: key.start as u32..key.end as u32,
            value: value.start as u32..value.end as u32,
        }
    }
}

/// An AMI message (action, response or event) as an ordered list of headers.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Message {
    text: ByteString,
    fields: Vec<Field>,
}

/// What the first header says a message is (ami.md §1.5: the first line decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// `Event: <name>`
    Event(&'a str),
    /// `Response: Success|Error|Goodbye|…`
    Response(&'a str),
    /// `Action: <name>` (client to server)
    Action(&'a str),
    /// Anything else; a conforming server never sends it.
    Other,
}

impl Message {
    /// An empty message, to be filled with [`Message::push`] or [`Message::with`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An action: `Action: <name>` as its first header.
    pub fn action(name: &str) -> Self {
        Self::new().with("Action", name)
    }

    /// Appends a header, builder style.
    #[must_use]
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.push(key, value);
        self
    }

    /// Appends a header. The stored text is the wire form (`key: value\r\n`).
    /// Messages built this way are actions of a few headers; each push copies the text once.
    pub fn push(&mut self, key: &str, value: &str) {
        let mut text = String::with_capacity(self.text.len() + key.len() + value.len() + 4);
        text.push_str(&self.text);
        let key_start = text.len();
        text.push_str(key);
        let key_end = text.len();
        text.push_str(": ");
        let value_start = text.len();
        text.push_str(value);
        let value_end = text.len();
        text.push_str("\r\n");
        self.text = ByteString::from(text);
        self.fields.push(Field {
            key: offset(key_start)..offset(key_end),
            value: offset(value_start)..offset(value_end),
        });
    }

    /// Builds a message over `text` from header ranges found by the parser.
    pub(crate) fn from_parts(text: ByteString, fields: Vec<Field>) -> Self {
        Self { text, fields }
    }

    fn slice(&self, range: &Range<u32>) -> &str {
        // Ranges are made only by `push` and the parser, at char boundaries of `text`.
        self.text
            .get(range.start as usize..range.end as usize)
            .unwrap_or_default()
    }

    /// All headers in wire order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields
            .iter()
            .map(|f| (self.slice(&f.key), self.slice(&f.value)))
    }

    /// All headers in wire order, keys as bytes: for matching keys against names, which
    /// needs no check that the key is text.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&[u8], &str)> + '_ {
        let bytes = self.text.as_bytes();
        self.fields.iter().map(move |f| {
            let key = bytes.get(f.key.start as usize..f.key.end as usize);
            (key.unwrap_or_default(), self.slice(&f.value))
        })
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when the message has no header at all.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The first value of `key`, compared ASCII case-insensitively as Asterisk does
    /// (`__astman_get_header`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| self.key_is(f, key))
            .map(|f| self.slice(&f.value))
    }

    /// Every value of `key`, in wire order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |f| self.key_is(f, key))
            .map(|f| self.slice(&f.value))
    }

    /// Compares a header's key, lengths first: most keys differ in length from the one sought.
    fn key_is(&self, f: &Field, key: &str) -> bool {
        (f.key.end - f.key.start) as usize == key.len()
            && self
                .text
                .as_bytes()
                .get(f.key.start as usize..f.key.end as usize)
                .is_some_and(|k| k.eq_ignore_ascii_case(key.as_bytes()))
    }

    /// The first header, which decides the message's kind.
    pub fn first(&self) -> Option<(&str, &str)> {
        self.headers().next()
    }

    /// Event, response or action, from the first header.
    pub fn kind(&self) -> Kind<'_> {
        // Asterisk writes the names as here: the exact comparison settles nearly every message
        // before the case-insensitive one.
        let is =
            |k: &[u8], name: &str| k == name.as_bytes() || k.eq_ignore_ascii_case(name.as_bytes());
        match self.fields().next() {
            Some((k, v)) if is(k, "Event") => Kind::Event(v),
            Some((k, v)) if is(k, "Response") => Kind::Response(v),
            Some((k, v)) if is(k, "Action") => Kind::Action(v),
            _ => Kind::Other,
        }
    }

    /// The event name, when the message is an event.
    pub fn event_name(&self) -> Option<&str> {
        match self.kind() {
            Kind::Event(name) => Some(name),
            _ => None,
        }
    }

    /// The `ActionID` header, if any.
    pub fn action_id(&self) -> Option<&str> {
        self.get("ActionID")
    }
}

fn offset(n: usize) -> u32 {
    // The codec caps frames far below 4 GiB; a builder that passes this is a programming error
    // we still refuse to turn into a panic: the range is clamped and reads as empty.
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A message of these headers, in order: `[("Event", "QueueParams"), ("Queue", "sales")]`.
impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Message {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(headers: I) -> Self {
        headers
            .into_iter()
            .fold(Self::new(), |m, (k, v)| m.with(k.as_ref(), v.as_ref()))
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.headers()).finish()
    }
}

impl fmt::Display for Message {
    /// The canonical wire form: CRLF line ends, one space after the colon, no terminator.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in self.headers() {
            write!(f, "{k}: {v}\r\n")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_repeated_keys_in_order() {
        let m = Message::new()
            .with("Response", "Success")
            .with("Output", "one")
            .with("Output", "")
            .with("Output", "three");
        assert_eq!(
            m.get_all("output").collect::<Vec<_>>(),
            ["one", "", "three"]
        );
        assert_eq!(m.kind(), Kind::Response("Success"));
    }

    #[test]
    fn lookup_is_case_insensitive() {
        let m = Message::new()
            .with("Event", "QueueParams")
            .with("Holdtime", "3");
        assert_eq!(m.get("HoldTime"), Some("3"));
        assert_eq!(m.event_name(), Some("QueueParams"));
    }
}
