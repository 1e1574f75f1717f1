//! What a request is to the handlers: its head (known before the body), form fields, and
//! what the platform must offer to parse a multipart body.

use std::future::Future;

use crate::delivery::env::{Environment, Unavailable};

/// What the handlers know before the body: method, path, query and headers.
#[derive(Clone, Debug, Default)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    /// The query string without `?`.
    pub query: String,
    pub headers: Vec<(String, String)>,
}

/// Every request header a handler reads. The platform copies only these out of the runtime (one
/// call each) rather than every header the client sent; [`RequestHead::header`] checks, in
/// debug builds, that nothing asks for another.
pub const HEADERS_READ: [&str; 11] = [
    "accept",
    "authorization",
    "cf-connecting-ip",
    "cf-ray",
    "content-length",
    "content-type",
    "idempotency-key",
    "origin",
    "prefer",
    "referer",
    "x-batch-validation",
];

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        debug_assert!(HEADERS_READ.contains(&name), "{name} is not in HEADERS_READ");
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// `type/subtype` of `Content-Type`, lower-cased, without parameters.
    pub fn media_type(&self) -> String {
        let value = self.header("content-type").unwrap_or_default();
        value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
    }

    /// `?debug=1` (or `true`): answer with the SMTP transcript.
    pub fn debug(&self) -> bool {
        self.query.split('&').any(|pair| pair == "debug=1" || pair == "debug=true")
    }
}

/// The path and query of a request's URL. workerd hands the URL over already parsed and
/// serialised (`https://host/path?query#fragment`), so splitting it is enough; parsing it
/// again with the `url` crate cost every request CPU for nothing.
pub fn path_and_query(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(url, |i| &url[i + 3..]);
    let target = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    let target = target.split('#').next().unwrap_or_default();
    target.split_once('?').unwrap_or((target, ""))
}

/// One submitted form field, in the order the submitter sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub value: FieldValue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    Text(String),
    File { filename: String, content_type: String, data: Vec<u8> },
}

/// What the HTTP edge needs of the platform beyond the services: a multipart parser (workerd's
/// own `formData()`, run only on a body already read within its limit).
pub trait Platform: Environment {
    fn parse_multipart(
        &self,
        content_type: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<Field>, Unavailable>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_query_of_serialised_urls() {
        for (url, expected) in [
            ("https://mail.example.com/v1/send?debug=1", ("/v1/send", "debug=1")),
            ("http://127.0.0.1:8787/v1/send", ("/v1/send", "")),
            ("http://127.0.0.1:8787/", ("/", "")),
            ("http://127.0.0.1:8787", ("/", "")),
            ("https://x.dev/v1/forms/contact?a=1&b=2#top", ("/v1/forms/contact", "a=1&b=2")),
            ("https://x.dev/p?q=a/b?c", ("/p", "q=a/b?c")),
        ] {
            assert_eq!(path_and_query(url), expected, "{url}");
        }
    }
}
