//! SMTP replies (RFC 5321 §4.2) and enhanced status codes (RFC 3463), parsed incrementally.
//!
//! [`ReplyBuffer`] lives as long as the connection: bytes are pushed in as they arrive, and
//! complete replies are taken out one by one. Bytes after a reply stay for the next one, which
//! is what makes pipelined replies (several in one read) and replies split across reads work.

use std::fmt;

/// Longest reply line we accept (RFC 5321 §4.5.3.1.5 says 512; real relays exceed it a little).
pub const MAX_LINE: usize = 2048;
/// Most lines in one multi-line reply (an EHLO reply has a dozen or two).
pub const MAX_LINES: usize = 128;

/// An enhanced status code such as `5.1.1` (RFC 3463).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One complete reply: a three-digit code and one or more lines of text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The enhanced code of the first line, when it carries one.
    pub enhanced: Option<EnhancedCode>,
    /// The text of each line, without the code, separator and enhanced code.
    pub lines: Vec<String>,
}

impl Reply {
    /// A 4xx: the relay may accept later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    /// All lines joined with a space: what we show a caller.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }
}

/// The relay sent something that is not an SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedReply(pub &'static str);

impl fmt::Display for MalformedReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Bytes received from the relay, not yet consumed as replies.
#[derive(Debug, Default)]
pub struct ReplyBuffer {
    pending: Vec<u8>,
}

impl ReplyBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// True when no unconsumed byte is held (checked after the `220` to STARTTLS).
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes the next complete reply out of the buffer, `Ok(None)` when more bytes are needed.
    ///
    /// Memory stays bounded: an over-long line or reply is an error, not a bigger buffer.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, MalformedReply> {
        let mut code = None;
        let mut lines = Vec::new();
        let mut enhanced = None;
        let mut offset = 0;
        loop {
            let rest = &self.pending[offset..];
            let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() > MAX_LINE {
                    return Err(MalformedReply("reply line too long"));
                }
                return Ok(None);
            };
            if newline > MAX_LINE {
                return Err(MalformedReply("reply line too long"));
            }
            let line = rest[..newline].strip_suffix(b"\r").unwrap_or(&rest[..newline]);
            let parsed = parse_line(line)?;
            if *code.get_or_insert(parsed.code) != parsed.code {
                return Err(MalformedReply("lines of a multi-line reply disagree on the code"));
            }
            if lines.is_empty() {
                enhanced = parse_enhanced(parsed.code, parsed.text).map(|(e, _)| e);
            }
            let text = match parse_enhanced(parsed.code, parsed.text) {
                Some((_, after)) => after,
                None => parsed.text,
            };
            lines.push(text.to_string());
            if lines.len() > MAX_LINES {
                return Err(MalformedReply("multi-line reply has too many lines"));
            }
            offset += newline + 1;
            if parsed.last {
                self.pending.drain(..offset);
                let code = code.unwrap_or_default();
                return Ok(Some(Reply { code, enhanced, lines }));
            }
        }
    }
}

struct Line<'a> {
    code: u16,
    last: bool,
    text: &'a str,
}

fn parse_line(line: &[u8]) -> Result<Line<'_>, MalformedReply> {
    let Ok(line) = std::str::from_utf8(line) else {
        return Err(MalformedReply("reply is not UTF-8"));
    };
    if line.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(MalformedReply("reply contains control characters"));
    }
    let bytes = line.as_bytes();
    if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
        return Err(MalformedReply("reply does not start with a three-digit code"));
    }
    let code: u16 = line[..3].parse().map_err(|_| MalformedReply("bad reply code"))?;
    if !(200..=599).contains(&code) {
        return Err(MalformedReply("reply code out of range"));
    }
    let (last, text) = match bytes.get(3) {
        None => (true, ""),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(MalformedReply("reply code not followed by space or hyphen")),
    };
    Ok(Line { code, last, text })
}

/// `x.y.z` at the start of the text, where x matches the reply's class (RFC 3463 §2).
fn parse_enhanced(code: u16, text: &str) -> Option<(EnhancedCode, &str)> {
    let class = (code / 100) as u8;
    if !matches!(class, 2 | 4 | 5) {
        return None;
    }
    let end = text.find(' ').unwrap_or(text.len());
    let mut parts = text[..end].split('.');
    let c: u8 = number(parts.next()?, 1)? as u8;
    let subject = number(parts.next()?, 3)?;
    let detail = number(parts.next()?, 3)?;
    if parts.next().is_some() || c != class {
        return None;
    }
    let rest = text[end..].trim_start_matches(' ');
    Some((EnhancedCode { class: c, subject, detail }, rest))
}

fn number(digits: &str, max_len: usize) -> Option<u16> {
    if digits.is_empty() || digits.len() > max_len || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Result<Vec<Reply>, MalformedReply> {
        let mut buffer = ReplyBuffer::new();
        buffer.push(input);
        let mut replies = Vec::new();
        while let Some(reply) = buffer.next_reply()? {
            replies.push(reply);
        }
        Ok(replies)
    }

    #[test]
    fn single_line_with_enhanced_code() {
        let replies = all(b"250 2.1.0 Ok\r\n").unwrap();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].code, 250);
        assert_eq!(replies[0].enhanced.unwrap().to_string(), "2.1.0");
        assert_eq!(replies[0].lines, vec!["Ok"]);
    }

    #[test]
    fn multi_line_ehlo() {
        let replies = all(b"250-relay.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n").unwrap();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].lines, vec!["relay.test", "PIPELINING", "STARTTLS"]);
        assert_eq!(replies[0].enhanced, None);
    }

    #[test]
    fn several_replies_in_one_read_are_kept_in_order() {
        let replies = all(b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n").unwrap();
        let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
        assert_eq!(codes, vec![250, 250, 354]);
        assert_eq!(replies[1].enhanced.unwrap().to_string(), "2.1.5");
    }

    #[test]
    fn bare_code_line_is_a_reply() {
        let replies = all(b"250\r\n").unwrap();
        assert_eq!(replies[0].code, 250);
        assert_eq!(replies[0].lines, vec![""]);
    }

    #[test]
    fn enhanced_code_must_match_class() {
        let replies = all(b"550 2.1.1 odd\r\n").unwrap();
        assert_eq!(replies[0].enhanced, None);
        assert_eq!(replies[0].lines, vec!["2.1.1 odd"]);
    }

    #[test]
    fn incomplete_reply_waits_for_more() {
        let mut buffer = ReplyBuffer::new();
        buffer.push(b"250-first\r\n250 sec");
        assert_eq!(buffer.next_reply(), Ok(None));
        buffer.push(b"ond\r\n");
        assert_eq!(buffer.next_reply().unwrap().unwrap().lines, vec!["first", "second"]);
        assert!(buffer.is_empty());
    }

    #[test]
    fn malformed_replies_are_rejected() {
        for bad in [
            &b"25 short\r\n"[..],
            b"abc text\r\n",
            b"250xtext\r\n",
            b"250-one\r\n251 two\r\n",
            b"199 too low\r\n",
            b"250 bell\x07\r\n",
            b"250 \xff\xfe\r\n",
        ] {
            assert!(all(bad).is_err(), "accepted {:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn oversized_line_is_rejected_before_it_ends() {
        let mut buffer = ReplyBuffer::new();
        buffer.push(b"250 ");
        buffer.push(&vec![b'a'; MAX_LINE + 1]);
        assert!(buffer.next_reply().is_err());
    }

    #[test]
    fn too_many_lines_is_rejected() {
        let mut input = Vec::new();
        for _ in 0..=MAX_LINES {
            input.extend_from_slice(b"250-x\r\n");
        }
        input.extend_from_slice(b"250 end\r\n");
        assert!(all(&input).is_err());
    }

    #[test]
    fn split_at_every_byte_gives_the_same_reply() {
        let wire = b"250-relay.test greets you\r\n250-SIZE 1000\r\n250 2.0.0 ENHANCEDSTATUSCODES\r\n";
        let whole = all(wire).unwrap();
        for split in 1..wire.len() {
            let mut buffer = ReplyBuffer::new();
            buffer.push(&wire[..split]);
            let first = buffer.next_reply().unwrap();
            assert_eq!(first, None, "complete too early at {split}");
            buffer.push(&wire[split..]);
            assert_eq!(buffer.next_reply().unwrap().as_ref(), whole.first(), "split at {split}");
        }
    }
}
