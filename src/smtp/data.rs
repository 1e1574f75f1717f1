//! The message on the wire (RFC 5321 §4.5.2, RFC 3030): CRLF everywhere, no line over 998
//! octets, and for DATA also dot-stuffing and the final `.`.
//!
//! Every bare CR and bare LF becomes CRLF, so no `\n.\n` or `\r.\r` sequence can end the
//! message early on a lenient relay (SMTP smuggling). When the message needs no change — the
//! usual case, as the MIME builder writes CRLF — the input is borrowed, not copied, so a large
//! message is held once (plus once more only when it needs fixing).

use std::borrow::Cow;

/// Longest line RFC 5322 §2.1.1 allows, CRLF excluded.
pub const MAX_LINE_OCTETS: usize = 998;

/// A message line is longer than [`MAX_LINE_OCTETS`]; the message builder should have encoded it.
#[derive(Debug, PartialEq, Eq)]
pub struct LineTooLong;

/// What the scan found: whether the bytes must be rewritten for the wire.
struct Scan {
    bare_line_ending: bool,
    dot_at_line_start: bool,
    ends_with_crlf: bool,
}

fn scan(message: &[u8]) -> Result<Scan, LineTooLong> {
    let mut scan = Scan { bare_line_ending: false, dot_at_line_start: false, ends_with_crlf: false };
    let mut line_len = 0usize;
    let mut i = 0;
    while i < message.len() {
        match message[i] {
            b'\r' if message.get(i + 1) == Some(&b'\n') => {
                line_len = 0;
                i += 2;
                continue;
            }
            b'\r' | b'\n' => {
                scan.bare_line_ending = true;
                line_len = 0;
            }
            byte => {
                if line_len == 0 && byte == b'.' {
                    scan.dot_at_line_start = true;
                }
                line_len += 1;
                if line_len > MAX_LINE_OCTETS {
                    return Err(LineTooLong);
                }
            }
        }
        i += 1;
    }
    scan.ends_with_crlf = message.ends_with(b"\r\n") && !scan.bare_line_ending;
    Ok(scan)
}

/// Rewrites `message` with CRLF line endings, optionally dot-stuffing each line.
fn rewrite(message: &[u8], dot_stuff: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 8);
    let mut at_line_start = true;
    let mut bytes = message.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        match byte {
            b'\r' | b'\n' => {
                if byte == b'\r' && bytes.peek() == Some(&b'\n') {
                    bytes.next();
                }
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                if dot_stuff && at_line_start && byte == b'.' {
                    out.push(b'.');
                }
                out.push(byte);
                at_line_start = false;
            }
        }
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The payload of `BDAT <n> LAST`: CRLF line endings, ending in CRLF, no dot-stuffing.
pub fn encode_for_bdat(message: &[u8]) -> Result<Cow<'_, [u8]>, LineTooLong> {
    let scan = scan(message)?;
    if !scan.bare_line_ending && (scan.ends_with_crlf || message.is_empty()) {
        return Ok(Cow::Borrowed(message));
    }
    Ok(Cow::Owned(rewrite(message, false)))
}

/// The body after `DATA`'s 354, without the final `.` line (see [`END_OF_DATA`]).
pub fn encode_for_data(message: &[u8]) -> Result<Cow<'_, [u8]>, LineTooLong> {
    let scan = scan(message)?;
    if !scan.bare_line_ending && !scan.dot_at_line_start && (scan.ends_with_crlf || message.is_empty()) {
        return Ok(Cow::Borrowed(message));
    }
    Ok(Cow::Owned(rewrite(message, true)))
}

/// Ends the DATA phase; follows a payload that ends in CRLF.
pub const END_OF_DATA: &[u8] = b".\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn data(input: &[u8]) -> Vec<u8> {
        let mut wire = encode_for_data(input).unwrap().into_owned();
        wire.extend_from_slice(END_OF_DATA);
        wire
    }

    #[test]
    fn normalises_line_endings_and_stuffs_dots() {
        let input = b"Subject: x\r\n\r\n.leading\nbare lf\rbare cr\r\n..two\r\n.\r\nend";
        assert_eq!(
            data(input),
            b"Subject: x\r\n\r\n..leading\r\nbare lf\r\nbare cr\r\n...two\r\n..\r\nend\r\n.\r\n".to_vec()
        );
    }

    #[test]
    fn smuggling_sequences_cannot_end_the_message() {
        let input = b"body\n.\nMAIL FROM:<evil@x>\r\n\r.\r\n\r\n.\r";
        let wire = data(input);
        // The only CRLF.CRLF is the one that ends DATA.
        let found: Vec<usize> =
            wire.windows(5).enumerate().filter(|(_, w)| w == b"\r\n.\r\n").map(|(i, _)| i).collect();
        assert_eq!(found, vec![wire.len() - 5]);
        assert_no_bare_cr_or_lf(&wire);
    }

    fn assert_no_bare_cr_or_lf(wire: &[u8]) {
        for (i, b) in wire.iter().enumerate() {
            if *b == b'\n' {
                assert_eq!(wire[i - 1], b'\r', "bare LF at {i}");
            }
            if *b == b'\r' {
                assert_eq!(wire[i + 1], b'\n', "bare CR at {i}");
            }
        }
    }

    #[test]
    fn clean_messages_are_borrowed_not_copied() {
        let clean = b"Subject: x\r\n\r\nhello\r\n";
        assert!(matches!(encode_for_data(clean).unwrap(), Cow::Borrowed(_)));
        assert!(matches!(encode_for_bdat(clean).unwrap(), Cow::Borrowed(_)));
        let dotted = b"Subject: x\r\n\r\n.hello\r\n";
        assert!(matches!(encode_for_data(dotted).unwrap(), Cow::Owned(_)));
        assert!(matches!(encode_for_bdat(dotted).unwrap(), Cow::Borrowed(_)), "BDAT needs no dot-stuffing");
    }

    #[test]
    fn bdat_payload_is_crlf_normalised_and_not_stuffed() {
        let wire = encode_for_bdat(b"a\n.b\rc").unwrap();
        assert_eq!(&*wire, b"a\r\n.b\r\nc\r\n");
        assert_no_bare_cr_or_lf(&wire);
    }

    #[test]
    fn message_ending_with_crlf_gets_no_blank_line() {
        assert_eq!(data(b"a\r\n"), b"a\r\n.\r\n".to_vec());
    }

    #[test]
    fn long_lines_are_refused() {
        assert!(encode_for_data(&vec![b'a'; MAX_LINE_OCTETS]).is_ok());
        assert_eq!(encode_for_data(&vec![b'a'; MAX_LINE_OCTETS + 1]), Err(LineTooLong));
        assert_eq!(encode_for_bdat(&vec![b'a'; MAX_LINE_OCTETS + 1]), Err(LineTooLong));
    }
}
