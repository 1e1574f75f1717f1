//! Submitting one message: render it (and sign it, with DKIM set up), then send it through a
//! warm session of the pool or over a session of its own.

use super::env::{Environment, Unavailable, WarmUnavailable};
use super::quota::{self, Token};
use super::suppression;
use super::transaction::{api_error, Outcome, SessionUse, Submission, Transaction};
use crate::config::Config;
use crate::dkim;
use crate::error::{ApiError, Details, ErrorCode};
use crate::join_all;
use crate::message::Content;
use crate::smtp::client::{Network, Session};

/// An outcome, and the session to QUIT once the answer has gone out (a session opened for
/// this send alone).
pub struct Submitted<N: Network> {
    pub outcome: Outcome,
    pub after: Option<Session<N>>,
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
    let transaction = match render(env, config, submission).await {
        Ok(transaction) => transaction,
        Err(error) => return Submitted { outcome: Outcome::failed(error), after: None },
    };
    if let Err(error) = quota_now(env, config).await {
        return Submitted { outcome: Outcome::failed(error), after: None };
    }
    if config.smtp_sessions > 0 && transaction.message.len() <= WARM_MAX_BYTES {
        return Submitted { outcome: through_warm_session(env, config, &transaction).await, after: None };
    }
    let mut session = match Session::open(env.clone(), &config.relay).await {
        Ok(session) => session,
        Err((error, transcript)) => {
            let result = Err(api_error(&error, &transaction.message_id));
            return Submitted {
                outcome: Outcome { result, transcript, round_trips: 0, session: SessionUse::New },
                after: None,
            };
        }
    };
    let result = transaction.run(&mut session).await.map_err(|e| api_error(&e, &transaction.message_id));
    let outcome = Outcome {
        result,
        transcript: session.take_transcript(),
        round_trips: session.round_trips(),
        session: SessionUse::New,
    };
    Submitted { outcome, after: Some(session) }
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
) -> Result<Transaction, ApiError> {
    let suppressed = screen(env, &submission.content).await?;
    let now = env.now_millis();
    let mut transaction = Transaction::render(submission, suppressed, &config.message_id_domain, now)?;
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

/// The envelope recipients of `content` that are on the list, asked of each object that
/// keeps one of them at once. Every recipient suppressed is `recipient_suppressed`: nothing
/// would be sent. A list that cannot be asked stops the send (a suppressed address must not
/// get mail because a store was down); the caller may retry.
pub async fn screen<E: Environment>(env: &E, content: &Content) -> Result<Vec<String>, ApiError> {
    let recipients = content.envelope_recipients();
    let mut asks: Vec<(u8, Vec<String>)> = Vec::new();
    for recipient in &recipients {
        let key = suppression::key_of(recipient);
        let shard = suppression::shard_of(&key);
        match asks.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, keys)) => keys.push(key),
            None => asks.push((shard, vec![key])),
        }
    }
    let answers = join_all(asks.iter().map(|(shard, keys)| env.suppressed(*shard, keys))).await;
    let mut found = Vec::new();
    for answer in answers {
        found.extend(answer.map_err(|Unavailable| suppression::unavailable())?.into_iter().map(|s| s.address));
    }
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
