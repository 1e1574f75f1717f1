//! Validated content → MIME bytes (RFC 5322, RFC 2045–2047). The date and the Message-ID are
//! passed in, and so, to [`render_with`], is the randomness for the multipart boundaries: the
//! same input always gives the same bytes.

pub mod mime;

use crate::address::Mailbox;
use mime::{Encoding, Field};

/// A message whose every field has been validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// Envelope only: never written into a header.
    pub bcc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// Extra `X-…` headers, names and values validated.
    pub headers: Vec<(String, String)>,
}

/// A file to attach; with a `content_id` it is an inline part the HTML refers to as `cid:…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    /// `type/subtype`, validated.
    pub content_type: String,
    /// The `charset` parameter for text types.
    pub charset: Option<String>,
    pub data: Vec<u8>,
    pub content_id: Option<String>,
}

impl Content {
    /// Every envelope recipient, in order, without duplicates (case-insensitively).
    pub fn envelope_recipients(&self) -> Vec<&crate::address::EmailAddress> {
        let mut seen: Vec<&crate::address::EmailAddress> = Vec::new();
        for mailbox in self.to.iter().chain(&self.cc).chain(&self.bcc) {
            if !seen.iter().any(|s| s.as_str().eq_ignore_ascii_case(mailbox.email.as_str())) {
                seen.push(&mailbox.email);
            }
        }
        seen
    }
}

/// The charset to declare for an attachment that names none: text without one would be read
/// as US-ASCII, so say UTF-8 when the bytes are UTF-8.
pub fn implied_charset(content_type: &str, data: &[u8]) -> Option<String> {
    (content_type.starts_with("text/") && std::str::from_utf8(data).is_ok()).then(|| "utf-8".into())
}

/// The identity of one message: the `Message-ID` (without angle brackets) and its `Date`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub message_id: String,
    pub unix_seconds: i64,
}

impl Stamp {
    /// A Message-ID of 128 random bits on `domain`.
    pub fn new(random: [u8; 16], domain: &str, unix_seconds: i64) -> Self {
        let hex = crate::hex(&random);
        Stamp { message_id: format!("{hex}@{domain}"), unix_seconds }
    }

    /// The Message-ID as it appears in the header, with angle brackets.
    pub fn header_message_id(&self) -> String {
        format!("<{}>", self.message_id)
    }
}

/// `From:`, `To:` and the like: display names and addresses, folded between mailboxes.
fn mailboxes(out: &mut Vec<u8>, name: &str, mailboxes: &[Mailbox]) {
    let mut field = Field::new(out, name);
    for (i, mailbox) in mailboxes.iter().enumerate() {
        if i > 0 {
            field.glue(",");
        }
        if let Some(name) = mailbox.name.as_deref().filter(|name| !name.is_empty()) {
            field.phrase(name);
        }
        field.token(&angle_brackets(mailbox.email.as_str()));
    }
    field.end();
}

fn angle_brackets(text: &str) -> String {
    let mut bracketed = String::with_capacity(text.len() + 2);
    bracketed.push('<');
    bracketed.push_str(text);
    bracketed.push('>');
    bracketed
}

/// Renders the message, drawing its multipart boundaries from the operating system's CSPRNG
/// (`crypto.getRandomValues` in workerd). Lines end in CRLF; transfer encodings keep lines
/// within RFC 5322 limits and non-ASCII header text goes as RFC 2047 encoded words
/// ([`mime`]).
pub fn render(content: &Content, stamp: &Stamp) -> Vec<u8> {
    render_with(content, stamp, &mut |bytes| {
        // The caller drew the Message-ID from getrandom a moment ago, so this does not fail. If
        // it did, the boundaries would be guessable but still checked against the content, so no
        // part could be forged: zeros are safe, a panic would not be.
        if getrandom::fill(bytes).is_err() {
            bytes.fill(0);
        }
    })
}

/// [`render`] with the randomness for multipart boundaries supplied by `random`, which fills
/// the slice it is given: the same randomness renders the same bytes.
pub fn render_with(content: &Content, stamp: &Stamp, random: &mut dyn FnMut(&mut [u8])) -> Vec<u8> {
    // Room for every body in base64 (4 bytes for 3, and a CRLF every 76), so the message is
    // written without the buffer being copied as it grows.
    let bodies = content.text.as_ref().map_or(0, String::len)
        + content.html.as_ref().map_or(0, String::len)
        + content.attachments.iter().map(|a| a.data.len()).sum::<usize>();
    let capacity = bodies / 57 * 78 + 78 + 4096;
    let mut boundaries = Boundaries { random, drawn: 0, used: Vec::new() };
    loop {
        let mut out = Vec::with_capacity(capacity);
        mailboxes(&mut out, "From", std::slice::from_ref(&content.from));
        let mut subject = Field::new(&mut out, "Subject");
        subject.text(&content.subject);
        subject.end();
        let mut date = Field::new(&mut out, "Date");
        date.token(&crate::time::format_rfc5322(stamp.unix_seconds));
        date.end();
        let mut message_id = Field::new(&mut out, "Message-ID");
        message_id.token(&stamp.header_message_id());
        message_id.end();
        for (name, list) in [("To", &content.to), ("Cc", &content.cc), ("Reply-To", &content.reply_to)] {
            if !list.is_empty() {
                mailboxes(&mut out, name, list);
            }
        }
        for (name, value) in &content.headers {
            let mut field = Field::new(&mut out, name);
            field.text(value);
            field.end();
        }
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
        body(content, &mut boundaries).write(&mut out);
        out.extend_from_slice(b"\r\n");
        // Fails only if the content holds a boundary, which takes knowing the randomness; then
        // every boundary is drawn again.
        if boundaries.delimit_only_their_parts(&out) {
            return out;
        }
        boundaries.used.clear();
    }
}

/// A node of the MIME tree, borrowing the content.
enum Part<'x> {
    Leaf(Leaf<'x>),
    Multipart { kind: &'static str, boundary: String, parts: Vec<Part<'x>> },
}

struct Leaf<'x> {
    content_type: &'x str,
    charset: Option<&'x str>,
    /// `attachment` or `inline`, and the filename.
    disposition: Option<(&'static str, &'x str)>,
    content_id: Option<&'x str>,
    data: &'x [u8],
    /// `text/*`: clean text goes as 7bit or quoted-printable ([`Encoding::for_text`]), the
    /// rest as base64.
    text: bool,
    /// Body text, whose line breaks may be bare LFs and go out as CRLF; in an attachment
    /// they must arrive unchanged.
    bare_line_feeds: bool,
}

impl Part<'_> {
    /// The part's header fields, a blank line and its body; a multipart's delimiters come
    /// one before each part and the closing one last, no preamble, no epilogue.
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Part::Leaf(leaf) => leaf.write(out),
            Part::Multipart { kind, boundary, parts } => {
                let mut field = Field::new(out, "Content-Type");
                field.token(kind);
                field.parameter("boundary", boundary);
                field.end();
                for part in parts {
                    out.extend_from_slice(b"\r\n--");
                    out.extend_from_slice(boundary.as_bytes());
                    out.extend_from_slice(b"\r\n");
                    part.write(out);
                }
                out.extend_from_slice(b"\r\n--");
                out.extend_from_slice(boundary.as_bytes());
                out.extend_from_slice(b"--");
            }
        }
    }
}

impl Leaf<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut field = Field::new(out, "Content-Type");
        field.token(self.content_type);
        if let Some(charset) = self.charset {
            field.parameter("charset", charset);
        }
        field.end();
        if let Some((kind, filename)) = self.disposition {
            let mut field = Field::new(out, "Content-Disposition");
            field.token(kind);
            field.parameter("filename", filename);
            field.end();
        }
        if let Some(id) = self.content_id {
            let mut field = Field::new(out, "Content-ID");
            field.token(&angle_brackets(id));
            field.end();
        }
        let encoding = match self.text {
            true => Encoding::for_text(self.data, self.bare_line_feeds),
            false => Encoding::Base64,
        };
        out.extend_from_slice(b"Content-Transfer-Encoding: ");
        out.extend_from_slice(encoding.name().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        encoding.write(out, self.data);
    }
}

/// The multipart boundaries of one message: random, never a clock, a counter or a
/// per-process seed (mail-builder's were), any of which one message gives away.
struct Boundaries<'r> {
    random: &'r mut dyn FnMut(&mut [u8]),
    drawn: u64,
    /// Each boundary in the message, and how many parts it divides.
    used: Vec<(String, usize)>,
}

const BOUNDARY_LEN: usize = 32;
/// Letters, digits, `_` and `.`: 6 random bits a character, all allowed in a boundary
/// (RFC 2046), and no `-`, which every delimiter line already starts with.
const BOUNDARY_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.";

impl Boundaries<'_> {
    /// A fresh boundary: 32 random characters (192 bits), nothing shared with other messages.
    /// The number of boundaries drawn so far is folded in, so that even a source stuck on one
    /// value yields new ones and rendering ends.
    fn draw(&mut self) -> String {
        let mut bytes = [0u8; BOUNDARY_LEN];
        (self.random)(&mut bytes);
        let n = self.drawn;
        self.drawn = n.wrapping_add(1);
        let digit = |i: usize| n.checked_shr(6 * i as u32).unwrap_or(0) as u8;
        bytes
            .iter()
            .enumerate()
            .map(|(i, byte)| char::from(BOUNDARY_ALPHABET[usize::from((byte ^ digit(i)) & 63)]))
            .collect()
    }

    fn multipart<'x>(&mut self, kind: &'static str, parts: Vec<Part<'x>>) -> Part<'x> {
        let boundary = self.draw();
        self.used.push((boundary.clone(), parts.len()));
        Part::Multipart { kind, boundary, parts }
    }

    /// Whether the only places in `message` where `--` and a boundary appear are the
    /// delimiters written, one before each part and one after the last. Any other (in a part's
    /// encoded body, or a boundary that another one starts with) could be taken for a
    /// delimiter, and text sent by a visitor could then forge parts. Anywhere, not only at the
    /// start of a line as RFC 2046 has it: some readers (mail-parser, which Stalwart uses, is
    /// one; the fuzzer found it) take a delimiter in the middle of a line too.
    fn delimit_only_their_parts(&self, message: &[u8]) -> bool {
        self.used.iter().all(|(boundary, parts)| {
            let delimiter = format!("--{boundary}");
            // The message is UTF-8 (its text came as strings, all else is encoded as ASCII), so
            // str's substring search can find them; bytes that are not (never seen) are
            // searched window by window.
            let found = match std::str::from_utf8(message) {
                Ok(text) => text.matches(&delimiter).count(),
                Err(_) => message.windows(delimiter.len()).filter(|w| *w == delimiter.as_bytes()).count(),
            };
            found == parts + 1
        })
    }
}

fn body_text<'x>(content_type: &'static str, text: &'x str) -> Part<'x> {
    Part::Leaf(Leaf {
        content_type,
        charset: Some("utf-8"),
        disposition: None,
        content_id: None,
        data: text.as_bytes(),
        text: true,
        bare_line_feeds: true,
    })
}

fn file<'x>(attachment: &'x Attachment, disposition: &'static str) -> Part<'x> {
    Part::Leaf(Leaf {
        content_type: &attachment.content_type,
        charset: attachment.charset.as_deref(),
        disposition: Some((disposition, &attachment.filename)),
        content_id: attachment.content_id.as_deref(),
        data: &attachment.data,
        text: attachment.content_type.starts_with("text/"),
        bare_line_feeds: false,
    })
}

/// The MIME tree: text and HTML as alternatives, inline images related to the HTML, and
/// the other attachments mixed in after them.
///
/// ```text
/// multipart/mixed                      (only with attachments)
/// ├── multipart/alternative            (only with both text and HTML)
/// │   ├── text/plain
/// │   └── multipart/related            (only with inline images)
/// │       ├── text/html
/// │       └── image/png  Content-ID: <logo>
/// └── application/pdf  attachment; filename*=…
/// ```
fn body<'x>(content: &'x Content, boundaries: &mut Boundaries<'_>) -> Part<'x> {
    let (inline, attached): (Vec<&Attachment>, Vec<&Attachment>) =
        content.attachments.iter().partition(|a| a.content_id.is_some());
    let html = content.html.as_deref().map(|html| {
        let html = body_text("text/html", html);
        if inline.is_empty() {
            return html;
        }
        let mut parts = vec![html];
        parts.extend(inline.iter().map(|a| file(a, "inline")));
        boundaries.multipart("multipart/related", parts)
    });
    let text = content.text.as_deref().map(|text| body_text("text/plain", text));
    let main = match (text, html) {
        (Some(text), Some(html)) => boundaries.multipart("multipart/alternative", vec![text, html]),
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => body_text("text/plain", ""),
    };
    if attached.is_empty() {
        return main;
    }
    let mut parts = vec![main];
    parts.extend(attached.iter().map(|a| file(a, "attachment")));
    boundaries.multipart("multipart/mixed", parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    fn mailbox(s: &str) -> Mailbox {
        Mailbox::parse(s).unwrap()
    }

    fn sample() -> Content {
        Content {
            from: mailbox("Site <noreply@example.com>"),
            to: vec![mailbox("Ada <ada@example.org>"), mailbox("bob@example.org")],
            cc: vec![mailbox("carol@example.org")],
            bcc: vec![mailbox("secret@example.net"), mailbox("ADA@example.org")],
            reply_to: vec![mailbox("help@example.com")],
            subject: "Grüße — ✓ déjà vu".into(),
            text: Some("Hello, world.\nZweite Zeile: äöü.".into()),
            html: Some("<p>Hello, <b>world</b>.</p>".into()),
            attachments: vec![],
            headers: vec![],
        }
    }

    fn stamp() -> Stamp {
        Stamp::new([0xab; 16], "example.com", 1_700_000_000)
    }

    #[test]
    fn renders_a_multipart_alternative_message_an_independent_parser_reads_back() {
        let bytes = render(&sample(), &stamp());
        let parsed = MessageParser::default().parse(&bytes).expect("parses");
        assert_eq!(parsed.subject(), Some("Grüße — ✓ déjà vu"));
        assert_eq!(parsed.from().unwrap().first().unwrap().address(), Some("noreply@example.com"));
        assert_eq!(parsed.to().unwrap().iter().count(), 2);
        assert_eq!(parsed.message_id(), Some("abababababababababababababababab@example.com"));
        assert_eq!(parsed.date().unwrap().to_timestamp(), 1_700_000_000);
        assert_eq!(parsed.body_text(0).unwrap().replace("\r\n", "\n").trim_end(), "Hello, world.\nZweite Zeile: äöü.");
        assert!(parsed.body_html(0).unwrap().contains("<b>world</b>"));
        let content_type = parsed.root_part().content_type().unwrap();
        assert_eq!((content_type.ctype(), content_type.subtype()), ("multipart", Some("alternative")));
    }

    #[test]
    fn every_line_ends_in_crlf_and_is_short() {
        let bytes = render(&sample(), &stamp());
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\n' {
                assert_eq!(bytes[i - 1], b'\r', "bare LF at {i}");
            }
        }
        assert!(bytes.split(|b| *b == b'\n').all(|line| line.len() <= 1000));
    }

    #[test]
    fn bcc_never_appears_in_headers() {
        let bytes = render(&sample(), &stamp());
        let text = String::from_utf8(bytes.clone()).unwrap();
        // A line, not any "bcc": the letters turn up in random boundaries.
        assert!(!text.split("\r\n").any(|line| line.to_ascii_lowercase().starts_with("bcc:")));
        assert!(!text.contains("secret@example.net"));
        assert!(MessageParser::default().parse(&bytes).unwrap().bcc().is_none());
    }

    #[test]
    fn envelope_has_every_recipient_once() {
        let content = sample();
        let rcpts: Vec<&str> = content.envelope_recipients().iter().map(|a| a.as_str()).collect();
        assert_eq!(rcpts, vec!["ada@example.org", "bob@example.org", "carol@example.org", "secret@example.net"]);
    }

    fn attachment(filename: &str, content_type: &str, data: &[u8], content_id: Option<&str>) -> Attachment {
        Attachment {
            filename: filename.into(),
            content_type: content_type.into(),
            charset: None,
            data: data.to_vec(),
            content_id: content_id.map(Into::into),
        }
    }

    fn shape(part: &mail_parser::MessagePart<'_>, message: &mail_parser::Message<'_>) -> String {
        let ct =
            part.content_type().map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or(""))).unwrap_or_default();
        match &part.body {
            mail_parser::PartType::Multipart(children) => {
                let inner: Vec<String> = children.iter().map(|i| shape(&message.parts[*i as usize], message)).collect();
                format!("{ct}[{}]", crate::join(&inner, ","))
            }
            _ => ct,
        }
    }

    fn parse_shape(content: &Content) -> String {
        let bytes = render(content, &stamp());
        let parsed = MessageParser::default().parse(&bytes).expect("parses");
        shape(parsed.root_part(), &parsed)
    }

    #[test]
    fn golden_body_shapes() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR fake image bytes";
        let pdf = b"%PDF-1.4 binary \0\xff\xfe data";
        let base = Content { text: None, html: None, ..sample() };
        let cases: Vec<(Content, &str)> = vec![
            (Content { text: Some("t".into()), ..base.clone() }, "text/plain"),
            (Content { html: Some("<p>h</p>".into()), ..base.clone() }, "text/html"),
            (Content { text: Some("t".into()), html: Some("<p>h</p>".into()), ..base.clone() }, "multipart/alternative[text/plain,text/html]"),
            (
                Content { text: Some("t".into()), attachments: vec![attachment("a.pdf", "application/pdf", pdf, None)], ..base.clone() },
                "multipart/mixed[text/plain,application/pdf]",
            ),
            (
                Content {
                    html: Some("<img src=cid:logo>".into()),
                    attachments: vec![attachment("logo.png", "image/png", png, Some("logo"))],
                    ..base.clone()
                },
                "multipart/related[text/html,image/png]",
            ),
            (
                Content {
                    text: Some("t".into()),
                    html: Some("<img src=cid:logo>".into()),
                    attachments: vec![
                        attachment("logo.png", "image/png", png, Some("logo")),
                        attachment("a.pdf", "application/pdf", pdf, None),
                    ],
                    ..base.clone()
                },
                "multipart/mixed[multipart/alternative[text/plain,multipart/related[text/html,image/png]],application/pdf]",
            ),
        ];
        for (content, expected) in cases {
            assert_eq!(parse_shape(&content), expected);
        }
    }

    #[test]
    fn attachments_round_trip_with_non_ascii_filenames_and_inline_ids() {
        let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let content = Content {
            html: Some("<img src=cid:logo@x>".into()),
            attachments: vec![
                attachment("Bericht für März — 日本.pdf", "application/pdf", &data, None),
                attachment("logo.png", "image/png", b"png-bytes", Some("logo@x")),
            ],
            headers: vec![("X-Campaign".into(), "Frühling ✓".into())],
            ..sample()
        };
        let bytes = render(&content, &stamp());
        assert!(bytes.is_ascii(), "everything is 7-bit encoded");
        assert!(bytes.split(|b| *b == b'\n').all(|line| line.len() <= 1000));
        let parsed = MessageParser::default().parse(&bytes).unwrap();
        // Document order: the inline image inside the HTML's related part, then the file.
        let attached = parsed.attachment(1).unwrap();
        assert_eq!(attached.attachment_name(), Some("Bericht für März — 日本.pdf"));
        assert_eq!(attached.contents(), data.as_slice());
        let inline = parsed.attachment(0).unwrap();
        assert_eq!(inline.content_id(), Some("logo@x"));
        assert_eq!(inline.contents(), b"png-bytes");
        assert_eq!(parsed.header_raw("X-Campaign").map(|v| v.trim().starts_with("=?utf-8?")), Some(true));
    }

    fn parse(bytes: &[u8]) -> mail_parser::Message<'_> {
        MessageParser::default().parse(bytes).expect("parses")
    }

    /// The boundary of every multipart, as an independent parser reads them.
    fn boundaries(bytes: &[u8]) -> Vec<String> {
        let parsed = parse(bytes);
        parsed.parts.iter().filter_map(|p| p.content_type()?.attribute("boundary")).map(Into::into).collect()
    }

    /// A deterministic stand-in for getrandom: the same seed gives the same bytes.
    fn seeded(seed: u64) -> impl FnMut(&mut [u8]) {
        let mut state = seed;
        move |bytes| {
            for byte in bytes {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                *byte = (state >> 56) as u8;
            }
        }
    }

    /// Every kind of multipart at once: mixed, alternative and related.
    fn nested() -> Content {
        Content {
            html: Some("<p>Hello, <img src=cid:logo></p>".into()),
            attachments: vec![
                attachment("logo.png", "image/png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Some("logo")),
                attachment("notes.txt", "text/plain", b"Notes.\r\n", None),
            ],
            ..sample()
        }
    }
    const NESTED_SHAPE: &str =
        "multipart/mixed[multipart/alternative[text/plain,multipart/related[text/html,image/png]],text/plain]";

    #[test]
    fn boundaries_share_no_eight_characters_within_or_across_messages() {
        // Boundaries from a per-process seed, a clock and a counter (mail-builder's) are ones a
        // visitor who has seen one message can guess for the next.
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        let mut index = 0;
        for _ in 0..200 {
            let bytes = render(&nested(), &stamp());
            let found = boundaries(&bytes);
            assert_eq!(found.len(), 3, "{found:?}");
            for boundary in found {
                assert!((24..=70).contains(&boundary.len()), "{boundary}");
                index += 1;
                for window in boundary.as_bytes().windows(8) {
                    let window = String::from_utf8(window.to_vec()).unwrap();
                    if let Some(other) = seen.insert(window.clone(), index) {
                        assert_eq!(other, index, "boundaries {other} and {index} share {window:?}");
                    }
                }
            }
        }
    }

    /// Text that ends the part it is in and starts parts of its own, for every boundary given.
    /// Parts made with `boundaries`, each delimiter after `before` on its line.
    fn forgery(boundaries: &[String], before: &str) -> String {
        let mut text = String::from("Hello.\r\n");
        for b in boundaries {
            text.push_str(&format!(
                "{before}--{b}\r\nContent-Type: text/html\r\n\r\n<p>forged</p>\r\n{before}--{b}\r\nContent-Type: application/x-msdownload\r\n\
                 Content-Disposition: attachment; filename=\"invoice.exe\"\r\n\r\nMZ\r\n{before}--{b}--\r\n"
            ));
        }
        text.push_str("Bye.");
        text
    }

    #[test]
    fn text_with_the_boundaries_a_visitor_predicted_forges_no_parts() {
        // A predictable source (as mail-builder's was): the previous message tells the visitor
        // which boundaries come next, and every text they send carries those boundaries.
        let predicted = boundaries(&render_with(&nested(), &stamp(), &mut seeded(7)));
        assert_eq!(predicted.len(), 3);
        // At the start of a line, as RFC 2046 has delimiters; and in the middle of one, where
        // some readers (mail-parser among them) take them too.
        for before in ["", "text on the line before it "] {
            forged_parts_are_refused(&predicted, &forgery(&predicted, before));
        }
    }

    fn forged_parts_are_refused(predicted: &[String], forged: &str) {
        let forged = forged.to_string();
        let html = format!("<pre>{forged}</pre>");
        let mut attack = nested();
        attack.text = Some(forged.clone());
        attack.html = Some(html.clone());
        attack.attachments[1].data = forged.clone().into_bytes();
        let bytes = render_with(&attack, &stamp(), &mut seeded(7));
        let parsed = parse(&bytes);
        assert_eq!(shape(parsed.root_part(), &parsed), NESTED_SHAPE);
        assert_eq!(parsed.attachments().count(), 2);
        assert_eq!(parsed.body_text(0).unwrap(), forged);
        assert_eq!(parsed.body_html(0).unwrap(), html);
        assert_eq!(parsed.attachment(1).unwrap().contents(), forged.as_bytes());
        let chosen = boundaries(&bytes);
        assert!(chosen.iter().all(|b| !predicted.contains(b)), "{chosen:?} reuses one of {predicted:?}");
    }

    #[test]
    fn a_boundary_the_content_contains_is_drawn_again() {
        // A source stuck on one value: the content holds the first two boundaries the renderer
        // will draw as delimiter lines, in the HTML and in an attachment.
        let mut stuck = |bytes: &mut [u8]| bytes.fill(0x5a);
        let mut expected = Boundaries { random: &mut stuck, drawn: 0, used: Vec::new() };
        let (first, second) = (expected.draw(), expected.draw());
        let text = format!("one\r\n--{first}\r\nContent-Type: text/html\r\n\r\ntwo\r\n--{second}--\r\nthree");
        let mut content = nested();
        content.html = Some(text.clone());
        content.attachments[1].data = text.clone().into_bytes();
        let bytes = render_with(&content, &stamp(), &mut stuck);
        let parsed = parse(&bytes);
        assert_eq!(shape(parsed.root_part(), &parsed), NESTED_SHAPE);
        assert_eq!(parsed.body_html(0).unwrap(), text);
        assert_eq!(parsed.attachment(1).unwrap().contents(), text.as_bytes());
        let chosen = boundaries(&bytes);
        assert_eq!(chosen.len(), 3);
        assert!(!chosen.contains(&first) && !chosen.contains(&second), "{chosen:?}");
        for (i, a) in chosen.iter().enumerate() {
            for b in &chosen[i + 1..] {
                assert!(!a.starts_with(b.as_str()) && !b.starts_with(a.as_str()), "{a} and {b}");
            }
        }
    }

    #[test]
    fn the_same_randomness_renders_the_same_bytes() {
        let once = render_with(&nested(), &stamp(), &mut seeded(1));
        assert!(once == render_with(&nested(), &stamp(), &mut seeded(1)), "the same seed, other bytes");
        assert!(once != render_with(&nested(), &stamp(), &mut seeded(2)), "another seed, the same bytes");
        assert!(render(&nested(), &stamp()) != render(&nested(), &stamp()), "getrandom gave the same bytes");
    }

    #[test]
    fn text_that_is_not_clean_goes_out_base64_and_arrives_unchanged() {
        // Short ASCII lines would fit 7bit whatever control characters they held.
        let long_line = format!("{}\r\n", "x".repeat(1200));
        let files: Vec<(&str, &[u8], Option<&str>)> = vec![
            ("nul.txt", b"before\0after\r\n", None),
            ("cr.txt", b"one\rtwo\r\n", None),
            ("controls.txt", b"bell\x07 escape\x1b[0m form feed\x0c\r\n", None),
            // Inline text is an attachment: its LFs must not be rewritten as CRLF.
            ("lf.txt", b"bare\nline feeds\n", Some("lf")),
        ];
        let mut attachments: Vec<Attachment> =
            files.iter().map(|(name, data, cid)| attachment(name, "text/plain", data, *cid)).collect();
        attachments.push(attachment("long.txt", "text/plain", long_line.as_bytes(), None));
        let text = "A NUL: \0, a bare CR: \r.";
        let content = Content { text: Some(text.into()), attachments, ..sample() };
        let bytes = render(&content, &stamp());
        assert!(!bytes.contains(&0), "a raw NUL");
        for (i, b) in bytes.iter().enumerate() {
            match b {
                b'\r' => assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
                b'\n' => assert_eq!(bytes[i - 1], b'\r', "bare LF at {i}"),
                _ => {}
            }
        }
        assert!(bytes.split(|b| *b == b'\n').all(|line| line.len() <= 1000));
        let parsed = parse(&bytes);
        let text_part = parsed.text_part(0).unwrap();
        assert_eq!(text_part.content_transfer_encoding(), Some("base64"));
        assert_eq!(text_part.contents(), text.as_bytes());
        for (name, data, _) in &files {
            let part = parsed.attachments().find(|a| a.attachment_name() == Some(*name)).unwrap();
            assert_eq!(part.content_transfer_encoding(), Some("base64"), "{name}");
            assert_eq!(part.contents(), *data, "{name}");
        }
        let long = parsed.attachments().find(|a| a.attachment_name() == Some("long.txt")).unwrap();
        assert_ne!(long.content_transfer_encoding(), Some("7bit"));
        assert_eq!(long.contents(), long_line.as_bytes());
    }
}
