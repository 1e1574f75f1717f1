//! A form's settings, from the `FORMS` variable: everything about a form comes from the
//! owner's configuration, never from the request.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::address::Mailbox;
use crate::header;

/// One form, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormSettings {
    pub to: Vec<Mailbox>,
    /// A template: `{{field}}` is replaced by that field's (sanitised) value.
    pub subject: String,
    pub redirect: Option<String>,
    pub error_redirect: Option<String>,
    /// Exact origins (`https://example.com`); empty means any origin may post.
    pub allowed_origins: Vec<String>,
    pub honeypot: Option<String>,
    pub email_field: String,
    pub turnstile: bool,
    pub max_files: usize,
    pub max_file_bytes: usize,
    /// MIME types or `type/*` patterns; empty means any type.
    pub allowed_file_types: Vec<String>,
    pub rate_limit_per_minute: u32,
    /// `?debug=1` may return the SMTP transcript (for the demo form of the www page).
    pub debug: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    to: OneOrMany,
    subject: Option<String>,
    redirect: Option<String>,
    error_redirect: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    honeypot: Option<String>,
    email_field: Option<String>,
    #[serde(default)]
    turnstile: bool,
    max_files: Option<usize>,
    max_file_bytes: Option<usize>,
    #[serde(default)]
    allowed_file_types: Vec<String>,
    rate_limit_per_minute: Option<u32>,
    #[serde(default)]
    debug: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Default limits: no files unless the owner allows them; ten posts a minute per client.
pub const DEFAULT_MAX_FILE_BYTES: usize = 5_000_000;
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 10;

fn is_form_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `https://host[:port]` or `http://…`, with nothing after the authority.
pub fn is_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else { return false };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// An absolute http(s) URL safe to put in a `Location` header.
fn is_redirect(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2000
        && url.bytes().all(|b| b.is_ascii_graphic())
}

/// Parses `FORMS`. The error names the form and the key, never a value.
pub fn parse(json: &str) -> Result<BTreeMap<String, FormSettings>, String> {
    let raw: BTreeMap<String, Raw> =
        serde_json::from_str(json).map_err(|e| format!("is not a JSON object of forms ({})", json_error_kind(&e)))?;
    let mut forms = BTreeMap::new();
    for (name, raw) in raw {
        if !is_form_name(&name) {
            return Err("has a form name that is not letters, digits, - or _".into());
        }
        let bad = |key: &str| format!("form {name}: {key} is invalid");
        let to: Vec<String> = match raw.to {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        };
        let to = to.iter().map(|t| Mailbox::parse(t)).collect::<Result<Vec<_>, _>>().map_err(|_| bad("to"))?;
        if to.is_empty() {
            return Err(bad("to"));
        }
        let subject = raw.subject.unwrap_or_else(|| format!("New submission from the {name} form"));
        if header::problem(&subject).is_some() {
            return Err(bad("subject"));
        }
        for (key, url) in [("redirect", &raw.redirect), ("error_redirect", &raw.error_redirect)] {
            if url.as_deref().is_some_and(|u| !is_redirect(u)) {
                return Err(bad(key));
            }
        }
        if !raw.allowed_origins.iter().all(|o| is_origin(o)) {
            return Err(bad("allowed_origins"));
        }
        let field_name_ok = |f: &String| !f.is_empty() && f.len() <= 100 && !f.chars().any(char::is_control);
        if raw.honeypot.as_ref().is_some_and(|h| !field_name_ok(h)) {
            return Err(bad("honeypot"));
        }
        let email_field = raw.email_field.unwrap_or_else(|| "email".into());
        if !field_name_ok(&email_field) {
            return Err(bad("email_field"));
        }
        let type_ok = |t: &String| {
            t.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && (a.to_string() + b).bytes().all(|c| c.is_ascii_alphanumeric() || b"*-+.".contains(&c))
            })
        };
        if !raw.allowed_file_types.iter().all(type_ok) {
            return Err(bad("allowed_file_types"));
        }
        forms.insert(
            name.clone(),
            FormSettings {
                to,
                subject,
                redirect: raw.redirect,
                error_redirect: raw.error_redirect,
                allowed_origins: raw.allowed_origins,
                honeypot: raw.honeypot,
                email_field,
                turnstile: raw.turnstile,
                max_files: raw.max_files.unwrap_or(0),
                max_file_bytes: raw.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES),
                allowed_file_types: raw.allowed_file_types.iter().map(|t| t.to_ascii_lowercase()).collect(),
                rate_limit_per_minute: raw.rate_limit_per_minute.unwrap_or(DEFAULT_RATE_LIMIT_PER_MINUTE).max(1),
                debug: raw.debug,
            },
        );
    }
    Ok(forms)
}

impl FormSettings {
    /// Does `content_type` match the allowed types (`image/*` style patterns allowed)?
    pub fn file_type_allowed(&self, content_type: &str) -> bool {
        let content_type = content_type.to_ascii_lowercase();
        self.allowed_file_types.is_empty()
            || self.allowed_file_types.iter().any(|allowed| match allowed.strip_suffix("/*") {
                Some(kind) => content_type.split('/').next() == Some(kind),
                None => *allowed == content_type,
            })
    }
}

/// What kind of JSON error, without quoting the input.
fn json_error_kind(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "I/O",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected or missing keys",
        serde_json::error::Category::Eof => "truncated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"contact": {"to": ["owner@example.com"], "subject": "New message from {{name}}",
        "redirect": "https://example.com/thanks", "error_redirect": "https://example.com/oops",
        "allowed_origins": ["https://example.com"], "honeypot": "_gotcha",
        "email_field": "email", "turnstile": false,
        "max_files": 3, "max_file_bytes": 5000000, "rate_limit_per_minute": 5}}"#;

    #[test]
    fn the_product_example_parses() {
        let forms = parse(EXAMPLE).unwrap();
        let contact = &forms["contact"];
        assert_eq!(contact.to[0].email.as_str(), "owner@example.com");
        assert_eq!(contact.subject, "New message from {{name}}");
        assert_eq!((contact.max_files, contact.rate_limit_per_minute), (3, 5));
        assert_eq!(contact.honeypot.as_deref(), Some("_gotcha"));
    }

    #[test]
    fn defaults_are_safe() {
        let forms = parse(r#"{"f": {"to": "o@example.com"}}"#).unwrap();
        let f = &forms["f"];
        assert_eq!(f.max_files, 0, "no files unless allowed");
        assert_eq!(f.rate_limit_per_minute, DEFAULT_RATE_LIMIT_PER_MINUTE);
        assert_eq!(f.email_field, "email");
        assert!(f.allowed_origins.is_empty() && !f.turnstile);
    }

    #[test]
    fn errors_name_the_form_and_key_but_not_the_value() {
        let cases = [
            (r#"{"f": {"to": "not an address"}}"#, "form f: to"),
            (r#"{"f": {"to": "o@example.com", "redirect": "javascript:alert(1)"}}"#, "form f: redirect"),
            (
                r#"{"f": {"to": "o@example.com", "allowed_origins": ["https://example.com/path"]}}"#,
                "form f: allowed_origins",
            ),
            (r#"{"f": {"to": "o@example.com", "subject": "x\r\nBcc: y@evil.example"}}"#, "form f: subject"),
            (r#"{"f": {"to": "o@example.com", "recipients": []}}"#, "unexpected or missing keys"),
            (r#"{"bad name": {"to": "o@example.com"}}"#, "form name"),
        ];
        for (json, expected) in cases {
            let error = parse(json).unwrap_err();
            assert!(error.contains(expected), "{json}: {error}");
            assert!(!error.contains("javascript") && !error.contains("not an address"));
        }
    }

    #[test]
    fn file_type_patterns() {
        let forms =
            parse(r#"{"f": {"to": "o@example.com", "allowed_file_types": ["image/*", "application/pdf"]}}"#).unwrap();
        let f = &forms["f"];
        assert!(
            f.file_type_allowed("image/png")
                && f.file_type_allowed("IMAGE/JPEG")
                && f.file_type_allowed("application/pdf")
        );
        assert!(!f.file_type_allowed("application/zip") && !f.file_type_allowed("imagex/png"));
    }
}
