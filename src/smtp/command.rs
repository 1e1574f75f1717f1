//! SMTP commands. Each renders itself, CRLF included, with `Display`; the transcript uses
//! [`Command::redacted`] so AUTH payloads never leave the connection.

use std::fmt;

use crate::address::EmailAddress;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    StartTls,
    /// `AUTH PLAIN <initial response>` (RFC 4954 §4), the response already base64.
    AuthPlain(String),
    MailFrom {
        sender: EmailAddress,
        params: Vec<String>,
    },
    RcptTo {
        recipient: EmailAddress,
    },
    Data,
    Rset,
    Quit,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Ehlo(name) => write!(f, "EHLO {name}\r\n"),
            Command::StartTls => f.write_str("STARTTLS\r\n"),
            Command::AuthPlain(response) => write!(f, "AUTH PLAIN {response}\r\n"),
            Command::MailFrom { sender, params } => {
                write!(f, "MAIL FROM:<{sender}>")?;
                for param in params {
                    write!(f, " {param}")?;
                }
                f.write_str("\r\n")
            }
            Command::RcptTo { recipient } => write!(f, "RCPT TO:<{recipient}>\r\n"),
            Command::Data => f.write_str("DATA\r\n"),
            Command::Rset => f.write_str("RSET\r\n"),
            Command::Quit => f.write_str("QUIT\r\n"),
        }
    }
}

impl Command {
    /// The command as the transcript shows it: no CRLF, secrets replaced by `***`.
    pub fn redacted(&self) -> String {
        match self {
            Command::AuthPlain(_) => "AUTH PLAIN ***".to_string(),
            other => other.to_string().trim_end_matches("\r\n").to_string(),
        }
    }

    /// The phase this command belongs to, as error details name it.
    pub fn phase(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "ehlo",
            Command::StartTls => "starttls",
            Command::AuthPlain(_) => "auth",
            Command::MailFrom { .. } => "mail",
            Command::RcptTo { .. } => "rcpt",
            Command::Data => "data",
            Command::Rset => "rset",
            Command::Quit => "quit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    #[test]
    fn commands_render_exactly() {
        let cases = [
            (Command::Ehlo("example.com".into()), "EHLO example.com\r\n"),
            (Command::StartTls, "STARTTLS\r\n"),
            (Command::AuthPlain("AGRldgBwdw==".into()), "AUTH PLAIN AGRldgBwdw==\r\n"),
            (Command::MailFrom { sender: addr("a@example.com"), params: vec![] }, "MAIL FROM:<a@example.com>\r\n"),
            (
                Command::MailFrom { sender: addr("a@example.com"), params: vec!["BODY=8BITMIME".into()] },
                "MAIL FROM:<a@example.com> BODY=8BITMIME\r\n",
            ),
            (Command::RcptTo { recipient: addr("b@example.org") }, "RCPT TO:<b@example.org>\r\n"),
            (Command::Data, "DATA\r\n"),
            (Command::Rset, "RSET\r\n"),
            (Command::Quit, "QUIT\r\n"),
        ];
        for (command, wire) in cases {
            assert_eq!(command.to_string(), wire);
        }
    }

    #[test]
    fn auth_payload_is_redacted() {
        let command = Command::AuthPlain("AGRldgBzM2NyM3Q=".into());
        assert_eq!(command.redacted(), "AUTH PLAIN ***");
        assert!(!command.redacted().contains("AGRl"));
    }
}
