//! The suppression list, behind the API key: `GET /v1/suppressions?limit=&after=`,
//! `GET /v1/suppressions/{address}`, `POST /v1/suppressions` (`{"address", "reason"?,
//! "detail"?}`) and `DELETE /v1/suppressions/{address}`.

use serde::Deserialize;
use serde_json::json;

use super::auth::{authorized, authorized_body};
use super::body::BodySource;
use super::input::Object;
use super::request::{Platform, RequestHead};
use super::response::HttpResponse;
use crate::config::Config;
use crate::delivery::env::Environment;
use crate::delivery::shard::{merge, Cursor};
use crate::delivery::suppression::{self, Reason, Suppression, SHARDS};
use crate::error::{ApiError, ErrorCode};
use crate::join_all;

/// Most entries one list answers.
const MAX_LIST: u32 = 100;

fn invalid(field: &str, why: &str) -> HttpResponse {
    let mut error = ApiError::new(ErrorCode::ValidationFailed, format!("{field} {why}"));
    error.details = vec![(field.to_string(), why.to_string())];
    HttpResponse::error(&error)
}

fn unavailable() -> HttpResponse {
    let mut error = ApiError::new(ErrorCode::StorageUnavailable, "the suppression list could not be reached");
    error.retry_after = Some(5);
    HttpResponse::error(&error)
}

fn not_on_the_list(address: &str) -> HttpResponse {
    HttpResponse::error(&ApiError::new(ErrorCode::NotFound, format!("{address} is not on the suppression list")))
}

/// The address a path names (`/v1/suppressions/jane%40example.org` or `…/jane@example.org`),
/// as the list keys it; `None` when it is no address.
fn address_in(path: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8().ok()?;
    suppression::key(&decoded)
}

/// Every route under `/v1/suppressions`; `rest` is what follows it in the path.
pub async fn serve<P: Platform>(
    env: &P,
    config: Result<&Config, &ApiError>,
    head: &RequestHead,
    rest: &str,
    mut source: impl BodySource,
) -> HttpResponse {
    let method = head.method.as_str();
    if rest.is_empty() && method == "POST" {
        return add(env, config, head, &mut source).await;
    }
    if let Err(response) = authorized(config, head) {
        return response;
    }
    match (rest.strip_prefix('/'), method) {
        (None, "GET") if rest.is_empty() => list(env, head).await,
        (None, _) => HttpResponse::error(&super::response::method_not_allowed("GET, POST")),
        (Some(path), "GET" | "DELETE") => {
            let Some(address) = address_in(path) else {
                return invalid("address", "must be an email address");
            };
            if method == "DELETE" {
                return match env.unsuppress(&address).await {
                    Ok(Some(entry)) => HttpResponse::json(200, &json!({"address": entry.address, "deleted": true})),
                    Ok(None) => not_on_the_list(&address),
                    Err(_) => unavailable(),
                };
            }
            match env.suppressed(suppression::shard_of(&address), std::slice::from_ref(&address)).await {
                Ok(found) => match found.into_iter().next() {
                    Some(entry) => HttpResponse::json(200, &entry),
                    None => not_on_the_list(&address),
                },
                Err(_) => unavailable(),
            }
        }
        (Some(_), _) => HttpResponse::error(&super::response::method_not_allowed("GET, DELETE")),
    }
}

/// `{"address", "reason"?, "detail"?}`: `reason` one of bounce, complaint, manual (default).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    address: String,
    reason: Option<String>,
    detail: Option<String>,
}

/// `POST /v1/suppressions`: `201` with the new entry, or `200` with the one already there
/// (which stays as it was).
async fn add<P: Platform>(
    env: &P,
    config: Result<&Config, &ApiError>,
    head: &RequestHead,
    source: &mut impl BodySource,
) -> HttpResponse {
    let (_, _, body) = match authorized_body(env, config, head, source).await {
        Ok(ready) => ready,
        Err(response) => return response,
    };
    // serde_json's own message names the member: the body is flat, so no path is needed
    // (and none of `from_body`'s second, path-finding reader is built for this type).
    let input: AddBody = match serde_json::from_slice(&body) {
        Ok(Object(input)) => input,
        Err(e) if e.is_data() => return invalid("body", &e.to_string()),
        Err(e) => return HttpResponse::error(&ApiError::new(ErrorCode::InvalidRequest, format!("not JSON: {e}"))),
    };
    let Some(address) = suppression::key(&input.address) else {
        return invalid("address", "must be an email address");
    };
    let reason = match input.reason.as_deref().map(Reason::parse) {
        None => Reason::Manual,
        Some(Some(reason)) => reason,
        Some(None) => return invalid("reason", "must be bounce, complaint or manual"),
    };
    if input.detail.as_ref().is_some_and(|d| d.chars().count() > suppression::MAX_DETAIL) {
        return invalid("detail", "must be at most 500 characters");
    }
    let entry = Suppression { address, reason, detail: input.detail, message_id: None, created_at: env.now_millis() };
    match env.suppress(&entry).await {
        Ok(true) => HttpResponse::json(201, &entry),
        Ok(false) => {
            match env.suppressed(suppression::shard_of(&entry.address), std::slice::from_ref(&entry.address)).await {
                Ok(found) => HttpResponse::json(200, &found.first().unwrap_or(&entry)),
                Err(_) => unavailable(),
            }
        }
        Err(_) => unavailable(),
    }
}

/// `GET /v1/suppressions?limit=1..100&after=`: newest first, every object asked at once.
async fn list<E: Environment>(env: &E, head: &RequestHead) -> HttpResponse {
    let mut limit = 50;
    let mut after = None;
    for (name, value) in form_urlencoded::parse(head.query.as_bytes()) {
        match name.as_ref() {
            "limit" => match value.parse::<u32>().ok().filter(|n| (1..=MAX_LIST).contains(n)) {
                Some(n) => limit = n,
                None => return invalid("limit", "must be a number from 1 to 100"),
            },
            "after" => match Cursor::parse_with(&value, |a| suppression::key(a).is_some()) {
                Some(cursor) => after = Some(cursor),
                None => return invalid("after", "must be the next of an earlier page"),
            },
            _ => {}
        }
    }
    let asked = (0..SHARDS).map(|shard| env.list_suppressions(shard, after.as_ref(), limit + 1));
    let pages: Result<Vec<_>, _> = join_all(asked).await.into_iter().collect();
    match pages {
        Ok(pages) => {
            let (entries, next) = merge(pages, limit as usize);
            HttpResponse::json(200, &json!({"suppressions": entries, "next": next.map(|n| n.to_string())}))
        }
        Err(_) => unavailable(),
    }
}
