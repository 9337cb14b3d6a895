//! The nom grammar of one whole AMI message (ami.md §1.3), applied after framing.
//!
//! The framer hands over the text of one message without its closing empty line; this module
//! splits it into headers. It never sees a partial message, so "incomplete" cannot happen here:
//! anything that does not fit the grammar is a malformed message.

use bytestring::ByteString;
use nom::branch::alt;
use nom::bytes::complete::tag;
use nom::combinator::{all_consuming, rest, verify};
use nom::error::ErrorKind;
use nom::sequence::separated_pair;
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
fn line(input: &str) -> IResult<&str, &str> {
    let (text, rest) = match memchr::memchr(b'\n', input.as_bytes()) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, ""),
    };
    Ok((rest, text.strip_suffix('\r').unwrap_or(text)))
}

/// Everything before the first `": "`. nom's `take_until` on `&str` builds a two-way searcher
/// for every call; the first `:` of a line is nearly always the one, so jump from colon to
/// colon.
fn until_colon_space(input: &str) -> IResult<&str, &str> {
    let bytes = input.as_bytes();
    memchr::memchr_iter(b':', bytes)
        .find(|&i| bytes.get(i + 1) == Some(&b' '))
        .map(|i| (&input[i..], &input[..i]))
        .ok_or_else(|| not_found(input))
}

/// Everything before the first `:`.
fn until_colon(input: &str) -> IResult<&str, &str> {
    memchr::memchr(b':', input.as_bytes())
        .map(|i| (&input[i..], &input[..i]))
        .ok_or_else(|| not_found(input))
}

fn not_found(input: &str) -> nom::Err<nom::error::Error<&str>> {
    nom::Err::Error(nom::error::Error::new(input, ErrorKind::TakeUntil))
}

/// `header = key ": " value / key ":" value` — split at the first `": "`, falling back to the
/// first `:` (ami.md §1.3); the key is never empty.
fn header(line: &str) -> IResult<&str, (&str, &str)> {
    let non_empty = |k: &&str| !k.is_empty();
    all_consuming(alt((
        separated_pair(verify(until_colon_space, non_empty), tag(": "), rest),
        separated_pair(verify(until_colon, non_empty), tag(":"), rest),
    )))
    .parse(line)
}

/// `message = 1*header-line` — one pass over the lines, straight into header ranges.
/// Whether the message is a response: its first line is `Response: …`.
fn is_response(text: &str) -> bool {
    text.get(..9)
        .is_some_and(|k| k.eq_ignore_ascii_case("Response:"))
}

pub(crate) fn message(text: ByteString) -> Result<Message, ParseError> {
    let base = text.as_ptr() as usize;
    let at = |s: &str| s.as_ptr() as usize - base;
    let mut fields = Vec::with_capacity(24);
    let mut input: &str = &text;
    while !input.is_empty() {
        let (rest, l) = line(input).map_err(|_| ParseError::NotAHeader)?;
        if l.is_empty() {
            return Err(ParseError::NotAHeader); // the framer never leaves an empty line inside
        }
        match header(l) {
            Ok((_, (k, v))) => {
                fields.push(Field::new(at(k)..at(k) + k.len(), at(v)..at(v) + v.len()))
            }
            // A response may carry a line of free text: GetConfig on a file without
            // categories answers `No categories found`. It is kept as a key with no value.
            Err(_) if !fields.is_empty() && is_response(&text) && !l.starts_with(':') => fields
                .push(Field::new(
                    at(l)..at(l) + l.len(),
                    at(l) + l.len()..at(l) + l.len(),
                )),
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
