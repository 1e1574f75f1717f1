//! What a relay offers in its EHLO reply (RFC 5321 §4.1.1.1 and the extension RFCs).

use super::reply::Reply;

/// SASL mechanisms we can speak, in the order we prefer them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMechanism {
    Plain,
    Login,
    XOAuth2,
}

impl AuthMechanism {
    pub fn name(self) -> &'static str {
        match self {
            AuthMechanism::Plain => "PLAIN",
            AuthMechanism::Login => "LOGIN",
            AuthMechanism::XOAuth2 => "XOAUTH2",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [AuthMechanism::Plain, AuthMechanism::Login, AuthMechanism::XOAuth2]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// The extensions of one EHLO reply. Forgotten after STARTTLS (RFC 3207 §4.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub starttls: bool,
    pub pipelining: bool,
    pub chunking: bool,
    pub eight_bit_mime: bool,
    pub smtp_utf8: bool,
    pub dsn: bool,
    pub enhanced_status_codes: bool,
    /// `SIZE n`; `Some(0)` means the relay announced SIZE without a limit.
    pub size: Option<u64>,
    pub auth: Vec<AuthMechanism>,
}

impl Capabilities {
    /// Reads the lines after the first (the first line is the relay's greeting name).
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else { continue };
            match keyword.to_ascii_uppercase().as_str() {
                "STARTTLS" => caps.starttls = true,
                "PIPELINING" => caps.pipelining = true,
                "CHUNKING" => caps.chunking = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtp_utf8 = true,
                "DSN" => caps.dsn = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "AUTH" => {
                    for mechanism in words.filter_map(AuthMechanism::from_name) {
                        if !caps.auth.contains(&mechanism) {
                            caps.auth.push(mechanism);
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }

    /// The mechanism to use: our preference among what the relay offers.
    pub fn preferred_auth(&self, usable: &[AuthMechanism]) -> Option<AuthMechanism> {
        usable.iter().copied().find(|m| self.auth.contains(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::ReplyBuffer;

    fn ehlo(wire: &str) -> Capabilities {
        let mut buffer = ReplyBuffer::new();
        buffer.push(wire.as_bytes());
        Capabilities::from_ehlo(&buffer.next_reply().unwrap().unwrap())
    }

    #[test]
    fn postfix_ehlo_after_tls() {
        let caps = ehlo(
            "250-relay.localhost\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n\
             250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n\
             250-SMTPUTF8\r\n250 CHUNKING\r\n",
        );
        assert!(caps.pipelining && caps.chunking && caps.eight_bit_mime && caps.dsn);
        assert!(caps.smtp_utf8 && caps.enhanced_status_codes && !caps.starttls);
        assert_eq!(caps.size, Some(10_240_000));
        assert_eq!(caps.auth, vec![AuthMechanism::Plain, AuthMechanism::Login]);
    }

    #[test]
    fn greeting_name_is_not_a_keyword() {
        let caps = ehlo("250-STARTTLS\r\n250 SIZE\r\n");
        assert!(!caps.starttls, "the first line is the relay's name");
        assert_eq!(caps.size, Some(0));
    }

    #[test]
    fn keywords_are_case_insensitive_and_auth_preference_is_ours() {
        let caps = ehlo("250-relay\r\n250-starttls\r\n250 auth xoauth2 login plain\r\n");
        assert!(caps.starttls);
        let ours = [AuthMechanism::Plain, AuthMechanism::Login];
        assert_eq!(caps.preferred_auth(&ours), Some(AuthMechanism::Plain));
        assert_eq!(caps.preferred_auth(&[AuthMechanism::XOAuth2]), Some(AuthMechanism::XOAuth2));
    }
}
