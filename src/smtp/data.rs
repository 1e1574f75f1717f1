//! The message on the wire (RFC 5321 §4.5.2, RFC 3030): CRLF everywhere, no line over 998
//! octets, and for DATA also dot-stuffing and the final `.`.
//!
//! Every bare CR and bare LF becomes CRLF, so no `\n.\n` or `\r.\r` sequence can end the
//! message early on a lenient relay (SMTP smuggling). The payload is produced in pieces of a
//! bounded size: when the message needs no change — the usual case, as the MIME builder writes
//! CRLF — the pieces are slices of it; otherwise each piece is rewritten as it is needed, with
//! the line state carried from one piece to the next. Either way a large message is never held
//! twice, here or on the JavaScript side of the socket.

use std::borrow::Cow;

/// Longest line RFC 5322 §2.1.1 allows, CRLF excluded.
pub const MAX_LINE_OCTETS: usize = 998;

/// A message line is longer than [`MAX_LINE_OCTETS`]; the message builder should have encoded it.
#[derive(Debug, PartialEq, Eq)]
pub struct LineTooLong;

/// The message as the wire needs it after `BDAT <n>` or `DATA`'s 354 (without the final `.`
/// line, see [`END_OF_DATA`]).
#[derive(Debug)]
pub struct Payload<'m> {
    message: &'m [u8],
    dot_stuff: bool,
    /// Whether the bytes change on the way (a line ending to fix, a dot to stuff).
    rewrite: bool,
    len: usize,
}

impl<'m> Payload<'m> {
    /// No message: what closes a DATA phase the relay opened after a failure.
    pub const EMPTY: Payload<'static> = Payload { message: b"", dot_stuff: true, rewrite: false, len: 0 };

    /// The payload of `BDAT <n> LAST`: CRLF line endings, ending in CRLF, no dot-stuffing.
    pub fn for_bdat(message: &'m [u8]) -> Result<Self, LineTooLong> {
        Payload::new(message, false)
    }

    /// The body after `DATA`'s 354: as for BDAT, and every line that starts with `.` gets
    /// another.
    pub fn for_data(message: &'m [u8]) -> Result<Self, LineTooLong> {
        Payload::new(message, true)
    }

    fn new(message: &'m [u8], dot_stuff: bool) -> Result<Self, LineTooLong> {
        let scan = scan(message)?;
        let rewrite = scan.bare_line_ending
            || (dot_stuff && scan.dot_at_line_start)
            || !(scan.ends_with_crlf || message.is_empty());
        let mut payload = Payload { message, dot_stuff, rewrite, len: message.len() };
        if rewrite {
            let mut count = Count(0);
            let mut state = LineState::default();
            payload.rewrite_into(&mut state, &mut count, usize::MAX);
            payload.len = count.0;
        }
        Ok(payload)
    }

    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The payload in pieces of at most `max` bytes (`max` ≥ 3), in order.
    pub fn pieces(&self, max: usize) -> Pieces<'_, 'm> {
        Pieces { payload: self, state: LineState::default(), max: max.max(3) }
    }

    /// Rewrites from `state` on into `out` until `out` holds `budget` bytes (at most) or the
    /// message has all been written.
    fn rewrite_into(&self, state: &mut LineState, out: &mut impl Sink, budget: usize) {
        let message = self.message;
        while out.len() + 3 <= budget {
            let Some(&byte) = message.get(state.pos) else {
                if !state.at_line_start && !state.finished {
                    out.put(b"\r\n");
                }
                state.finished = true;
                return;
            };
            state.pos += 1;
            match byte {
                b'\r' | b'\n' => {
                    if byte == b'\r' && message.get(state.pos) == Some(&b'\n') {
                        state.pos += 1;
                    }
                    out.put(b"\r\n");
                    state.at_line_start = true;
                }
                b'.' if self.dot_stuff && state.at_line_start => {
                    out.put(b"..");
                    state.at_line_start = false;
                }
                _ => {
                    out.put(&[byte]);
                    state.at_line_start = false;
                }
            }
        }
    }

    /// The whole payload in one buffer (tests, and small messages).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut whole = Vec::with_capacity(self.len);
        for piece in self.pieces(usize::MAX) {
            whole.extend_from_slice(&piece);
        }
        whole
    }
}

/// Where a rewrite stands between two pieces.
#[derive(Debug)]
struct LineState {
    pos: usize,
    at_line_start: bool,
    finished: bool,
}

impl Default for LineState {
    fn default() -> Self {
        LineState { pos: 0, at_line_start: true, finished: false }
    }
}

/// The pieces of a [`Payload`], each a slice of the message when it needs no change.
pub struct Pieces<'p, 'm> {
    payload: &'p Payload<'m>,
    state: LineState,
    max: usize,
}

impl<'m> Iterator for Pieces<'_, 'm> {
    type Item = Cow<'m, [u8]>;

    fn next(&mut self) -> Option<Cow<'m, [u8]>> {
        if !self.payload.rewrite {
            let message: &'m [u8] = self.payload.message;
            let rest = &message[self.state.pos..];
            if rest.is_empty() {
                return None;
            }
            let piece = &rest[..rest.len().min(self.max)];
            self.state.pos += piece.len();
            return Some(Cow::Borrowed(piece));
        }
        if self.state.finished {
            return None;
        }
        let mut piece = Vec::with_capacity(self.max.min(self.payload.len + 2));
        self.payload.rewrite_into(&mut self.state, &mut piece, self.max);
        (!piece.is_empty()).then_some(Cow::Owned(piece))
    }
}

/// Where rewritten bytes go: a piece, or a count of them.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
    fn len(&self) -> usize;
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn len(&self) -> usize {
        Vec::len(self)
    }
}

struct Count(usize);

impl Sink for Count {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }

    fn len(&self) -> usize {
        // Counting has no budget: the whole message is counted.
        0
    }
}

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

/// Ends the DATA phase; follows a payload that ends in CRLF.
pub const END_OF_DATA: &[u8] = b".\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn data(input: &[u8]) -> Vec<u8> {
        let mut wire = Payload::for_data(input).unwrap().to_vec();
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
        let borrowed = |p: Payload<'_>| p.pieces(4).all(|piece| matches!(piece, Cow::Borrowed(_)));
        let clean = b"Subject: x\r\n\r\nhello\r\n";
        assert!(borrowed(Payload::for_data(clean).unwrap()));
        assert!(borrowed(Payload::for_bdat(clean).unwrap()));
        let dotted = b"Subject: x\r\n\r\n.hello\r\n";
        assert!(!borrowed(Payload::for_data(dotted).unwrap()));
        assert!(borrowed(Payload::for_bdat(dotted).unwrap()), "BDAT needs no dot-stuffing");
    }

    #[test]
    fn bdat_payload_is_crlf_normalised_and_not_stuffed() {
        let wire = Payload::for_bdat(b"a\n.b\rc").unwrap().to_vec();
        assert_eq!(wire, b"a\r\n.b\r\nc\r\n");
        assert_no_bare_cr_or_lf(&wire);
    }

    /// Pieces of any size join up to the same bytes, none is over the size, and the length
    /// announced (for `BDAT <n>`) is the length written — line state carried across pieces,
    /// a CR at the end of one piece and its LF at the start of the next included.
    #[test]
    fn pieces_of_any_size_make_the_same_payload() {
        let inputs: [&[u8]; 6] = [
            b"",
            b"a\r\nb\r\n",
            b".a\n.b\r.c\r\n..d",
            b"\r\n.\r\n\r\n.",
            b"x\r",
            b"line one\r\n.dot\nbare\r\r\n\n\n.end",
        ];
        for input in inputs {
            for stuff in [false, true] {
                let payload = if stuff { Payload::for_data(input) } else { Payload::for_bdat(input) }.unwrap();
                let whole = payload.to_vec();
                assert_eq!(whole.len(), payload.len(), "{input:?}");
                assert_no_bare_cr_or_lf(&whole);
                for max in [3, 4, 5, 7, 64] {
                    let pieces: Vec<Cow<'_, [u8]>> = payload.pieces(max).collect();
                    assert!(pieces.iter().all(|p| !p.is_empty() && p.len() <= max), "{input:?} {max}");
                    assert_eq!(pieces.concat(), whole, "{input:?} in pieces of {max}");
                }
            }
        }
    }

    #[test]
    fn message_ending_with_crlf_gets_no_blank_line() {
        assert_eq!(data(b"a\r\n"), b"a\r\n.\r\n".to_vec());
    }

    #[test]
    fn long_lines_are_refused() {
        assert!(Payload::for_data(&vec![b'a'; MAX_LINE_OCTETS]).is_ok());
        assert_eq!(Payload::for_data(&vec![b'a'; MAX_LINE_OCTETS + 1]).err(), Some(LineTooLong));
        assert_eq!(Payload::for_bdat(&vec![b'a'; MAX_LINE_OCTETS + 1]).err(), Some(LineTooLong));
    }
}
