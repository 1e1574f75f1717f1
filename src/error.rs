//! The error table: the single source of truth for every error code the Worker can answer.
//!
//! Each code has a stable name, an HTTP status, whether a retry may help, and a sentence for
//! people. The Worker serves this table at `GET /v1/errors` so the `www/` page and the tests
//! read the same rows; nothing else in the tree spells these codes out.

use serde::Serialize;

/// One row of the error table.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ErrorSpec {
    pub code: &'static str,
    pub status: u16,
    pub retryable: bool,
    /// What happened, for people reading the table or an error page.
    pub meaning: &'static str,
}

macro_rules! error_codes {
    ($($variant:ident => $code:literal, $status:literal, $retryable:literal, $meaning:literal;)*) => {
        /// Every failure a caller can see.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            /// Every code, in the order the table shows them.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// This code's row of the table.
            pub fn spec(self) -> &'static ErrorSpec {
                match self {
                    $(ErrorCode::$variant => &ErrorSpec {
                        code: $code, status: $status, retryable: $retryable, meaning: $meaning,
                    },)*
                }
            }
        }
    };
}

error_codes! {
    InvalidRequest => "invalid_request", 400, false,
        "The body is not parseable JSON or form data.";
    ValidationFailed => "validation_failed", 422, false,
        "A field is invalid: a bad address, CR/LF or control characters in a header field, no body, or too many recipients.";
    Unauthorized => "unauthorized", 401, false,
        "The API key is missing or wrong.";
    ForbiddenOrigin => "forbidden_origin", 403, false,
        "The request comes from an origin this form does not allow.";
    RecipientNotAllowed => "recipient_not_allowed", 403, false,
        "A recipient is outside ALLOWED_RECIPIENTS.";
    SenderNotAllowed => "sender_not_allowed", 403, false,
        "The requested From address is outside ALLOWED_FROM.";
    CaptchaFailed => "captcha_failed", 403, false,
        "The Turnstile token is missing or invalid.";
    IdempotencyConflict => "idempotency_conflict", 409, false,
        "The Idempotency-Key was already used, within 24 hours, for a different request.";
    RequestInProgress => "request_in_progress", 409, true,
        "A request with the same Idempotency-Key is still being sent.";
    NotFound => "not_found", 404, false,
        "No such route or form.";
    MethodNotAllowed => "method_not_allowed", 405, false,
        "The route exists but not for this HTTP method.";
    PayloadTooLarge => "payload_too_large", 413, false,
        "The request body is over the size limit.";
    MessageTooLarge => "message_too_large", 413, false,
        "The message is larger than the relay accepts (its SIZE limit, or a 552 reply).";
    RateLimited => "rate_limited", 429, true,
        "Too many requests; wait for Retry-After seconds.";
    RelayUnreachable => "relay_unreachable", 502, true,
        "The TCP connection to the SMTP relay failed.";
    RelayTlsUnavailable => "relay_tls_unavailable", 502, false,
        "The relay does not offer STARTTLS, so nothing was sent.";
    RelayTlsFailed => "relay_tls_failed", 502, false,
        "The TLS handshake with the relay failed (for example, its certificate does not verify).";
    RelayAuthFailed => "relay_auth_failed", 502, false,
        "The relay refused the SMTP credentials.";
    RelayBusy => "relay_busy", 503, true,
        "The relay answered with a temporary failure (421, 450, 451, 452 or another 4xx).";
    RelayRejectedSender => "relay_rejected_sender", 502, false,
        "The relay permanently refused the envelope sender (5xx at MAIL FROM).";
    RelayRejectedRecipient => "relay_rejected_recipient", 422, false,
        "The relay permanently refused every recipient (5xx at RCPT TO).";
    RelayRejectedMessage => "relay_rejected_message", 502, false,
        "The relay permanently refused the message at the end of DATA.";
    RelayCapabilityMissing => "relay_capability_missing", 502, false,
        "The message needs an SMTP extension the relay does not offer (SMTPUTF8 for a non-ASCII address, 8BITMIME for 8-bit content).";
    RelayProtocolError => "relay_protocol_error", 502, false,
        "The relay broke the SMTP protocol: a malformed reply, a bad sequence (503) or unexpected bytes.";
    RelayTimeout => "relay_timeout", 504, true,
        "The relay did not answer within the time allowed for a step.";
    DeliveryUnknown => "delivery_unknown", 502, false,
        "The connection broke after the message was sent and before the relay answered; it may have been delivered. Not retried.";
    Misconfigured => "misconfigured", 500, false,
        "The Worker's configuration is missing or invalid; the message names the variable.";
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        self.spec().code
    }
    pub fn status(self) -> u16 {
        self.spec().status
    }
    pub fn retryable(self) -> bool {
        self.spec().retryable
    }
}

/// The SMTP side of a failure: what the relay said, and in which phase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SmtpDetail {
    pub code: u16,
    pub enhanced: Option<String>,
    pub text: String,
    pub phase: &'static str,
}

/// A failure as the HTTP layer answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub smtp: Option<SmtpDetail>,
    /// Set for `delivery_unknown`, so a caller can recognise a duplicate later.
    pub message_id: Option<String>,
    /// Seconds, for `Retry-After`.
    pub retry_after: Option<u32>,
    /// For `validation_failed`: each bad field and what is wrong with it.
    pub details: Vec<(String, String)>,
    /// The SMTP conversation up to the failure; shown only in debug mode.
    pub transcript: Option<crate::smtp::transcript::Transcript>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            smtp: None,
            message_id: None,
            retry_after: None,
            details: Vec::new(),
            transcript: None,
        }
    }

    pub fn with_smtp(mut self, smtp: SmtpDetail) -> Self {
        self.smtp = Some(smtp);
        self
    }

    /// The JSON body of PRODUCT.md: `{"error":{"code","message","retryable","smtp"?}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut error = serde_json::json!({
            "code": self.code.as_str(),
            "message": self.message,
            "retryable": self.code.retryable(),
        });
        if let Some(smtp) = &self.smtp {
            error["smtp"] = serde_json::json!(smtp);
        }
        if !self.details.is_empty() {
            let details: Vec<_> = self
                .details
                .iter()
                .map(|(field, message)| serde_json::json!({"field": field, "message": message}))
                .collect();
            error["details"] = serde_json::json!(details);
        }
        if let Some(id) = &self.message_id {
            error["message_id"] = serde_json::json!(id);
        }
        serde_json::json!({ "error": error })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// How many codes the table has.
pub const ERROR_TABLE_LEN: usize = ErrorCode::ALL.len();

/// The whole table as JSON, for `GET /v1/errors` and the `www/` page.
pub fn table_json() -> serde_json::Value {
    let rows: Vec<&ErrorSpec> = ErrorCode::ALL.iter().map(|c| c.spec()).collect();
    serde_json::json!({ "errors": rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_and_statuses_are_errors() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let spec = code.spec();
            assert!(seen.insert(spec.code), "duplicate code {}", spec.code);
            assert!(spec.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!((400..600).contains(&spec.status), "{} has status {}", spec.code, spec.status);
            assert!(!spec.meaning.is_empty());
        }
    }

    #[test]
    fn product_contract_statuses() {
        let expect = [
            (ErrorCode::InvalidRequest, "invalid_request", 400),
            (ErrorCode::ValidationFailed, "validation_failed", 422),
            (ErrorCode::Unauthorized, "unauthorized", 401),
            (ErrorCode::RelayRejectedRecipient, "relay_rejected_recipient", 422),
            (ErrorCode::RelayBusy, "relay_busy", 503),
            (ErrorCode::RelayTimeout, "relay_timeout", 504),
            (ErrorCode::Misconfigured, "misconfigured", 500),
        ];
        for (code, name, status) in expect {
            assert_eq!((code.as_str(), code.status()), (name, status));
        }
    }

    #[test]
    fn error_json_shape() {
        let error = ApiError::new(ErrorCode::RelayBusy, "try later").with_smtp(SmtpDetail {
            code: 451,
            enhanced: Some("4.3.0".into()),
            text: "local error".into(),
            phase: "mail",
        });
        let json = error.to_json();
        assert_eq!(json["error"]["code"], "relay_busy");
        assert_eq!(json["error"]["retryable"], true);
        assert_eq!(json["error"]["smtp"]["code"], 451);
        assert_eq!(json["error"]["smtp"]["enhanced"], "4.3.0");
        assert_eq!(json["error"]["smtp"]["phase"], "mail");
    }
}
