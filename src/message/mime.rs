//! The MIME writer the message is rendered with: header fields folded before 78 characters,
//! non-ASCII text as RFC 2047 encoded words, parameters quoted or RFC 2231-encoded, bodies as
//! 7bit, quoted-printable (RFC 2045 6.7) or base64. Everything goes into one `Vec<u8>`, no I/O.
//!
//! Its callers hand it validated text: header values hold no control characters
//! (`crate::header`), addresses are checked (`crate::address`).

use crate::base64;

/// Header lines are folded before they pass this many characters where they can be
/// (RFC 5322 2.1.1); base64 and quoted-printable lines stay within 76 (RFC 2045), and so do
/// header lines that hold encoded words (RFC 2047 2).
const LINE: usize = 78;
const ENCODED_LINE: usize = 76;
/// Most bytes of text in one encoded word: 52 base64 characters, 64 with `=?utf-8?B?` and
/// `?=` (RFC 2047 allows 75); fewer where the line has less room.
const WORD_BYTES: usize = 39;

/// One header field being written, its column tracked so that tokens fold onto new lines.
pub struct Field<'o> {
    out: &'o mut Vec<u8>,
    column: usize,
    /// Whether a token has been written: the first is never folded away from the name.
    started: bool,
}

impl<'o> Field<'o> {
    pub fn new(out: &'o mut Vec<u8>, name: &str) -> Self {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        Field { out, column: name.len() + 1, started: false }
    }

    /// `token` after a space, or after a fold (CRLF and the space) when it would pass the
    /// line limit, with room left for a `,` or `;` after it. Unfolding gives the same text
    /// either way.
    pub fn token(&mut self, token: &str) {
        if self.started && !token.is_empty() && self.column + 1 + token.len() >= LINE {
            self.fold();
        }
        self.out.push(b' ');
        self.column += 1;
        self.glue(token);
        self.started = true;
    }

    fn fold(&mut self) {
        self.out.extend_from_slice(b"\r\n");
        self.column = 0;
    }

    /// `text` right after what came before, no space and no fold (a `,` or `;`).
    pub fn glue(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.column += text.len();
    }

    /// Unstructured text (RFC 5322 3.2.5: `Subject`, `X-…`): as it is when it is printable
    /// ASCII of words short enough to fold between, one space apart; else as encoded words,
    /// which keep any run of spaces (as plain text a long run would be one long line).
    pub fn text(&mut self, text: &str) {
        let plain = is_printable_ascii(text) && !text.contains("=?");
        let words_fold = text.split(' ').all(|word| !word.is_empty() && word.len() <= LINE - 3);
        if text.is_empty() || plain && words_fold {
            text.split(' ').for_each(|word| self.token(word));
        } else {
            self.encoded_words(text);
        }
    }

    /// A display name (RFC 5322 3.2.5 `phrase`): atoms as they are, other ASCII as one quoted
    /// string when it fits on a line, anything else (a longer one too, which could not fold)
    /// as encoded words.
    pub fn phrase(&mut self, name: &str) {
        let words = name.split(' ');
        if !name.is_empty() && words.clone().all(|w| !w.is_empty() && w.len() <= LINE - 3 && w.bytes().all(is_atext)) {
            words.for_each(|word| self.token(word));
            return;
        }
        if is_printable_ascii(name) && !name.contains("=?") {
            let quoted = quoted("", name);
            if quoted.len() <= LINE - 8 {
                return self.token(&quoted);
            }
        }
        self.encoded_words(name);
    }

    /// RFC 2047 `B` encoded words of at most [`WORD_BYTES`] bytes each, never splitting a
    /// character; readers join adjacent words without the white space between them.
    fn encoded_words(&mut self, text: &str) {
        let mut rest = text;
        while !rest.is_empty() {
            // As many bytes as fit on this line (a space, `=?utf-8?B?`, `?=` and 4 base64
            // characters for every 3), at most WORD_BYTES; on a new line when not one more
            // character fits here.
            let room = ENCODED_LINE.saturating_sub(self.column + 13) / 4 * 3;
            let mut end = rest.len().min(WORD_BYTES).min(room);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            if end == 0 {
                self.fold();
                continue;
            }
            let mut word = String::from("=?utf-8?B?");
            word.push_str(&base64::encode(&rest.as_bytes()[..end]));
            word.push_str("?=");
            self.token(&word);
            rest = &rest[end..];
        }
    }

    /// `; name="value"` for printable ASCII (one quoted string, which every client reads,
    /// even if it makes a line longer than 78), or RFC 2231's `; name*=utf-8''…`, in numbered
    /// sections when long, for any other value or one that would pass 998 octets.
    pub fn parameter(&mut self, name: &str, value: &str) {
        if is_printable_ascii(value) {
            let quoted = quoted(&[name, "="].concat(), value);
            if quoted.len() <= 900 {
                self.glue(";");
                return self.token(&quoted);
            }
        }
        // Sections of at most 60 characters, each ending on a character boundary of the value:
        // some readers decode each section by itself.
        let mut sections = vec![String::from("utf-8''")];
        let mut bytes = [0; 4];
        for c in value.chars() {
            let mut encoded = String::with_capacity(12);
            for &byte in c.encode_utf8(&mut bytes).as_bytes() {
                if is_attribute_char(byte) {
                    encoded.push(char::from(byte));
                } else {
                    push_percent(&mut encoded, byte);
                }
            }
            match sections.last_mut() {
                Some(last) if last.len() + encoded.len() <= 60 => last.push_str(&encoded),
                _ => sections.push(encoded),
            }
        }
        for (i, section) in sections.iter().enumerate() {
            self.glue(";");
            let mut token = String::from(name);
            if sections.len() > 1 {
                token.push('*');
                token.push_str(&i.to_string());
            }
            token.push_str("*=");
            token.push_str(section);
            self.token(&token);
        }
    }

    pub fn end(self) {
        self.out.extend_from_slice(b"\r\n");
    }
}

/// `prefix` and `text` as a quoted string (RFC 5322 3.2.4), `"` and `\` escaped.
fn quoted(prefix: &str, text: &str) -> String {
    let mut quoted = String::with_capacity(prefix.len() + text.len() + 2);
    quoted.push_str(prefix);
    quoted.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

fn is_printable_ascii(text: &str) -> bool {
    text.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// RFC 5322 `atext`: what a display name may hold without quotes.
fn is_atext(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&byte)
}

/// RFC 2231 `attribute-char`: what an extended parameter value holds without `%XX`.
fn is_attribute_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_percent(out: &mut String, byte: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 15)]));
}

/// `data` as base64 in lines of 76 characters, CRLF between them (none after the last).
fn base64(out: &mut Vec<u8>, data: &[u8]) {
    base64::encode_lines_into(data, out);
}

/// A body's transfer encoding (RFC 2045 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    SevenBit,
    QuotedPrintable,
    Base64,
}

impl Encoding {
    /// How text goes, from one look at each byte. Anything that is not clean text (NUL and the
    /// other control characters but tab and line breaks, a CR not before LF, and a bare LF
    /// unless `bare_line_feeds`: body text, whose line breaks are written CRLF, while an
    /// attachment must arrive unchanged) goes as base64, so it arrives byte for byte and no
    /// relay sees it raw; clean text as 7bit when it is ASCII in lines of at most 76, else as
    /// quoted-printable.
    pub fn for_text(data: &[u8], bare_line_feeds: bool) -> Encoding {
        let (mut previous, mut line, mut ascii_lines) = (0u8, 0usize, true);
        for &byte in data {
            if previous == b'\r' && byte != b'\n' {
                return Encoding::Base64;
            }
            match byte {
                b'\n' if !bare_line_feeds && previous != b'\r' => return Encoding::Base64,
                b'\n' => line = 0,
                b'\r' => {}
                b'\t' | b' '..=b'~' => line += 1,
                0x80.. => (ascii_lines, line) = (false, line + 1),
                _ => return Encoding::Base64,
            }
            ascii_lines &= line <= 76;
            previous = byte;
        }
        match (previous, ascii_lines) {
            (b'\r', _) => Encoding::Base64,
            (_, true) => Encoding::SevenBit,
            (_, false) => Encoding::QuotedPrintable,
        }
    }

    /// Its `Content-Transfer-Encoding`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::SevenBit => "7bit",
            Encoding::QuotedPrintable => "quoted-printable",
            Encoding::Base64 => "base64",
        }
    }

    pub fn write(self, out: &mut Vec<u8>, data: &[u8]) {
        match self {
            Encoding::SevenBit => seven_bit(out, data),
            Encoding::QuotedPrintable => quoted_printable(out, data),
            Encoding::Base64 => base64(out, data),
        }
    }
}

/// Text as it is, each line break (LF or CRLF) written CRLF.
fn seven_bit(out: &mut Vec<u8>, text: &[u8]) {
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
    }
}

/// Quoted-printable (RFC 2045 6.7): each line break (LF or CRLF) a hard CRLF, lines cut with
/// a soft break (`=` CRLF) before 76 characters, `=`, bytes outside printable ASCII and white
/// space at the end of a line as `=XX`.
fn quoted_printable(out: &mut Vec<u8>, text: &[u8]) {
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let mut rest = line.strip_suffix(b"\r").unwrap_or(line);
        let mut column = 0;
        while let Some(&byte) = rest.first() {
            // The bytes that go as they are, copied a run at a time; white space only when more
            // text follows it on the line.
            let mut run = rest.iter().position(|&b| !matches!(b, b' '..=b'<' | b'>'..=b'~' | b'\t'));
            if run.is_none() {
                run = Some(rest.iter().rposition(|&b| !matches!(b, b' ' | b'\t')).map_or(0, |last| last + 1));
            }
            let run = run.unwrap_or_default();
            if run == rest.len() && column + run <= 76 {
                out.extend_from_slice(rest);
                break;
            }
            // Room for the soft break's `=` unless this is the line's last character.
            let (width, room) = match run {
                0 => (3, if rest.len() == 1 { 76 } else { 75 }),
                _ => (run.min(75 - column.min(75)).max(1), 75),
            };
            if column + width > room {
                out.extend_from_slice(b"=\r\n");
                column = 0;
                continue;
            }
            if run == 0 {
                out.extend_from_slice(&[b'=', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]]);
                rest = &rest[1..];
            } else {
                out.extend_from_slice(&rest[..width]);
                rest = &rest[width..];
            }
            column += width;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    /// A message of the header fields `write` adds and a body, as an independent parser reads it.
    fn parsed(write: impl FnOnce(&mut Vec<u8>), body: &[u8]) -> (Vec<u8>, String) {
        let mut out = Vec::new();
        write(&mut out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        let text = String::from_utf8(out.clone()).unwrap();
        (out, text)
    }

    fn lines_fit(text: &str, limit: usize) {
        for line in text.split("\r\n") {
            assert!(line.len() <= limit, "{} characters: {line}", line.len());
        }
    }

    #[test]
    fn unstructured_text_folds_between_words_and_reads_back_unchanged() {
        // (Readers trim the white space around a field's value, so these have none.)
        let plain = "A subject  with two spaces, and words enough to need folding twice over: ".repeat(3);
        let mixed = "Grüße — ✓ déjà vu, 日本語のテキスト, emoji 🎉 and ASCII words ".repeat(4);
        let long_word = format!("see {} now", "x".repeat(100));
        // A run of spaces as plain text would be one line of them, past 998 octets.
        let spaces = format!("Order{}#42", " ".repeat(990));
        for subject in [plain.trim_end(), mixed.trim_end(), &long_word, &spaces, "a  b", "", "x"] {
            let (bytes, text) = parsed(
                |out| {
                    let mut field = Field::new(out, "Subject");
                    field.text(subject);
                    field.end();
                },
                b"",
            );
            lines_fit(&text, LINE);
            assert!(bytes.is_ascii());
            for line in text.split("\r\n").filter(|line| line.contains("=?")) {
                assert!(line.len() <= 76, "a line with encoded words over 76: {line}");
            }
            let message = MessageParser::default().parse(&bytes).unwrap();
            assert_eq!(message.subject().unwrap_or(""), subject, "{text}");
        }
    }

    #[test]
    fn encoded_words_start_on_a_new_line_when_the_line_has_no_room_left() {
        // As after a long `X-…` name: the column is far along before the first word.
        let start = "x".repeat(66);
        let (bytes, text) = parsed(
            |out| {
                let mut field = Field::new(out, "Subject");
                field.glue(" ");
                field.glue(&start);
                field.text("Frühling ✓ und Sommer");
                field.end();
            },
            b"",
        );
        assert!(text.split("\r\n").filter(|line| line.contains("=?")).all(|line| line.len() <= 76), "{text}");
        assert!(text.starts_with(&format!("Subject: {start}\r\n =?utf-8?B?")), "{text}");
        let message = MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(message.subject(), Some(format!("{start} Frühling ✓ und Sommer").as_str()));
    }

    #[test]
    fn display_names_go_as_atoms_quoted_strings_or_encoded_words() {
        // And two that could not fold: a long quoted string (encoded instead) and a long atom.
        let long_quoted = "\"quoted\" @ ".repeat(60);
        let long_atom = "x".repeat(900);
        let names =
            ["Ada Lovelace", "O'Brien, Pat", "Ada \"the\" \\ Lovelace", "J. Q. Public", "Jörg Müller 日本", " lead"];
        for name in names.into_iter().chain([long_quoted.trim_end(), long_atom.as_str()]) {
            let (bytes, text) = parsed(
                |out| {
                    let mut field = Field::new(out, "From");
                    field.phrase(name);
                    field.token("<a@example.com>");
                    field.end();
                },
                b"",
            );
            lines_fit(&text, LINE);
            let message = MessageParser::default().parse(&bytes).unwrap();
            let from = message.from().unwrap().first().unwrap();
            assert_eq!((from.name(), from.address()), (Some(name), Some("a@example.com")), "{text}");
        }
        let (_, text) = parsed(|out| Field::new(out, "From").phrase("Ada Lovelace"), b"");
        assert!(text.starts_with("From: Ada Lovelace"), "atoms stay readable");
    }

    #[test]
    fn parameters_are_quoted_or_rfc2231_encoded_in_sections_that_keep_characters_whole() {
        let long = "Bericht für März — 日本 und eine sehr lange Liste weiterer Wörter ".repeat(3) + ".pdf";
        let long_ascii = "a long plain name ".repeat(14) + ".txt";
        let longest_ascii = "x".repeat(1000);
        let names = ["a.pdf", "quote \" and \\ backslash.txt", "Grüße.txt", &long, &long_ascii, &longest_ascii];
        for filename in names {
            let (bytes, text) = parsed(
                |out| {
                    out.extend_from_slice(b"Content-Type: application/octet-stream\r\n");
                    let mut field = Field::new(out, "Content-Disposition");
                    field.token("attachment");
                    field.parameter("filename", filename);
                    field.end();
                },
                b"data",
            );
            // Printable ASCII stays one quoted string, which old clients read too.
            let quoted = is_printable_ascii(filename) && filename.len() < 900;
            assert_eq!(text.contains("filename=\""), quoted, "{text}");
            lines_fit(&text, if quoted { 998 } else { LINE });
            let message = MessageParser::default().parse(&bytes).unwrap();
            assert_eq!(message.root_part().attachment_name(), Some(filename), "{text}");
        }
    }

    /// The body of a one-part message, as an independent parser decodes it.
    fn decoded(encoding: &str, write: fn(&mut Vec<u8>, &[u8]), data: &[u8]) -> (String, Vec<u8>) {
        let mut out =
            format!("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n")
                .into_bytes();
        let start = out.len();
        write(&mut out, data);
        let body = String::from_utf8(out[start..].to_vec()).unwrap();
        let contents = MessageParser::default().parse(&out).unwrap().root_part().contents().to_vec();
        (body, contents)
    }

    #[test]
    fn quoted_printable_lines_stay_within_76_and_decode_to_the_text_with_crlf_line_breaks() {
        let text = "Zweite Zeile: äöü = gleich, trailing space \nand tab\t\r\n".to_string()
            + &"a long line without a single break ".repeat(10)
            + "\n\n= at the start\nends in a space ";
        let (body, contents) = decoded("quoted-printable", quoted_printable, text.as_bytes());
        lines_fit(&body, 76);
        assert!(body.is_ascii() && body.contains("=C3=A4") && body.contains("=3D") && body.contains("space=20\r\n"));
        assert_eq!(String::from_utf8(contents).unwrap(), text.replace("\r\n", "\n").replace('\n', "\r\n"));
    }

    #[test]
    fn quoted_printable_round_trips_text_made_of_the_hard_cases() {
        // Spaces and tabs before breaks, `=`, multi-byte characters and lines of every length,
        // from a fixed seed.
        let pieces = [" ", "\t", "=", "ä", "x", "word ", "\n", "\r\n", "€uro", "."];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for length in 0..300 {
            let mut text = String::new();
            for _ in 0..length {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            let (body, contents) = decoded("quoted-printable", quoted_printable, text.as_bytes());
            lines_fit(&body, 76);
            for line in body.split("\r\n") {
                assert!(!line.ends_with([' ', '\t']), "white space at the end of {line:?}");
            }
            assert_eq!(String::from_utf8(contents).unwrap(), text.replace("\r\n", "\n").replace('\n', "\r\n"));
        }
    }

    #[test]
    fn base64_lines_are_76_characters_and_decode_to_the_bytes() {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let (body, contents) = decoded("base64", base64, &data);
        assert!(body.split("\r\n").all(|line| line.len() <= 76) && body.split("\r\n").next().unwrap().len() == 76);
        assert_eq!(contents, data);
    }

    #[test]
    fn seven_bit_is_for_short_ascii_lines_whose_breaks_become_crlf() {
        use Encoding::*;
        let long = "x".repeat(77);
        let cases: [(&[u8], bool, Encoding); 12] = [
            (b"short\r\nlines\n", true, SevenBit),
            (b"short\r\nlines\n", false, Base64),
            (b"crlf only\r\n", false, SevenBit),
            ("non-ASCII ä".as_bytes(), true, QuotedPrintable),
            (long.as_bytes(), true, QuotedPrintable),
            (b"\x07 bell", true, Base64),
            (b"nul \0", true, Base64),
            (b"del \x7f", true, Base64),
            (b"bare\rcr", true, Base64),
            (b"ends in cr\r", true, Base64),
            (b"tab\tand =", true, SevenBit),
            (b"", false, SevenBit),
        ];
        for (data, bare_line_feeds, expected) in cases {
            assert_eq!(Encoding::for_text(data, bare_line_feeds), expected, "{:?}", String::from_utf8_lossy(data));
        }
        assert_eq!(Encoding::for_text(format!("{}\r\n", "x".repeat(76)).as_bytes(), false), SevenBit);
        let mut out = Vec::new();
        seven_bit(&mut out, b"one\ntwo\r\nthree");
        assert_eq!(out, b"one\r\ntwo\r\nthree");
    }
}
