//! Where in the conversation something happened, and what a transaction came to.

use super::reply::Reply;
use crate::address::EmailAddress;

/// Where in the conversation a reply came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Connect,
    Greeting,
    Ehlo,
    StartTls,
    Tls,
    Auth,
    Mail,
    Rcpt,
    Data,
    /// The reply to the end of the message: the relay's verdict on it.
    DataEnd,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Greeting => "greeting",
            Phase::Ehlo => "ehlo",
            Phase::StartTls => "starttls",
            Phase::Tls => "tls",
            Phase::Auth => "auth",
            Phase::Mail => "mail",
            Phase::Rcpt => "rcpt",
            Phase::Data => "data",
            Phase::DataEnd => "data_end",
        }
    }
}

/// A recipient the relay refused while others were accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub recipient: EmailAddress,
    pub reply: Reply,
}

/// A message the relay accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub accepted: Vec<EmailAddress>,
    pub rejected: Vec<Refusal>,
    /// The reply to the end of the message.
    pub reply: Reply,
}
