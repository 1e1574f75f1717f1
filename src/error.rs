//! The error table: the single source of truth for every error code the Worker can answer.
//!
//! Each code has a stable name, an HTTP status, whether a retry may help, and a sentence for
//! people. The Worker serves this table at `GET /v1/errors` so the `www/` page and the tests
//! read the same rows; nothing else in the tree spells these codes out.

use serde::de::{self, Deserialize, Deserializer};
use serde::{Serialize, Serializer};
use serde_json::{json, Value};

/// One row of the error table.
#[derive(Debug, PartialEq, Eq)]
pub struct ErrorSpec {
    pub code: &'static str,
    pub status: u16,
    pub retryable: bool,
    /// SMTP reply codes that lead here (see `delivery::transaction::error_code`).
    pub smtp: &'static [u16],
    /// Steps of the send flow where it can happen (the ids the `www/` page draws).
    pub steps: &'static [&'static str],
    /// What happened, for people reading the table or an error page.
    pub meaning: &'static str,
    /// What the caller or the owner should do about it.
    pub remedy: &'static str,
}

/// The steps of a send, in order, as the `www/` page draws them: id, who talks to whom
/// (`client`, `worker`, `relay`), and what happens.
pub const STEPS: &[(&str, &str, &str, &str)] = &[
    ("request", "client", "worker", "HTTP request: POST /v1/send (API key) or /v1/forms/{form}"),
    ("validation", "worker", "worker", "Request validated into typed values; policy checked"),
    ("mime", "worker", "worker", "MIME message assembled (Date, Message-ID, encodings)"),
    (
        "queue",
        "worker",
        "worker",
        "Queued mode: the message is stored (R2, the ledger, the queue) and answered 202; a queue consumer goes on from here",
    ),
    ("connect", "worker", "relay", "TCP connect to SMTP_HOST:SMTP_PORT"),
    ("greeting", "relay", "worker", "220 greeting"),
    ("ehlo", "worker", "relay", "EHLO; the relay lists its extensions (must include STARTTLS)"),
    ("starttls", "worker", "relay", "STARTTLS → 220; any byte after it aborts the session"),
    ("tls", "worker", "relay", "TLS handshake; the relay's certificate is verified"),
    ("ehlo_tls", "worker", "relay", "EHLO again over TLS; earlier extensions are forgotten"),
    ("auth", "worker", "relay", "AUTH PLAIN / LOGIN / XOAUTH2 → 235"),
    (
        "mail",
        "worker",
        "relay",
        "MAIL FROM with SIZE, BODY, SMTPUTF8, DSN (with PIPELINING, MAIL, RCPT and BDAT go out together)",
    ),
    (
        "rcpt",
        "worker",
        "relay",
        "RCPT TO, once per recipient; refused ones are reported, the others still get the message",
    ),
    ("data", "worker", "relay", "BDAT n LAST and the message (or DATA and the dot-stuffed message) → 250"),
    ("answer", "worker", "client", "HTTP answer with the relay's final reply"),
    ("quit", "worker", "relay", "QUIT, after the answer has gone out"),
    (
        "report",
        "relay",
        "worker",
        "Later, with BOUNCE_DOMAIN: the delivery report comes back to the Worker's email handler; the message turns delivered or bounced, and a bounced address is suppressed",
    ),
];

macro_rules! error_codes {
    ($($variant:ident => $code:literal, $status:literal, $retryable:literal, $smtp:expr, $steps:expr,
       $meaning:literal, $remedy:literal;)*) => {
        /// Every failure a caller can see.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            /// Every code, in the order the table shows them.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable name callers see.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status of an answer with this code.
            pub fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// Whether the same request may succeed later.
            pub fn retryable(self) -> bool {
                match self { $(ErrorCode::$variant => $retryable,)* }
            }

            /// This code's whole row, prose included. Only the table (`www/v1/errors`, written
            /// from it natively) reads the prose: the Worker answers with the three above, so
            /// the sentences stay out of its bundle.
            pub fn spec(self) -> &'static ErrorSpec {
                match self {
                    $(ErrorCode::$variant => &ErrorSpec {
                        code: $code, status: $status, retryable: $retryable, smtp: &$smtp, steps: &$steps,
                        meaning: $meaning, remedy: $remedy,
                    },)*
                }
            }
        }
    };
}

const RELAY_STEPS: [&str; 9] = ["greeting", "ehlo", "starttls", "ehlo_tls", "auth", "mail", "rcpt", "data", "quit"];
const RELAY_STEPS_WITH_CONNECT: [&str; 9] =
    ["connect", "greeting", "ehlo", "starttls", "ehlo_tls", "auth", "mail", "rcpt", "data"];

error_codes! {
    InvalidRequest => "invalid_request", 400, false, [], ["request"],
        "The body is not parseable JSON or form data.",
        "Send valid JSON (Content-Type: application/json) or form data.";
    ValidationFailed => "validation_failed", 422, false, [], ["validation"],
        "A field is invalid: a bad address, CR/LF or control characters in a header field, no body, or too many recipients.",
        "Fix the fields listed in error.details; do not retry unchanged.";
    Unauthorized => "unauthorized", 401, false, [], ["request"],
        "The API key is missing or wrong.",
        "Send Authorization: Bearer <key> with a key from API_KEYS.";
    ForbiddenOrigin => "forbidden_origin", 403, false, [], ["request"],
        "The request comes from an origin this form does not allow.",
        "Post from a page whose origin is in the form's allowed_origins.";
    RecipientSuppressed => "recipient_suppressed", 422, false, [], ["validation"],
        "Every recipient is on the suppression list (a hard bounce, a complaint, or added by the owner), so nothing was sent. When only some are, the others get the message and these are listed in rejected with this code.",
        "Do not send to them again; remove an address with DELETE /v1/suppressions/{address} only if you know it works now.";
    RecipientNotAllowed => "recipient_not_allowed", 403, false, [], ["validation"],
        "A recipient is outside ALLOWED_RECIPIENTS.",
        "Send only to allowed recipients, or widen ALLOWED_RECIPIENTS.";
    SenderNotAllowed => "sender_not_allowed", 403, false, [], ["validation"],
        "The requested From address is outside ALLOWED_FROM.",
        "Leave from unset (MAIL_FROM is used) or add the address to ALLOWED_FROM.";
    CaptchaFailed => "captcha_failed", 403, false, [], ["request"],
        "The Turnstile token is missing or invalid.",
        "Complete the Turnstile challenge and submit again.";
    IdempotencyConflict => "idempotency_conflict", 409, false, [], ["request"],
        "The Idempotency-Key was already used, within 24 hours, for a different request.",
        "Use a new Idempotency-Key for a new message.";
    RequestInProgress => "request_in_progress", 409, true, [], ["request"],
        "A request with the same Idempotency-Key is still being sent.",
        "Wait Retry-After seconds and retry with the same key.";
    NotFound => "not_found", 404, false, [], ["request"],
        "No such route or form.",
        "Check the URL and the form name in FORMS.";
    MethodNotAllowed => "method_not_allowed", 405, false, [], ["request"],
        "The route exists but not for this HTTP method.",
        "Use the method the message names (POST for sends).";
    RequestTimeout => "request_timeout", 408, true, [], ["request"],
        "The request body arrived too slowly (REQUEST_BODY_TIMEOUT_MS).",
        "Send the whole body promptly; retry on a better connection.";
    PayloadTooLarge => "payload_too_large", 413, false, [], ["request"],
        "The request body, or a file, is over the size limit.",
        "Send less: smaller or fewer attachments (MAX_REQUEST_BYTES, max_file_bytes).";
    MessageTooLarge => "message_too_large", 413, false, [552], ["mail", "data"],
        "The message is larger than the relay accepts (its SIZE limit, or a 552 reply).",
        "Send a smaller message; the relay's SIZE is the limit.";
    RateLimited => "rate_limited", 429, true, [], ["request"],
        "Too many requests; wait for Retry-After seconds.",
        "Wait Retry-After seconds, then try again.";
    RelayRateLimited => "relay_rate_limited", 429, true, [], ["connect"],
        "The relay's sending quota (SMTP_RATE) has no room now, so nothing was sent; queued messages wait for it on their own.",
        "Wait Retry-After seconds, or queue the message (Prefer: respond-async) to have it sent when there is room; raise SMTP_RATE only as far as the relay allows.";
    StorageUnavailable => "storage_unavailable", 503, true, [], ["queue"],
        "The queue, the message store or the delivery ledger could not be reached; nothing was queued.",
        "Retry after Retry-After seconds; if it persists, check the DELIVERY_QUEUE, MESSAGE_BODIES and DELIVERY_LEDGER bindings.";
    RelayUnreachable => "relay_unreachable", 502, true, [], RELAY_STEPS_WITH_CONNECT,
        "The TCP connection to the SMTP relay failed, or broke before the message was sent.",
        "Retry later; if it persists, check SMTP_HOST and SMTP_PORT (not 25).";
    RelayTlsUnavailable => "relay_tls_unavailable", 502, false, [454], ["ehlo", "starttls"],
        "The relay does not offer STARTTLS, so nothing was sent.",
        "Use a relay that offers STARTTLS, or SMTP_SECURITY=tls on its implicit-TLS port.";
    RelayTlsFailed => "relay_tls_failed", 502, false, [], ["tls"],
        "The TLS handshake with the relay failed (for example, its certificate does not verify).",
        "Fix the relay's certificate (name, chain, expiry); verification is never turned off.";
    RelayAuthFailed => "relay_auth_failed", 502, false, [530, 534, 535], ["auth"],
        "The relay refused the SMTP credentials.",
        "Check SMTP_USERNAME, SMTP_PASSWORD and SMTP_AUTH with the relay's provider.";
    RelayBusy => "relay_busy", 503, true, [421, 450, 451, 452, 454], RELAY_STEPS,
        "The relay answered with a temporary failure (421, 450, 451, 452, 454 at AUTH, or another 4xx).",
        "Retry after Retry-After seconds; the relay said it may work later.";
    RelayRejectedSender => "relay_rejected_sender", 502, false, [550, 553], ["mail"],
        "The relay permanently refused the envelope sender (5xx at MAIL FROM).",
        "Use a sender the relay accepts for this account (MAIL_FROM, ALLOWED_FROM).";
    RelayRejectedRecipient => "relay_rejected_recipient", 422, false, [550, 551, 553], ["rcpt"],
        "The relay permanently refused every recipient (5xx at RCPT TO); nothing was delivered.",
        "Check the recipients' addresses; do not retry unchanged.";
    RelayRejectedMessage => "relay_rejected_message", 502, false, [554], ["data"],
        "The relay permanently refused the message at the end of DATA.",
        "Read smtp.text: the content was refused (spam, policy); change it before retrying.";
    RelayCapabilityMissing => "relay_capability_missing", 502, false, [], ["mail"],
        "The message needs an SMTP extension the relay does not offer (SMTPUTF8 for a non-ASCII address, 8BITMIME for 8-bit content).",
        "Use ASCII addresses, or a relay that offers SMTPUTF8.";
    RelayProtocolError => "relay_protocol_error", 502, false, [503], RELAY_STEPS,
        "The relay broke the SMTP protocol: a malformed reply, a bad sequence (503) or unexpected bytes.",
        "Not retried automatically; report it to the relay's operator with the transcript.";
    RelayTimeout => "relay_timeout", 504, true, [], RELAY_STEPS,
        "The relay did not answer within the time allowed for a step.",
        "Retry later; raise SMTP_*_TIMEOUT_MS if the relay is known to be slow.";
    DeliveryUnknown => "delivery_unknown", 502, false, [], ["data"],
        "The connection broke after the message was sent and before the relay answered; it may have been delivered. Not retried.",
        "Do not resend blindly: look for the Message-ID in the answer at the recipient first.";
    Misconfigured => "misconfigured", 500, false, [], ["request"],
        "The Worker's configuration is missing or invalid; the message names the variable.",
        "The owner fixes the named variable (wrangler.toml or wrangler secret put).";
}

/// A code is written by its name (`"relay_busy"`).
impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|code| code.as_str() == name)
            .ok_or_else(|| de::Error::custom("not a code of the error table"))
    }
}

/// The SMTP side of a failure: what the relay said, and in which phase:
/// `{"code", "enhanced": null | "x.y.z", "text", "phase"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpDetail {
    pub code: u16,
    pub enhanced: Option<String>,
    pub text: String,
    pub phase: String,
}

/// A failure as the HTTP layer answers it. (Serialized, it is whole, for handing it between
/// the Worker and its Durable Objects: `{"code", "message", "smtp", "message_id",
/// "retry_after", "details": [[field, message], …]}`; callers see [`ApiError::answer`].)
///
/// Boxed: every `Result` of the request path carries one, and a pointer-sized error keeps each
/// `?` a move of one word rather than of the whole record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ApiError(Box<ApiErrorParts>);

/// What an [`ApiError`] holds (reached through it by `Deref`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiErrorParts {
    pub code: ErrorCode,
    pub message: String,
    pub smtp: Option<SmtpDetail>,
    /// Set for `delivery_unknown`, so a caller can recognise a duplicate later.
    pub message_id: Option<String>,
    /// Seconds, for `Retry-After`.
    pub retry_after: Option<u32>,
    /// For `validation_failed`: each bad field and what is wrong with it, at most
    /// [`MAX_DETAILS`] (collected with [`ApiError::add_detail`], which counts the rest).
    #[serde(default)]
    pub details: Vec<(String, String)>,
    /// How many more problems were found than `details` holds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub details_omitted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Most `details` an error answer lists; past them it only counts the rest
/// (`"details_omitted": N`), so a request of a thousand bad items draws a small answer.
pub const MAX_DETAILS: usize = 20;

/// Problems collected one by one, of which the first [`MAX_DETAILS`] are kept (field and
/// message built only for those) and the rest counted.
#[derive(Debug, Default)]
pub struct Details {
    pub kept: Vec<(String, String)>,
    pub omitted: usize,
}

impl Details {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.kept.len() < MAX_DETAILS {
            self.kept.push((field.into(), message.into()));
        } else {
            self.omitted += 1;
        }
    }

    /// Lists this problem before the others (one about the whole request, found after those
    /// about its items), so that the cap never hides it.
    pub fn add_first(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.kept.insert(0, (field.into(), message.into()));
        if self.kept.len() > MAX_DETAILS {
            self.kept.pop();
            self.omitted += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty() && self.omitted == 0
    }

    /// `field: message; …` of the kept ones, and how many more: for an error's message.
    pub fn summary(&self) -> String {
        let mut summary = self.kept.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; ");
        if self.omitted > 0 {
            summary += &format!("; and {} more", self.omitted);
        }
        summary
    }

    /// A `validation_failed` error listing these problems.
    pub fn into_error(self) -> ApiError {
        let mut error = ApiError::new(ErrorCode::ValidationFailed, self.summary());
        error.details = self.kept;
        error.details_omitted = self.omitted;
        error
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::from_parts(ApiErrorParts {
            code,
            message: message.into(),
            smtp: None,
            message_id: None,
            retry_after: None,
            details: Vec::new(),
            details_omitted: 0,
        })
    }

    pub fn with_smtp(mut self, smtp: SmtpDetail) -> Self {
        self.smtp = Some(smtp);
        self
    }

    /// The answer's body: `{"error":{"code","message","retryable","smtp"?,"details"?,
    /// "details_omitted"?,"message_id"?}}`. At most [`MAX_DETAILS`] details, whatever `details`
    /// holds; `details_omitted` (present only when above 0) counts the rest.
    pub fn answer(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message, "retryable": self.code.retryable()});
        if let Some(smtp) = &self.smtp {
            error["smtp"] = json!(smtp);
        }
        if !self.details.is_empty() {
            let shown = self.details.iter().take(MAX_DETAILS);
            error["details"] = shown.map(|(field, message)| json!({"field": field, "message": message})).collect();
        }
        let omitted = self.details_omitted + self.details.len().saturating_sub(MAX_DETAILS);
        if omitted > 0 {
            error["details_omitted"] = json!(omitted);
        }
        if let Some(id) = &self.message_id {
            error["message_id"] = json!(id);
        }
        // Also in the Retry-After header; here too, for an item of a batch, which has none.
        if let Some(seconds) = self.retry_after {
            error["retry_after"] = json!(seconds);
        }
        json!({ "error": error })
    }
}

boxed_parts!(ApiError => ApiErrorParts);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// How many codes the table has.
pub const ERROR_TABLE_LEN: usize = ErrorCode::ALL.len();

/// The whole table as JSON, for `GET /v1/errors` and the `www/` page, with the flow's steps.
pub fn table_json() -> Value {
    let rows: Vec<Value> = ErrorCode::ALL
        .iter()
        .map(|code| {
            let spec = code.spec();
            json!({"code": spec.code, "status": spec.status, "retryable": spec.retryable, "smtp": spec.smtp,
            "steps": spec.steps, "meaning": spec.meaning, "remedy": spec.remedy})
        })
        .collect();
    let steps: Vec<Value> =
        STEPS.iter().map(|&(id, from, to, title)| json!({"id": id, "from": from, "to": to, "title": title})).collect();
    json!({"errors": rows, "steps": steps})
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
            phase: "mail".into(),
        });
        assert_eq!(
            error.answer().to_string(),
            r#"{"error":{"code":"relay_busy","message":"try later","retryable":true,"smtp":{"code":451,"enhanced":"4.3.0","text":"local error","phase":"mail"}}}"#
        );
        let mut whole = error.clone();
        whole.details.push(("to".into(), "bad".into()));
        whole.message_id = Some("<a@b>".into());
        whole.retry_after = Some(30);
        let written = serde_json::to_string(&whole).unwrap();
        assert!(!written.contains("details_omitted"), "written only when some were: {written}");
        assert_eq!(serde_json::from_str::<ApiError>(&written).unwrap(), whole);
    }

    #[test]
    fn details_are_capped_where_they_are_collected_and_the_rest_counted() {
        let mut details = Details::default();
        for i in 0..1000 {
            details.add(format!("to[{i}]"), "is not an address");
        }
        assert_eq!((details.kept.len(), details.omitted), (MAX_DETAILS, 980));
        details.add_first("to", "1000 recipients");
        assert_eq!((details.kept[0].0.as_str(), details.kept[19].0.as_str(), details.omitted), ("to", "to[18]", 981));
        details.kept.remove(0);
        details.kept.push(("to[19]".into(), "is not an address".into()));
        details.omitted -= 1;
        assert!(details.summary().ends_with("to[19]: is not an address; and 980 more"), "{}", details.summary());
        let error = details.into_error();
        let answer = error.answer();
        assert_eq!(answer["error"]["details"].as_array().unwrap().len(), MAX_DETAILS);
        assert_eq!(answer["error"]["details"][19]["field"], "to[19]");
        assert_eq!(answer["error"]["details_omitted"], 980);
        let written = serde_json::to_string(&error).unwrap();
        assert_eq!(serde_json::from_str::<ApiError>(&written).unwrap(), error);

        // Details set by hand are capped in the answer too.
        let mut error = ApiError::new(ErrorCode::ValidationFailed, "many");
        error.details = (0..25).map(|i| (format!("f{i}"), "bad".to_string())).collect();
        let answer = error.answer();
        assert_eq!(
            (answer["error"]["details"].as_array().unwrap().len(), &answer["error"]["details_omitted"]),
            (20, &json!(5))
        );
        assert!(ApiError::new(ErrorCode::ValidationFailed, "one").answer()["error"].get("details_omitted").is_none());
    }
}
