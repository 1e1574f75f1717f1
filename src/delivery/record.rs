//! What the ledger keeps of a queued message: its status and what its attempts came to.

use super::transaction::Rejected;
use crate::error::{ApiError, SmtpDetail};
use serde::{Deserialize, Serialize};

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
/// Boxed (see `boxed_parts!`): records travel in the `Result`s of every ledger call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Record(Box<RecordParts>);

boxed_parts!(Record => RecordParts);

/// What a [`Record`] holds. Members that say nothing (no next attempt, no reply yet, not
/// dead-lettered, no tags) are left out of its JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordParts {
    pub id: String,
    pub status: Status,
    pub message_id: String,
    pub attempts: u32,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    pub updated_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<u64>,
    pub accepted: Vec<String>,
    pub rejected: Vec<Rejected>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ApiError>,
    /// The form it came from, for submissions of a web form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<String>,
    /// The message went to the dead-letter queue after its last attempt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dead_lettered: bool,
    /// Who it is from and to, and its subject: what a status answer says about the message.
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub subject: String,
    /// The tags it was sent with (`/emails`, the Resend-compatible API).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// When it was scheduled for (`scheduled_at`), in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<u64>,
    /// The slot of the relay's quota (`SMTP_RATE`) this message holds: when it comes, the
    /// message is sent without taking another token. Milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_slot_at: Option<u64>,
}

/// A tag of the Resend-compatible API: `{"name", "value"}`, both ASCII letters, digits, `_`
/// and `-`, kept with the message's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    pub name: String,
    pub value: String,
}

/// What a claim comes to: `{"Granted": record}`, `"Done"` or `{"Busy": ms}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Claimed {
    /// This attempt may send; the record as it now stands.
    Granted(Record),
    /// Nothing to do: the status is final, or there is no such message.
    Done,
    /// Another attempt holds the message (a queue redelivery while it runs): ask again after
    /// this many milliseconds, when that attempt's lease ends.
    Busy(u64),
}

/// The ledger's claim, as every ledger applies it to the record it holds: `queued`, or
/// `sending` whose lease (`lease_ms` from the attempt's start, longer than any send) has run
/// out because its attempt died, becomes `sending` with one more attempt; a final status
/// refuses. The caller holds the record exclusively (one Durable Object, one call).
pub fn claim(record: &mut Record, now_ms: u64, lease_ms: u64) -> Claimed {
    if record.status.is_final() {
        return Claimed::Done;
    }
    let lease_ends = record.updated_at.saturating_add(lease_ms);
    if record.status == Status::Sending && now_ms < lease_ends {
        return Claimed::Busy(lease_ends - now_ms);
    }
    record.status = Status::Sending;
    record.attempts += 1;
    record.updated_at = now_ms;
    record.next_attempt_at = None;
    Claimed::Granted(record.clone())
}

/// Final records a retention run of one ledger deletes at most: a run stays short, and the
/// next one follows at once while there is more.
pub const RETENTION_BATCH: usize = 500;

/// When a ledger's retention runs next, after a run at `now_ms` that deleted `deleted` records
/// (at most [`RETENTION_BATCH`]): at once while there may be more, else when the oldest
/// final record left expires, else never (until a record ends and arms it again).
pub fn next_retention_run(
    now_ms: u64,
    retention_ms: u64,
    deleted: usize,
    oldest_final_left: Option<u64>,
) -> Option<u64> {
    if deleted >= RETENTION_BATCH {
        return Some(now_ms + 1_000);
    }
    oldest_final_left.map(|created_at| created_at.saturating_add(retention_ms).max(now_ms + 1_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued() -> Record {
        Record::from_parts(RecordParts {
            id: "x".into(),
            status: Status::Queued,
            message_id: "<x@y>".into(),
            attempts: 0,
            created_at: 0,
            updated_at: 0,
            next_attempt_at: None,
            accepted: vec![],
            rejected: vec![],
            smtp: None,
            last_error: None,
            form: None,
            dead_lettered: false,
            from: String::new(),
            to: vec![],
            subject: String::new(),
            tags: vec![],
            scheduled_at: None,
            relay_slot_at: None,
        })
    }

    #[test]
    fn retention_runs_again_at_once_while_a_batch_was_full_then_when_the_oldest_expires() {
        let day = 86_400_000;
        assert_eq!(next_retention_run(10 * day, day, RETENTION_BATCH, Some(0)), Some(10 * day + 1_000));
        assert_eq!(next_retention_run(10 * day, day, 3, Some(10 * day - 5)), Some(11 * day - 5));
        // Already expired (a record that ended long after it was created): soon, not in the past.
        assert_eq!(next_retention_run(10 * day, day, 3, Some(day)), Some(10 * day + 1_000));
        assert_eq!(next_retention_run(10 * day, day, 3, None), None, "nothing left to expire");
    }

    #[test]
    fn an_attempt_in_flight_is_not_claimed_twice_until_its_lease_ends() {
        let mut record = queued();
        assert!(matches!(claim(&mut record, 1_000, 60_000), Claimed::Granted(_)));
        assert_eq!(claim(&mut record, 2_000, 60_000), Claimed::Busy(59_000), "a redelivery while it runs");
        assert!(matches!(claim(&mut record, 61_000, 60_000), Claimed::Granted(r) if r.attempts == 2), "it died");
        record.status = Status::Delivered;
        assert_eq!(claim(&mut record, 200_000, 60_000), Claimed::Done);
    }
}
