//! Queued delivery: accept a message now, deliver it from a queue consumer, retry what may
//! work later, and keep its status.
//!
//! A message is accepted only once it is stored: the rendered transaction in the body store
//! (R2), its record in the ledger (a Durable Object's SQLite), then its id on the queue. Every
//! attempt sends those same bytes, with the same Message-ID.
//!
//! The two sins, and what keeps each away:
//! - a loss: the answer `202` comes only after all three writes; a transient failure is
//!   retried with backoff (`DELIVERY_RETRY_SECONDS`, `DELIVERY_MAX_ATTEMPTS`); the last failed
//!   attempt goes to the dead-letter queue with its record `failed`; a consumer that dies
//!   mid-batch leaves its messages unacknowledged, and the queue delivers them again;
//! - a duplicate: an attempt first claims the message in the ledger, which refuses one whose
//!   status is final (`delivered`, `failed`, `unknown`), so a queue redelivery never sends a
//!   delivered message; `delivery_unknown` is never retried. The one window left is between
//!   the relay's `250` and the ledger's write of `delivered`: a consumer that dies in it sends
//!   the message again on the redelivery. It is one storage write wide.

use super::env::{Environment, Unavailable};
use super::quota::Token;
pub use super::record::{claim, Claimed, Record, RecordParts, Status, Tag};
use super::submit::{left_out, new_id, quota_token, render, render_screened, through_warm_session, WARM_MAX_BYTES};
use super::transaction::{api_error, Outcome, SessionUse, Submission, Transaction};
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};

/// Most envelope recipients a message can have (the API's limit): the lease of an attempt
/// covers a send to this many.
const MAX_RECIPIENTS: usize = 50;
use crate::smtp::client::Session;

fn storage_error(what: &str) -> ApiError {
    let mut error = ApiError::new(
        ErrorCode::StorageUnavailable,
        format!("the message could not be stored ({what}); nothing was queued"),
    );
    error.retry_after = Some(5);
    error
}

/// What a queued message carries besides its content.
#[derive(Default)]
pub struct Extras<'a> {
    /// The web form it came from.
    pub form: Option<&'a str>,
    /// Tags to keep with its status (the Resend-compatible API).
    pub tags: Vec<Tag>,
    /// Not before this time (milliseconds since the epoch; at most 12 hours ahead, the
    /// queue's longest delay).
    pub send_at: Option<u64>,
    /// The suppression list's answer for this message's recipients, when a batch asked it for
    /// all of its messages at once ([`super::submit::suppressed_keys`]); else it is asked here.
    pub screened: Option<&'a [String]>,
}

/// The queue's longest delivery delay, in seconds.
pub const MAX_DELAY_SECONDS: u64 = 43_200;

/// Renders the message and stores it for the queue: the body, its record, then its id on the
/// queue. The record comes back once all three are written.
pub async fn accept<E: Environment>(
    env: &E,
    config: &Config,
    submission: &Submission,
    extras: Extras<'_>,
) -> Result<Record, ApiError> {
    let now = env.now_millis();
    let id = new_id(config)?;
    let transaction = match extras.screened {
        Some(found) => render_screened(env, config, submission, &id, left_out(&submission.content, found)?).await?,
        None => render(env, config, submission, &id).await?,
    };
    let send_at = extras.send_at.filter(|&at| at > now);
    let delay = send_at.map_or(0, |at| (at - now).div_ceil(1000).min(MAX_DELAY_SECONDS) as u32);
    env.put_body(&id, &transaction.to_bytes()).await.map_err(|_| storage_error("MESSAGE_BODIES, the R2 bucket"))?;
    let mut record = Record::accepted(id.clone(), &transaction, &submission.content, now);
    record.next_attempt_at = Some(send_at.unwrap_or(now));
    record.form = extras.form.map(str::to_string);
    record.tags = extras.tags;
    record.scheduled_at = send_at;
    env.save_record(&record).await.map_err(|_| storage_error("DELIVERY_LEDGER, the Durable Object"))?;
    if env.enqueue(&id, delay).await.is_err() {
        // Not accepted after all: say so in the record too, so nobody waits for it.
        let mut failed = record.clone();
        failed.status = Status::Failed;
        failed.last_error = Some(storage_error("DELIVERY_QUEUE, the queue"));
        let _ = env.save_record(&failed).await;
        return Err(storage_error("DELIVERY_QUEUE, the queue"));
    }
    Ok(record)
}

/// What the consumer does with one queue message after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Done with it (delivered, failed for good, unknown, or nothing to do).
    Ack,
    /// Deliver it again after this many seconds.
    Retry(u32),
}

/// The wait before attempt `attempts + 1`: the configured step for this attempt, the last one
/// repeating, with ±20 % jitter so retries of many messages do not arrive together.
pub fn retry_delay(config: &Config, attempts: u32, jitter: u8) -> u32 {
    let step = (attempts.max(1) - 1) as usize;
    let base = config.retry_seconds.get(step).or(config.retry_seconds.last()).copied().unwrap_or(60);
    let spread = base / 5;
    let offset = (u64::from(spread) * 2 * u64::from(jitter) / 255) as u32;
    (base - spread + offset).min(43_200)
}

/// Errors a later attempt may get past: the relay unreachable, busy or slow, its TLS
/// handshake (a relay mid-restart), the ledger or store unavailable.
fn worth_retrying(error: &ApiError) -> bool {
    error.code.retryable() || error.code == ErrorCode::RelayTlsFailed
}

/// Delivers the messages of one queue batch over one SMTP session (RSET between messages
/// that need it), and says what to do with each.
pub async fn deliver_batch<E: Environment>(env: &E, config: &Config, ids: &[String]) -> Vec<Verdict> {
    let mut session: Option<Session<E>> = None;
    let mut verdicts = Vec::with_capacity(ids.len());
    for id in ids {
        verdicts.push(deliver_one(env, config, id, &mut session).await);
    }
    if let Some(session) = session {
        session.quit().await;
    }
    verdicts
}

async fn deliver_one<E: Environment>(env: &E, config: &Config, id: &str, session: &mut Option<Session<E>>) -> Verdict {
    let now = env.now_millis();
    // The ledger refuses a message whose status is final, so a redelivery sends nothing
    // again, and one that another attempt holds until that attempt's lease (longer than the
    // longest send the settings allow) ends.
    let lease_ms = config.relay.longest_send_millis(MAX_RECIPIENTS) + 60_000;
    let mut record = match env.claim_attempt(id, now, lease_ms).await {
        Ok(Claimed::Granted(record)) => record,
        Ok(Claimed::Done) => return Verdict::Ack,
        Ok(Claimed::Busy(wait_ms)) => return Verdict::Retry(wait_ms.div_ceil(1000).min(43_200) as u32),
        Err(Unavailable) => return Verdict::Retry(retry_delay(config, 1, 128)),
    };
    if let Err(wait_ms) = relay_slot(env, config, &mut record, now).await {
        // Over the relay's quota: back on the queue until its slot, and the attempt it
        // claimed is given back (waiting is not an attempt).
        record.attempts -= 1;
        record.status = Status::Queued;
        record.next_attempt_at = Some(now + wait_ms);
        let _ = env.save_record(&record).await;
        return Verdict::Retry(wait_ms.div_ceil(1000).clamp(1, 43_200) as u32);
    }
    let transaction = match env.get_body(id).await {
        Ok(Some(bytes)) => Transaction::from_bytes(&bytes),
        Ok(None) => None,
        Err(Unavailable) => return Verdict::Retry(retry_delay(config, record.attempts, 128)),
    };
    let started = env.now_millis();
    let outcome = match transaction {
        None => Outcome::failed(ApiError::new(ErrorCode::StorageUnavailable, "the stored message is missing")),
        Some(transaction) => attempt(env, config, &transaction, session).await,
    };
    let ended = env.now_millis();
    let retry = match &outcome.result {
        Err(error) if worth_retrying(error) && record.attempts < config.max_attempts => {
            let mut jitter = [128u8];
            let _ = getrandom::fill(&mut jitter);
            Some(retry_delay(config, record.attempts, jitter[0]))
        }
        _ => None,
    };
    // Tried as often as allowed: the dead-letter queue keeps it for the owner.
    let out_of_attempts = matches!(&outcome.result, Err(error) if worth_retrying(error)) && retry.is_none();
    record.note_attempt(outcome.result, started, ended, retry.map(|delay| ended + u64::from(delay) * 1000));
    if out_of_attempts {
        record.dead_lettered = env.dead_letter(id).await.is_ok();
    }
    let verdict = retry.map_or(Verdict::Ack, Verdict::Retry);
    match env.save_record(&record).await {
        Ok(()) => verdict,
        // A final outcome whose record could not be written is acknowledged all the same:
        // another attempt would send it again. Its record stays `sending`.
        Err(Unavailable) if record.status.is_final() => Verdict::Ack,
        Err(Unavailable) => Verdict::Retry(retry_delay(config, record.attempts, 128)),
    }
}

/// A place of the relay's quota this near is waited for in the consumer: a trip through the
/// queue is counted in whole seconds and comes back when a batch fills, too coarse for a
/// quota counted per second.
const WAIT_IN_PLACE_MS: u64 = 10_000;

/// Whether an attempt may send now under the relay's quota (`SMTP_RATE`), or how many
/// milliseconds it waits on the queue first. A message asks the quota once: a place in a later
/// window is reserved for it and kept in its record, so when it comes back it is sent without
/// asking again, and a backlog leaves in order, a window's count at a time. A place within
/// [`WAIT_IN_PLACE_MS`] is waited for here; one whose window passed while the message was on
/// the queue is given up for a new one, so the relay never gets more than a window's count.
async fn relay_slot<E: Environment>(env: &E, config: &Config, record: &mut Record, now: u64) -> Result<(), u64> {
    let reserved = record.relay_slot_at.take().filter(|at| {
        let closes = config.smtp_rate.iter().map(|limit| (at / limit.period_ms + 1) * limit.period_ms).min();
        closes.is_some_and(|closes| now < closes)
    });
    let at = match reserved {
        Some(at) => at,
        None => match quota_token(env, config, true).await {
            Ok(Token::Now) => return Ok(()),
            Ok(Token::Later(wait_ms) | Token::Refused(wait_ms)) => now + wait_ms,
            // The quota could not be asked: nothing is sent; a later attempt asks again.
            Err(_) => return Err(u64::from(retry_delay(config, 1, 128)) * 1000),
        },
    };
    match at.saturating_sub(now) {
        0 => Ok(()),
        wait_ms if wait_ms <= WAIT_IN_PLACE_MS => {
            env.sleep(wait_ms).await;
            Ok(())
        }
        wait_ms => {
            record.relay_slot_at = Some(at);
            Err(wait_ms)
        }
    }
}

/// One attempt: on a warm session of the pool when `SMTP_SESSIONS` is above zero (one round
/// trip, no handshake per batch) and the message is at most [`WARM_MAX_BYTES`], else on the
/// batch's own session, opening it when there is none (or it failed).
async fn attempt<E: Environment>(
    env: &E,
    config: &Config,
    transaction: &Transaction,
    session: &mut Option<Session<E>>,
) -> Outcome {
    if config.smtp_sessions > 0 && transaction.message.len() <= WARM_MAX_BYTES {
        return through_warm_session(env, config, transaction).await;
    }
    let open = match session {
        Some(open) if open.is_usable() => open,
        _ => match Session::open(env.clone(), &config.relay).await {
            Ok(opened) => session.insert(opened),
            Err((error, transcript)) => {
                *session = None;
                let result = Err(api_error(&error, &transaction.message_id));
                return Outcome { result, transcript, round_trips: 0, session: SessionUse::New };
            }
        },
    };
    let result = transaction.run(open).await.map_err(|e| api_error(&e, &transaction.message_id));
    Outcome { result, transcript: open.take_transcript(), round_trips: open.round_trips(), session: SessionUse::Warm }
}
