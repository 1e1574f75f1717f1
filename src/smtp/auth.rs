//! SMTP AUTH credentials and SASL payloads (RFC 4954; PLAIN RFC 4616; LOGIN; XOAUTH2).

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::capabilities::AuthMechanism;

/// Which mechanism to use. `Auto` picks PLAIN, then LOGIN, from what the relay offers;
/// XOAUTH2 is used only when asked for, because its secret is an OAuth access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthChoice {
    Auto,
    Only(AuthMechanism),
}

impl AuthChoice {
    /// The mechanisms acceptable under this choice, preferred first.
    pub fn acceptable(self) -> &'static [AuthMechanism] {
        match self {
            AuthChoice::Auto => &[AuthMechanism::Plain, AuthMechanism::Login],
            AuthChoice::Only(AuthMechanism::Plain) => &[AuthMechanism::Plain],
            AuthChoice::Only(AuthMechanism::Login) => &[AuthMechanism::Login],
            AuthChoice::Only(AuthMechanism::XOAuth2) => &[AuthMechanism::XOAuth2],
        }
    }
}

/// A username and a secret (a password, or an OAuth token for XOAUTH2). `Debug` never
/// prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    secret: String,
    pub choice: AuthChoice,
}

impl Credentials {
    pub fn new(username: impl Into<String>, secret: impl Into<String>) -> Self {
        Credentials { username: username.into(), secret: secret.into(), choice: AuthChoice::Auto }
    }

    pub fn with_choice(mut self, choice: AuthChoice) -> Self {
        self.choice = choice;
        self
    }

    /// The PLAIN initial response: base64 of `\0username\0password` (RFC 4616 §2).
    pub fn plain_initial_response(&self) -> String {
        BASE64.encode(format!("\0{}\0{}", self.username, self.secret))
    }

    /// LOGIN's two answers: base64 username, then base64 password.
    pub fn login_responses(&self) -> [String; 2] {
        [BASE64.encode(&self.username), BASE64.encode(&self.secret)]
    }

    /// SHA-256 of the secret: tells two configurations apart without holding the secret.
    pub fn secret_digest(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }

    /// The XOAUTH2 initial response: base64 of `user=…^Aauth=Bearer …^A^A`.
    pub fn xoauth2_initial_response(&self) -> String {
        BASE64.encode(format!("user={}\x01auth=Bearer {}\x01\x01", self.username, self.secret))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"***")
            .field("choice", &self.choice)
            .finish()
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
    fn login_and_xoauth2_payloads() {
        let credentials = Credentials::new("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg");
        assert_eq!(credentials.login_responses()[0], "c29tZXVzZXJAZXhhbXBsZS5jb20=");
        // The example of Google's XOAUTH2 documentation.
        assert_eq!(
            credentials.xoauth2_initial_response(),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let shown = format!("{:?}", Credentials::new("dev", "hunter2"));
        assert!(shown.contains("dev") && !shown.contains("hunter2"));
    }

    #[test]
    fn xoauth2_only_when_chosen() {
        assert!(!AuthChoice::Auto.acceptable().contains(&AuthMechanism::XOAuth2));
        assert_eq!(AuthChoice::Only(AuthMechanism::XOAuth2).acceptable(), &[AuthMechanism::XOAuth2]);
    }
}
