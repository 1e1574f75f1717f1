//! Validated content → MIME bytes (RFC 5322, RFC 2045–2047), rendered by mail-builder. The
//! date and the Message-ID are passed in, and so, to [`render_with`], is the randomness for
//! the multipart boundaries: the same input always gives the same bytes, and mail-builder never
//! reads a clock (wasm32 has none) or makes up a boundary of its own.

use base64::{engine::general_purpose::STANDARD, Engine};
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::text::Text;
use mail_builder::mime::{BodyPart, MimePart};
use mail_builder::MessageBuilder;

use crate::address::Mailbox;

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
        Stamp { message_id: format!("{:032x}@{domain}", u128::from_be_bytes(random)), unix_seconds }
    }

    /// The Message-ID as it appears in the header, with angle brackets.
    pub fn header_message_id(&self) -> String {
        format!("<{}>", self.message_id)
    }
}

/// Renders the message, drawing its multipart boundaries from the operating system's CSPRNG
/// (`crypto.getRandomValues` in workerd). Lines end in CRLF, within RFC 5322's limits, and
/// the message is 7-bit: mail-builder writes non-ASCII header text as RFC 2047 encoded words
/// and parameters as RFC 2231, and picks each body's transfer encoding.
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
    let capacity = estimated_len(content);
    let mut boundaries = Boundaries { random, drawn: 0, used: Vec::new() };
    loop {
        let mut message = MessageBuilder::new()
            .from(address(&content.from))
            .subject(content.subject.as_str())
            // Both set here, so mail-builder neither reads the clock nor makes up an ID.
            .date(Date::new(stamp.unix_seconds))
            .message_id(stamp.message_id.as_str());
        for (name, list) in [("To", &content.to), ("Cc", &content.cc), ("Reply-To", &content.reply_to)] {
            if !list.is_empty() {
                message = message.header(name, Address::new_list(list.iter().map(address).collect()));
            }
        }
        for (name, value) in &content.headers {
            message = message.header(name.as_str(), Text::new(value.as_str()));
        }
        let message = message.body(body(content, &mut boundaries));
        // Written straight into one buffer, sized up front so a large attachment is not copied
        // as it grows.
        let mut out = Vec::with_capacity(capacity);
        message.serialize(&mut out);
        // A single part ends where its body ends; the message ends in CRLF.
        if !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        // Fails only if the content holds a boundary, which takes knowing the randomness; then
        // every boundary is drawn again.
        if boundaries.delimit_only_their_parts(&out) {
            return out;
        }
        boundaries.used.clear();
    }
}

/// Enough room for every body as base64 (4 bytes for 3, a CRLF every 76) and for the header
/// text as encoded words, which is more than any transfer encoding mail-builder picks.
fn estimated_len(content: &Content) -> usize {
    let bodies = content.text.as_ref().map_or(0, String::len)
        + content.html.as_ref().map_or(0, String::len)
        + content.attachments.iter().map(|a| a.data.len() + a.filename.len() + 256).sum::<usize>();
    let mailboxes = [&content.to, &content.cc, &content.reply_to].into_iter().flatten().chain([&content.from]);
    let headers = content.subject.len()
        + content.headers.iter().map(|(name, value)| name.len() + value.len()).sum::<usize>()
        + mailboxes.map(|m| m.name.as_ref().map_or(0, String::len) + m.email.as_str().len() + 4).sum::<usize>();
    bodies / 57 * 78 + 78 + headers * 2 + 4096
}

fn address(mailbox: &Mailbox) -> Address<'_> {
    let name = mailbox.name.as_deref().filter(|name| !name.is_empty());
    Address::new_address(name, mailbox.email.as_str())
}

/// The multipart boundaries of one message: random, never a clock, a counter or a
/// per-process seed (mail-builder's own are), any of which one message gives away.
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

    /// A multipart of `kind` with a boundary of ours: mail-builder takes the `boundary`
    /// attribute of the Content-Type it is given instead of making one up.
    fn multipart<'x>(&mut self, kind: &'static str, parts: Vec<MimePart<'x>>) -> MimePart<'x> {
        let boundary = self.draw();
        self.used.push((boundary.clone(), parts.len()));
        MimePart::new(ContentType::new(kind).attribute("boundary", boundary), parts)
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

/// Whether mail-builder may pick the transfer encoding of `text`. It sends text as it is
/// (7bit) unless it finds 8-bit bytes, long lines or white space at a line's end, and takes a
/// bare LF in body text or an inline part for a line break, to write as CRLF. So text with
/// control characters (NUL, ESC, …) other than tab and line breaks, with a CR not before LF,
/// or, where `bare_line_feeds` is false, with a bare LF, is not clean: it goes as base64
/// ([`base64_lines`]) and arrives byte for byte.
fn is_clean_text(text: &[u8], bare_line_feeds: bool) -> bool {
    let mut previous = 0u8;
    for &byte in text {
        if previous == b'\r' && byte != b'\n' {
            return false;
        }
        match byte {
            b'\n' if !bare_line_feeds && previous != b'\r' => return false,
            b'\t' | b'\n' | b'\r' | b' '..=b'~' | 0x80.. => {}
            _ => return false,
        }
        previous = byte;
    }
    previous != b'\r'
}

/// `data` as base64 in lines of 76 characters, for a part whose Content-Transfer-Encoding we
/// set: mail-builder then writes the body as it is given.
fn base64_lines(data: &[u8]) -> BodyPart<'static> {
    let mut encoded = String::with_capacity(data.len().div_ceil(57) * 78);
    for (i, line) in data.chunks(57).enumerate() {
        if i > 0 {
            encoded.push_str("\r\n");
        }
        STANDARD.encode_string(line, &mut encoded);
    }
    BodyPart::Binary(encoded.into_bytes().into())
}

/// Body text, UTF-8, its line breaks written as CRLF.
fn body_text<'x>(subtype: &'static str, text: &'x str) -> MimePart<'x> {
    let content_type = ContentType::new(subtype).attribute("charset", "utf-8");
    match is_clean_text(text.as_bytes(), true) {
        true => MimePart::new(content_type, text),
        false => MimePart::new(content_type, base64_lines(text.as_bytes())).transfer_encoding("base64"),
    }
}

/// An attachment, or with a Content-ID an inline part: text as clean text or base64, any other
/// type as base64, and either way its bytes arrive unchanged.
fn file(attachment: &Attachment) -> MimePart<'_> {
    let mut content_type = ContentType::new(attachment.content_type.as_str());
    if let Some(charset) = &attachment.charset {
        content_type = content_type.attribute("charset", charset.as_str());
    }
    let filename = attachment.filename.as_str();
    // mail-builder encodes the bare LFs of an attachment, so they arrive; in an inline part
    // it would write them as CRLF.
    let inline = attachment.content_id.is_some();
    let encode = content_type.is_text() && !is_clean_text(&attachment.data, !inline);
    let part = match encode {
        true => MimePart::new(content_type, base64_lines(&attachment.data)),
        false => MimePart::new(content_type, attachment.data.as_slice()),
    };
    let part = match &attachment.content_id {
        Some(id) => part
            .header("Content-Disposition", ContentType::new("inline").attribute("filename", filename))
            .cid(id.as_str()),
        None => part.attachment(filename),
    };
    match encode {
        true => part.transfer_encoding("base64"),
        false => part,
    }
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
fn body<'x>(content: &'x Content, boundaries: &mut Boundaries<'_>) -> MimePart<'x> {
    let (inline, attached): (Vec<&Attachment>, Vec<&Attachment>) =
        content.attachments.iter().partition(|a| a.content_id.is_some());
    let html = content.html.as_deref().map(|html| {
        let html = body_text("text/html", html);
        if inline.is_empty() {
            return html;
        }
        let mut parts = vec![html];
        parts.extend(inline.iter().map(|a| file(a)));
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
    parts.extend(attached.iter().map(|a| file(a)));
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
                format!("{ct}[{}]", inner.join(","))
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

    /// The header section of a message, and whether each of its lines fits in `limit`
    /// characters (RFC 5322 2.1.1's 78), or 76 when it holds encoded words (RFC 2047 2).
    fn header_lines_fit(bytes: &[u8]) -> String {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap().to_string();
        for line in head.split("\r\n") {
            let limit = if line.contains("=?") { 76 } else { 78 };
            assert!(line.len() <= limit, "{} characters: {line}", line.len());
        }
        head
    }

    #[test]
    fn header_text_folds_and_reads_back_unchanged() {
        // (Readers trim the white space around a field's value, so these have none.)
        let plain = "A subject  with two spaces, and words enough to need folding twice over: ".repeat(3);
        let mixed = "Grüße — ✓ déjà vu, 日本語のテキスト, emoji 🎉 and ASCII words ".repeat(4);
        let long_word = format!("see {} now", "x".repeat(100));
        // A run of spaces as plain text would be one line of them, past 998 octets.
        let spaces = format!("Order{}#42", " ".repeat(990));
        for text in [plain.trim_end(), mixed.trim_end(), &long_word, &spaces, "a  b", "", "x"] {
            let content = Content { subject: text.into(), headers: vec![("X-Value".into(), text.into())], ..sample() };
            let bytes = render(&content, &stamp());
            assert!(bytes.is_ascii());
            let head = header_lines_fit(&bytes);
            let parsed = parse(&bytes);
            assert_eq!(parsed.subject().unwrap_or(""), text, "{head}");
            // mail-parser keeps an `X-` field raw; read as a Subject, it decodes.
            let raw = parsed.header_raw("X-Value").unwrap_or_default();
            let as_subject = format!("Subject:{raw}\r\n\r\n");
            assert_eq!(parse(as_subject.as_bytes()).subject().unwrap_or(""), text, "{head}");
        }
    }

    #[test]
    fn display_names_read_back_unchanged_in_lines_that_fit() {
        // And two that cannot fold as they are: a long quoted string and a long atom (longer
        // than validation lets through).
        let long_quoted = "\"quoted\" @ ".repeat(60);
        let long_atom = "x".repeat(900);
        let names =
            ["Ada Lovelace", "O'Brien, Pat", "Ada \"the\" \\ Lovelace", "J. Q. Public", "Jörg Müller 日本", " lead"];
        for name in names.into_iter().chain([long_quoted.trim_end(), long_atom.as_str()]) {
            let mut content = sample();
            content.from.name = Some(name.into());
            content.to[0].name = Some(name.into());
            let bytes = render(&content, &stamp());
            let head = header_lines_fit(&bytes);
            let parsed = parse(&bytes);
            let from = parsed.from().unwrap().first().unwrap();
            assert_eq!((from.name(), from.address()), (Some(name), Some("noreply@example.com")), "{head}");
            let to: Vec<_> = parsed.to().unwrap().iter().map(|a| (a.name(), a.address())).collect();
            assert_eq!(to, [(Some(name), Some("ada@example.org")), (None, Some("bob@example.org"))], "{head}");
        }
        let bytes = render(&Content { from: mailbox("Ada Lovelace <a@example.com>"), ..sample() }, &stamp());
        assert!(String::from_utf8(bytes).unwrap().contains("From: \"Ada Lovelace\" <a@example.com>\r\n"), "readable");
    }

    #[test]
    fn filenames_are_quoted_or_rfc2231_encoded_and_read_back_unchanged() {
        let long = "Bericht für März — 日本 und eine sehr lange Liste weiterer Wörter ".repeat(3) + ".pdf";
        let long_ascii = "a long plain name ".repeat(14) + ".txt";
        let longest_ascii = "x".repeat(1000);
        let names = ["a.pdf", "quote \" and \\ backslash.txt", "Grüße.txt", &long, &long_ascii, &longest_ascii];
        for filename in names {
            let content = Content {
                attachments: vec![attachment(filename, "application/octet-stream", b"data", None)],
                ..sample()
            };
            let bytes = render(&content, &stamp());
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert!(text.split("\r\n").all(|line| line.len() <= 78), "{text}");
            // Printable ASCII stays readable: one quoted string, which old clients read too,
            // or when long, RFC 2231 sections of quoted strings; other text is RFC 2231-encoded.
            let ascii = filename.bytes().all(|b| (b' '..=b'~').contains(&b));
            let plain = ascii && filename.len() <= 78;
            assert_eq!(text.contains("filename=\""), plain, "{text}");
            assert_eq!(text.contains("filename*0=\""), ascii && !plain, "{text}");
            assert_eq!(text.contains("filename*=UTF-8''") || text.contains("filename*0*=UTF-8''"), !ascii, "{text}");
            let parsed = parse(&bytes);
            assert_eq!(parsed.attachment(0).unwrap().attachment_name(), Some(filename), "{text}");
        }
    }

    #[test]
    fn body_text_made_of_the_hard_cases_round_trips_with_crlf_line_breaks() {
        // Spaces and tabs before breaks, `=`, multi-byte characters and lines of every length,
        // from a fixed seed; each as text and as HTML, so a delimiter ends the body.
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
            let content = Content { text: Some(text.clone()), html: Some(text.clone()), ..sample() };
            let bytes = render(&content, &stamp());
            assert!(bytes.is_ascii());
            let parsed = parse(&bytes);
            for part in [parsed.text_part(0).unwrap(), parsed.html_part(0).unwrap()] {
                let encoding = part.content_transfer_encoding();
                // Base64 (mail-builder's choice when it is shorter) carries the text as it is.
                let expected = match encoding {
                    Some("base64") => text.clone(),
                    _ => text.replace("\r\n", "\n").replace('\n', "\r\n"),
                };
                assert_eq!(String::from_utf8(part.contents().to_vec()).unwrap(), expected, "{encoding:?}");
            }
            let text = String::from_utf8(bytes).unwrap();
            for line in text.split("\r\n") {
                assert!(line.len() <= 78, "{} characters: {line}", line.len());
            }
        }
    }

    #[test]
    fn text_is_clean_without_controls_lone_crs_or_where_they_would_change_bare_lfs() {
        let long = "x".repeat(1200);
        let cases: [(&[u8], bool, bool); 13] = [
            (b"short\r\nlines\n", true, true),
            (b"short\r\nlines\n", false, false),
            (b"crlf only\r\n", false, true),
            ("non-ASCII ä".as_bytes(), true, true),
            (long.as_bytes(), true, true),
            (b"\x07 bell", true, false),
            (b"nul \0", true, false),
            (b"del \x7f", true, false),
            (b"esc \x1b[0m", true, false),
            (b"bare\rcr", true, false),
            (b"ends in cr\r", true, false),
            (b"tab\tand =", true, true),
            (b"", false, true),
        ];
        for (data, bare_line_feeds, clean) in cases {
            assert_eq!(is_clean_text(data, bare_line_feeds), clean, "{:?}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn clean_text_goes_as_7bit_when_it_can_and_files_keep_their_bare_line_feeds() {
        let files: Vec<(&str, &[u8], Option<&str>)> = vec![
            ("lf.txt", b"bare\nline feeds\n", None),
            ("crlf.txt", b"short\r\nlines\r\n", None),
            ("inline.txt", b"short\r\nlines\r\n", Some("inline")),
            ("utf8.txt", "Grüße\nund Küsse\n".as_bytes(), None),
        ];
        let attachments = files.iter().map(|(name, data, cid)| attachment(name, "text/plain", data, *cid)).collect();
        let text = "short lines\nwith bare line feeds\r\nand tab\tand =";
        let content =
            Content { text: Some(text.into()), html: Some("<img src=cid:inline>".into()), attachments, ..sample() };
        let bytes = render(&content, &stamp());
        let parsed = parse(&bytes);
        let text_part = parsed.text_part(0).unwrap();
        assert_eq!(text_part.content_transfer_encoding(), Some("7bit"));
        assert_eq!(text_part.contents(), text.replace("\r\n", "\n").replace('\n', "\r\n").as_bytes());
        for (name, data, _) in &files {
            let part = parsed.attachments().find(|a| a.attachment_name() == Some(*name)).unwrap();
            assert_eq!(part.contents(), *data, "{name}");
        }
        let crlf = parsed.attachments().find(|a| a.attachment_name() == Some("crlf.txt")).unwrap();
        assert_eq!(crlf.content_transfer_encoding(), Some("7bit"));
    }

    #[test]
    fn base64_lines_are_76_characters_and_decode_to_the_bytes() {
        use base64::{engine::general_purpose::STANDARD, Engine};
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let BodyPart::Binary(encoded) = base64_lines(&data) else { panic!("not bytes") };
        let encoded = String::from_utf8(encoded.into_owned()).unwrap();
        let lines: Vec<&str> = encoded.split("\r\n").collect();
        assert!(
            lines.iter().all(|line| line.len() <= 76) && lines[..lines.len() - 1].iter().all(|line| line.len() == 76)
        );
        assert_eq!(STANDARD.decode(lines.concat()).unwrap(), data);
    }

    #[test]
    fn every_boundary_and_the_date_and_message_id_are_ours() {
        // mail-builder makes up a boundary (from the clock, which wasm32 lacks) only for a
        // multipart without one, and a Date or Message-ID only when they are missing.
        let mut expected = Boundaries { random: &mut seeded(3), drawn: 0, used: Vec::new() };
        let drawn: Vec<String> = (0..3).map(|_| expected.draw()).collect();
        let bytes = render_with(&nested(), &stamp(), &mut seeded(3));
        let mut found = boundaries(&bytes);
        found.sort();
        let mut drawn = drawn;
        drawn.sort();
        assert_eq!(found, drawn);
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.matches("\r\nDate: ").count() + text.matches("\r\nMessage-ID: ").count(), 2);
        assert!(text.contains("\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"), "{text}");
        assert!(text.contains("\r\nMessage-ID: <abababababababababababababababab@example.com>\r\n"), "{text}");
    }

    #[test]
    fn a_large_attachment_is_encoded_into_the_buffer_reserved_for_it() {
        // The capacity is the one reserved up front: the buffer never grew, so the 10 MB were
        // never copied to a larger one.
        let data: Vec<u8> = (0..10_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let content =
            Content { attachments: vec![attachment("big.bin", "application/octet-stream", &data, None)], ..sample() };
        let bytes = render(&content, &stamp());
        assert_eq!(bytes.capacity(), estimated_len(&content));
        assert!(bytes.len() > data.len() / 3 * 4);
        assert_eq!(parse(&bytes).attachment(0).unwrap().contents(), data.as_slice());
    }

    #[test]
    fn a_filename_folded_inside_its_quoted_string_reads_back_once_unfolded() {
        // Found by the fuzzer. mail-builder folds a quoted parameter value too long for its line
        // at a space inside the quotes (RFC 5322 3.2.4 allows it); mail-parser 0.11 keeps that
        // fold in the value when two escaped characters come before it. Unfolding (dropping
        // the CRLF, RFC 5322 2.2.3) gives the name back.
        let filename = r#":""""""""""""""""""""""""", ?"""""""""""#;
        let content = Content { attachments: vec![attachment(filename, "application/pdf", b"%PDF", None)], ..sample() };
        let bytes = render(&content, &stamp());
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.split("\r\n").all(|line| line.len() <= 78), "{text}");
        let read = parse(&bytes).attachment(0).unwrap().attachment_name().unwrap().to_string();
        assert_eq!(read.replace("\r\n", ""), filename);
    }

    #[test]
    fn header_text_folded_inside_a_run_of_spaces_unfolds_to_itself() {
        // Found by the fuzzer. Short ASCII text goes as it is and mail-builder folds it at white
        // space, here inside a run of spaces; unfolding (RFC 5322 2.2.3) keeps every space,
        // though mail-parser reads the fold and the spaces after it as one.
        let text = format!("?,.{}${}({}?", " ".repeat(8), " ".repeat(39), " ".repeat(21));
        let content = Content { subject: text.clone(), headers: vec![("X-Value".into(), text.clone())], ..sample() };
        let bytes = render(&content, &stamp());
        let head = header_lines_fit(&bytes);
        let parsed = parse(&bytes);
        for field in ["Subject", "X-Value"] {
            let raw = parsed.header_raw(field).unwrap();
            assert!(raw.contains("\r\n "), "not folded: {head}");
            assert_eq!(raw.replace("\r\n", "").trim(), text, "{head}");
        }
    }
}
