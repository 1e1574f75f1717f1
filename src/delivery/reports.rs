//! What reports do: a delivery status notification or a feedback report that names one of our
//! messages (by its VERP address, else its ENVID) adds events to that message's record, may
//! change its status, and puts hard-bounced and complaining addresses on the suppression list.
//!
//! The two sins, and what keeps each away:
//! - a duplicate: a report that arrives twice finds its events already in the record and adds
//!   nothing; the suppression list keeps an address's first entry;
//! - a loss: the record is changed first, then the suppression list; a failure of either
//!   fails the handler, so Email Routing answers the reporting MTA with a temporary failure
//!   and it sends the report again (a report's own sender is empty: nothing bounces). Sent
//!   again, the record adds nothing, yet the suppressions are asked for again, since they are
//!   worked out from the report and the record, not from what changed.
//!
//! A report for an unknown id, or about a recipient the message never had, changes nothing;
//! so does anything that is not a report (an auto-reply). Each is counted.

use serde::{Deserialize, Serialize};

use super::record::{Event, EventType, Record, Status};
use super::suppression::{self, Reason, Suppression};
use crate::report::{Action, Kind};

/// One thing a report says about one recipient: `delivered`, `delayed`, `bounced` (with
/// `hard` for a permanent failure) or `complained`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub kind: EventType,
    /// The address the report names (`Final-Recipient`), none for a complaint that names none.
    pub recipient: Option<String>,
    /// `Original-Recipient`, the address as our envelope had it, when the report gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostic: Option<String>,
    /// A permanent failure (`failed` with a `5.x.x` status): the address is suppressed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hard: bool,
}

/// What a report's entries are, as findings; none for what is not a report.
pub fn findings(kind: &Kind) -> Vec<Finding> {
    match kind {
        Kind::Delivery(entries) => entries
            .iter()
            .filter_map(|entry| {
                let kind = match entry.action {
                    Action::Failed => EventType::Bounced,
                    Action::Delayed => EventType::Delayed,
                    _ if entry.is_success() => EventType::Delivered,
                    // Delivered, relayed or expanded without a 2.x.x status says nothing certain.
                    _ => return None,
                };
                Some(Finding {
                    kind,
                    recipient: Some(entry.recipient.clone()),
                    original: entry.original.clone(),
                    status: Some(entry.status.clone()),
                    diagnostic: entry.diagnostic.clone(),
                    hard: entry.is_hard_bounce(),
                })
            })
            .collect(),
        Kind::Complaint { feedback_type, recipients } => {
            let complaint = |recipient: Option<&String>| Finding {
                kind: EventType::Complained,
                recipient: recipient.cloned(),
                original: None,
                status: None,
                diagnostic: Some(feedback_type.clone()),
                hard: false,
            };
            match recipients.is_empty() {
                true => vec![complaint(None)],
                false => recipients.iter().map(|r| complaint(Some(r))).collect(),
            }
        }
        Kind::Other(_) => Vec::new(),
    }
}

/// What a report did to one record (it travels back from the ledger's object as JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Applied {
    /// Findings about a recipient the message had.
    pub matched: usize,
    /// Of those, the ones the record did not have yet (0 for a report that came before).
    pub added: usize,
    /// Addresses for the suppression list (every hard bounce and complaint matched, new or not:
    /// adding an address twice changes nothing).
    pub suppress: Vec<Suppression>,
}

impl Record {
    /// Applies a report's findings at `now`: an event per finding about a recipient the relay
    /// accepted for this message that the record does not have already; then the status, when
    /// the message was sent: `bounced` once a recipient bounced, `delivered` once every
    /// accepted recipient was delivered. A complaint leaves the status as it was.
    pub fn apply_findings(&mut self, findings: &[Finding], now: u64) -> Applied {
        let mut applied = Applied::default();
        for finding in findings {
            let Some(recipient) = self.accepted_recipient(finding) else { continue };
            applied.matched += 1;
            if finding.hard || finding.kind == EventType::Complained {
                let (reason, detail) = match finding.kind {
                    EventType::Complained => (Reason::Complaint, finding.diagnostic.clone()),
                    _ => (Reason::Bounce, Some(detail_of(finding))),
                };
                applied.suppress.push(Suppression {
                    address: suppression::key(&recipient).unwrap_or_else(|| recipient.clone()),
                    reason,
                    detail: detail.map(|d| suppression::short_detail(&d)),
                    message_id: Some(self.id.clone()),
                    created_at: now,
                });
            }
            let seen = self.events.iter().any(|e| {
                e.kind == finding.kind
                    && e.recipient.as_deref() == Some(recipient.as_str())
                    && e.status == finding.status
            });
            if seen {
                continue;
            }
            let mut event = Event::new(finding.kind, now);
            event.recipient = Some(recipient);
            event.status = finding.status.clone();
            event.diagnostic = finding.diagnostic.clone();
            self.push_event(event);
            applied.added += 1;
        }
        if applied.added > 0 {
            self.updated_at = now;
            if matches!(self.status, Status::Sent | Status::Unknown | Status::Delivered | Status::Bounced) {
                self.status = self.status_from_reports().unwrap_or(self.status);
            }
        }
        applied
    }

    /// The recipient of this message a finding is about: the accepted address its original
    /// or final recipient names (case-insensitively: some MTAs change a local part's case, and
    /// the choice is only among this message's recipients), or for a complaint that names
    /// nobody, the message's only recipient.
    fn accepted_recipient(&self, finding: &Finding) -> Option<String> {
        let named: Vec<&String> = [&finding.original, &finding.recipient].into_iter().flatten().collect();
        if named.is_empty() {
            return match (finding.kind, self.accepted.as_slice()) {
                (EventType::Complained, [only]) => Some(only.clone()),
                _ => None,
            };
        }
        self.accepted.iter().find(|a| named.iter().any(|n| n.eq_ignore_ascii_case(a))).cloned()
    }

    /// `bounced` when a recipient's latest final report is a bounce, `delivered` when every
    /// accepted recipient's is a delivery; `None` while reports are missing.
    fn status_from_reports(&self) -> Option<Status> {
        let latest = |recipient: &String| {
            (self.events.iter().rev())
                .filter(|e| e.recipient.as_ref() == Some(recipient))
                .find(|e| matches!(e.kind, EventType::Delivered | EventType::Bounced))
                .map(|e| e.kind)
        };
        let outcomes: Vec<Option<EventType>> = self.accepted.iter().map(latest).collect();
        if outcomes.contains(&Some(EventType::Bounced)) {
            return Some(Status::Bounced);
        }
        (!outcomes.is_empty() && outcomes.iter().all(|o| *o == Some(EventType::Delivered))).then_some(Status::Delivered)
    }
}

/// `5.1.1 550 5.1.1 <x@example.org>: Recipient address rejected`.
fn detail_of(finding: &Finding) -> String {
    match (&finding.status, &finding.diagnostic) {
        (Some(status), Some(diagnostic)) => format!("{status} {diagnostic}"),
        (Some(status), None) => status.clone(),
        (None, Some(diagnostic)) => diagnostic.clone(),
        (None, None) => String::new(),
    }
}
