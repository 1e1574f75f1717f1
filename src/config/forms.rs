//! A form's settings, from the `FORMS` variable: everything about a form comes from the
//! owner's configuration, never from the request.

use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::error::Category;

use crate::address::Mailbox;
use crate::header;

use super::urls;

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
    /// Fields a submission must fill in (`"required": ["email", "message"]`).
    pub required: Vec<String>,
    pub turnstile: bool,
    pub max_files: usize,
    pub max_file_bytes: usize,
    /// MIME types or `type/*` patterns; empty means any type.
    pub allowed_file_types: Vec<String>,
    pub rate_limit_per_minute: u32,
    /// `?debug=1` may return the SMTP transcript (for the demo form of the www page).
    pub debug: bool,
    /// `"delivery": "sync"` waits for the relay; by default a submission is queued.
    pub queued: bool,
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
    required: Vec<String>,
    #[serde(default)]
    turnstile: bool,
    max_files: Option<usize>,
    max_file_bytes: Option<usize>,
    #[serde(default)]
    allowed_file_types: Vec<String>,
    rate_limit_per_minute: Option<u32>,
    #[serde(default)]
    debug: bool,
    delivery: Option<String>,
}

/// One string or a list of them (`"to"`).
struct OneOrMany(Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor;

        impl<'de> Visitor<'de> for OneOrManyVisitor {
            type Value = OneOrMany;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: serde::de::Error>(self, one: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![one.to_string()]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut many = Vec::new();
                while let Some(one) = seq.next_element()? {
                    many.push(one);
                }
                Ok(OneOrMany(many))
            }
        }

        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

/// `FORMS`: form name → its settings, in the order written (a name given twice: the last,
/// see [`FormTable::insert`]).
struct Forms(Vec<(String, Raw)>);

impl<'de> Deserialize<'de> for Forms {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FormsVisitor;

        impl<'de> Visitor<'de> for FormsVisitor {
            type Value = Forms;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of forms")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Forms, A::Error> {
                let mut forms = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    forms.push(entry);
                }
                Ok(Forms(forms))
            }
        }

        deserializer.deserialize_map(FormsVisitor)
    }
}

/// Default limits: no files unless the owner allows them; ten posts a minute per client.
pub const DEFAULT_MAX_FILE_BYTES: usize = 5_000_000;
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 10;
/// Most fields one submission may have (files included).
pub const MAX_FIELDS: usize = 100;
/// Room in a form's body for its text fields, besides its files: 1 MiB.
pub const FORM_TEXT_BYTES: usize = 1024 * 1024;
/// Room for each multipart part's delimiter and headers.
pub const FORM_PART_BYTES: usize = 1024;

impl FormSettings {
    /// The largest body this form accepts: what its own settings allow (its files at their
    /// largest, the text fields, each part's delimiter and headers), never more than
    /// `max_request_bytes`. A form without files takes about 1.1 MiB, not the API's 14 MiB.
    pub fn body_limit(&self, max_request_bytes: usize) -> usize {
        let files = self.max_files.min(MAX_FIELDS).saturating_mul(self.max_file_bytes);
        (files.saturating_add(FORM_TEXT_BYTES).saturating_add((MAX_FIELDS + 1) * FORM_PART_BYTES))
            .min(max_request_bytes)
    }
}

fn is_form_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The origin (`scheme://host[:port]`, as browsers write it in `Origin`) of an http(s) URL
/// with a host and no credentials (read strictly: see [`super::urls`]).
pub fn origin_of(raw: &str) -> Option<String> {
    urls::parse(raw).map(|url| url.origin())
}

/// An allowed origin as the owner wrote it, in the form browsers send: `https://Example.com:443`
/// becomes `https://example.com`. Anything after the authority is refused.
fn normalise_origin(raw: &str) -> Option<String> {
    urls::parse(raw).filter(|url| url.rest.is_empty() || url.rest == "/").map(|url| url.origin())
}

/// An absolute http(s) URL with a host and no credentials, safe to put in a `Location`
/// header or a link (printable ASCII, at most 2000 characters).
pub fn is_redirect(raw: &str) -> bool {
    raw.len() <= 2000 && raw.bytes().all(|b| b.is_ascii_graphic()) && origin_of(raw).is_some()
}

/// `FORMS`, validated: each form under its name, in the order written (an owner has a
/// handful of forms: a list searched by name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormTable(Vec<(String, FormSettings)>);

impl FormTable {
    pub fn get(&self, name: &str) -> Option<&FormSettings> {
        self.0.iter().find(|(named, _)| named == name).map(|(_, form)| form)
    }

    /// A name given twice: the last settings count (as a JSON object's last member does).
    fn insert(&mut self, name: String, form: FormSettings) {
        match self.0.iter_mut().find(|(named, _)| *named == name) {
            Some(slot) => slot.1 = form,
            None => self.0.push((name, form)),
        }
    }
}

/// Parses `FORMS` (in the order written). The error names the form and the key, never a value.
pub fn parse(json: &str) -> Result<FormTable, String> {
    let Forms(raw) =
        serde_json::from_str(json).map_err(|e| format!("is not a JSON object of forms ({})", json_error_kind(&e)))?;
    let mut forms = FormTable::default();
    for (name, raw) in raw {
        if !is_form_name(&name) {
            return Err("has a form name that is not letters, digits, - or _".into());
        }
        let bad = |key: &str| format!("form {name}: {key} is invalid");
        let to = raw.to.0;
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
        let allowed_origins = (raw.allowed_origins.iter())
            .map(|o| normalise_origin(o))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("allowed_origins"))?;
        let field_name_ok = |f: &String| !f.is_empty() && f.len() <= 100 && !f.chars().any(char::is_control);
        if raw.honeypot.as_ref().is_some_and(|h| !field_name_ok(h)) {
            return Err(bad("honeypot"));
        }
        let email_field = raw.email_field.unwrap_or_else(|| "email".into());
        if !field_name_ok(&email_field) {
            return Err(bad("email_field"));
        }
        if !raw.required.iter().all(field_name_ok) {
            return Err(bad("required"));
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
        let queued = match raw.delivery.as_deref() {
            None | Some("queue") => true,
            Some("sync") => false,
            Some(_) => return Err(bad("delivery")),
        };
        forms.insert(
            name.clone(),
            FormSettings {
                to,
                subject,
                redirect: raw.redirect,
                error_redirect: raw.error_redirect,
                allowed_origins,
                honeypot: raw.honeypot,
                email_field,
                required: raw.required,
                turnstile: raw.turnstile,
                max_files: raw.max_files.unwrap_or(0),
                max_file_bytes: raw.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES),
                allowed_file_types: raw.allowed_file_types.iter().map(|t| t.to_ascii_lowercase()).collect(),
                rate_limit_per_minute: raw.rate_limit_per_minute.unwrap_or(DEFAULT_RATE_LIMIT_PER_MINUTE).max(1),
                debug: raw.debug,
                queued,
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
        Category::Eof => "truncated",
        Category::Syntax | Category::Io => "syntax error",
        Category::Data => "unexpected or missing keys",
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
    fn a_forms_body_limit_is_what_its_settings_allow() {
        let forms = parse(EXAMPLE).unwrap();
        let contact = forms.get("contact").unwrap();
        let room = FORM_TEXT_BYTES + (MAX_FIELDS + 1) * FORM_PART_BYTES;
        assert_eq!(contact.body_limit(usize::MAX), 3 * 5_000_000 + room);
        assert_eq!(contact.body_limit(14 << 20), 14 << 20, "never over MAX_REQUEST_BYTES");
        let plain = parse(r#"{"f": {"to": "o@example.com"}}"#).unwrap();
        assert_eq!(plain.get("f").unwrap().body_limit(14 << 20), room, "no files: text room only");
        let many = parse(r#"{"f": {"to": "o@example.com", "max_files": 1000000, "max_file_bytes": 1000000000000}}"#);
        assert_eq!(many.unwrap().get("f").unwrap().body_limit(14 << 20), 14 << 20, "no overflow");
    }

    #[test]
    fn the_product_example_parses() {
        let forms = parse(EXAMPLE).unwrap();
        let contact = forms.get("contact").unwrap();
        assert_eq!(contact.to[0].email.as_str(), "owner@example.com");
        assert_eq!(contact.subject, "New message from {{name}}");
        assert_eq!((contact.max_files, contact.rate_limit_per_minute), (3, 5));
        assert_eq!(contact.honeypot.as_deref(), Some("_gotcha"));
    }

    #[test]
    fn defaults_are_safe() {
        let forms = parse(r#"{"f": {"to": "o@example.com"}}"#).unwrap();
        let f = forms.get("f").unwrap();
        assert_eq!(f.max_files, 0, "no files unless allowed");
        assert_eq!(f.rate_limit_per_minute, DEFAULT_RATE_LIMIT_PER_MINUTE);
        assert_eq!(f.email_field, "email");
        assert!(f.allowed_origins.is_empty() && !f.turnstile);
    }

    #[test]
    fn forms_are_found_by_name_and_a_name_given_twice_keeps_its_last_settings() {
        let forms = parse(
            r#"{"a": {"to": "a@example.com"}, "b": {"to": "b@example.com"},
            "a": {"to": "again@example.com"}}"#,
        )
        .unwrap();
        assert_eq!(forms.get("a").unwrap().to[0].email.as_str(), "again@example.com");
        assert_eq!(forms.get("b").unwrap().to[0].email.as_str(), "b@example.com");
        assert!(forms.get("c").is_none() && forms.get("A").is_none());
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
    fn urls_are_parsed_as_a_browser_would() {
        let form = |extra: &str| parse(&format!(r#"{{"f": {{"to": "o@example.com", {extra}}}}}"#));
        let origins = form(r#""allowed_origins": ["https://Example.com:443", "http://localhost:8080"]"#).unwrap();
        assert_eq!(origins.get("f").unwrap().allowed_origins, vec!["https://example.com", "http://localhost:8080"]);
        for bad in ["https://example.com/path", "https://a@example.com", "https://example.com?x", "null", "file:///x"] {
            assert!(form(&format!(r#""allowed_origins": ["{bad}"]"#)).is_err(), "{bad}");
        }
        for bad in ["http://127.0.0.1:80@evil.example/", "javascript:alert(1)", "/relative", "https://"] {
            assert!(form(&format!(r#""redirect": "{bad}""#)).is_err(), "{bad}");
        }
        assert!(form(r#""redirect": "https://example.com/thanks?from=form""#).is_ok());
        assert_eq!(origin_of("https://b.example:8443/contact?x=1").as_deref(), Some("https://b.example:8443"));
        assert_eq!(origin_of("http://127.0.0.1:80@evil.example/"), None, "credentials: not a plain origin");
    }

    #[test]
    fn file_type_patterns() {
        let forms =
            parse(r#"{"f": {"to": "o@example.com", "allowed_file_types": ["image/*", "application/pdf"]}}"#).unwrap();
        let f = forms.get("f").unwrap();
        assert!(
            f.file_type_allowed("image/png")
                && f.file_type_allowed("IMAGE/JPEG")
                && f.file_type_allowed("application/pdf")
        );
        assert!(!f.file_type_allowed("application/zip") && !f.file_type_allowed("imagex/png"));
    }
}
