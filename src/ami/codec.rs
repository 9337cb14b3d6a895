//! The AMI codec: frames the byte stream, then parses each whole frame (ami.md §1, §7.1).
//!
//! Framing comes first, as in imap-codec: the banner line, then messages each ended by an
//! empty line. The scan resumes where it stopped (`next_index`, as tokio-util's `LinesCodec`),
//! a frame larger than `max_frame` is discarded up to its end, and a malformed frame becomes a
//! [`Frame::Skipped`] value. The decoder returns `Err` only for I/O errors, because `Framed`
//! ends the stream after an `Err`: one bad message must never cost the connection.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use memchr::memmem::Finder;
use std::sync::LazyLock;
use tokio_util::codec::{Decoder, Encoder};

use super::{parse, Message};

/// Default cap on one message: 1 MiB. Asterisk has no limit of its own (ami.md §1.2), but a
/// QueueStatus item is a few hundred bytes; anything near this size is not a queue message.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;

/// One item of the decoded stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// `Asterisk Call Manager/<AMI version>` — the first line of a session (ami.md §1.1).
    Banner(String),
    /// A whole, well-formed message.
    Message(Message),
    /// A frame that was dropped; the stream goes on after it.
    Skipped(Skip),
}

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Longer than the configured maximum (bytes seen, or at least this many).
    Oversized { len: usize },
    /// Framed, but a line is not a `Key: value` header.
    Malformed { len: usize },
    /// Cut off by the end of the stream: never delivered (ami.md §1.4 item 4).
    Truncated { len: usize },
}

impl Skip {
    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Skip::Oversized { .. } => "oversized",
            Skip::Malformed { .. } => "malformed",
            Skip::Truncated { .. } => "truncated",
        }
    }
}

/// Tokio codec for the AMI byte stream, both directions.
#[derive(Debug)]
pub struct AmiCodec {
    max_frame: usize,
    /// The first line is a banner unless it looks like a header (a capture may start mid-way).
    expect_banner: bool,
    /// Where to resume the search for the end of the current frame.
    next_index: usize,
    /// Bytes thrown away so far of an oversized frame; `Some` while discarding.
    discarded: Option<usize>,
}

impl Default for AmiCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

/// Where the frame starting at the buffer's beginning ends.
enum End {
    /// The frame text is `buf[..text]`; the frame with its empty line is `buf[..total]`.
    Found { text: usize, total: usize },
    /// Not yet; resume the search at this index.
    NotYet(usize),
}

/// Finds the first LF that is followed by an empty line (`LF LF` or `LF CR LF`): two
/// vectorised substring searches over the whole frame rather than one probe per line.
fn find_end(buf: &[u8], from: usize) -> End {
    static LF_CRLF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\r\n"));
    static LF_LF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
    let hay = buf.get(from..).unwrap_or_default();
    let crlf = LF_CRLF.find(hay);
    // A bare `LF LF` counts only if it comes first.
    let lf = LF_LF.find(&hay[..crlf.map_or(hay.len(), |i| i + 1)]);
    match (lf, crlf) {
        (Some(i), _) => End::Found {
            text: from + i + 1,
            total: from + i + 2,
        },
        (None, Some(i)) => End::Found {
            text: from + i + 1,
            total: from + i + 3,
        },
        // The marker may straddle the end of what has arrived: resume two bytes back.
        (None, None) => End::NotYet(buf.len().saturating_sub(2).max(from)),
    }
}

/// The frame as text, sharing its bytes. Values are raw bytes (ami.md §1.3); invalid UTF-8 is
/// kept readable (one lossy copy), not rejected.
fn to_text(bytes: Bytes) -> ByteString {
    ByteString::try_from(bytes.clone())
        .unwrap_or_else(|_| ByteString::from(String::from_utf8_lossy(&bytes).into_owned()))
}

impl AmiCodec {
    /// A codec that skips any message longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame: max_frame.max(64),
            expect_banner: true,
            next_index: 0,
            discarded: None,
        }
    }

    /// A codec for a stream that has no banner (the banner was consumed elsewhere).
    pub fn without_banner(max_frame: usize) -> Self {
        Self {
            expect_banner: false,
            ..Self::new(max_frame)
        }
    }

    /// Drops empty lines while no frame is open (ami.md §1.4 item 1). Returns false when the
    /// buffer ends in a lone CR that may yet become an empty line.
    fn skip_blank_lines(buf: &mut BytesMut) -> bool {
        loop {
            match (buf.first(), buf.get(1)) {
                (Some(b'\n'), _) => {
                    let _ = buf.split_to(1);
                }
                (Some(b'\r'), Some(b'\n')) => {
                    let _ = buf.split_to(2);
                }
                (Some(b'\r'), None) => return false,
                _ => return true,
            }
        }
    }

    fn decode_banner(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        let nl = memchr::memchr(b'\n', buf)?;
        self.expect_banner = false;
        let line = &buf[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if memchr::memchr(b':', line).is_some() && !line.starts_with(b"Asterisk Call Manager/") {
            return None; // no banner: the stream starts with a message
        }
        let banner = String::from_utf8_lossy(line).into_owned();
        let _ = buf.split_to(nl + 1);
        Some(Frame::Banner(banner))
    }
}

impl Decoder for AmiCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        if let Some(discarded) = self.discarded {
            return Ok(match find_end(buf, self.next_index) {
                End::Found { total, .. } => {
                    let _ = buf.split_to(total);
                    self.discarded = None;
                    self.next_index = 0;
                    Some(Frame::Skipped(Skip::Oversized {
                        len: discarded + total,
                    }))
                }
                End::NotYet(resume) => {
                    // Keep only the bytes the end marker may still start in.
                    let _ = buf.split_to(resume);
                    self.discarded = Some(discarded + resume);
                    self.next_index = 0;
                    None
                }
            });
        }
        if self.expect_banner {
            if let Some(banner) = self.decode_banner(buf) {
                return Ok(Some(banner));
            }
            // `decode_banner` clears the flag when the stream starts with a header instead.
            if self.expect_banner {
                if buf.len() <= self.max_frame {
                    return Ok(None);
                }
                self.expect_banner = false; // a "banner" this long is not one: discard it
            }
        }
        if self.next_index == 0 && !Self::skip_blank_lines(buf) {
            return Ok(None);
        }
        match find_end(buf, self.next_index) {
            End::Found { text, total } => {
                self.next_index = 0;
                let mut frame = buf.split_to(total);
                if total > self.max_frame {
                    return Ok(Some(Frame::Skipped(Skip::Oversized { len: total })));
                }
                frame.truncate(text);
                Ok(Some(match parse::message(to_text(frame.freeze())) {
                    Ok(message) => Frame::Message(message),
                    Err(_) => Frame::Skipped(Skip::Malformed { len: total }),
                }))
            }
            End::NotYet(resume) if buf.len() > self.max_frame => {
                let _ = buf.split_to(resume);
                self.discarded = Some(resume);
                self.next_index = 0;
                self.decode(buf)
            }
            End::NotYet(resume) => {
                self.next_index = resume;
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Self::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        let pending = self.discarded.take().unwrap_or(0) + buf.len();
        let only_blank = buf.iter().all(|b| matches!(b, b'\r' | b'\n'));
        buf.clear();
        self.next_index = 0;
        Ok(
            (pending > 0 && !only_blank)
                .then_some(Frame::Skipped(Skip::Truncated { len: pending })),
        )
    }
}

/// Writes a message in canonical form. CR and LF inside a key or value would end the line
/// early and let a caller inject headers (or whole actions), so they are sent as spaces.
impl Encoder<&Message> for AmiCodec {
    type Error = std::io::Error;

    fn encode(&mut self, message: &Message, dst: &mut BytesMut) -> Result<(), Self::Error> {
        for (k, v) in message.headers() {
            put_clean(dst, k);
            dst.put_slice(b": ");
            put_clean(dst, v);
            dst.put_slice(b"\r\n");
        }
        dst.put_slice(b"\r\n");
        Ok(())
    }
}

impl Encoder<Message> for AmiCodec {
    type Error = std::io::Error;

    fn encode(&mut self, message: Message, dst: &mut BytesMut) -> Result<(), Self::Error> {
        self.encode(&message, dst)
    }
}

fn put_clean(dst: &mut BytesMut, s: &str) {
    dst.reserve(s.len());
    for b in s.bytes() {
        dst.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
}

/// A header value as the encoder writes it, and so as Asterisk receives and stores it: CR and LF
/// become spaces. Whoever compares what Asterisk reports back with what was sent compares this.
pub fn sent_value(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\r', '\n']) {
        std::borrow::Cow::Owned(s.replace(['\r', '\n'], " "))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in the given chunk sizes, with EOF at the end.
    fn decode_chunks(input: &[u8], chunks: &[usize], max: usize) -> Vec<Frame> {
        let mut codec = AmiCodec::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut rest = input;
        for &n in chunks.iter().chain(std::iter::repeat(&usize::MAX)) {
            if rest.is_empty() {
                break;
            }
            let n = n.clamp(1, rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    fn names(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                Frame::Banner(b) => format!("banner {b}"),
                Frame::Message(m) => format!("{:?}", m.first().unwrap_or(("", ""))),
                Frame::Skipped(s) => format!("skipped {}", s.reason()),
            })
            .collect()
    }

    const PING: &[u8] =
        b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: p\r\nPing: Pong\r\n\r\n";

    #[test]
    fn banner_then_message_split_at_every_byte() {
        let whole = decode_chunks(PING, &[usize::MAX], DEFAULT_MAX_FRAME);
        assert_eq!(whole.len(), 2);
        assert_eq!(
            whole[0],
            Frame::Banner("Asterisk Call Manager/11.0.0".into())
        );
        for split in 1..PING.len() {
            assert_eq!(
                decode_chunks(PING, &[split], DEFAULT_MAX_FRAME),
                whole,
                "split {split}"
            );
        }
        assert_eq!(decode_chunks(PING, &[1], DEFAULT_MAX_FRAME), whole);
    }

    #[test]
    fn stray_blank_line_after_queue_rule() {
        // ami.md §1.4 item 1: QueueRule ends with an extra CRLF.
        let s = b"Response: Success\r\nActionID: rule1\r\n\r\n\r\nEvent: X\r\n\r\n";
        assert_eq!(
            names(&decode_chunks(s, &[usize::MAX], 1024)),
            ["(\"Response\", \"Success\")", "(\"Event\", \"X\")"]
        );
    }

    #[test]
    fn bare_lf_inside_ringinuse_error() {
        // ami.md §1.4 item 2: a hard-coded "\n" before the CRLF CRLF.
        let s = b"Response: Error\r\nMessage: Invalid interface, queuename, or ringinuse value\n\r\n\r\nEvent: Next\r\n\r\n";
        let frames = decode_chunks(s, &[usize::MAX], 1024);
        assert_eq!(
            names(&frames),
            ["(\"Response\", \"Error\")", "(\"Event\", \"Next\")"]
        );
        for split in 1..s.len() {
            assert_eq!(decode_chunks(s, &[split], 1024), frames);
        }
    }

    #[test]
    fn lf_only_stream() {
        let s = b"Event: A\nK: v\n\nEvent: B\n\n";
        assert_eq!(
            names(&decode_chunks(s, &[3], 1024)),
            ["(\"Event\", \"A\")", "(\"Event\", \"B\")"]
        );
    }

    #[test]
    fn no_banner_when_the_stream_starts_with_a_header() {
        let s = b"Event: A\r\n\r\n";
        assert_eq!(names(&decode_chunks(s, &[1], 1024)), ["(\"Event\", \"A\")"]);
    }

    #[test]
    fn cut_off_last_frame_is_not_delivered() {
        let s = b"Event: A\r\n\r\nEvent: B\r\nQueue: q";
        let frames = decode_chunks(s, &[usize::MAX], 1024);
        assert_eq!(names(&frames), ["(\"Event\", \"A\")", "skipped truncated"]);
    }

    #[test]
    fn malformed_frame_is_skipped_and_the_stream_goes_on() {
        let s = b"Event: A\r\nno colon here\r\n\r\nEvent: B\r\n\r\n";
        let frames = decode_chunks(s, &[2], 1024);
        assert_eq!(names(&frames), ["skipped malformed", "(\"Event\", \"B\")"]);
    }

    #[test]
    fn oversized_frame_is_skipped_whatever_the_chunking() {
        let mut s = b"Event: Big\r\n".to_vec();
        for i in 0..50 {
            s.extend_from_slice(format!("Header{i}: {}\r\n", "x".repeat(40)).as_bytes());
        }
        s.extend_from_slice(b"\r\nEvent: After\r\n\r\n");
        let whole = decode_chunks(&s, &[usize::MAX], 512);
        assert_eq!(
            names(&whole),
            ["skipped oversized", "(\"Event\", \"After\")"]
        );
        for split in [1, 7, 100, 511, 513, 2000] {
            assert_eq!(
                names(&decode_chunks(&s, &[split], 512)),
                names(&whole),
                "split {split}"
            );
        }
    }

    #[test]
    fn encoder_writes_crlf_and_neutralises_injection() {
        let m = Message::action("Ping").with("ActionID", "a\r\nAction: Logoff");
        let mut out = BytesMut::new();
        AmiCodec::default().encode(&m, &mut out).unwrap();
        assert_eq!(
            &out[..],
            b"Action: Ping\r\nActionID: a  Action: Logoff\r\n\r\n"
        );
    }
}
