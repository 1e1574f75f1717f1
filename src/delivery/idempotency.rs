//! `Idempotency-Key`: the same key (per API key) within 24 hours gets the first answer back
//! and sends nothing again.
//!
//! Each key's record lives in a Durable Object of its own (`IDEMPOTENCY_KEYS`, named by a hash
//! of API key and Idempotency-Key), which applies [`apply`] to it in one step (`key.rs`): strongly
//! consistent, so of N requests racing with one key exactly one claims it and sends; the others
//! get the first answer, or `409 request_in_progress` while it is being sent. A claim outlives
//! the longest send the settings allow; when the relay has accepted the message — or the
//! outcome is unknown, which must never be retried — the answer is kept for 24 hours. Any
//! other failure sent nothing, so the claim is released and a retry may try again. A request
//! that dies mid-send (the client hung up and the Worker was cancelled) leaves its claim until
//! it expires; meanwhile the key answers `request_in_progress`.

use sha2::{Digest, Sha256};

use super::env::Environment;
pub use super::key::{apply, KeyAnswer, KeyCall, KeyRecord};
use crate::error::{ApiError, ErrorCode};
use crate::smtp::settings::RelaySettings;

pub use super::key::TTL_SECONDS;

/// How long a claim lasts if its request dies before finishing: longer than the longest send
/// the relay settings allow for this many recipients, plus a minute of margin.
pub fn pending_ttl_seconds(relay: &RelaySettings, recipients: usize) -> u64 {
    relay.longest_send_millis(recipients).div_ceil(1000) + 60
}

/// A key this request has claimed and must [`finish`].
pub struct Claim {
    store_key: String,
    body_digest: String,
    id: String,
}

pub enum Lookup {
    /// Nobody used the key yet; it is ours now.
    Claimed(Claim),
    /// The first answer (its status and JSON body), to send again as it was.
    Replay { status: u16, body: String },
}

fn hex_digest(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    format!("{:x}", hasher.finalize())
}

/// Checks the header's value: 1 to 255 printable ASCII characters.
pub fn validate(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        let mut error =
            ApiError::new(ErrorCode::ValidationFailed, "Idempotency-Key must be 1 to 255 printable ASCII characters");
        error.details = vec![("Idempotency-Key".into(), "must be 1 to 255 printable ASCII characters".into())];
        return Err(error);
    }
    Ok(())
}

fn store_error() -> ApiError {
    ApiError::new(
        ErrorCode::Misconfigured,
        "IDEMPOTENCY_KEYS (the Durable Object binding for Idempotency-Key) is not usable",
    )
}

/// Claims `key` for this request, or returns the answer already given for it. `scope` names
/// what the body was sent to (the route, and any header that changes what it does): the same
/// key and body sent somewhere else is a different request, never a replay of the first.
pub async fn begin<E: Environment>(
    env: &E,
    api_key: &str,
    key: &str,
    scope: &str,
    body: &[u8],
    pending_ttl: u64,
) -> Result<Lookup, ApiError> {
    validate(key)?;
    // Keys are scoped to the API key and stored hashed: the store never sees either.
    let store_key = hex_digest(&[api_key.as_bytes(), key.as_bytes()]);
    let body_digest = hex_digest(&[scope.as_bytes(), body]);
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|_| store_error())?;
    let id = format!("{:032x}", u128::from_be_bytes(random));
    let call = KeyCall::Begin {
        body: body_digest.clone(),
        claim: id.clone(),
        now_ms: env.now_millis(),
        pending_ms: pending_ttl * 1000,
    };
    match env.idempotency(&store_key, call).await.map_err(|_| store_error())? {
        KeyAnswer::Claimed => Ok(Lookup::Claimed(Claim { store_key, body_digest, id })),
        KeyAnswer::Replay { status, body } => Ok(Lookup::Replay { status, body }),
        KeyAnswer::Conflict => Err(ApiError::new(
            ErrorCode::IdempotencyConflict,
            "this Idempotency-Key was already used for a different request",
        )),
        KeyAnswer::InProgress | KeyAnswer::Done => {
            let mut error = ApiError::new(
                ErrorCode::RequestInProgress,
                "a request with this Idempotency-Key is still being sent; retry shortly",
            );
            error.retry_after = Some(5);
            Err(error)
        }
    }
}

/// Keeps the answer (status and body) when a message may have left (success, `delivery_unknown`
/// or queued); otherwise frees the key so the client can try again.
pub async fn finish<E: Environment>(env: &E, claim: Claim, status: u16, body: &[u8], keep: bool) {
    let answer = keep.then(|| (status, String::from_utf8_lossy(body).into_owned()));
    let call = KeyCall::Finish { body: claim.body_digest, claim: claim.id, now_ms: env.now_millis(), answer };
    // One retry: a store that fails twice leaves the claim to expire (request_in_progress
    // until then, a free key after).
    for _ in 0..2 {
        if env.idempotency(&claim.store_key, call.clone()).await.is_ok() {
            return;
        }
    }
}
