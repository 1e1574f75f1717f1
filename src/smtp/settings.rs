//! How to reach the relay: where, how the connection is protected, who we are, and how long
//! each wait may last. Plain data, built by `config` from the environment.

use sha2::{Digest, Sha256};

use super::auth::{AuthChoice, Credentials};
use super::capabilities::AuthMechanism;

/// How the connection to the relay is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Plain TCP, upgraded with STARTTLS before anything else (default; port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    ImplicitTls,
    /// No TLS at all. Explicit opt-in only, and never with AUTH.
    None,
}

impl Security {
    pub fn default_port(self) -> u16 {
        match self {
            Security::StartTls | Security::None => 587,
            Security::ImplicitTls => 465,
        }
    }
}

/// Upper bounds for each wait, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect (and, for implicit TLS, the handshake).
    pub connect: u64,
    /// The greeting, each command's reply and write, and the STARTTLS handshake.
    pub command: u64,
    /// Writing the message, and the verdict after it: relays scan a message before answering.
    pub data_end: u64,
    /// The polite QUIT after the answer has gone out.
    pub quit: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        // RFC 5321 §4.5.3.2 allows minutes; an HTTP caller waits for us, so stay well below.
        Timeouts { connect: 10_000, command: 30_000, data_end: 60_000, quit: 2_000 }
    }
}

/// Where and how to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelaySettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub ehlo_name: String,
    pub credentials: Option<Credentials>,
    pub timeouts: Timeouts,
}

impl RelaySettings {
    /// Identifies the relay account (host, port and user, as a digest): what a sending quota
    /// belongs to, whatever else of the settings changes.
    pub fn account(&self) -> String {
        let user = self.credentials.as_ref().map_or("", |c| c.username.as_str());
        format!("{:x}", Sha256::digest(format!("{}|{}|{user}", self.host, self.port).as_bytes()))
    }

    /// Identifies these settings (the secret only by its digest): a session opened with other
    /// settings, a changed password included, is never reused for these.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        // Written out field by field rather than with `{:?}`: a fingerprint must not change
        // when a Debug impl does, or every warm session would be dropped after an upgrade.
        let t = &self.timeouts;
        let plain = format!(
            "{}|{}|{}|{}|{} {} {} {}",
            self.host, self.port, self.security as u8, self.ehlo_name, t.connect, t.command, t.data_end, t.quit
        );
        hasher.update(plain.as_bytes());
        if let Some(credentials) = &self.credentials {
            let choice = match credentials.choice {
                AuthChoice::Auto => "auto",
                AuthChoice::Only(mechanism) => mechanism.name(),
            };
            hasher.update(format!("|{}|{choice}|", credentials.username).as_bytes());
            hasher.update(credentials.secret_digest());
        }
        format!("{:x}", hasher.finalize())
    }

    /// The longest a session with these settings can take to open and send one message to
    /// `recipients` recipients, when every wait runs to just under its timeout. Counted the
    /// way `client.rs` waits: each command is a write and a reply (`command` each); lock-step
    /// is the worst case (one write and one reply per RCPT); AUTH LOGIN answers three
    /// replies; the message and its flush share one `data_end`, the verdict another (a third
    /// is kept from when the flush had its own: a longer bound is still a bound).
    pub fn longest_send_millis(&self, recipients: usize) -> u64 {
        let t = self.timeouts;
        let command = 2 * t.command; // one write, one reply
        let mut total = t.connect + t.command; // connect (with the implicit-TLS handshake), greeting
        total += command; // EHLO
        if self.security == Security::StartTls {
            total += command + t.command + command; // STARTTLS, the handshake, EHLO again
        }
        if let Some(credentials) = &self.credentials {
            let exchanges = match credentials.choice {
                AuthChoice::Only(AuthMechanism::Plain) => 1,
                // XOAUTH2 may answer 334 and want an empty line before its verdict.
                AuthChoice::Only(AuthMechanism::XOAuth2) => 2,
                // LOGIN (which `Auto` may pick): the command, the username, the password.
                AuthChoice::Only(AuthMechanism::Login) | AuthChoice::Auto => 3,
            };
            total += exchanges * command;
        }
        total += command; // MAIL
        total += recipients as u64 * command; // RCPT, in lock-step
        total += command; // DATA (or the BDAT command)
        total + 3 * t.data_end // the message and its flush, the verdict, and a spare
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_changes_with_every_setting_and_hides_the_secret() {
        let base = RelaySettings {
            host: "smtp.example.com".into(),
            port: 587,
            security: Security::StartTls,
            ehlo_name: "example.com".into(),
            credentials: Some(Credentials::new("user", "first-password")),
            timeouts: Timeouts::default(),
        };
        let changed = [
            RelaySettings { host: "smtp2.example.com".into(), ..base.clone() },
            RelaySettings { port: 465, security: Security::ImplicitTls, ..base.clone() },
            RelaySettings { credentials: Some(Credentials::new("user", "second-password")), ..base.clone() },
            RelaySettings { credentials: Some(Credentials::new("other", "first-password")), ..base.clone() },
            RelaySettings { credentials: None, ..base.clone() },
        ];
        for other in &changed {
            assert_ne!(other.fingerprint(), base.fingerprint(), "{other:?}");
        }
        assert_eq!(base.clone().fingerprint(), base.fingerprint());
        assert!(!base.fingerprint().contains("first-password"));
    }
}
