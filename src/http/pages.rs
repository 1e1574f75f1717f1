//! What a form submission looks like: the message body listing the fields, and the built-in
//! pages a browser sees when the owner configured no redirect.

use std::borrow::Cow;

use super::request::{Field, FieldValue};
use super::response::HttpResponse;
use crate::error::ApiError;
use crate::header;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

/// [`escape`], appended to `out` (no copy of its own).
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// A field's value as the message shows it: line breaks as `\n` (a lone CR too), tabs kept,
/// every other control character dropped.
fn shown(field: &Field) -> Cow<'_, str> {
    match &field.value {
        // Most values need no change: shown as they are, not copied.
        FieldValue::Text(text) if !text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t')) => {
            Cow::Borrowed(text)
        }
        FieldValue::Text(text) => Cow::Owned(
            text.replace("\r\n", "\n")
                .replace('\r', "\n")
                .chars()
                .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
                .collect(),
        ),
        FieldValue::File { filename, data, .. } => {
            Cow::Owned(format!("[attached: {}, {} bytes]", header::repair(filename, 200), data.len()))
        }
    }
}

/// At least as many bytes as [`render_fields`] makes for these fields (text and HTML together),
/// worked out without building them: HTML escaping turns a `"` into six bytes and the text
/// indents each line by four, so a body of quotes or line breaks is refused before it is rendered.
pub fn rendered_len_bound(form: &str, fields: &[&Field]) -> usize {
    let grown = |text: &str| {
        let special = text.bytes().filter(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'' | b'\n' | b'\r')).count();
        2 * text.len() + 5 * special
    };
    let fields = fields.iter().map(|field| {
        let value = match &field.value {
            FieldValue::Text(text) => grown(text),
            FieldValue::File { filename, .. } => 2 * (filename.len().min(800) + 60),
        };
        grown(&field.name) + value + 200
    });
    grown(form) + 300 + fields.sum::<usize>()
}

/// The text and HTML parts: every field in the order sent, repeated fields kept. Field names
/// are the submitter's text like the values, and one line each: control characters out.
pub fn render_fields(form: &str, fields: &[&Field]) -> (String, String) {
    // Each written once, into room reserved up front: no temporary copy of a value, and no
    // doubling of a large string as it fills.
    let values: usize = fields.iter().map(|f| f.name.len().min(800) + value_len(f) + 120).sum();
    let lines: usize = fields.iter().map(|f| line_breaks(f)).sum();
    let specials: usize = fields.iter().map(|f| html_specials(f)).sum();
    let mut text = String::with_capacity(form.len() + 64 + values + 4 * lines);
    let mut html = String::with_capacity(form.len() + 256 + values + 5 * specials);
    text.push_str(&format!("New submission of the {form} form:\n\n"));
    html.push_str(&format!(
        "<!doctype html><html><body><p>New submission of the <b>{}</b> form:</p>\n<table cellpadding=\"6\" style=\"border-collapse:collapse\">\n",
        escape(form)
    ));
    for field in fields {
        let name = header::repair(&field.name, 200);
        let value = shown(field);
        text.push_str(&name);
        if value.contains('\n') {
            text.push_str(":\n");
            for line in value.lines() {
                text.push_str("    ");
                text.push_str(line);
                text.push('\n');
            }
        } else {
            text.push_str(": ");
            text.push_str(&value);
            text.push('\n');
        }
        html.push_str("<tr><th align=\"left\" valign=\"top\">");
        escape_into(&mut html, &name);
        html.push_str("</th><td style=\"white-space:pre-wrap\">");
        escape_into(&mut html, &value);
        html.push_str("</td></tr>\n");
    }
    html.push_str("</table></body></html>\n");
    (text, html)
}

fn value_len(field: &Field) -> usize {
    match &field.value {
        FieldValue::Text(text) => text.len(),
        FieldValue::File { filename, .. } => filename.len().min(800) + 60,
    }
}

fn line_breaks(field: &Field) -> usize {
    match &field.value {
        FieldValue::Text(text) => text.bytes().filter(|b| matches!(b, b'\n' | b'\r')).count(),
        FieldValue::File { .. } => 0,
    }
}

fn html_specials(field: &Field) -> usize {
    let count = |text: &str| text.bytes().filter(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'')).count();
    count(&field.name)
        + match &field.value {
            FieldValue::Text(text) => count(text),
            FieldValue::File { filename, .. } => count(filename),
        }
}

fn page(status: u16, title: &str, body: &str) -> HttpResponse {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font:1.1rem/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#1a1a1a}}\
         code{{background:#eee;padding:0 .3em}}</style></head><body><main>{body}</main></body></html>"
    );
    let headers = vec![
        ("content-type".into(), "text/html; charset=utf-8".into()),
        ("content-security-policy".into(), "default-src 'none'; style-src 'unsafe-inline'".into()),
    ];
    HttpResponse::new(status, headers, html.into_bytes())
}

/// The way back to the form: a link to `back` (the page the form was posted from, already
/// checked to be an http(s) URL), or the browser's own Back button. No script: the pages'
/// Content-Security-Policy allows none, `javascript:` links included.
fn back_link(back: Option<&str>) -> String {
    match back {
        Some(url) => format!("<p><a href=\"{}\">Back to the form</a></p>", escape(url)),
        None => "<p>Use your browser's Back button to return to the form.</p>".into(),
    }
}

/// The built-in thank-you page.
pub fn thanks(back: Option<&str>) -> HttpResponse {
    page(200, "Thank you", &format!("<h1>Thank you</h1><p>Your message has been sent.</p>{}", back_link(back)))
}

/// The built-in error page: the error's status, code and message, and the way back.
pub fn error(error: &ApiError, back: Option<&str>) -> HttpResponse {
    let retry =
        if error.code.retryable() { "<p>This is temporary: please try again in a little while.</p>" } else { "" };
    page(
        error.code.status(),
        "Your message was not sent",
        &format!(
            "<h1>Your message was not sent</h1><p>{}</p>{retry}<p>Error code: <code>{}</code></p>{}",
            escape(&error.message),
            error.code.as_str(),
            back_link(back)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_listed_in_order_with_repeats_and_escaped_in_html() {
        let fields = [
            Field { name: "name".into(), value: FieldValue::Text("Ada <script>alert(1)</script>".into()) },
            Field { name: "topic".into(), value: FieldValue::Text("a".into()) },
            Field { name: "topic".into(), value: FieldValue::Text("b".into()) },
            Field { name: "message".into(), value: FieldValue::Text("line one\r\nline two".into()) },
        ];
        let refs: Vec<&Field> = fields.iter().collect();
        let (text, html) = render_fields("contact", &refs);
        assert_eq!(
            text,
            "New submission of the contact form:\n\nname: Ada <script>alert(1)</script>\ntopic: a\ntopic: b\nmessage:\n    line one\n    line two\n"
        );
        assert!(html.contains("Ada &lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        let positions: Vec<usize> = ["name", ">a<", ">b<", "message"].iter().map(|s| html.find(s).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn field_names_are_one_line_of_text_like_values() {
        let forged = "x\r\n--boundary\r\nContent-Type: text/html\r\n\r\n<b>forged</b>\r\n--boundary--\r\ny";
        let fields = [Field { name: forged.into(), value: FieldValue::Text("v\u{0}\u{1b}[31m\rw".into()) }];
        let refs: Vec<&Field> = fields.iter().collect();
        let (text, html) = render_fields("contact", &refs);
        let body: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(
            body,
            vec!["x --boundary Content-Type: text/html <b>forged</b> --boundary-- y:", "    v[31m", "    w"]
        );
        assert!(!text.lines().any(|l| l.starts_with("--boundary")));
        assert!(!html.contains("<b>forged") && !html.contains('\r'));
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'));
    }

    #[test]
    fn error_page_shows_code_and_escaped_message() {
        let error = ApiError::new(crate::error::ErrorCode::ValidationFailed, "bad <input>");
        let response = super::error(&error, None);
        let body = String::from_utf8(response.body).unwrap();
        assert_eq!(response.status, 422);
        assert!(body.contains("<code>validation_failed</code>") && body.contains("bad &lt;input&gt;"));
    }

    /// Both pages lead back to the form without script (their CSP allows none): a link to
    /// the page the form came from, escaped, or words.
    #[test]
    fn built_in_pages_lead_back_without_script() {
        let error = ApiError::new(crate::error::ErrorCode::ValidationFailed, "x");
        let back = "https://example.com/contact?a=1&b=\"2\"";
        for response in [super::thanks(Some(back)), super::error(&error, Some(back))] {
            let body = String::from_utf8(response.body).unwrap();
            assert!(
                body.contains("<a href=\"https://example.com/contact?a=1&amp;b=&quot;2&quot;\">Back to the form</a>"),
                "{body}"
            );
            assert!(!body.contains("javascript:"));
        }
        for response in [super::thanks(None), super::error(&error, None)] {
            let body = String::from_utf8(response.body).unwrap();
            assert!(body.contains("Back button") && !body.contains("<a "), "{body}");
        }
    }
}
