//! The grammar of one whole AMI message (ami.md §1.3), applied after framing.
//!
//! The framer hands over the text of one message without its closing empty line; this module
//! splits it into headers. It never sees a partial message, so "incomplete" cannot happen here:
//! anything that does not fit the grammar is a malformed message.
//!
//! The grammar works on bytes: every delimiter is ASCII, so each split falls on a character
//! boundary of the (already checked) UTF-8 text, and no rule decodes characters. The two
//! delimiters of every line, its LF and its first `:`, are found for the whole message in one
//! pass, sixteen bytes to a vector compare ([`marks`]); the rules then read positions instead of
//! bytes. The rare shape of a key that holds a colon is a nom parser.

use bytestring::ByteString;
use nom::bytes::complete::take_until;
use nom::Parser;
use wide::u8x16;

use super::message::Field;
use super::Message;

/// Why a framed message could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A line has no `:` at all, so it is not a header.
    NotAHeader,
}

/// The LFs and the colons among the first 64 bytes of `text`, one bit per byte (bit `i` for
/// `text[i]`).
fn marks(text: &[u8]) -> (u64, u64) {
    let mut padded = [0u8; 64];
    let block = match text.first_chunk::<64>() {
        Some(block) => block,
        None => {
            padded[..text.len()].copy_from_slice(text);
            &padded
        }
    };
    let (lf, colon) = (u8x16::splat(b'\n'), u8x16::splat(b':'));
    let (mut lfs, mut colons) = (0u64, 0u64);
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        let v = u8x16::new(<[u8; 16]>::try_from(chunk).unwrap_or_default());
        // One bit for each of the 16 lanes: the mask fits in 16 bits.
        lfs |= u64::from(v.cmp_eq(lf).move_mask() as u16) << (16 * i);
        colons |= u64::from(v.cmp_eq(colon).move_mask() as u16) << (16 * i);
    }
    (lfs, colons)
}

/// One line of a message: its content is `text[start..end]` (without LF and a CR before it),
/// `colon` the position of its first `:`, if it has one.
struct Line {
    start: usize,
    end: usize,
    colon: Option<usize>,
}

/// `line = *(%x00-09 / %x0B-FF) LF` — a line ends at LF; a CR before it is not part of it,
/// a lone CR elsewhere is data (ami.md §1.2). The last line may lack its LF.
///
/// The lines of a text, in order, read off its marks 64 bytes at a time.
struct Lines<'a> {
    text: &'a [u8],
    /// Where the current block of marks starts.
    base: usize,
    /// The LFs and colons of the current block not yet passed.
    lfs: u64,
    colons: u64,
    /// The current line: where it starts, and its first colon once seen.
    start: usize,
    colon: Option<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a [u8]) -> Self {
        let (lfs, colons) = marks(text);
        Lines {
            text,
            base: 0,
            lfs,
            colons,
            start: 0,
            colon: None,
        }
    }

    /// The line from `self.start` that ends at `end` (an LF or the end of the text).
    fn line(&self, end: usize) -> Line {
        let end = match end.checked_sub(1) {
            Some(cr) if cr >= self.start && self.text.get(cr) == Some(&b'\r') => cr,
            _ => end,
        };
        Line {
            start: self.start,
            end,
            colon: self.colon.filter(|&c| c < end),
        }
    }
}

impl Iterator for Lines<'_> {
    type Item = Line;

    // Inlined into `message`, the iterator's state stays in registers: 8 % fewer instructions
    // for the whole parse than as a call per line (callgrind, the harness's stream).
    #[inline(always)]
    fn next(&mut self) -> Option<Line> {
        loop {
            if self.lfs != 0 {
                let bit = self.lfs.trailing_zeros();
                let before = self.colons & ((1u64 << bit) - 1);
                if self.colon.is_none() && before != 0 {
                    self.colon = Some(self.base + before.trailing_zeros() as usize);
                }
                let lf = self.base + bit as usize;
                let line = self.line(lf);
                (self.start, self.colon) = (lf + 1, None);
                self.colons &= u64::MAX.checked_shl(bit + 1).unwrap_or(0);
                self.lfs &= self.lfs - 1;
                return Some(line);
            }
            if self.colon.is_none() && self.colons != 0 {
                self.colon = Some(self.base + self.colons.trailing_zeros() as usize);
            }
            self.base += 64;
            if self.base >= self.text.len() {
                if self.start >= self.text.len() {
                    return None;
                }
                let line = self.line(self.text.len());
                self.start = self.text.len();
                return Some(line);
            }
            (self.lfs, self.colons) = marks(self.text.get(self.base..).unwrap_or_default());
        }
    }
}

/// The rest of a key that holds a colon, as in `ChanVariable(IAX2/10.0.0.1:4569-1): x=y`:
/// everything up to the next `": "`.
fn key_rest(tail: &[u8]) -> Option<usize> {
    take_until::<_, _, nom::error::Error<&[u8]>>(&b": "[..])
        .parse(tail)
        .ok()
        .map(|(_, rest)| rest.len())
}

/// `header = key ": " value / key ":" value` with `key = 1*(%x00-39 / %x3B-FF)` — split at the
/// first `": "`, falling back to the first `:` (ami.md §1.3). A key may itself hold a colon
/// as long as no space follows it. Gives where the key ends and the value starts in `line`,
/// whose first `:` is at `colon`.
fn header(line: &[u8], colon: usize) -> Option<(usize, usize)> {
    if colon == 0 {
        return None; // a key is never empty
    }
    if line.get(colon + 1) == Some(&b' ') {
        return Some((colon, colon + 2)); // the first `:` is the first `": "`: nearly always
    }
    let tail = line.get(colon + 1..).unwrap_or_default();
    Some(match key_rest(tail) {
        Some(rest) => (colon + 1 + rest, colon + 3 + rest),
        None => (colon, colon + 1),
    })
}

/// Whether the message is a response: its first line is `Response: …`.
fn is_response(text: &[u8]) -> bool {
    text.get(..9)
        .is_some_and(|k| k.eq_ignore_ascii_case(b"Response:"))
}

/// `message = 1*header-line` — one pass over the lines, straight into header ranges.
pub(crate) fn message(text: ByteString) -> Result<Message, ParseError> {
    let bytes: &[u8] = text.as_bytes();
    if u32::try_from(bytes.len()).is_err() {
        return Err(ParseError::NotAHeader); // no frame is this long: the codec caps them far below
    }
    let mut fields = Vec::with_capacity(24);
    for Line { start, end, colon } in Lines::new(bytes) {
        if start == end {
            return Err(ParseError::NotAHeader); // the framer never leaves an empty line inside
        }
        let split = colon.and_then(|c| header(bytes.get(start..end)?, c - start));
        match split {
            Some((key, value)) => {
                fields.push(Field::within(start..start + key, start + value..end))
            }
            // A response may carry a line of free text: GetConfig on a file without
            // categories answers `No categories found`. It is kept as a key with no value.
            None if !fields.is_empty() && is_response(bytes) && colon != Some(start) => {
                fields.push(Field::within(start..end, end..end))
            }
            None => return Err(ParseError::NotAHeader),
        }
    }
    if fields.is_empty() {
        return Err(ParseError::NotAHeader);
    }
    Ok(Message::from_parts(text, fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<(String, String)>, ParseError> {
        message(ByteString::from(s.to_owned())).map(|m| {
            m.headers()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
    }

    /// The grammar read line by line, a byte at a time: what the vectorised reading must equal.
    fn line_by_line(text: &str) -> Result<Vec<(String, String)>, ParseError> {
        let response = is_response(text.as_bytes());
        let mut lines: Vec<&str> = text.split('\n').collect();
        if lines.last() == Some(&"") {
            lines.pop(); // the text ends with LF (or is empty)
        }
        let mut out: Vec<(String, String)> = Vec::new();
        for line in lines {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let header = match line.find(':') {
                Some(0) | None => None,
                Some(c) if line[c + 1..].starts_with(' ') => Some((&line[..c], &line[c + 2..])),
                Some(c) => Some(match line[c + 1..].find(": ") {
                    Some(i) => (&line[..c + 1 + i], &line[c + 3 + i..]),
                    None => (&line[..c], &line[c + 1..]),
                }),
            };
            match header {
                _ if line.is_empty() => return Err(ParseError::NotAHeader),
                Some((k, v)) => out.push((k.to_owned(), v.to_owned())),
                None if !out.is_empty() && response && !line.starts_with(':') => {
                    out.push((line.to_owned(), String::new()))
                }
                None => return Err(ParseError::NotAHeader),
            }
        }
        if out.is_empty() {
            return Err(ParseError::NotAHeader);
        }
        Ok(out)
    }

    proptest::proptest! {
        /// Lines of up to 80 bytes, so that lines and colons fall on every side of the 64-byte
        /// blocks; LF or CR LF ends, and now and then an empty line or none at the end.
        #[test]
        fn reads_every_text_as_the_grammar_line_by_line(
            first in "(Response: |Event: |Queue)?",
            lines in proptest::collection::vec(
                ("[ab\u{e9}]{0,3}(:[ :ab\r\u{e9}]{0,76})?", 0u8..3),
                0..12,
            ),
        ) {
            let mut text = first;
            for (line, end) in lines {
                text.push_str(&line);
                text.push_str(["\n", "\r\n", ""][usize::from(end)]);
            }
            proptest::prop_assert_eq!(parse(&text), line_by_line(&text));
        }
    }

    #[test]
    fn value_is_everything_after_the_first_colon_space() {
        let h = parse("ActionID: a:b: c\r\n").unwrap();
        assert_eq!(h, [("ActionID".into(), "a:b: c".into())]);
    }

    #[test]
    fn key_may_contain_a_colon() {
        let h = parse("ChanVariable(IAX2/10.0.0.1:4569-1): x=y\r\n").unwrap();
        assert_eq!(h[0].0, "ChanVariable(IAX2/10.0.0.1:4569-1)");
        assert_eq!(h[0].1, "x=y");
    }

    #[test]
    fn empty_value_and_missing_space() {
        let h = parse("PausedReason: \r\nKey:v\nOther:\r\n").unwrap();
        assert_eq!(h[0], ("PausedReason".into(), "".into()));
        assert_eq!(h[1], ("Key".into(), "v".into()));
        assert_eq!(h[2], ("Other".into(), "".into()));
    }

    #[test]
    fn a_lone_cr_is_data() {
        let h = parse("A: x\ry\r\n").unwrap();
        assert_eq!(h[0].1, "x\ry");
    }

    #[test]
    fn a_line_without_colon_is_malformed() {
        assert_eq!(
            parse("Event: X\r\ngarbage\r\n"),
            Err(ParseError::NotAHeader)
        );
        assert_eq!(parse(": no key\r\n"), Err(ParseError::NotAHeader));
    }

    #[test]
    fn a_response_may_carry_a_line_of_text() {
        let h = parse("Response: Success\r\nNo categories found\r\n").unwrap();
        assert_eq!(h[1], ("No categories found".into(), String::new()));
        assert_eq!(
            parse("Response: Success\r\n: x\r\n"),
            Err(ParseError::NotAHeader)
        );
    }
}
