//! The suppression list, behind the API key: `GET /v1/suppressions?limit=&after=`,
//! `GET /v1/suppressions/{address}`, `POST /v1/suppressions` (`{"address", "reason"?,
//! "detail"?}`), `DELETE /v1/suppressions/{address}` and `POST /v1/suppressions/delete`
//! (`{"address"}`).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::json;

use super::auth::{authorized, authorized_query, authorized_small_body};
use super::body::BodySource;
use super::input::flat_object;
use super::request::{Platform, RequestHead};
use super::response::{store_failed, HttpResponse};
use crate::config::Config;
use crate::delivery::env::{Environment, Store};
use crate::delivery::shard::{merge, Cursor};
use crate::delivery::suppression::{self, Reason, Suppression, SHARDS};
use crate::error::{ApiError, ErrorCode};
use crate::join_all;

/// The largest body these routes read: an address, a reason and a 500-character detail.
const MAX_BODY: usize = 8192;

/// Most entries one list answers.
const MAX_LIST: u32 = 100;

fn invalid(field: &str, why: &str) -> HttpResponse {
    let mut error = ApiError::new(ErrorCode::ValidationFailed, format!("{field} {why}"));
    error.details = vec![(field.to_string(), why.to_string())];
    HttpResponse::error(&error)
}

fn unavailable<E: Environment>(env: &E) -> HttpResponse {
    let mut error = ApiError::new(ErrorCode::StorageUnavailable, "the suppression list could not be reached");
    error.retry_after = Some(5);
    store_failed(env, Store::SuppressionList, error)
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
    match (rest, method) {
        ("", "POST") => return add(env, config, head, &mut source).await,
        ("/delete", "POST") => return delete(env, config, head, &mut source).await,
        ("/list", "POST") => return list_by_body(env, config, head, &mut source).await,
        ("/delete" | "/list", _) => return HttpResponse::error(&super::response::method_not_allowed("POST")),
        _ => {}
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
                return remove(env, &address).await;
            }
            match env.suppressed(suppression::shard_of(&address), std::slice::from_ref(&address)).await {
                Ok(found) => match found.into_iter().next() {
                    Some(entry) => HttpResponse::json(200, &entry),
                    None => not_on_the_list(&address),
                },
                Err(_) => unavailable(env),
            }
        }
        (Some(_), _) => HttpResponse::error(&super::response::method_not_allowed("GET, DELETE")),
    }
}

/// Takes `address` (a key) off the list.
async fn remove<E: Environment>(env: &E, address: &str) -> HttpResponse {
    match env.unsuppress(address).await {
        Ok(Some(entry)) => HttpResponse::json(200, &json!({"address": entry.address, "deleted": true})),
        Ok(None) => not_on_the_list(address),
        Err(_) => unavailable(env),
    }
}

/// `POST /v1/suppressions/delete` with `{"address"}`: what `DELETE /v1/suppressions/{address}`
/// does, with the address out of the URL (which proxies and logs keep), as the dashboard asks.
async fn delete<P: Platform>(
    env: &P,
    config: Result<&Config, &ApiError>,
    head: &RequestHead,
    source: &mut impl BodySource,
) -> HttpResponse {
    let input = match authorized_query(env, config, head, source, MAX_BODY, &["address"]).await {
        Ok((_, input)) => input,
        Err(response) => return response,
    };
    match input.address().and_then(suppression::key) {
        Some(address) => remove(env, &address).await,
        None => invalid("address", "must be an email address"),
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
    let body = match authorized_small_body(env, config, head, source, MAX_BODY).await {
        Ok((_, body)) => body,
        Err(response) => return response,
    };
    let input: AddBody = match flat_object(&body) {
        Ok(input) => input,
        Err(response) => return response,
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
                Err(_) => unavailable(env),
            }
        }
        Err(_) => unavailable(env),
    }
}

/// `GET /v1/suppressions?limit=1..100&after=`: newest first, every object asked at once.
async fn list<E: Environment>(env: &E, head: &RequestHead) -> HttpResponse {
    match Page::parse(&mut form_urlencoded::parse(head.query.as_bytes())) {
        Ok(page) => page.answer(env).await,
        Err(response) => response,
    }
}

/// `POST /v1/suppressions/list` with `{"limit"?, "after"?}`: the listing of [`list`] with its
/// cursor (which holds an address) out of the URL, as the dashboard asks.
async fn list_by_body<P: Platform>(
    env: &P,
    config: Result<&Config, &ApiError>,
    head: &RequestHead,
    source: &mut impl BodySource,
) -> HttpResponse {
    let input = match authorized_query(env, config, head, source, MAX_BODY, &["limit", "after"]).await {
        Ok((_, input)) => input,
        Err(response) => return response,
    };
    let asked = Page::parse(&mut input.pairs().map(|(name, value)| (Cow::Borrowed(name), value)));
    match asked {
        Ok(page) => page.answer(env).await,
        Err(response) => response,
    }
}

/// One page of the list, as asked.
struct Page {
    limit: u32,
    after: Option<Cursor>,
}

impl Page {
    /// From a query's pairs or a body's members (one reader for both, behind a pointer).
    fn parse<'a>(pairs: &mut dyn Iterator<Item = (Cow<'a, str>, Cow<'a, str>)>) -> Result<Page, HttpResponse> {
        let mut page = Page { limit: 50, after: None };
        for (name, value) in pairs {
            match name.as_ref() {
                "limit" => match value.parse::<u32>().ok().filter(|n| (1..=MAX_LIST).contains(n)) {
                    Some(n) => page.limit = n,
                    None => return Err(invalid("limit", "must be a number from 1 to 100")),
                },
                "after" => match Cursor::parse_with(&value, |a| suppression::key(a).is_some()) {
                    Some(cursor) => page.after = Some(cursor),
                    None => return Err(invalid("after", "must be the next of an earlier page")),
                },
                _ => {}
            }
        }
        Ok(page)
    }

    async fn answer<E: Environment>(&self, env: &E) -> HttpResponse {
        let asked = (0..SHARDS).map(|shard| env.list_suppressions(shard, self.after.as_ref(), self.limit + 1));
        let pages: Result<Vec<_>, _> = join_all(asked).await.into_iter().collect();
        match pages {
            Ok(pages) => {
                let (entries, next) = merge(pages, self.limit as usize);
                HttpResponse::json(200, &json!({"suppressions": entries, "next": next.map(|n| n.to_string())}))
            }
            Err(_) => unavailable(env),
        }
    }
}
