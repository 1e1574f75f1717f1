//! Submitting one message: render it (and sign it, with DKIM set up), then send it through a
//! warm session of the pool or over a session of its own.

use super::env::{Environment, Unavailable, WarmUnavailable};
use super::quota::{self, Token};
use super::record::Record;
use super::shard;
use super::suppression;
use super::transaction::{api_error, Outcome, SessionUse, Submission, Transaction};
use crate::address::EmailAddress;
use crate::config::Config;
use crate::dkim;
use crate::error::{ApiError, Details, ErrorCode};
use crate::join_all;
use crate::message::Content;
use crate::smtp::client::{Network, Session};

/// An outcome, the session to QUIT once the answer has gone out (a session opened for this
/// send alone), and the message's record to write then (none when nothing was rendered).
pub struct Submitted<N: Network> {
    pub outcome: Outcome,
    pub after: Option<Session<N>>,
    pub record: Option<Record>,
}

/// Largest message sent through a warm session. A larger one goes over a session of its own:
/// handing it to the pool's object would copy it whole twice more (its request, and the
/// object's read of it), while the round trips a warm session saves are small beside the time
/// the message itself takes on the wire.
pub const WARM_MAX_BYTES: usize = 1024 * 1024;

/// Renders the message and, with a token of the relay's quota (`SMTP_RATE`), submits it:
/// through a warm session of the pool when `SMTP_SESSIONS` is above zero and the message is
/// at most [`WARM_MAX_BYTES`], else over a session of its own.
pub async fn submit<E: Environment>(env: &E, config: &Config, submission: &Submission) -> Submitted<E> {
    let failed = |error| Submitted { outcome: Outcome::failed(error), after: None, record: None };
    let id = match new_id(config) {
        Ok(id) => id,
        Err(error) => return failed(error),
    };
    let transaction = match render(env, config, submission, &id).await {
        Ok(transaction) => transaction,
        Err(error) => return failed(error),
    };
    if let Err(error) = quota_now(env, config).await {
        return failed(error);
    }
    let started = env.now_millis();
    let mut record = Record::accepted(id, &transaction, &submission.content, started);
    let (outcome, after) = if config.smtp_sessions > 0 && transaction.message.len() <= WARM_MAX_BYTES {
        (through_warm_session(env, config, &transaction).await, None)
    } else {
        match Session::open(env.clone(), &config.relay).await {
            Err((error, transcript)) => {
                let result = Err(api_error(&error, &transaction.message_id));
                (Outcome { result, transcript, round_trips: 0, session: SessionUse::New }, None)
            }
            Ok(mut session) => {
                let result = transaction.run(&mut session).await.map_err(|e| api_error(&e, &transaction.message_id));
                let outcome = Outcome {
                    result,
                    transcript: session.take_transcript(),
                    round_trips: session.round_trips(),
                    session: SessionUse::New,
                };
                (outcome, Some(session))
            }
        }
    };
    record.attempts = 1;
    record.note_attempt(outcome.result.clone(), started, env.now_millis(), None);
    Submitted { outcome, after, record: Some(record) }
}

/// A random id for a new message, naming one of the `LEDGER_SHARDS` ledger shards.
pub fn new_id(config: &Config) -> Result<String, ApiError> {
    let mut random = [0u8; 20];
    getrandom::fill(&mut random)
        .map_err(|_| ApiError::new(ErrorCode::Misconfigured, "no source of randomness for the message id"))?;
    Ok(shard::new_id(config.ledger_shards, random))
}

/// `transaction` on one of the `SMTP_SESSIONS` warm sessions, warm first: the first one that
/// is free takes it. Session 0 is asked first, so sends one at a time all find the same warm
/// session; another is opened only while the ones before it are busy, so the pool grows under
/// concurrency, not by chance. When every one is busy, the send waits for one (picked by its
/// Message-ID, so waiters spread). A failure of the session's object itself is reported as the
/// table says: `delivery_unknown` once it had the message.
pub async fn through_warm_session<E: Environment>(env: &E, config: &Config, transaction: &Transaction) -> Outcome {
    let sessions = config.smtp_sessions.max(1);
    let mut sent = Ok(None);
    for index in 0..sessions {
        sent = env.send_warm(transaction, index, false).await;
        if !matches!(sent, Ok(None)) {
            break;
        }
    }
    if let Ok(None) = sent {
        let spread = transaction.message_id.bytes().fold(0u32, |sum, b| sum.wrapping_mul(31).wrapping_add(b.into()));
        sent = env.send_warm(transaction, spread % sessions, true).await;
    }
    match sent {
        Ok(Some(outcome)) => outcome,
        // The object had the message and gave no answer (a waiting send is never turned away):
        // it may have sent it.
        Ok(None) | Err(WarmUnavailable { handed_over: true }) => {
            let mut error = ApiError::new(
                ErrorCode::DeliveryUnknown,
                "the warm session did not answer after taking the message; it may have been delivered, so it is not retried",
            );
            error.message_id = Some(transaction.message_id.clone());
            Outcome::failed(error)
        }
        Err(WarmUnavailable { handed_over: false }) => Outcome::failed(ApiError::new(
            ErrorCode::Misconfigured,
            "SMTP_SESSION_POOL (the Durable Object binding for warm sessions) is not usable; or set SMTP_SESSIONS=0",
        )),
    }
}

/// Renders `submission` for its recipients not on the suppression list, with a fresh
/// Message-ID and the time of now, and signs it when `DKIM_PRIVATE_KEY` is set: for
/// `DKIM_DOMAIN`, else the domain of its `From`.
pub async fn render<E: Environment>(
    env: &E,
    config: &Config,
    submission: &Submission,
    id: &str,
) -> Result<Transaction, ApiError> {
    let suppressed = screen(env, &submission.content).await?;
    render_screened(env, config, submission, id, suppressed).await
}

/// [`render`], for a submission already screened: `suppressed` are its recipients on the list.
pub async fn render_screened<E: Environment>(
    env: &E,
    config: &Config,
    submission: &Submission,
    id: &str,
    suppressed: Vec<String>,
) -> Result<Transaction, ApiError> {
    let now = env.now_millis();
    let mut transaction = Transaction::render(submission, suppressed, &config.message_id_domain, now)?;
    if let Some(domain) = &config.bounce_domain {
        transaction.ask_for_reports(id, domain);
    }
    let Some(key) = &config.dkim else { return Ok(transaction) };
    let from = submission.content.from.email.domain();
    let unsigned = dkim::prepare(&transaction.message, key, key.domain.as_deref().unwrap_or(from), now / 1000);
    let signature = env.dkim_sign(key, &unsigned.signing_input).await.map_err(|_| {
        ApiError::new(
            ErrorCode::Misconfigured,
            "DKIM_PRIVATE_KEY could not be used to sign (the runtime refused the key)",
        )
    })?;
    dkim::finish(&mut transaction.message, unsigned, &signature);
    Ok(transaction)
}

/// A place in the relay's quota for one message, when `SMTP_RATE` is set (`Token::Now` when
/// it is not): now or refused, or with `reserve` held in a later window. An error when the
/// quota cannot be asked: then nothing may be sent, the quota being there to protect the
/// relay account.
pub async fn quota_token<E: Environment>(env: &E, config: &Config, reserve: bool) -> Result<Token, ApiError> {
    if config.smtp_rate.is_empty() {
        return Ok(Token::Now);
    }
    env.take_relay_token(&config.relay.account(), &config.smtp_rate, reserve).await.map_err(|Unavailable| {
        let mut error = ApiError::new(
            ErrorCode::StorageUnavailable,
            "the relay's quota could not be checked (the RELAY_QUOTA binding); nothing was sent",
        );
        error.retry_after = Some(1);
        error
    })
}

/// [`quota_token`] for a send that answers now: none is `relay_rate_limited`.
pub async fn quota_now<E: Environment>(env: &E, config: &Config) -> Result<(), ApiError> {
    match quota_token(env, config, false).await? {
        Token::Now => Ok(()),
        Token::Later(wait_ms) | Token::Refused(wait_ms) => Err(quota::rate_limited(&config.smtp_rate, wait_ms)),
    }
}

/// The recipients of `content` on the suppression list ([`left_out`]), asked of each object
/// that keeps one of them once, all at once.
pub async fn screen<E: Environment>(env: &E, content: &Content) -> Result<Vec<String>, ApiError> {
    let found = suppressed_keys(env, content.envelope_recipients().into_iter()).await?;
    left_out(content, &found)
}

/// Those of `recipients` (of one message or of a batch) on the suppression list, as
/// [`suppression::key`] writes them: each object that keeps one of them asked once, all at
/// once. A list that cannot be asked stops the send (a suppressed address must not get mail
/// because a store was down); the caller may retry.
pub async fn suppressed_keys<'a, E: Environment>(
    env: &E,
    recipients: impl Iterator<Item = &'a EmailAddress>,
) -> Result<Vec<String>, ApiError> {
    let mut asks: Vec<(u8, Vec<String>)> = Vec::new();
    for recipient in recipients {
        let key = suppression::key_of(recipient);
        let shard = suppression::shard_of(&key);
        match asks.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, keys)) if keys.contains(&key) => {}
            Some((_, keys)) => keys.push(key),
            None => asks.push((shard, vec![key])),
        }
    }
    let answers = join_all(asks.iter().map(|(shard, keys)| env.suppressed(*shard, keys))).await;
    let mut found = Vec::new();
    for answer in answers {
        found.extend(answer.map_err(|Unavailable| suppression::unavailable())?.into_iter().map(|s| s.address));
    }
    Ok(found)
}

/// The envelope recipients of `content` whose keys `found` holds. Every recipient suppressed
/// is `recipient_suppressed`: nothing would be sent.
pub fn left_out(content: &Content, found: &[String]) -> Result<Vec<String>, ApiError> {
    let recipients = content.envelope_recipients();
    let suppressed: Vec<String> =
        (recipients.iter()).filter(|r| found.contains(&suppression::key_of(r))).map(|r| r.to_string()).collect();
    if !suppressed.is_empty() && suppressed.len() == recipients.len() {
        let mut details = Details::default();
        suppressed.iter().for_each(|address| details.add(address.as_str(), "is on the suppression list"));
        let mut error = ApiError::new(
            ErrorCode::RecipientSuppressed,
            format!("every recipient ({}) is on the suppression list; nothing was sent", suppressed.len()),
        );
        (error.details, error.details_omitted) = (details.kept, details.omitted);
        return Err(error);
    }
    Ok(suppressed)
}
