//! What the ledger keeps of a queued message: its status and what its attempts came to.

use super::transaction::Rejected;
use crate::error::{ApiError, SmtpDetail};
use crate::json::{object, Fields, FromJson, ShapeError, ToJson, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record(Box<RecordParts>);

boxed_parts!(Record => RecordParts);

/// What a [`Record`] holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordParts {
    pub id: String,
    pub status: Status,
    pub message_id: String,
    pub attempts: u32,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    pub updated_at: u64,
    pub next_attempt_at: Option<u64>,
    pub accepted: Vec<String>,
    pub rejected: Vec<Rejected>,
    pub smtp: Option<SmtpDetail>,
    pub last_error: Option<ApiError>,
    /// The form it came from, for submissions of a web form.
    pub form: Option<String>,
    /// The message went to the dead-letter queue after its last attempt.
    pub dead_lettered: bool,
    /// Who it is from and to, and its subject: what a status answer says about the message.
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    /// The tags it was sent with (`/emails`, the Resend-compatible API).
    pub tags: Vec<Tag>,
    /// When it was scheduled for (`scheduled_at`), in milliseconds since the Unix epoch.
    pub scheduled_at: Option<u64>,
}

/// A tag of the Resend-compatible API: `{"name", "value"}`, both ASCII letters, digits, `_`
/// and `-`, kept with the message's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
    pub value: String,
}

/// What a claim comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// This attempt may send; the record as it now stands.
    Granted(Record),
    /// Nothing to do: the status is final, or there is no such message.
    Done,
    /// Another attempt holds the message (a queue redelivery while it runs): ask again after
    /// this many milliseconds, when that attempt's lease ends.
    Busy(u64),
}

impl ToJson for Status {
    fn to_json(&self) -> Value<'_> {
        Value::from(self.as_str())
    }
}

impl<'a> FromJson<'a> for Status {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        value.as_str().and_then(Status::parse).ok_or_else(|| ShapeError::expected("a status", value))
    }
}

/// What `GET /v1/messages/{id}` answers, and the ledger keeps: members that say nothing
/// (no next attempt, no reply yet, not dead-lettered, no tags) are left out.
impl ToJson for Record {
    fn to_json(&self) -> Value<'_> {
        let mut record = object! {"id": &self.id, "status": self.status.as_str(), "message_id": &self.message_id,
        "attempts": self.attempts, "created_at": self.created_at,
        "updated_at": self.updated_at};
        if let Some(at) = self.next_attempt_at {
            record.set("next_attempt_at", at);
        }
        record.set("accepted", self.accepted.to_json());
        record.set("rejected", self.rejected.to_json());
        if let Some(smtp) = &self.smtp {
            record.set("smtp", smtp.to_json());
        }
        if let Some(error) = &self.last_error {
            record.set("last_error", error.to_json());
        }
        if let Some(form) = &self.form {
            record.set("form", form);
        }
        if self.dead_lettered {
            record.set("dead_lettered", true);
        }
        record.set("from", &self.from);
        record.set("to", self.to.to_json());
        record.set("subject", &self.subject);
        if !self.tags.is_empty() {
            record.set("tags", self.tags.to_json());
        }
        if let Some(at) = self.scheduled_at {
            record.set("scheduled_at", at);
        }
        record
    }
}

impl<'a> FromJson<'a> for Record {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        Fields::read(value, |fields| {
            Ok(Record::from_parts(RecordParts {
                id: fields.required("id")?,
                status: fields.required("status")?,
                message_id: fields.required("message_id")?,
                attempts: fields.required("attempts")?,
                created_at: fields.required("created_at")?,
                updated_at: fields.required("updated_at")?,
                next_attempt_at: fields.optional("next_attempt_at")?,
                accepted: fields.required("accepted")?,
                rejected: fields.required("rejected")?,
                smtp: fields.optional("smtp")?,
                last_error: fields.optional("last_error")?,
                form: fields.optional("form")?,
                dead_lettered: fields.or_default("dead_lettered")?,
                from: fields.or_default("from")?,
                to: fields.or_default("to")?,
                subject: fields.or_default("subject")?,
                tags: fields.or_default("tags")?,
                scheduled_at: fields.optional("scheduled_at")?,
            }))
        })
    }
}

/// `{"name", "value"}`
impl ToJson for Tag {
    fn to_json(&self) -> Value<'_> {
        object! {"name": &self.name, "value": &self.value}
    }
}

impl<'a> FromJson<'a> for Tag {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        Fields::read(value, |fields| Ok(Tag { name: fields.required("name")?, value: fields.required("value")? }))
    }
}

/// `{"Granted": record}`, `"Done"` or `{"Busy": ms}`
impl ToJson for Claimed {
    fn to_json(&self) -> Value<'_> {
        match self {
            Claimed::Granted(record) => Value::tagged("Granted", record.to_json()),
            Claimed::Done => Value::from("Done"),
            Claimed::Busy(ms) => Value::tagged("Busy", Value::from(*ms)),
        }
    }
}

impl<'a> FromJson<'a> for Claimed {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        match value.variant()? {
            ("Granted", Some(record)) => Ok(Claimed::Granted(Record::from_json(record)?)),
            ("Done", None) => Ok(Claimed::Done),
            ("Busy", Some(ms)) => Ok(Claimed::Busy(u64::from_json(ms)?)),
            _ => Err(ShapeError::new("not a claim")),
        }
    }
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
        })
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
