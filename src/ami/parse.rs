//! The nom grammar of one whole AMI message (ami.md §1.3), applied after framing.
//!
//! The framer hands over the text of one message without its closing empty line; this module
//! splits it into headers. It never sees a partial message, so "incomplete" cannot happen here:
//! anything that does not fit the grammar is a malformed message.
//!
//! The grammar works on bytes: every delimiter is ASCII, so each split falls on a character
//! boundary of the (already checked) UTF-8 text, and no rule decodes characters.

use bytestring::ByteString;
use nom::bytes::complete::take_till1;
use nom::error::ErrorKind;
use nom::{IResult, Parser};

use super::message::Field;
use super::Message;

/// Why a framed message could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A line has no `:` at all, so it is not a header.
    NotAHeader,
}

/// `line = *(%x00-09 / %x0B-FF) LF` — a line ends at LF; a CR before it is not part of it,
/// a lone CR elsewhere is data (ami.md §1.2). The last line may lack its LF.
fn line(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let (text, rest) = match memchr::memchr(b'\n', input) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &input[input.len()..]),
    };
    Ok((rest, text.strip_suffix(b"\r").unwrap_or(text)))
}

/// `key = 1*(%x00-39 / %x3B-FF)` — everything before the line's first `:`, never empty.
fn key(line: &[u8]) -> IResult<&[u8], &[u8]> {
    take_till1(|b| b == b':').parse(line)
}

/// `header = key ": " value / key ":" value` — split at the first `": "`, falling back to the
/// first `:` (ami.md §1.3). A key may itself hold a colon (`ChanVariable(IAX2/10.0.0.1:4569-1)`)
/// as long as no space follows it.
fn header(line: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    let (after, first_key) = key(line)?;
    // `after` starts with the first `:`; `key` stopped there or at the end of the line.
    let Some(tail) = after.strip_prefix(b":") else {
        return Err(nom::Err::Error(nom::error::Error::new(
            after,
            ErrorKind::Tag,
        )));
    };
    if let Some(value) = tail.strip_prefix(b" ") {
        return Ok((&[], (first_key, value))); // the first `:` is the first `": "`: nearly always
    }
    Ok(match memchr::memmem::find(tail, b": ") {
        Some(i) => {
            let key_len = first_key.len() + 1 + i;
            (&[], (&line[..key_len], &line[key_len + 2..]))
        }
        None => (&[], (first_key, tail)),
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
    let base = bytes.as_ptr() as usize;
    let at = |s: &[u8]| s.as_ptr() as usize - base;
    let range = |s: &[u8]| at(s)..at(s) + s.len();
    let mut fields = Vec::with_capacity(24);
    let mut input = bytes;
    while !input.is_empty() {
        let (rest, l) = line(input).map_err(|_| ParseError::NotAHeader)?;
        if l.is_empty() {
            return Err(ParseError::NotAHeader); // the framer never leaves an empty line inside
        }
        match header(l) {
            Ok((_, (k, v))) => fields.push(Field::new(range(k), range(v))),
            // A response may carry a line of free text: GetConfig on a file without
            // categories answers `No categories found`. It is kept as a key with no value.
            Err(_) if !fields.is_empty() && is_response(bytes) && !l.starts_with(b":") => {
                let end = at(l) + l.len();
                fields.push(Field::new(range(l), end..end))
            }
            Err(_) => return Err(ParseError::NotAHeader),
        }
        input = rest;
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
