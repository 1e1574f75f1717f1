//! Relay replies → the error table (PRODUCT.md "Errors"), and the result of a delivery.

use serde::Serialize;

use super::reply::Reply;
use crate::error::{ApiError, ErrorCode, SmtpDetail};

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
    /// The reply to the final `.`: the relay's verdict on the message.
    DataEnd,
    Quit,
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
            Phase::Quit => "quit",
        }
    }
}

/// What the relay said, as answers carry it.
pub fn detail(phase: Phase, reply: &Reply) -> SmtpDetail {
    SmtpDetail {
        code: reply.code,
        enhanced: reply.enhanced.map(|e| e.to_string()),
        text: reply.text(),
        phase: phase.name(),
    }
}

/// The error for a reply that stops the transaction in `phase`.
pub fn reply_error(phase: Phase, reply: &Reply) -> ApiError {
    let code = error_code(phase, reply.code);
    let message = match code {
        ErrorCode::RelayBusy => {
            format!("the relay is temporarily unable to continue at {} ({})", phase.name(), reply.code)
        }
        ErrorCode::RelayAuthFailed => format!("the relay refused authentication ({})", reply.code),
        ErrorCode::RelayRejectedSender => "the relay refused the sender".to_string(),
        ErrorCode::RelayRejectedRecipient => "the relay refused every recipient".to_string(),
        ErrorCode::RelayRejectedMessage => "the relay refused the message".to_string(),
        ErrorCode::MessageTooLarge => "the message is larger than the relay accepts".to_string(),
        ErrorCode::RelayTlsUnavailable => "the relay refused to start TLS".to_string(),
        _ => format!("unexpected reply {} at {}", reply.code, phase.name()),
    };
    let mut detail = detail(phase, reply);
    if code == ErrorCode::RelayAuthFailed || phase == Phase::Auth {
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
        (Phase::Auth, 454 | 530 | 534 | 535 | 538) | (Phase::Auth, 500..=599) => ErrorCode::RelayAuthFailed,
        (Phase::Mail | Phase::Rcpt, 530) => ErrorCode::RelayAuthFailed,
        (Phase::StartTls, 454 | 500..=599) => ErrorCode::RelayTlsUnavailable,
        (_, 400..=499) => ErrorCode::RelayBusy,
        (Phase::Mail | Phase::Data | Phase::DataEnd, 552) => ErrorCode::MessageTooLarge,
        (Phase::Mail, 500..=599) => ErrorCode::RelayRejectedSender,
        (Phase::Rcpt, 500..=599) => ErrorCode::RelayRejectedRecipient,
        (Phase::Data | Phase::DataEnd, 500..=599) => ErrorCode::RelayRejectedMessage,
        _ => ErrorCode::RelayProtocolError,
    }
}

/// One recipient the relay refused while others were accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RejectedRecipient {
    pub email: String,
    pub smtp: SmtpDetail,
}

/// A message the relay accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub accepted: Vec<String>,
    pub rejected: Vec<RejectedRecipient>,
    /// The reply to the end of data.
    pub reply: SmtpDetail,
}

#[cfg(test)]
mod tests {
    use super::*;

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
            (Auth, 454, RelayAuthFailed),
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
    fn auth_failure_does_not_echo_relay_text() {
        let reply = Reply { code: 535, enhanced: None, lines: vec!["bad credentials for AGRldgBw".into()] };
        let error = reply_error(Phase::Auth, &reply);
        assert_eq!(error.code, ErrorCode::RelayAuthFailed);
        let json = error.to_json().to_string();
        assert!(!json.contains("AGRldgBw"), "{json}");
    }

    #[test]
    fn no_auth_phase_reply_text_is_echoed() {
        let reply = Reply { code: 421, enhanced: None, lines: vec!["closing, you sent AGRldgBw".into()] };
        let error = reply_error(Phase::Auth, &reply);
        assert_eq!(error.code, ErrorCode::RelayBusy);
        assert!(!error.to_json().to_string().contains("AGRldgBw"));
    }

    #[test]
    fn transient_errors_carry_retry_after() {
        let reply = Reply { code: 451, enhanced: None, lines: vec!["later".into()] };
        assert_eq!(reply_error(Phase::Mail, &reply).retry_after, Some(60));
    }
}
