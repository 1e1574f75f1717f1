//! Signed webhooks: each event of a message that an app would act on, POSTed to `WEBHOOK_URL`
//! in Resend's shape and signed as Standard Webhooks (and Svix, which Resend uses) sign.
//!
//! A webhook is written to its ledger shard's outbox in the same write as the event it tells
//! of (see `platform::objects::DeliveryLedger`), and sent from there until a `2xx` comes back:
//! - a loss: none between the event and its webhook (one write); a failed delivery is tried
//!   again on `WEBHOOK_RETRY_SECONDS`, the last step repeating for about a day; one that never
//!   gets a `2xx` stays in the outbox, marked failed, and is logged — never dropped silently;
//! - a duplicate: at least once, so a receiver may see one twice (an answer lost on the way);
//!   every delivery of one event carries the same id (`webhook-id`), to deduplicate by.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::record::{EventType, Record};
use crate::time::format_rfc3339;

/// The type an event is posted as; `None` for those no webhook tells of (`accepted`, and
/// `unknown`, which says nothing certain).
pub fn type_of(kind: EventType) -> Option<&'static str> {
    Some(match kind {
        EventType::Sent => "email.sent",
        EventType::Deferred | EventType::Delayed => "email.delivery_delayed",
        EventType::Delivered => "email.delivered",
        EventType::Bounced => "email.bounced",
        EventType::Complained => "email.complained",
        EventType::Failed => "email.failed",
        EventType::Suppressed => "email.suppressed",
        EventType::Accepted | EventType::Unknown => return None,
    })
}

/// How the outbox's webhook `id` fared: delivered (a `2xx` at `delivered_at`), still being
/// tried (its next try at `next_at`), or failed for good (neither).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<u64>,
}

/// The outbox ids of `record_id`'s webhooks: `[first, end)` in the ids' order, since they all
/// start `msg_{id}_` (and `` ` `` follows `_`).
pub fn id_range(record_id: &str) -> (String, String) {
    (format!("msg_{record_id}_"), format!("msg_{record_id}`"))
}

impl Delivery {
    /// The place in its record's `events` of the event it tells of (its id ends `_{seq}`).
    pub fn seq(&self) -> Option<usize> {
        self.id.rsplit('_').next().and_then(|seq| seq.parse().ok())
    }
}

/// A delivery as a message's answer shows it, beside the event it tells of: `{"id",
/// "event" (its index in `events`), "type", "status": delivered | retrying | failed,
/// "attempts", "delivered_at"?, "next_at"?}`.
pub fn describe(record: &Record, delivery: &Delivery) -> Value {
    let seq = delivery.seq();
    let kind = seq.and_then(|seq| record.events.get(seq)).and_then(|event| type_of(event.kind));
    let status = match (delivery.delivered_at, delivery.next_at) {
        (Some(_), _) => "delivered",
        (None, Some(_)) => "retrying",
        (None, None) => "failed",
    };
    let mut answer =
        json!({"id": delivery.id, "event": seq, "type": kind, "status": status, "attempts": delivery.attempts});
    if let Some(at) = delivery.delivered_at {
        answer["delivered_at"] = json!(at);
    }
    if let Some(at) = delivery.next_at {
        answer["next_at"] = json!(at);
    }
    answer
}

/// One webhook: its id (the same on every delivery) and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub body: String,
}

/// The webhooks of the events `updated` has beyond those `stored` had (a record's events are
/// only ever added to), in order.
pub fn new_webhooks(stored: Option<&Record>, updated: &Record) -> Vec<Webhook> {
    let known = stored.map_or(0, |record| record.events.len());
    (known..updated.events.len()).filter_map(|seq| webhook(updated, seq)).collect()
}

/// The webhook of event `seq` of `record`, in Resend's shape: `{"type", "created_at",
/// "data": {"email_id", "message_id", "from", "to", "subject", "created_at", "tags"?,
/// "bounce"? | "failed"? | "suppressed"?}}`, its id `msg_{email id}_{seq}`.
pub fn webhook(record: &Record, seq: usize) -> Option<Webhook> {
    let event = record.events.get(seq)?;
    let kind = type_of(event.kind)?;
    let mut data = Map::new();
    data.insert("email_id".into(), json!(record.id));
    data.insert("message_id".into(), json!(record.message_id));
    data.insert("from".into(), json!(record.from));
    data.insert("to".into(), json!(record.to));
    data.insert("subject".into(), json!(record.subject));
    data.insert("created_at".into(), json!(format_rfc3339(record.created_at)));
    if !record.tags.is_empty() {
        let tags: Map<String, Value> = record.tags.iter().map(|t| (t.name.clone(), json!(t.value))).collect();
        data.insert("tags".into(), Value::Object(tags));
    }
    let diagnostic = event.diagnostic.clone().unwrap_or_default();
    let message = match &event.status {
        Some(status) if !diagnostic.starts_with(status.as_str()) => format!("{status} {diagnostic}").trim().to_string(),
        _ => diagnostic,
    };
    match event.kind {
        EventType::Bounced => {
            let permanent = event.status.as_deref().is_some_and(|s| s.starts_with('5'));
            let bounce = json!({
                "message": message,
                "type": if permanent { "Permanent" } else { "Transient" },
                "subType": "General",
                "recipient": event.recipient,
            });
            data.insert("bounce".into(), bounce);
        }
        EventType::Failed => {
            data.insert("failed".into(), json!({ "reason": message }));
        }
        EventType::Suppressed => {
            let suppressed = json!({
                "message": "the recipient is on the suppression list",
                "type": "OnSuppressionList",
                "recipient": event.recipient,
            });
            data.insert("suppressed".into(), suppressed);
        }
        _ => {
            if let Some(recipient) = &event.recipient {
                data.insert("recipient".into(), json!(recipient));
            }
        }
    }
    let body = json!({"type": kind, "created_at": format_rfc3339(event.at), "data": data});
    Some(Webhook { id: format!("msg_{}_{seq}", record.id), body: body.to_string() })
}

/// The signature header's value: `v1,` and the base64 of HMAC-SHA256 over
/// `{id}.{timestamp}.{body}` (Standard Webhooks; Svix signs the same).
pub fn signature(key: &[u8], id: &str, timestamp_seconds: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{timestamp_seconds}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The headers of one delivery: `webhook-id`, `webhook-timestamp`, `webhook-signature` and the
/// same three as `svix-*`, for the receivers that read those.
pub fn headers(key: &[u8], hook: &Webhook, timestamp_seconds: u64) -> Vec<(String, String)> {
    let signed = signature(key, &hook.id, timestamp_seconds, &hook.body);
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    for prefix in ["webhook", "svix"] {
        headers.push((format!("{prefix}-id"), hook.id.clone()));
        headers.push((format!("{prefix}-timestamp"), timestamp_seconds.to_string()));
        headers.push((format!("{prefix}-signature"), signed.clone()));
    }
    headers
}

/// How long one day of retries is, after the schedule's own steps.
const RETRY_TAIL_SECONDS: u64 = 86_400;

/// The wait, in seconds, after failed delivery number `attempts` (1 for the first) before the
/// next one: the schedule's steps in turn, then the last one again until it has repeated for
/// about a day; `None` once that is spent.
pub fn retry_after(schedule: &[u32], attempts: u32) -> Option<u32> {
    let last = *schedule.last()?;
    let step = attempts.max(1) as usize - 1;
    if let Some(delay) = schedule.get(step) {
        return Some(*delay);
    }
    let repeats = (step + 1 - schedule.len()) as u64;
    (repeats * u64::from(last) <= RETRY_TAIL_SECONDS.max(u64::from(last))).then_some(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::webhook_key;

    #[test]
    fn the_signature_is_that_of_standard_webhooks() {
        // The example of the Standard Webhooks specification (and of Svix's documentation).
        let key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signed = signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, r#"{"test": 2432232314}"#);
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(webhook_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), None, "the prefix is required");
        assert_eq!(webhook_key("whsec_not base64!"), None);
        assert_eq!(webhook_key("whsec_"), None);
    }

    #[test]
    fn retries_follow_the_schedule_then_its_last_step_for_about_a_day() {
        let schedule = [10, 60, 300, 1800, 7200, 21600];
        let delays: Vec<u32> = (1..=20).map_while(|n| retry_after(&schedule, n)).collect();
        assert_eq!(delays, [10, 60, 300, 1800, 7200, 21600, 21600, 21600, 21600, 21600]);
        let tail: u32 = delays[schedule.len()..].iter().sum();
        assert!((86_400..=86_400 + 21_600).contains(&tail), "{tail}");
        assert_eq!(retry_after(&[5], 1), Some(5));
        assert_eq!(retry_after(&[], 1), None);
    }
}
