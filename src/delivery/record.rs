//! What the ledger keeps of a queued message: its status and what its attempts came to.

use super::transaction::{Rejected, Sent, Transaction};
use crate::error::{ApiError, ErrorCode, SmtpDetail};
use crate::message::Content;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Sending,
    Sent,
    Delivered,
    Bounced,
    Failed,
    Unknown,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Queued,
        Status::Sending,
        Status::Sent,
        Status::Delivered,
        Status::Bounced,
        Status::Failed,
        Status::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Bounced => "bounced",
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
            Status::Sent => "The relay accepted the message (smtp holds its reply). Never sent again; a delivery report may still make it delivered or bounced.",
            Status::Delivered => "Delivery reports (DSNs) said the message reached every recipient the relay accepted.",
            Status::Bounced => "A delivery report said a recipient's server refused the message for good (its events say who and why); that address is now suppressed.",
            Status::Failed => "Refused for good (a 5xx), or out of attempts (then in the dead-letter queue). Final.",
            Status::Unknown => "The connection broke after the message was sent: it may have been delivered, so it is never resent. Final.",
        }
    }

    /// No attempt will be made any more (a report may still change a sent message's status).
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Sending)
    }
}

/// What happened to a message, one entry of its timeline: `{"type", "at", "recipient"?,
/// "status"?, "diagnostic"?, "took_ms"?}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    /// For a report (or a suppressed recipient): whom it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// The relay's reply code (`550`), for an attempt the relay answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The relay's enhanced status code (`5.1.1`), else its reply code; or a report's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The relay's reply text, the error's message, or a report's diagnostic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostic: Option<String>,
    /// How long the attempt took, from connecting (or asking a warm session) to the relay's
    /// last reply, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
}

/// What an [`Event`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// The message was accepted by the Worker: stored for the queue, or about to be sent.
    Accepted,
    /// A recipient was left out: it is on the suppression list.
    Suppressed,
    /// An attempt: the relay accepted the message.
    Sent,
    /// An attempt failed in a way a later one may not: retried at `next_attempt_at`.
    Deferred,
    /// An attempt failed for good, or the last one failed.
    Failed,
    /// The connection broke after the message went out: it may have arrived.
    Unknown,
    /// A report: delivered to the recipient's mailbox (or relayed where no reports go).
    Delivered,
    /// A report: delivery to the recipient is delayed; the remote server keeps trying.
    Delayed,
    /// A report: the recipient's server refused the message for good.
    Bounced,
    /// A feedback report: the recipient marked the message as spam.
    Complained,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Accepted => "accepted",
            EventType::Suppressed => "suppressed",
            EventType::Sent => "sent",
            EventType::Deferred => "deferred",
            EventType::Failed => "failed",
            EventType::Unknown => "unknown",
            EventType::Delivered => "delivered",
            EventType::Delayed => "delayed",
            EventType::Bounced => "bounced",
            EventType::Complained => "complained",
        }
    }
}

impl Event {
    pub fn new(kind: EventType, at: u64) -> Event {
        Event { kind, at, recipient: None, code: None, status: None, diagnostic: None, took_ms: None }
    }

    /// What one attempt came to, started at `started` and ended at `at`: `sent`, `unknown`,
    /// `deferred` (when it will be retried) or `failed`, with what the relay said.
    pub fn of_attempt(result: &Result<Sent, ApiError>, started: u64, at: u64, retried: bool) -> Event {
        let (kind, smtp, message) = match result {
            Ok(sent) => (EventType::Sent, Some(&sent.smtp), None),
            Err(error) if error.code == ErrorCode::DeliveryUnknown => {
                (EventType::Unknown, error.smtp.as_ref(), Some(&error.message))
            }
            Err(error) if retried => (EventType::Deferred, error.smtp.as_ref(), Some(&error.message)),
            Err(error) => (EventType::Failed, error.smtp.as_ref(), Some(&error.message)),
        };
        let mut event = Event::new(kind, at);
        event.code = smtp.map(|smtp| smtp.code);
        event.status = match (smtp, result) {
            (Some(smtp), _) => Some(smtp.enhanced.clone().unwrap_or_else(|| smtp.code.to_string())),
            (None, Err(error)) => Some(error.code.as_str().to_string()),
            (None, Ok(_)) => None,
        };
        event.diagnostic = smtp.map(|smtp| smtp.text.clone()).or(message.cloned());
        event.took_ms = Some(at.saturating_sub(started));
        event
    }
}

/// Most events a record keeps: a message has a few per attempt and per recipient. Past them,
/// the newest replaces the one before it, so the first ones and the last stay.
pub const MAX_EVENTS: usize = 200;

/// What the ledger keeps of one message, and what `GET /v1/messages/{id}` answers.
/// Boxed (see `boxed_parts!`): records travel in the `Result`s of every ledger call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Record(Box<RecordParts>);

boxed_parts!(Record => RecordParts);

/// The version of the record's form this build writes (`"v": 2`).
pub const RECORD_VERSION: u8 = 2;

/// A record written before version 2 (no `"v"`) said `delivered` where the relay had accepted
/// the message: that is `sent` now, `delivered` being what a report says.
impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut parts = RecordParts::deserialize(deserializer)?;
        if parts.v < RECORD_VERSION {
            if parts.status == Status::Delivered {
                parts.status = Status::Sent;
            }
            parts.v = RECORD_VERSION;
        }
        Ok(Record(Box::new(parts)))
    }
}

impl Record {
    /// The record of a message the Worker accepted at `now` (stored for the queue, or about
    /// to be sent): `queued`, no attempt yet, its `accepted` event and one `suppressed` event
    /// per recipient the screen left out.
    pub fn accepted(id: String, transaction: &Transaction, content: &Content, now: u64) -> Record {
        let mut record = Record::from_parts(RecordParts {
            v: RECORD_VERSION,
            id,
            status: Status::Queued,
            message_id: transaction.message_id.clone(),
            attempts: 0,
            created_at: now,
            updated_at: now,
            next_attempt_at: None,
            accepted: Vec::new(),
            rejected: Vec::new(),
            smtp: None,
            last_error: None,
            form: None,
            dead_lettered: false,
            from: match &content.from.name {
                Some(name) => format!("{name} <{}>", content.from.email),
                None => content.from.email.to_string(),
            },
            to: content.to.iter().map(|m| m.email.to_string()).collect(),
            subject: content.subject.clone(),
            tags: Vec::new(),
            scheduled_at: None,
            relay_slot_at: None,
            events: Vec::new(),
        });
        record.push_event(Event::new(EventType::Accepted, now));
        for recipient in &transaction.suppressed {
            let mut event = Event::new(EventType::Suppressed, now);
            event.recipient = Some(recipient.clone());
            record.push_event(event);
        }
        record
    }

    /// What an attempt that started at `started` came to at `ended`: `sent` with the relay's
    /// verdict per recipient, `unknown` (it may have arrived), `queued` again when it is
    /// retried at `retry_at`, else `failed`; and its event.
    pub fn note_attempt(&mut self, result: Result<Sent, ApiError>, started: u64, ended: u64, retry_at: Option<u64>) {
        self.push_event(Event::of_attempt(&result, started, ended, retry_at.is_some()));
        self.updated_at = ended;
        self.next_attempt_at = retry_at;
        match result {
            Ok(sent) => {
                self.status = Status::Sent;
                self.accepted = sent.accepted;
                self.rejected = sent.rejected;
                self.smtp = Some(sent.smtp);
                self.last_error = None;
            }
            Err(error) => {
                self.status = match error.code {
                    ErrorCode::DeliveryUnknown => Status::Unknown,
                    _ if retry_at.is_some() => Status::Queued,
                    _ => Status::Failed,
                };
                self.smtp = error.smtp.clone();
                self.last_error = Some(error);
            }
        }
    }

    /// The type of its newest event (`None` for a record written before events).
    pub fn last_event(&self) -> Option<EventType> {
        self.events.last().map(|event| event.kind)
    }

    /// Adds `event` to the timeline (see [`MAX_EVENTS`]).
    pub fn push_event(&mut self, event: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop();
        }
        self.events.push(event);
    }
}

/// What a [`Record`] holds. Members that say nothing (no next attempt, no reply yet, not
/// dead-lettered, no tags) are left out of its JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordParts {
    /// The form's version ([`RECORD_VERSION`]); 0 (absent) for records written before it.
    #[serde(default)]
    pub v: u8,
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
    /// Its timeline, oldest first (records written before version 2 have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
}

/// A tag of the Resend-compatible API: `{"name", "value"}`, both ASCII letters, digits, `_`
/// and `-`, kept with the message's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    pub name: String,
    pub value: String,
}

/// Which records a listing keeps: of one status, and those whose subject or a recipient
/// (`to`) holds `search`, ASCII letters compared case-insensitively (as SQLite's `LIKE`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Filter<'a> {
    pub status: Option<Status>,
    pub search: Option<&'a str>,
}

impl Filter<'_> {
    pub fn matches(&self, record: &Record) -> bool {
        let holds = |text: &str| {
            let search = self.search.unwrap_or_default().to_ascii_lowercase();
            text.to_ascii_lowercase().contains(&search)
        };
        self.status.is_none_or(|status| record.status == status)
            && (self.search.is_none() || holds(&record.subject) || record.to.iter().any(|to| holds(to)))
    }
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
            v: RECORD_VERSION,
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
            events: vec![],
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
