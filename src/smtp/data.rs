//! The DATA payload (RFC 5321 §4.5.2): CRLF everywhere, dot-stuffing, and the final `.`.
//!
//! Every bare CR and bare LF becomes CRLF, so no `\n.\n` or `\r.\r` sequence can end the
//! message early on a lenient relay (SMTP smuggling).

/// Longest line RFC 5322 §2.1.1 allows, CRLF excluded.
pub const MAX_LINE_OCTETS: usize = 998;

/// A message line is longer than [`MAX_LINE_OCTETS`]; the message builder should have encoded it.
#[derive(Debug, PartialEq, Eq)]
pub struct LineTooLong;

/// Encodes a message for the DATA phase, ending with `CRLF.CRLF`.
pub fn encode_for_data(message: &[u8]) -> Result<Vec<u8>, LineTooLong> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut line_len = 0usize;
    let mut at_line_start = true;
    let mut bytes = message.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        match byte {
            b'\r' | b'\n' => {
                if byte == b'\r' && bytes.peek() == Some(&b'\n') {
                    bytes.next();
                }
                out.extend_from_slice(b"\r\n");
                line_len = 0;
                at_line_start = true;
            }
            _ => {
                if at_line_start && byte == b'.' {
                    out.push(b'.');
                }
                out.push(byte);
                line_len += 1;
                at_line_start = false;
                if line_len > MAX_LINE_OCTETS {
                    return Err(LineTooLong);
                }
            }
        }
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_line_endings_and_stuffs_dots() {
        let input = b"Subject: x\r\n\r\n.leading\nbare lf\rbare cr\r\n..two\r\n.\r\nend";
        let wire = encode_for_data(input).unwrap();
        assert_eq!(wire, b"Subject: x\r\n\r\n..leading\r\nbare lf\r\nbare cr\r\n...two\r\n..\r\nend\r\n.\r\n".to_vec());
    }

    #[test]
    fn smuggling_sequences_cannot_end_the_message() {
        let input = b"body\n.\nMAIL FROM:<evil@x>\r\n\r.\r\n\r\n.\r";
        let wire = encode_for_data(input).unwrap();
        // The only CRLF.CRLF is the one we append.
        let terminator = b"\r\n.\r\n";
        let found: Vec<usize> = wire.windows(5).enumerate().filter(|(_, w)| w == terminator).map(|(i, _)| i).collect();
        assert_eq!(found, vec![wire.len() - 5]);
        // No bare CR or LF anywhere.
        for (i, b) in wire.iter().enumerate() {
            if *b == b'\n' {
                assert_eq!(wire[i - 1], b'\r');
            }
            if *b == b'\r' {
                assert_eq!(wire[i + 1], b'\n');
            }
        }
    }

    #[test]
    fn message_ending_with_crlf_gets_no_blank_line() {
        assert_eq!(encode_for_data(b"a\r\n").unwrap(), b"a\r\n.\r\n".to_vec());
    }

    #[test]
    fn long_lines_are_refused() {
        assert!(encode_for_data(&vec![b'a'; MAX_LINE_OCTETS]).is_ok());
        assert_eq!(encode_for_data(&vec![b'a'; MAX_LINE_OCTETS + 1]), Err(LineTooLong));
    }
}
