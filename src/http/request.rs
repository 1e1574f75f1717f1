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

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
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
