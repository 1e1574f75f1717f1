//! `GET /v1/messages/{id}` and `GET /v1/messages?status=failed&limit=50&after=…`: what became
//! of messages (form submissions included, with the form's name). API key required.

use std::borrow::Cow;

use serde_json::{json, Value};

use super::auth::{authorized, authorized_query};
use super::body::BodySource;
use super::request::RequestHead;
use super::response::store_failed;
use super::response::HttpResponse;
use crate::config::Config;
use crate::delivery::env::{Environment, Store};
use crate::delivery::listing;
use crate::delivery::queue::{Record, Status};
use crate::delivery::record::Filter;
use crate::delivery::shard::{self, Cursor};
use crate::delivery::webhook;
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

/// The answer when a ledger call failed: `misconfigured` when this deployment has no
/// ledger, else `storage_unavailable` (retry).
pub(crate) fn ledger_failed<E: Environment>(env: &E) -> HttpResponse {
    store_failed(env, Store::Ledger, unavailable())
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
    let config = match authorized(config, head) {
        Ok(config) => config,
        Err(response) => return response,
    };
    let not_found = || HttpResponse::error(&ApiError::new(ErrorCode::NotFound, "no queued message has that id"));
    if shard::shard_of(id).is_none() {
        return not_found();
    }
    match env.load_record(id).await {
        Ok(Some(record)) => {
            let mut answer = answer(&record);
            // With webhooks set up: how each of this message's fared, beside its event.
            if config.webhook.is_some() {
                match env.webhook_deliveries(id).await {
                    Ok(deliveries) => {
                        let described = deliveries.iter().map(|d| webhook::describe(&record, d));
                        answer["webhooks"] = Value::Array(described.collect());
                    }
                    Err(_) => return ledger_failed(env),
                }
            }
            HttpResponse::json(200, &answer)
        }
        Ok(None) => not_found(),
        Err(_) => ledger_failed(env),
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
    match Listing::parse(&mut form_urlencoded::parse(head.query.as_bytes())) {
        Ok(listing) => listing.answer(env, config).await,
        Err(response) => response,
    }
}

/// The largest body `POST /v1/messages/search` reads: four short members.
const MAX_SEARCH_BODY: usize = 4096;

/// `POST /v1/messages/search` with `{"status"?, "q"?, "limit"?, "after"?}`: the listing of
/// [`list`], for a search that should not be in a URL (an address, a subject), where proxies
/// and logs keep URLs.
pub async fn search<E: Environment>(
    env: &E,
    config: Result<&Config, &ApiError>,
    head: &RequestHead,
    mut source: impl BodySource,
) -> HttpResponse {
    let members = ["status", "q", "limit", "after"];
    let (config, input) = match authorized_query(env, config, head, &mut source, MAX_SEARCH_BODY, &members).await {
        Ok(ready) => ready,
        Err(response) => return response,
    };
    let asked = Listing::parse(&mut input.pairs().map(|(name, value)| (Cow::Borrowed(name), value)));
    match asked {
        Ok(listing) => listing.answer(env, config).await,
        Err(response) => response,
    }
}

fn invalid(field: &str, why: &str) -> HttpResponse {
    let mut error = ApiError::new(ErrorCode::ValidationFailed, format!("{field} {why}"));
    error.details = vec![(field.to_string(), why.to_string())];
    HttpResponse::error(&error)
}

/// What one listing asks for, checked.
struct Listing {
    status: Option<Status>,
    search: Option<String>,
    limit: u32,
    after: Option<Cursor>,
}

impl Listing {
    /// From a query's pairs or a body's members (one reader for both, behind a pointer).
    fn parse<'a>(pairs: &mut dyn Iterator<Item = (Cow<'a, str>, Cow<'a, str>)>) -> Result<Listing, HttpResponse> {
        let mut listing = Listing { status: None, search: None, limit: 50, after: None };
        for (name, value) in pairs {
            match name.as_ref() {
                "status" => match Status::parse(&value) {
                    Some(s) => listing.status = Some(s),
                    None => {
                        return Err(invalid(
                            &name,
                            "must be queued, sending, sent, delivered, bounced, failed or unknown",
                        ))
                    }
                },
                // The ledger's LIKE patterns hold at most 50 bytes: the text and its wildcards.
                "q" => match value.len() {
                    1..=MAX_SEARCH if value.len() + value.matches(['%', '_', '\\']).count() <= MAX_SEARCH => {
                        listing.search = Some(value.into_owned())
                    }
                    _ => return Err(invalid(&name, "must be 1 to 48 bytes of a subject or an address")),
                },
                "limit" => match value.parse::<u32>().ok().filter(|n| (1..=MAX_LIST).contains(n)) {
                    Some(n) => listing.limit = n,
                    None => return Err(invalid(&name, "must be a number from 1 to 100")),
                },
                "after" => match Cursor::parse(&value) {
                    Some(cursor) => listing.after = Some(cursor),
                    None => return Err(invalid(&name, "must be the next of an earlier page")),
                },
                _ => {}
            }
        }
        Ok(listing)
    }

    async fn answer<E: Environment>(&self, env: &E, config: &Config) -> HttpResponse {
        let filter = Filter { status: self.status, search: self.search.as_deref() };
        match listing::newest_first(env, config.ledger_shards, &filter, self.after.as_ref(), self.limit).await {
            Ok((records, next)) => {
                let messages: Vec<Value> = records.iter().map(answer).collect();
                HttpResponse::json(200, &json!({ "messages": messages, "next": next.map(|n| n.to_string()) }))
            }
            Err(_) => ledger_failed(env),
        }
    }
}
