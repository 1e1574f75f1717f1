//! `GET /v1/messages/{id}` and `GET /v1/messages?status=failed&limit=50&after=…`: what became
//! of messages (form submissions included, with the form's name). API key required.

use serde_json::{json, Value};

use super::auth::authorized;
use super::request::RequestHead;
use super::response::HttpResponse;
use crate::config::Config;
use crate::delivery::env::Environment;
use crate::delivery::listing;
use crate::delivery::queue::{Record, Status};
use crate::delivery::record::Filter;
use crate::delivery::shard::{self, Cursor};
use crate::error::{ApiError, ErrorCode};

/// Most records one list answers.
const MAX_LIST: u32 = 100;
/// Longest `q` (subject or address search).
const MAX_SEARCH: usize = 48;

/// The ledger could not be reached (for the status routes here and the Resend API's).
pub(crate) fn unavailable() -> ApiError {
    let mut error = ApiError::new(ErrorCode::StorageUnavailable, "the delivery ledger could not be reached");
    error.retry_after = Some(5);
    error
}

/// A record as the routes answer it: with `last_event`, the type of its newest event.
fn answer(record: &Record) -> Value {
    let mut answer = serde_json::to_value(record).expect("records are plain data");
    answer["last_event"] = json!(record.last_event().map(|kind| kind.as_str()));
    answer
}

/// One message's record.
pub async fn get<E: Environment>(
    env: &E,
    config: Result<&Config, &ApiError>,
    head: &RequestHead,
    id: &str,
) -> HttpResponse {
    if let Err(response) = authorized(config, head) {
        return response;
    }
    let not_found = || HttpResponse::error(&ApiError::new(ErrorCode::NotFound, "no queued message has that id"));
    if shard::shard_of(id).is_none() {
        return not_found();
    }
    match env.load_record(id).await {
        Ok(Some(record)) => HttpResponse::json(200, &answer(&record)),
        Ok(None) => not_found(),
        Err(_) => HttpResponse::error(&unavailable()),
    }
}

/// The latest records of every shard, newest first: `?status=` one of queued, sending, sent,
/// delivered, bounced, failed, unknown (all when absent), `?q=` text in the subject or a
/// recipient (1 to 48 bytes, ASCII letters in any case), `?limit=` 1 to 100 (default 50), `?after=` the
/// `next` of the page before (`null` on the last page).
pub async fn list<E: Environment>(env: &E, config: Result<&Config, &ApiError>, head: &RequestHead) -> HttpResponse {
    let config = match authorized(config, head) {
        Ok(config) => config,
        Err(response) => return response,
    };
    let mut status = None;
    let mut search = None;
    let mut limit = 50;
    let mut after = None;
    for (name, value) in form_urlencoded::parse(head.query.as_bytes()) {
        let bad = |why: &str| {
            let mut error = ApiError::new(ErrorCode::ValidationFailed, format!("{name} {why}"));
            error.details = vec![(name.to_string(), why.to_string())];
            HttpResponse::error(&error)
        };
        match name.as_ref() {
            "status" => match Status::parse(&value) {
                Some(s) => status = Some(s),
                None => return bad("must be queued, sending, sent, delivered, bounced, failed or unknown"),
            },
            // The ledger's LIKE patterns hold at most 50 bytes: the text and its wildcards.
            "q" => match value.len() {
                1..=MAX_SEARCH if value.len() + value.matches(['%', '_', '\\']).count() <= MAX_SEARCH => {
                    search = Some(value.into_owned())
                }
                _ => return bad("must be 1 to 48 bytes of a subject or an address"),
            },
            "limit" => match value.parse::<u32>().ok().filter(|n| (1..=MAX_LIST).contains(n)) {
                Some(n) => limit = n,
                None => return bad("must be a number from 1 to 100"),
            },
            "after" => match Cursor::parse(&value) {
                Some(cursor) => after = Some(cursor),
                None => return bad("must be the next of an earlier page"),
            },
            _ => {}
        }
    }
    let filter = Filter { status, search: search.as_deref() };
    match listing::newest_first(env, config.ledger_shards, &filter, after.as_ref(), limit).await {
        Ok((records, next)) => {
            let messages: Vec<Value> = records.iter().map(answer).collect();
            HttpResponse::json(200, &json!({ "messages": messages, "next": next.map(|n| n.to_string()) }))
        }
        Err(_) => HttpResponse::error(&unavailable()),
    }
}
