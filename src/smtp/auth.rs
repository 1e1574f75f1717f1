//! SMTP AUTH credentials and SASL payloads (RFC 4954, RFC 4616).

use std::fmt;

use base64::{engine::general_purpose::STANDARD, Engine};

/// A username and a secret. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials { username: username.into(), password: password.into() }
    }

    /// The PLAIN initial response: base64 of `\0username\0password` (RFC 4616 §2).
    pub fn plain_initial_response(&self) -> String {
        let mut raw = Vec::with_capacity(self.username.len() + self.password.len() + 2);
        raw.push(0);
        raw.extend_from_slice(self.username.as_bytes());
        raw.push(0);
        raw.extend_from_slice(self.password.as_bytes());
        STANDARD.encode(raw)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"***").finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_initial_response_matches_rfc_4616() {
        let credentials = Credentials::new("tim", "tanstaaftanstaaf");
        assert_eq!(credentials.plain_initial_response(), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", Credentials::new("dev", "hunter2"));
        assert!(shown.contains("dev") && !shown.contains("hunter2"));
    }
}
