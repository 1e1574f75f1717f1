//! Renders messages made of arbitrary text (what the API lets through: header text that
//! `edge_mailer::header::problem` accepts, any body text, any attachment bytes) with
//! mail-builder, as `render_with` does, and reads them back with an independent parser,
//! mail-parser. The message must be 7-bit with no control characters but CRLF and tab, in CRLF
//! lines of at most 998 octets, and must read back to the same subject, display name, `X-`
//! value, filename, body text and attachment bytes.
#![no_main]

use edge_mailer::address::Mailbox;
use edge_mailer::header;
use edge_mailer::message::{render_with, Attachment, Content, Stamp};
use libfuzzer_sys::fuzz_target;
use mail_parser::{MessageParser, MimeHeaders};

fuzz_target!(|data: &[u8]| {
    let mut pieces = data.split(|b| *b == 0xff);
    let mut next = || String::from_utf8_lossy(pieces.next().unwrap_or_default()).into_owned();
    let (subject, name, value, filename, text) = (next(), next(), next(), next(), next());
    let bytes = pieces.next().unwrap_or_default().to_vec();
    // What validation refuses never reaches the writer; readers trim the ends of a value.
    let header_ok = |t: &str| header::problem(t).is_none() && t.trim() == t && !t.is_empty() && t.len() <= 900;
    if !header_ok(&subject) || !header_ok(&value) || !header_ok(&filename) || !header_ok(&name) {
        return;
    }
    let mut from = Mailbox::parse("site@example.com").unwrap();
    from.name = Some(name.clone());
    // A text file as the API takes one: UTF-8, so it says so (`implied_charset`); mail-parser
    // reads text parts as text, so bytes that are not UTF-8 would not read back as sent.
    let text_file = bytes.first().is_some_and(|b| b % 2 == 0) && std::str::from_utf8(&bytes).is_ok();
    let content_type = if text_file { "text/plain" } else { "application/pdf" };
    let content = Content {
        from,
        to: vec![Mailbox::parse("owner@example.org").unwrap()],
        cc: vec![],
        bcc: vec![],
        reply_to: vec![],
        subject: subject.clone(),
        text: Some(text.clone()),
        html: None,
        attachments: vec![Attachment {
            filename: filename.clone(),
            content_type: content_type.into(),
            charset: text_file.then(|| "utf-8".into()),
            data: bytes.clone(),
            content_id: None,
        }],
        headers: vec![("X-Value".into(), value.clone())],
    };
    let mut seed = 1u8;
    let message = render_with(&content, &Stamp::new([7; 16], "example.com", 1_700_000_000), &mut |out| {
        out.iter_mut().for_each(|b| {
            seed = seed.wrapping_mul(31).wrapping_add(7);
            *b = seed;
        })
    });
    // 7-bit, and no NUL, ESC or other control character reaches the relay raw.
    assert!(message.iter().all(|b| matches!(b, b'\t' | b'\r' | b'\n' | b' '..=b'~')), "not 7-bit text");
    for (i, b) in message.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(message.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\n' => assert_eq!(message[i - 1], b'\r', "bare LF at {i}"),
            _ => {}
        }
    }
    assert!(message.split(|b| *b == b'\n').all(|line| line.len() <= 1000), "a line over 998 octets");
    let parsed = MessageParser::default().parse(&message).expect("parses");
    for (field, sent) in [("Subject", &subject), ("X-Value", &value)] {
        let raw = parsed.header_raw(field).unwrap_or_default();
        assert!(reads_back(raw, sent), "{field}: {raw:?}");
    }
    let sender = parsed.from().and_then(|f| f.first()).expect("from");
    assert_eq!(sender.name(), Some(name.as_str()), "display name");
    let part = parsed.text_part(0).expect("text part");
    // Text as 7bit or quoted-printable has its line breaks written CRLF; as base64 (text that
    // is not clean, or where it is shorter) it arrives unchanged.
    let expected = match part.content_transfer_encoding() {
        Some("base64") => text.clone(),
        _ => text.replace("\r\n", "\n").replace('\n', "\r\n"),
    };
    assert_eq!(part.contents(), expected.as_bytes(), "body text");
    let file = parsed.attachment(0).expect("attachment");
    // Unfolded (RFC 5322 2.2.3; a filename holds no CR or LF of its own): mail-parser 0.11
    // keeps a fold inside a quoted parameter value after two escaped characters, where
    // mail-builder may fold one that does not fit its line.
    let name = file.attachment_name().map(|name| name.replace("\r\n", ""));
    assert_eq!(name.as_deref(), Some(filename.as_str()), "filename");
    assert_eq!(file.contents(), bytes.as_slice(), "attachment bytes");
});

/// Whether an unstructured field's raw value reads back as `sent`: as plain text once unfolded
/// (RFC 5322 2.2.3: the CRLFs dropped, every space kept), or as encoded words that decode to
/// it. mail-parser's own reading is only good for the second: it takes a fold inside a run of
/// spaces for one space, and mail-builder may fold there.
fn reads_back(raw: &str, sent: &str) -> bool {
    if raw.replace("\r\n", "").trim() == sent {
        return true;
    }
    let as_subject = format!("Subject:{raw}\r\n\r\n");
    MessageParser::default().parse(as_subject.as_bytes()).and_then(|m| m.subject().map(str::to_string)).as_deref()
        == Some(sent)
}
