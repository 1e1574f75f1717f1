//! What the ledger keeps of a queued message: its status and what its attempts came to.

use serde::{Deserialize, Serialize};

use super::transaction::Rejected;
use crate::error::{ApiError, SmtpDetail};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Sending,
    Delivered,
    Failed,
    Unknown,
}

impl Status {
    pub const ALL: [Status; 5] = [Status::Queued, Status::Sending, Status::Delivered, Status::Failed, Status::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sending => "sending",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
            Status::Unknown => "unknown",
        }
    }

    pub fn parse(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// What the status means, for people (the www page shows these).
    pub fn meaning(self) -> &'static str {
        match self {
            Status::Queued => "Stored and waiting for its next attempt (next_attempt_at says when).",
            Status::Sending => "An attempt is under way (or died; the queue delivers the message again).",
            Status::Delivered => "The relay accepted the message (smtp holds its reply). Final.",
            Status::Failed => "Refused for good (a 5xx), or out of attempts (then in the dead-letter queue). Final.",
            Status::Unknown => "The connection broke after the message was sent: it may have been delivered, so it is never resent. Final.",
        }
    }

    /// Nothing more will happen to the message.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Delivered | Status::Failed | Status::Unknown)
    }
}

/// What the ledger keeps of one queued message, and what `GET /v1/messages/{id}` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub status: Status,
    pub message_id: String,
    pub attempts: u32,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    pub updated_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<u64>,
    pub accepted: Vec<String>,
    pub rejected: Vec<Rejected>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ApiError>,
    /// The form it came from, for submissions of a web form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form: Option<String>,
    /// The message went to the dead-letter queue after its last attempt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dead_lettered: bool,
}

/// The ledger's claim, as every ledger applies it to the record it holds: `queued` or
/// `sending` (an attempt that died) becomes `sending` with one more attempt; a final status
/// refuses. The caller holds the record exclusively (one Durable Object, one call).
pub fn claim(record: &mut Record, now_ms: u64) -> bool {
    if record.status.is_final() {
        return false;
    }
    record.status = Status::Sending;
    record.attempts += 1;
    record.updated_at = now_ms;
    record.next_attempt_at = None;
    true
}
