//! What can go wrong in a session, in SMTP's own terms: the phase, what happened, and whether
//! the message may have reached the relay. The layer above decides what that means for its
//! callers (an HTTP status, a retry); nothing here knows about HTTP.

use std::fmt;
use std::io;

use super::outcome::Phase;
use super::reply::Reply;

/// An extension the session needed and the relay did not offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extension {
    StartTls,
    SmtpUtf8,
    EightBitMime,
    /// None of the AUTH mechanisms the configuration allows.
    Auth,
}

impl Extension {
    pub fn name(self) -> &'static str {
        match self {
            Extension::StartTls => "STARTTLS",
            Extension::SmtpUtf8 => "SMTPUTF8",
            Extension::EightBitMime => "8BITMIME",
            Extension::Auth => "an AUTH mechanism the configuration allows",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The relay answered with a reply that ends the session or the transaction. When every
    /// recipient was refused, the reply that speaks for them (a temporary one if any was).
    Reply(Reply),
    /// A wait ran past its timeout.
    Timeout,
    /// The relay closed the connection.
    Closed,
    /// Connecting, reading or writing failed (the I/O error is the source).
    Io,
    /// The TLS handshake failed (for example, the certificate did not verify).
    Tls,
    /// The relay sent something that is not SMTP, or bytes it must not send (after the `220`
    /// to STARTTLS).
    Malformed(&'static str),
    /// The message needs an extension the relay does not offer.
    Missing(Extension),
    /// The message is larger than the relay's SIZE.
    TooLarge { size: usize, limit: u64 },
    /// A line of the message is over 998 octets.
    LineTooLong,
    /// Credentials would go out in clear (security `None` with credentials).
    Insecure,
}

/// A failed session or transaction. Boxed, as [`crate::error::ApiError`] is: every `Result` of
/// the client carries one, and a word-sized error keeps each `?` small.
#[derive(Debug)]
pub struct Error(Box<ErrorParts>);

/// What an [`Error`] holds (reached through it by `Deref`).
#[derive(Debug)]
pub struct ErrorParts {
    pub phase: Phase,
    pub kind: ErrorKind,
    /// The whole message was written and the relay's verdict was lost: it may have been
    /// accepted, so it must never be sent again.
    pub message_may_have_left: bool,
    source: Option<io::Error>,
}

impl Error {
    pub fn new(phase: Phase, kind: ErrorKind) -> Self {
        Error::from_parts(ErrorParts { phase, kind, message_may_have_left: false, source: None })
    }

    pub fn io(phase: Phase, kind: ErrorKind, source: io::Error) -> Self {
        let mut error = Error::new(phase, kind);
        error.source = Some(source);
        error
    }

    /// The relay's reply, when the error is one.
    pub fn reply(&self) -> Option<&Reply> {
        match &self.kind {
            ErrorKind::Reply(reply) => Some(reply),
            _ => None,
        }
    }

    /// Nothing of the message can have left, and trying again later may work.
    pub fn is_transient(&self) -> bool {
        !self.message_may_have_left
            && match &self.kind {
                ErrorKind::Reply(reply) => (400..500).contains(&reply.code),
                ErrorKind::Timeout | ErrorKind::Closed | ErrorKind::Io => true,
                _ => false,
            }
    }
}

boxed_parts!(Error => ErrorParts);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = self.phase.name();
        match &self.kind {
            ErrorKind::Reply(reply) => write!(f, "the relay answered {} at {phase}", reply.code),
            ErrorKind::Timeout => write!(f, "the relay did not answer in time at {phase}"),
            ErrorKind::Closed => write!(f, "the relay closed the connection at {phase}"),
            ErrorKind::Io => write!(f, "the connection to the relay failed at {phase}"),
            ErrorKind::Tls => write!(f, "the TLS handshake with the relay failed"),
            ErrorKind::Malformed(why) => write!(f, "{why} (at {phase})"),
            ErrorKind::Missing(extension) => write!(f, "the relay does not offer {}", extension.name()),
            ErrorKind::TooLarge { size, limit } => {
                write!(f, "the message is {size} bytes; the relay accepts at most {limit}")
            }
            ErrorKind::LineTooLong => write!(f, "the message has a line over 998 octets"),
            ErrorKind::Insecure => write!(f, "credentials are never sent without TLS"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}
