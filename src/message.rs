//! Validated content → MIME bytes (RFC 5322, RFC 2045–2047). Pure: the date and the
//! Message-ID are passed in, so the same input always gives the same headers.

use mail_builder::headers::address::Address;
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

/// The identity of one message: the `Message-ID` (without angle brackets) and its `Date`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub message_id: String,
    pub unix_seconds: i64,
}

impl Stamp {
    /// A Message-ID of 128 random bits on `domain`.
    pub fn new(random: [u8; 16], domain: &str, unix_seconds: i64) -> Self {
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        Stamp { message_id: format!("{hex}@{domain}"), unix_seconds }
    }

    /// The Message-ID as it appears in the header, with angle brackets.
    pub fn header_message_id(&self) -> String {
        format!("<{}>", self.message_id)
    }
}

fn address(mailbox: &Mailbox) -> Address<'_> {
    Address::new_address(mailbox.name.as_deref(), mailbox.email.as_str())
}

fn address_list(mailboxes: &[Mailbox]) -> Address<'_> {
    Address::new_list(mailboxes.iter().map(address).collect())
}

/// Renders the message. Lines end in CRLF; mail-builder picks transfer encodings that keep
/// lines within RFC 5322 limits and encodes non-ASCII header text per RFC 2047.
pub fn render(content: &Content, stamp: &Stamp) -> Vec<u8> {
    let mut builder = MessageBuilder::new()
        .from(address(&content.from))
        .subject(content.subject.as_str())
        .date(stamp.unix_seconds)
        .message_id(stamp.message_id.as_str());
    if !content.to.is_empty() {
        builder = builder.to(address_list(&content.to));
    }
    if !content.cc.is_empty() {
        builder = builder.cc(address_list(&content.cc));
    }
    if !content.reply_to.is_empty() {
        builder = builder.reply_to(address_list(&content.reply_to));
    }
    if let Some(text) = &content.text {
        builder = builder.text_body(text.as_str());
    }
    if let Some(html) = &content.html {
        builder = builder.html_body(html.as_str());
    }
    let mut out = Vec::new();
    builder.serialize(&mut out);
    out
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
        let text = String::from_utf8(render(&sample(), &stamp())).unwrap();
        assert!(!text.to_ascii_lowercase().contains("bcc"));
        assert!(!text.contains("secret@example.net"));
    }

    #[test]
    fn envelope_has_every_recipient_once() {
        let content = sample();
        let rcpts: Vec<&str> = content.envelope_recipients().iter().map(|a| a.as_str()).collect();
        assert_eq!(rcpts, vec!["ada@example.org", "bob@example.org", "carol@example.org", "secret@example.net"]);
    }
}
