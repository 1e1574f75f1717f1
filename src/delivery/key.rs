//! One Idempotency-Key's record, and the state machine its store applies in one step.

use serde::{Deserialize, Serialize};

/// How long an answer is kept.
pub const TTL_SECONDS: u64 = 24 * 60 * 60;

/// What the store keeps for one key: `{"body", "claim", "answer": null | [status, body],
/// "expires_at_ms"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// SHA-256 of the request body, to refuse the key's reuse for another message.
    pub body: String,
    /// The claim this record belongs to: only that request may finish it (a request whose
    /// claim expired cannot finish a later one's).
    pub claim: String,
    /// The first answer; `None` while the first request is still sending.
    pub answer: Option<(u16, String)>,
    /// Milliseconds since the epoch after which the record is gone.
    pub expires_at_ms: u64,
}

/// What a request asks of its key's store: `{"Begin": {"body", "claim", "now_ms",
/// "pending_ms"}}` or `{"Finish": {"body", "claim", "now_ms", "answer"}}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum KeyCall {
    /// Claim the key for a request with this body, for `pending_ms` at most; `claim` is the
    /// request's own random id.
    Begin { body: String, claim: String, now_ms: u64, pending_ms: u64 },
    /// The claimed request is done: keep its answer, or (`None`) free the key.
    Finish { body: String, claim: String, now_ms: u64, answer: Option<(u16, String)> },
}

/// `"Claimed"`, `{"Replay": {"status", "body"}}`, `"Conflict"`, `"InProgress"` or `"Done"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum KeyAnswer {
    Claimed,
    Replay { status: u16, body: String },
    Conflict,
    InProgress,
    Done,
}

/// The key's state machine, applied by its store in one step to the record it holds.
pub fn apply(stored: &mut Option<KeyRecord>, call: KeyCall) -> KeyAnswer {
    let now = match &call {
        KeyCall::Begin { now_ms, .. } | KeyCall::Finish { now_ms, .. } => *now_ms,
    };
    if stored.as_ref().is_some_and(|r| r.expires_at_ms <= now) {
        *stored = None;
    }
    match call {
        KeyCall::Begin { body, claim, pending_ms, .. } => match stored {
            None => {
                *stored = Some(KeyRecord { body, claim, answer: None, expires_at_ms: now + pending_ms });
                KeyAnswer::Claimed
            }
            Some(record) if record.body != body => KeyAnswer::Conflict,
            Some(KeyRecord { answer: Some((status, body)), .. }) => {
                KeyAnswer::Replay { status: *status, body: body.clone() }
            }
            Some(_) => KeyAnswer::InProgress,
        },
        KeyCall::Finish { body, claim, answer, .. } => {
            // Only this request's own claim is finished; another's record is not ours.
            if stored.as_ref().is_some_and(|r| r.claim == claim && r.answer.is_none()) {
                *stored = answer.map(|answer| KeyRecord {
                    body,
                    claim,
                    answer: Some(answer),
                    expires_at_ms: now + TTL_SECONDS * 1000,
                });
            }
            KeyAnswer::Done
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin(stored: &mut Option<KeyRecord>, body: &str, now_ms: u64) -> KeyAnswer {
        apply(stored, KeyCall::Begin { body: body.into(), claim: format!("c{now_ms}"), now_ms, pending_ms: 60_000 })
    }

    fn finish(stored: &mut Option<KeyRecord>, claim: &str, now_ms: u64, answer: Option<(u16, String)>) {
        apply(stored, KeyCall::Finish { body: "a".into(), claim: claim.into(), now_ms, answer });
    }

    #[test]
    fn one_claim_then_the_first_answer_until_it_expires() {
        let mut stored = None;
        assert_eq!(begin(&mut stored, "a", 0), KeyAnswer::Claimed);
        assert_eq!(begin(&mut stored, "a", 10), KeyAnswer::InProgress);
        assert_eq!(begin(&mut stored, "b", 10), KeyAnswer::Conflict);
        finish(&mut stored, "c0", 20, Some((200, "{}".into())));
        assert_eq!(begin(&mut stored, "a", 30), KeyAnswer::Replay { status: 200, body: "{}".into() });
        assert_eq!(begin(&mut stored, "a", 20 + TTL_SECONDS * 1000), KeyAnswer::Claimed, "expired after 24 h");
    }

    #[test]
    fn a_failed_send_frees_the_key_and_a_dead_claim_expires() {
        let mut stored = None;
        assert_eq!(begin(&mut stored, "a", 0), KeyAnswer::Claimed);
        finish(&mut stored, "c0", 5, None);
        assert_eq!(stored, None);
        assert_eq!(begin(&mut stored, "a", 6), KeyAnswer::Claimed);
        assert_eq!(begin(&mut stored, "a", 59_999), KeyAnswer::InProgress);
        assert_eq!(begin(&mut stored, "a", 60_006), KeyAnswer::Claimed, "the claim of a request that died expired");
        // The first request, still alive after its claim expired, cannot finish the new one.
        finish(&mut stored, "c6", 60_010, None);
        assert_eq!(begin(&mut stored, "a", 60_020), KeyAnswer::InProgress);
    }
}
