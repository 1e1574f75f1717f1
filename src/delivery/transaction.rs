//! One message on its way: the validated submission, the rendered transaction (message and
//! envelope), and what came of it. This is the one place where an [`smtp::error::Error`]
//! becomes an error code of the table.

use serde::{Deserialize, Serialize};

use crate::address::EmailAddress;
use crate::error::{ApiError, ErrorCode, SmtpDetail};
use crate::message::{self, Content, Stamp};
use crate::smtp::client::{Network, Session};
use crate::smtp::envelope::{Dsn, Envelope, Notify};
use crate::smtp::error::{Error, ErrorKind, Extension};
use crate::smtp::outcome::{Delivery, Phase};
use crate::smtp::reply::Reply;
use crate::smtp::transcript::Transcript;

/// A validated request: the message, and how the relay should report on it.
#[derive(Debug)]
pub struct Submission {
    pub content: Content,
    pub dsn: Option<Dsn>,
}

/// A recipient the message did not go to while it went to others: refused by the relay,
/// `{"email", "smtp", "retryable"}`, or left out before the send, `{"email", "code",
/// "retryable": false}` (`recipient_suppressed`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rejected {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpDetail>,
    /// A temporary refusal (4xx): sending to this recipient again later may work.
    pub retryable: bool,
}

impl Rejected {
    /// A recipient on the suppression list, left out of the envelope.
    pub fn suppressed(email: &str) -> Rejected {
        Rejected { email: email.to_string(), code: Some(ErrorCode::RecipientSuppressed), smtp: None, retryable: false }
    }
}

/// A message the relay accepted, as answers report it: `{"message_id", "accepted",
/// "rejected", "smtp"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sent {
    pub message_id: String,
    pub accepted: Vec<String>,
    pub rejected: Vec<Rejected>,
    /// The relay's reply to the end of the message.
    pub smtp: SmtpDetail,
}

/// A rendered message with its envelope, owned, so it can travel to the object that holds a
/// warm session. The message bytes travel beside it, not in its JSON: `{"message_id",
/// "sender", "recipients", "suppressed"?, "dsn", "utf8_headers"}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    pub message_id: String,
    pub sender: String,
    pub recipients: Vec<String>,
    /// Recipients of the message left out of the envelope: on the suppression list when it
    /// was rendered. Reported in `rejected` of its outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<String>,
    pub dsn: Option<Dsn>,
    pub utf8_headers: bool,
    /// Not in its JSON: [`Transaction::to_bytes`] puts it after.
    #[serde(skip)]
    pub message: Vec<u8>,
}

impl Transaction {
    /// Renders `submission` with a fresh Message-ID and the date of `now_millis`, for every
    /// envelope recipient but those `suppressed` (which the headers still name).
    pub fn render(
        submission: &Submission,
        suppressed: Vec<String>,
        message_id_domain: &str,
        now_millis: u64,
    ) -> Result<Self, ApiError> {
        let content = &submission.content;
        let mut random = [0u8; 16];
        getrandom::fill(&mut random)
            .map_err(|_| ApiError::new(ErrorCode::Misconfigured, "no source of randomness for the Message-ID"))?;
        let stamp = Stamp::new(random, message_id_domain, (now_millis / 1000) as i64);
        let utf8_headers = [&content.to, &content.cc, &content.reply_to]
            .into_iter()
            .flatten()
            .chain([&content.from])
            .any(|mailbox| mailbox.email.needs_smtputf8());
        Ok(Transaction {
            message_id: stamp.header_message_id(),
            sender: content.from.email.to_string(),
            recipients: (content.envelope_recipients().iter())
                .map(|r| r.to_string())
                .filter(|r| !suppressed.contains(r))
                .collect(),
            suppressed,
            dsn: submission.dsn.clone(),
            utf8_headers,
            message: message::render(content, &stamp),
        })
    }

    /// Has delivery reports come back to `bounce+{id}@{bounce_domain}` (VERP: the address
    /// names the message, whatever the report looks like) and asks for them (RFC 3461, when
    /// the relay offers DSN): on success, failure and delay, with the headers only, the id as
    /// ENVID. What the request asked for itself stays; its ENVID gives way to the id.
    pub fn ask_for_reports(&mut self, id: &str, bounce_domain: &str) {
        self.sender = format!("bounce+{id}@{bounce_domain}");
        let dsn = self.dsn.get_or_insert_with(Dsn::default);
        dsn.notify.get_or_insert_with(|| vec![Notify::Success, Notify::Failure, Notify::Delay]);
        dsn.return_headers_only.get_or_insert(true);
        dsn.envelope_id = Some(id.to_string());
    }

    /// The transaction as bytes, for a Durable Object or a stored body: its JSON on one line,
    /// a line feed, then the message as it is.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).expect("a transaction is plain data");
        bytes.push(b'\n');
        bytes.extend_from_slice(&self.message);
        bytes
    }

    /// The transaction [`Transaction::to_bytes`] made, or `None` when the bytes are not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let split = bytes.iter().position(|b| *b == b'\n')?;
        let mut transaction: Transaction = serde_json::from_slice(&bytes[..split]).ok()?;
        transaction.message = bytes[split + 1..].to_vec();
        Some(transaction)
    }

    /// Runs this transaction on `session`: the relay's verdict, as the table reports it.
    pub async fn run<N: Network>(&self, session: &mut Session<N>) -> Result<Sent, Error> {
        // The addresses were validated when the request was; a copy that does not parse was
        // tampered with on the way, and goes nowhere.
        let parse = |a: &String| {
            EmailAddress::parse(a)
                .map_err(|_| Error::new(Phase::Mail, ErrorKind::Malformed("an envelope address does not parse")))
        };
        let sender = parse(&self.sender)?;
        let recipients = self.recipients.iter().map(parse).collect::<Result<Vec<_>, _>>()?;
        let recipients: Vec<&EmailAddress> = recipients.iter().collect();
        let envelope = Envelope {
            sender: &sender,
            recipients: &recipients,
            dsn: self.dsn.as_ref(),
            utf8_headers: self.utf8_headers,
        };
        let delivery = session.send(&envelope, &self.message).await?;
        let mut sent = sent(self.message_id.clone(), delivery);
        sent.rejected.extend(self.suppressed.iter().map(|email| Rejected::suppressed(email)));
        Ok(sent)
    }
}

/// Whether a send used a session opened for it or a warm one: `"new"` or `"warm"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionUse {
    New,
    Warm,
}

/// What a send came to, with the conversation (shown only in debug mode):
/// `{"result": {"Ok": sent} | {"Err": error}, "transcript", "round_trips", "session"}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub result: Result<Sent, ApiError>,
    pub transcript: Transcript,
    pub round_trips: u32,
    pub session: SessionUse,
}

impl Outcome {
    /// The relay accepted the message, or may have (`delivery_unknown`): never send it again.
    pub fn may_have_left(&self) -> bool {
        match &self.result {
            Ok(_) => true,
            Err(error) => error.code == ErrorCode::DeliveryUnknown,
        }
    }

    /// A send that failed before any session was involved.
    pub fn failed(error: ApiError) -> Self {
        Outcome { result: Err(error), transcript: Transcript::default(), round_trips: 0, session: SessionUse::New }
    }
}

/// The report of an accepted message.
pub fn sent(message_id: String, delivery: Delivery) -> Sent {
    Sent {
        message_id,
        accepted: delivery.accepted.iter().map(|a| a.to_string()).collect(),
        rejected: delivery
            .rejected
            .iter()
            .map(|r| Rejected {
                email: r.recipient.to_string(),
                code: None,
                smtp: Some(detail(Phase::Rcpt, &r.reply)),
                retryable: r.reply.is_transient(),
            })
            .collect(),
        smtp: detail(Phase::DataEnd, &delivery.reply),
    }
}

/// What the relay said, as answers carry it.
pub fn detail(phase: Phase, reply: &Reply) -> SmtpDetail {
    SmtpDetail {
        code: reply.code,
        enhanced: reply.enhanced.map(|e| e.to_string()),
        text: reply.text(),
        phase: phase.name().into(),
    }
}

/// The error table's answer for a failed session; `message_id` is named when the message
/// may have been delivered, so the caller can recognise it.
pub fn api_error(error: &Error, message_id: &str) -> ApiError {
    let phase = error.phase.name();
    if error.message_may_have_left {
        let mut api = ApiError::new(
            ErrorCode::DeliveryUnknown,
            format!("{error} after the message was sent; it may have been delivered, so it is not retried"),
        );
        api.message_id = Some(message_id.to_string());
        return api;
    }
    let (code, message) = match &error.kind {
        ErrorKind::Reply(reply) => return reply_error(error.phase, reply),
        ErrorKind::Timeout => (ErrorCode::RelayTimeout, error.to_string()),
        ErrorKind::Io if error.phase == Phase::Connect => {
            (ErrorCode::RelayUnreachable, "could not connect to the relay".to_string())
        }
        ErrorKind::Io | ErrorKind::Closed => {
            (ErrorCode::RelayUnreachable, format!("{error}, before the message was sent; nothing was delivered"))
        }
        ErrorKind::Tls => {
            (ErrorCode::RelayTlsFailed, "the TLS handshake with the relay failed (does its certificate verify?)".into())
        }
        ErrorKind::Malformed(_) => (ErrorCode::RelayProtocolError, error.to_string()),
        ErrorKind::Missing(Extension::StartTls) => {
            (ErrorCode::RelayTlsUnavailable, "the relay does not offer STARTTLS; nothing was sent".into())
        }
        ErrorKind::Missing(Extension::Auth) => {
            (ErrorCode::RelayAuthFailed, "the relay offers no AUTH mechanism that SMTP_AUTH allows".into())
        }
        ErrorKind::Missing(extension @ (Extension::SmtpUtf8 | Extension::EightBitMime)) => {
            let why = match extension {
                Extension::SmtpUtf8 => "an address has a non-ASCII local part",
                _ => "the message contains 8-bit data",
            };
            (ErrorCode::RelayCapabilityMissing, format!("{why}, and the relay does not offer {}", extension.name()))
        }
        ErrorKind::TooLarge { .. } => (ErrorCode::MessageTooLarge, error.to_string()),
        ErrorKind::LineTooLong => (ErrorCode::ValidationFailed, error.to_string()),
        ErrorKind::Insecure => (ErrorCode::Misconfigured, format!("SMTP_SECURITY is none, and {error} (at {phase})")),
    };
    let mut api = ApiError::new(code, message);
    if code.retryable() {
        api.retry_after = Some(60);
    }
    api
}

/// The error for a reply that stops the transaction in `phase`.
fn reply_error(phase: Phase, reply: &Reply) -> ApiError {
    let code = error_code(phase, reply.code);
    let message = match code {
        ErrorCode::RelayBusy => {
            format!("the relay is temporarily unable to continue at {} ({})", phase.name(), reply.code)
        }
        ErrorCode::RelayAuthFailed => format!("the relay refused authentication ({})", reply.code),
        ErrorCode::RelayRejectedSender => "the relay refused the sender".to_string(),
        ErrorCode::RelayRejectedRecipient => "the relay refused every recipient; nothing was delivered".to_string(),
        ErrorCode::RelayRejectedMessage => "the relay refused the message".to_string(),
        ErrorCode::MessageTooLarge => "the message is larger than the relay accepts".to_string(),
        ErrorCode::RelayTlsUnavailable => "the relay refused to start TLS".to_string(),
        _ => format!("unexpected reply {} at {}", reply.code, phase.name()),
    };
    let mut detail = detail(phase, reply);
    if phase == Phase::Auth {
        // The relay's text during AUTH can quote what we sent; never echo it.
        detail.text = String::new();
    }
    let mut error = ApiError::new(code, message).with_smtp(detail);
    if code.retryable() {
        error.retry_after = Some(60);
    }
    error
}

/// The mapping table itself: phase + reply code → error code.
pub fn error_code(phase: Phase, code: u16) -> ErrorCode {
    match (phase, code) {
        (_, 503) => ErrorCode::RelayProtocolError,
        (Phase::Auth, 500..=599) | (Phase::Mail | Phase::Rcpt, 530) => ErrorCode::RelayAuthFailed,
        (Phase::StartTls, 454 | 500..=599) => ErrorCode::RelayTlsUnavailable,
        // Every other 4xx, 454 at AUTH ("temporary authentication failure") included.
        (_, 400..=499) => ErrorCode::RelayBusy,
        (Phase::Mail | Phase::Data | Phase::DataEnd, 552) => ErrorCode::MessageTooLarge,
        (Phase::Mail, 500..=599) => ErrorCode::RelayRejectedSender,
        (Phase::Rcpt, 500..=599) => ErrorCode::RelayRejectedRecipient,
        (Phase::Data | Phase::DataEnd, 500..=599) => ErrorCode::RelayRejectedMessage,
        _ => ErrorCode::RelayProtocolError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::STEPS;
    use std::io;

    const ALL_PHASES: [Phase; 8] = [
        Phase::Greeting,
        Phase::Ehlo,
        Phase::StartTls,
        Phase::Auth,
        Phase::Mail,
        Phase::Rcpt,
        Phase::Data,
        Phase::DataEnd,
    ];

    #[test]
    fn mapping_table() {
        use ErrorCode::*;
        use Phase::*;
        let cases = [
            (Greeting, 421, RelayBusy),
            (Greeting, 554, RelayProtocolError),
            (Ehlo, 421, RelayBusy),
            (StartTls, 454, RelayTlsUnavailable),
            (Auth, 535, RelayAuthFailed),
            (Auth, 534, RelayAuthFailed),
            (Auth, 454, RelayBusy),
            (Auth, 503, RelayProtocolError),
            (Mail, 530, RelayAuthFailed),
            (Mail, 450, RelayBusy),
            (Mail, 451, RelayBusy),
            (Mail, 452, RelayBusy),
            (Mail, 550, RelayRejectedSender),
            (Mail, 553, RelayRejectedSender),
            (Mail, 552, MessageTooLarge),
            (Rcpt, 550, RelayRejectedRecipient),
            (Rcpt, 551, RelayRejectedRecipient),
            (Rcpt, 553, RelayRejectedRecipient),
            (Rcpt, 450, RelayBusy),
            (Rcpt, 503, RelayProtocolError),
            (Data, 554, RelayRejectedMessage),
            (DataEnd, 552, MessageTooLarge),
            (DataEnd, 554, RelayRejectedMessage),
            (DataEnd, 451, RelayBusy),
        ];
        for (phase, code, expected) in cases {
            assert_eq!(error_code(phase, code), expected, "{} {code}", phase.name());
        }
    }

    #[test]
    fn documented_smtp_replies_are_what_the_mapping_does() {
        for code in ErrorCode::ALL {
            for &reply in code.spec().smtp {
                assert!(
                    ALL_PHASES.iter().any(|p| error_code(*p, reply) == *code),
                    "{} lists {reply}, but no phase maps {reply} to it",
                    code.as_str()
                );
            }
        }
        for reply in [421, 450, 451, 452, 454, 503, 530, 534, 535, 550, 551, 552, 553, 554] {
            assert!(ErrorCode::ALL.iter().any(|c| c.spec().smtp.contains(&reply)), "no row lists {reply}");
        }
        let step_ids: Vec<&str> = STEPS.iter().map(|(id, ..)| *id).collect();
        for code in ErrorCode::ALL {
            assert!(
                !code.spec().steps.is_empty() && code.spec().steps.iter().all(|s| step_ids.contains(s)),
                "{}",
                code.as_str()
            );
            assert!(!code.spec().remedy.is_empty());
        }
    }

    fn reply(code: u16, text: &str) -> Reply {
        Reply { code, enhanced: None, lines: vec![text.into()] }
    }

    #[test]
    fn auth_phase_replies_are_never_echoed() {
        for code in [535, 421] {
            let error = Error::new(Phase::Auth, ErrorKind::Reply(reply(code, "bad credentials for AGRldgBw")));
            let json = api_error(&error, "<id@x>").answer().to_string();
            assert!(!json.contains("AGRldgBw"), "{json}");
        }
    }

    #[test]
    fn temporary_failures_are_retryable_with_retry_after() {
        let temporary = [
            Error::new(Phase::Mail, ErrorKind::Reply(reply(451, "later"))),
            Error::new(Phase::Auth, ErrorKind::Reply(reply(454, "4.7.0 temporary authentication failure"))),
            Error::new(Phase::Ehlo, ErrorKind::Timeout),
        ];
        for error in &temporary {
            let api = api_error(error, "<id@x>");
            assert!(api.code.retryable() && api.retry_after == Some(60), "{error}: {api}");
        }
    }

    #[test]
    fn broken_connections_before_the_message_are_unreachable_and_keep_their_cause() {
        let reset = Error::io(Phase::Ehlo, ErrorKind::Io, io::Error::from(io::ErrorKind::ConnectionReset));
        let closed = Error::new(Phase::Mail, ErrorKind::Closed);
        let refused = Error::io(Phase::Connect, ErrorKind::Io, io::Error::from(io::ErrorKind::ConnectionRefused));
        for error in [&reset, &closed, &refused] {
            let api = api_error(error, "<id@x>");
            assert_eq!(api.code, ErrorCode::RelayUnreachable, "{error}");
            assert!(api.code.retryable());
        }
        let source = std::error::Error::source(&reset).map(|s| s.to_string());
        assert_eq!(source, Some(io::Error::from(io::ErrorKind::ConnectionReset).to_string()));
        let mut lost = Error::new(Phase::DataEnd, ErrorKind::Closed);
        lost.message_may_have_left = true;
        let api = api_error(&lost, "<id@x>");
        assert_eq!((api.code, api.message_id.as_deref()), (ErrorCode::DeliveryUnknown, Some("<id@x>")));
    }
}
