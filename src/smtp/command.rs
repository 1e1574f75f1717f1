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
    /// `AUTH LOGIN`; username and password follow as [`Command::AuthResponse`].
    AuthLogin,
    /// `AUTH XOAUTH2 <initial response>`, the response already base64.
    AuthXOAuth2(String),
    /// A base64 line answering a 334 challenge.
    AuthResponse(String),
    MailFrom {
        sender: EmailAddress,
        params: Vec<String>,
    },
    RcptTo {
        recipient: EmailAddress,
        params: Vec<String>,
    },
    Data,
    /// `BDAT <size> [LAST]` (RFC 3030); the chunk follows it directly.
    Bdat {
        size: usize,
        last: bool,
    },
    Rset,
    Quit,
}

fn with_params(f: &mut fmt::Formatter<'_>, params: &[String]) -> fmt::Result {
    for param in params {
        write!(f, " {param}")?;
    }
    f.write_str("\r\n")
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Ehlo(name) => write!(f, "EHLO {name}\r\n"),
            Command::StartTls => f.write_str("STARTTLS\r\n"),
            Command::AuthPlain(response) => write!(f, "AUTH PLAIN {response}\r\n"),
            Command::AuthLogin => f.write_str("AUTH LOGIN\r\n"),
            Command::AuthXOAuth2(response) => write!(f, "AUTH XOAUTH2 {response}\r\n"),
            Command::AuthResponse(response) => write!(f, "{response}\r\n"),
            Command::MailFrom { sender, params } => {
                write!(f, "MAIL FROM:<{sender}>")?;
                with_params(f, params)
            }
            Command::RcptTo { recipient, params } => {
                write!(f, "RCPT TO:<{recipient}>")?;
                with_params(f, params)
            }
            Command::Data => f.write_str("DATA\r\n"),
            Command::Bdat { size, last: true } => write!(f, "BDAT {size} LAST\r\n"),
            Command::Bdat { size, last: false } => write!(f, "BDAT {size}\r\n"),
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
            Command::AuthXOAuth2(_) => "AUTH XOAUTH2 ***".to_string(),
            Command::AuthResponse(_) => "***".to_string(),
            other => other.to_string().trim_end_matches("\r\n").to_string(),
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
            (Command::AuthLogin, "AUTH LOGIN\r\n"),
            (Command::AuthXOAuth2("dXNlcj0=".into()), "AUTH XOAUTH2 dXNlcj0=\r\n"),
            (Command::AuthResponse("ZGV2".into()), "ZGV2\r\n"),
            (Command::MailFrom { sender: addr("a@example.com"), params: vec![] }, "MAIL FROM:<a@example.com>\r\n"),
            (
                Command::MailFrom {
                    sender: addr("a@example.com"),
                    params: vec!["SIZE=10".into(), "BODY=8BITMIME".into()],
                },
                "MAIL FROM:<a@example.com> SIZE=10 BODY=8BITMIME\r\n",
            ),
            (Command::RcptTo { recipient: addr("b@example.org"), params: vec![] }, "RCPT TO:<b@example.org>\r\n"),
            (
                Command::RcptTo { recipient: addr("b@example.org"), params: vec!["NOTIFY=FAILURE".into()] },
                "RCPT TO:<b@example.org> NOTIFY=FAILURE\r\n",
            ),
            (Command::Data, "DATA\r\n"),
            (Command::Bdat { size: 1234, last: true }, "BDAT 1234 LAST\r\n"),
            (Command::Bdat { size: 7, last: false }, "BDAT 7\r\n"),
            (Command::Rset, "RSET\r\n"),
            (Command::Quit, "QUIT\r\n"),
        ];
        for (command, wire) in cases {
            assert_eq!(command.to_string(), wire);
        }
    }

    #[test]
    fn auth_payloads_are_redacted() {
        for command in [
            Command::AuthPlain("AGRldgBzM2NyM3Q=".into()),
            Command::AuthXOAuth2("AGRldgBzM2NyM3Q=".into()),
            Command::AuthResponse("AGRldgBzM2NyM3Q=".into()),
        ] {
            assert!(command.redacted().contains("***"));
            assert!(!command.redacted().contains("AGRl"), "{}", command.redacted());
        }
        assert_eq!(Command::Ehlo("x.example".into()).redacted(), "EHLO x.example");
    }
}
