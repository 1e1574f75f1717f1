//! What the handlers answer: status, headers and body, and the SMTP session to close after.

use std::future::Future;

use serde::Serialize;
use serde_json::{json, Value};

use crate::delivery::env::{Environment, Store};
use crate::delivery::record::Record;
use crate::delivery::shard;
use crate::delivery::transaction::Outcome;
use crate::error::{ApiError, ErrorCode};
use crate::smtp::client::{Network, Session};

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The error code of an error answer, for the request log.
    pub error: Option<ErrorCode>,
}

impl HttpResponse {
    pub fn new(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Self {
        HttpResponse { status, headers, body, error: None }
    }

    pub fn json(status: u16, value: &impl Serialize) -> Self {
        let headers = vec![("content-type".into(), "application/json; charset=utf-8".into())];
        HttpResponse::new(status, headers, serde_json::to_vec(value).expect("answers are plain data"))
    }

    /// The answer stored under an `Idempotency-Key`, given again to a retry of its request.
    pub fn replayed(status: u16, body: String) -> Self {
        let headers = vec![
            ("content-type".into(), "application/json; charset=utf-8".into()),
            ("idempotent-replayed".into(), "true".into()),
        ];
        HttpResponse::new(status, headers, body.into_bytes())
    }

    pub fn error(error: &ApiError) -> Self {
        let mut response = HttpResponse::json(error.code.status(), &error.answer());
        if let Some(seconds) = error.retry_after {
            response.headers.push(("retry-after".into(), seconds.to_string()));
        }
        response.error = Some(error.code);
        response
    }

    /// The answer to a send that failed, in debug mode with the conversation.
    pub fn send_failed(error: &ApiError, outcome: &Outcome, debug: bool) -> Self {
        let mut response = HttpResponse::error(error);
        if debug {
            let mut body = error.answer();
            add_debug(&mut body, outcome);
            response.body = body.to_string().into_bytes();
        }
        response
    }

    pub fn with_headers(mut self, headers: &[(String, String)]) -> Self {
        self.headers.extend(headers.iter().cloned());
        self
    }
}

/// `405`: the route exists, with another method.
pub(crate) fn method_not_allowed(allowed: &str) -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, format!("use {allowed}"))
}

/// What debug mode adds to an answer: the SMTP conversation of this send (AUTH hidden), its
/// round trips, whether it used a new session or a warm one, and the Worker's memory.
pub fn add_debug(body: &mut Value, outcome: &Outcome) {
    body["transcript"] = json!(outcome.transcript);
    body["round_trips"] = json!(outcome.round_trips);
    body["session"] = json!(outcome.session);
    body["wasm_memory_bytes"] = json!(wasm_memory_bytes());
}

/// The size of the Worker's wasm linear memory. It only ever grows, so this is the high-water
/// mark of everything this instance has handled so far. `None` outside wasm (native tests).
pub fn wasm_memory_bytes() -> Option<usize> {
    #[cfg(target_arch = "wasm32")]
    return Some(core::arch::wasm32::memory_size(0) * 65536);
    #[cfg(not(target_arch = "wasm32"))]
    None
}

/// An answer, the open SMTP session to close once the answer has gone out, and the records
/// of the messages it sent, to write then.
pub struct Handled<N: Network> {
    pub response: HttpResponse,
    pub after: Option<Session<N>>,
    pub records: Vec<Record>,
}

impl<N: Network> From<HttpResponse> for Handled<N> {
    fn from(response: HttpResponse) -> Self {
        Handled { response, after: None, records: Vec::new() }
    }
}

/// Work that must not delay the answer: the polite end of the SMTP session, and the records of
/// what was sent (one write per ledger shard, all at once). A record that cannot be written is
/// lost, not the message: it was sent, and the answer said so.
pub fn after_response<E: Environment>(
    env: E,
    after: Option<Session<E>>,
    records: Vec<Record>,
) -> Option<impl Future<Output = ()>> {
    if after.is_none() && records.is_empty() {
        return None;
    }
    Some(async move {
        let mut by_shard: Vec<(u8, Vec<Record>)> = Vec::new();
        for record in records {
            let Some(shard) = shard::shard_of(&record.id) else { continue };
            match by_shard.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, records)) => records.push(record),
                None => by_shard.push((shard, vec![record])),
            }
        }
        let saves = crate::join_all(by_shard.iter().map(|(shard, records)| env.save_records(*shard, records)));
        match after {
            Some(session) => drop(futures_util::future::join(session.quit(), saves).await),
            None => drop(saves.await),
        }
    })
}

/// `misconfigured`, naming the binding, when this deployment does not bind `store`; else `error`.
pub fn store_failed<E: Environment>(env: &E, store: Store, error: ApiError) -> HttpResponse {
    if env.binds(store) {
        return HttpResponse::error(&error);
    }
    let (binding, section) = match store {
        Store::Ledger => ("DELIVERY_LEDGER", "Queued delivery"),
        Store::SuppressionList => ("SUPPRESSION_LIST", "Suppressions"),
    };
    let message =
        format!("this deployment has no {binding} binding (README, \"{section}\", shows it in wrangler.toml)");
    HttpResponse::error(&ApiError::new(ErrorCode::Misconfigured, message))
}
