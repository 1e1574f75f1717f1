//! The Resend-compatible API: `POST /emails`, `POST /emails/batch`, `GET /emails` and
//! `GET /emails/{id}` with Resend's request and answer shapes, and its error shape
//! `{"statusCode", "name", "message"}`, so an app on Resend's SDK switches to its own relay by
//! setting `RESEND_BASE_URL`. Same API keys and `Idempotency-Key` as `/v1`.
//!
//! Resend's API is asynchronous, and so is this one: every message is accepted into the
//! queue (the answer is its id; `scheduled_at` delays it up to 12 hours) and `GET
//! /emails/{id}` tells what became of it. Resend's other resources (domains, audiences, …)
//! answer 404 in Resend's error shape.
//!
//! Loss and duplicates are the queue's (see `delivery::queue`): an id is answered only once
//! the message is stored; a retried request with the same `Idempotency-Key` gets the first
//! answer again instead of a second message. A batch whose storage fails midway answers `200`
//! with the ids it queued and the indexes it did not (`errors`), and keeps that answer for its
//! key: a retry never queues the stored ones twice (test: `a_batch_the_queue_fails_midway…`).

use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::auth::authorize;
use super::body::{self, BodySource};
use super::input::{from_body, BodyError, Capped};
use super::messages::unavailable;
use super::request::{Platform, RequestHead};
use super::response::{method_not_allowed, HttpResponse};
use super::send::{parse_for, Api, Parsed};
use crate::config::Config;
use crate::delivery::env::Environment;
use crate::delivery::idempotency::{self, Lookup};
use crate::delivery::listing;
use crate::delivery::queue::{self, Extras, Record, Status};
use crate::delivery::record::{EventType, Filter};
use crate::delivery::shard;
use crate::delivery::submit::suppressed_keys;
use crate::error::{ApiError, Details, ErrorCode};
use crate::time::format_rfc3339;

/// Most emails one batch may carry (Resend's limit too).
pub const MAX_BATCH: usize = 100;

/// Every path outside `/v1/` that the Worker (not the `www/` files) is asked for.
pub async fn serve<P: Platform>(
    env: P,
    config: Result<&Config, &ApiError>,
    head: &RequestHead,
    source: impl BodySource,
) -> HttpResponse {
    let method = head.method.as_str();
    let result = match (head.path.as_str(), method) {
        ("/emails", "POST") => with_key(config, head, |c, key| send(&env, c, key, head, source, false)).await,
        ("/emails/batch", "POST") => with_key(config, head, |c, key| send(&env, c, key, head, source, true)).await,
        ("/emails", "GET") => with_key(config, head, |c, _| list(&env, c.ledger_shards, head)).await,
        ("/emails" | "/emails/batch", _) => Err(method_not_allowed("POST")),
        (path, "GET") if path.starts_with("/emails/") && !path[8..].contains('/') => {
            with_key(config, head, |_, _| get(&env, &path[8..])).await
        }
        (path, _) if path.starts_with("/emails/") => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            "updating or canceling a sent or scheduled email is not supported by edge-mailer",
        )),
        (path, _) => Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "{path} is not part of edge-mailer's Resend-compatible API, which has POST /emails, POST \
                 /emails/batch, GET /emails and GET /emails/{{id}} (its own API is under /v1/)"
            ),
        )),
    };
    result.unwrap_or_else(|e| resend_error(head, &e))
}

/// Runs `route` with the configuration and the caller's API key, once both are good: nothing
/// is read for a caller without a key.
async fn with_key<'a, F, Fut>(
    config: Result<&'a Config, &ApiError>,
    head: &'a RequestHead,
    route: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(&'a Config, &'a str) -> Fut,
    Fut: std::future::Future<Output = Result<HttpResponse, ApiError>>,
{
    let config = config.map_err(Clone::clone)?;
    let api_key = authorize(config, head)?;
    route(config, api_key).await
}

/// An error in Resend's shape, with Resend's names for what it has names for; the status is
/// ours (the `/v1` error table), except a wrong key, which Resend answers 403.
pub fn resend_error(head: &RequestHead, error: &ApiError) -> HttpResponse {
    let mut status = error.code.status();
    let name = match error.code {
        ErrorCode::Unauthorized if head.header("authorization").is_none() => "missing_api_key",
        ErrorCode::Unauthorized => {
            status = 403;
            "invalid_api_key"
        }
        ErrorCode::ValidationFailed
        | ErrorCode::InvalidRequest
        | ErrorCode::PayloadTooLarge
        | ErrorCode::MessageTooLarge
        | ErrorCode::RecipientNotAllowed => "validation_error",
        ErrorCode::SenderNotAllowed => "invalid_from_address",
        ErrorCode::NotFound => "not_found",
        ErrorCode::MethodNotAllowed => "method_not_allowed",
        ErrorCode::RateLimited | ErrorCode::RelayRateLimited => "rate_limit_exceeded",
        ErrorCode::IdempotencyConflict => "invalid_idempotent_request",
        ErrorCode::RequestInProgress => "concurrent_idempotent_requests",
        _ => "application_error",
    };
    let body = json!({"statusCode": status, "name": name, "message": error.message});
    let mut response = HttpResponse::json(status, &body);
    if let Some(seconds) = error.retry_after {
        response.headers.push(("retry-after".into(), seconds.to_string()));
    }
    response.error = Some(error.code);
    response
}

/// `POST /emails` (one email, answered `{"id"}`) and `POST /emails/batch` (a list of them,
/// answered `{"data": [{"id"}, …]}`). A batch is validated whole before anything is queued,
/// unless `x-batch-validation: permissive`: then the valid emails are queued and the others
/// listed in `errors` by index.
async fn send<P: Platform>(
    env: &P,
    config: &Config,
    api_key: &str,
    head: &RequestHead,
    mut source: impl BodySource,
    batch: bool,
) -> Result<HttpResponse, ApiError> {
    let body = body::read(env, head, &mut source, config.max_request_bytes, config.request_body_timeout_ms).await?;
    let api = Api::Resend { now_ms: env.now_millis() };
    let permissive = batch && head.header("x-batch-validation").is_some_and(|v| v.eq_ignore_ascii_case("permissive"));
    let emails: Vec<Result<Parsed, ApiError>> = if batch {
        // Each email kept as its text, to be read on its own.
        let emails: Capped<&RawValue, MAX_BATCH> = from_body(&body, b'[').map_err(|e| match e {
            BodyError::Syntax(e) => {
                ApiError::new(ErrorCode::InvalidRequest, format!("the body is not valid JSON: {e}"))
            }
            BodyError::NotA | BodyError::Shape(_) => {
                ApiError::new(ErrorCode::InvalidRequest, "the body must be a JSON array of emails")
            }
        })?;
        if emails.len == 0 || emails.is_over() {
            return Err(ApiError::new(ErrorCode::ValidationFailed, format!("send 1 to {MAX_BATCH} emails")));
        }
        emails.items.iter().map(|email| parse_for(api, email.get().as_bytes(), config)).collect()
    } else {
        vec![Ok(parse_for(api, &body, config)?)]
    };
    if batch && !permissive {
        // Each refused email by index, the first MAX_DETAILS of them, then how many more.
        let mut problems = Details::default();
        for (i, email) in emails.iter().enumerate() {
            if let Err(e) = email {
                problems.add(format!("emails[{i}]"), e.message.as_str());
            }
        }
        if !problems.is_empty() {
            return Err(ApiError::new(ErrorCode::ValidationFailed, problems.summary()));
        }
    }
    // The suppression list is asked once for every recipient of the batch.
    let recipients = emails.iter().flatten().flat_map(|e| e.submission.content.envelope_recipients());
    let found = suppressed_keys(env, recipients).await?;
    let claim = match head.header("idempotency-key") {
        None => None,
        Some(key) => {
            let recipients = emails.iter().flatten().map(|e| e.submission.content.envelope_recipients().len()).sum();
            let ttl = idempotency::pending_ttl_seconds(&config.relay, recipients);
            let scope = match (batch, permissive) {
                (false, _) => "/emails",
                (true, false) => "/emails/batch",
                (true, true) => "/emails/batch permissive",
            };
            match idempotency::begin(env, api_key, key, scope, &body, ttl).await? {
                Lookup::Claimed(claim) => Some(claim),
                Lookup::Replay { status, body } => return Ok(HttpResponse::replayed(status, body)),
            }
        }
    };
    drop(body);

    let mut ids = Vec::new();
    let mut errors = Vec::new();
    let mut last_error = None;
    let mut retry_may_help = false;
    for (index, email) in emails.into_iter().enumerate() {
        let accepted = match email {
            Ok(Parsed { submission, tags, send_at }) => {
                let extras = Extras { form: None, tags, send_at, screened: Some(&found) };
                queue::accept(env, config, &submission, extras).await
            }
            Err(error) => Err(error),
        };
        match accepted {
            Ok(record) => ids.push(json!({"id": record.id})),
            Err(error) => {
                errors.push(json!({"index": index, "message": error.message}));
                retry_may_help |= error.code.retryable();
                last_error = Some(error);
            }
        }
    }
    let queued = ids.len();
    let response = match (batch, last_error) {
        (false, Some(error)) => resend_error(head, &error),
        (false, None) => HttpResponse::json(200, &ids.pop().expect("one email, accepted")),
        // Strict, and storage failed for every email: the error itself, and nothing was queued.
        (true, Some(error)) if ids.is_empty() && !permissive => resend_error(head, &error),
        // Permissive, or storage failing midway: what was queued, and what was not, by index.
        (true, Some(_)) => HttpResponse::json(200, &json!({"data": ids, "errors": errors})),
        (true, None) if permissive => HttpResponse::json(200, &json!({"data": ids, "errors": errors})),
        (true, None) => HttpResponse::json(200, &json!({ "data": ids })),
    };
    if let Some(claim) = claim {
        // The answer is kept for the key once anything was queued (a retry must not queue it
        // twice; the answer says which were not), or when no retry could do better. When
        // nothing was queued and a retry may work, the key is freed for it.
        let keep = queued > 0 || !retry_may_help;
        idempotency::finish(env, claim, response.status, &response.body, keep).await;
    }
    Ok(response)
}

/// Resend's `last_event` for a record: `sent` once the relay accepted it (or the connection
/// broke after the message went out: it may have arrived, and is never resent), then what the
/// reports said (`delivered`, `delivery_delayed`, `bounced`, `complained`).
fn last_event(record: &Record) -> &'static str {
    match (record.status, record.last_event()) {
        (_, Some(EventType::Complained)) => "complained",
        (Status::Sent, Some(EventType::Delayed)) => "delivery_delayed",
        (Status::Queued, _) if record.attempts > 0 => "delivery_delayed",
        (Status::Queued, _) if record.scheduled_at.is_some() => "scheduled",
        (Status::Queued | Status::Sending, _) => "queued",
        (Status::Sent | Status::Unknown, _) => "sent",
        (Status::Delivered, _) => "delivered",
        (Status::Bounced, _) => "bounced",
        (Status::Failed, _) => "failed",
    }
}

/// A record as Resend's email object. The content is not kept with the status, so `html`,
/// `text`, `cc`, `bcc` and `reply_to` are `null`.
fn email_json(record: &Record) -> Value {
    json!({
        "object": "email",
        "id": record.id,
        "to": record.to,
        "from": &record.from,
        "created_at": format_rfc3339(record.created_at),
        "subject": &record.subject,
        "html": Value::Null,
        "text": Value::Null,
        "bcc": Value::Null,
        "cc": Value::Null,
        "reply_to": Value::Null,
        "last_event": last_event(record),
        "scheduled_at": record.scheduled_at.map(format_rfc3339),
        "tags": record.tags,
        "message_id": &record.message_id,
    })
}

/// `GET /emails/{id}`.
async fn get<E: Environment>(env: &E, id: &str) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, "no email has that id");
    if shard::shard_of(id).is_none() {
        return Err(not_found());
    }
    match env.load_record(id).await {
        Ok(Some(record)) => Ok(HttpResponse::json(200, &email_json(&record))),
        Ok(None) => Err(not_found()),
        Err(_) => Err(unavailable()),
    }
}

/// `GET /emails?limit=` (1 to 100, default 20): the newest first.
async fn list<E: Environment>(env: &E, shards: u16, head: &RequestHead) -> Result<HttpResponse, ApiError> {
    let mut limit = 20;
    for (name, value) in form_urlencoded::parse(head.query.as_bytes()) {
        if name == "limit" {
            limit =
                value.parse::<u32>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| {
                    ApiError::new(ErrorCode::ValidationFailed, "limit must be a number from 1 to 100")
                })?;
        }
    }
    let (records, next) =
        listing::newest_first(env, shards, &Filter::default(), None, limit).await.map_err(|_| unavailable())?;
    let has_more = next.is_some();
    let data: Vec<Value> = records.iter().map(email_json).collect();
    Ok(HttpResponse::json(200, &json!({"object": "list", "has_more": has_more, "data": data})))
}
