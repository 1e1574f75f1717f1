//! `Idempotency-Key`: the same key (per API key) within 24 hours gets the first answer back
//! and sends nothing again.
//!
//! Records live in a key-value store (Workers KV in production and under `wrangler dev`).
//! A request first claims its key with a `pending` record that outlives the longest send the
//! configured timeouts allow; when the relay has accepted the message — or the outcome is
//! unknown, which must never be retried — the answer is stored for 24 hours. Any other failure
//! sent nothing, so the claim is released and a retry may try again. KV takes one write per
//! key per second, so the second write waits until a second has passed since the claim.
//!
//! Limits, by KV's nature: it is eventually consistent, so two requests racing within the
//! same second at different locations could both pass the claim (one client retrying
//! sequentially, the case this exists for, cannot); and if the Worker is cancelled mid-send
//! (the client hung up), the claim simply expires and the key answers `request_in_progress`
//! until then.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::env::Environment;
use crate::error::{ApiError, ErrorCode};
use crate::smtp::settings::RelaySettings;

/// How long an answer is kept.
pub const TTL_SECONDS: u64 = 24 * 60 * 60;
/// KV refuses a second write to a key within this long.
const KV_WRITE_SPACING_MS: i64 = 1_100;

/// How long a claim lasts if its request dies before finishing: longer than the longest send
/// the relay settings allow for this many recipients, plus the wait before the answer's write
/// and a minute of margin (which also keeps it above KV's minimum TTL of 60 s).
pub fn pending_ttl_seconds(relay: &RelaySettings, recipients: usize) -> u64 {
    let longest_ms = relay.longest_send_millis(recipients) + KV_WRITE_SPACING_MS as u64;
    longest_ms.div_ceil(1000) + 60
}

#[derive(Serialize, Deserialize)]
struct Record {
    /// SHA-256 of the request body, to refuse the key's reuse for another message.
    body: String,
    /// `None` while the first request is still sending.
    status: Option<u16>,
    response: Option<String>,
}

/// A key this request has claimed and must [`finish`].
pub struct Claim {
    store_key: String,
    body_digest: String,
    claimed_at_ms: u64,
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
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
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
    ApiError::new(ErrorCode::Misconfigured, "IDEMPOTENCY (the KV namespace binding for Idempotency-Key) is not usable")
}

/// Claims `key` for this request, or returns the answer already given for it.
pub async fn begin<E: Environment>(
    env: &E,
    api_key: &str,
    key: &str,
    body: &[u8],
    pending_ttl: u64,
) -> Result<Lookup, ApiError> {
    validate(key)?;
    // Keys are scoped to the API key and stored hashed: the store never sees either.
    let store_key = format!("idempotency:{}", hex_digest(&[api_key.as_bytes(), key.as_bytes()]));
    let body_digest = hex_digest(&[body]);
    if let Some(raw) = env.kv_get(&store_key).await.map_err(|_| store_error())? {
        let record: Record = serde_json::from_str(&raw).map_err(|_| store_error())?;
        if record.body != body_digest {
            return Err(ApiError::new(
                ErrorCode::IdempotencyConflict,
                "this Idempotency-Key was already used for a different request",
            ));
        }
        return match (record.status, record.response) {
            (Some(status), Some(body)) => Ok(Lookup::Replay { status, body }),
            _ => {
                let mut error = ApiError::new(
                    ErrorCode::RequestInProgress,
                    "a request with this Idempotency-Key is still being sent; retry shortly",
                );
                error.retry_after = Some(5);
                Err(error)
            }
        };
    }
    let pending = Record { body: body_digest.clone(), status: None, response: None };
    let pending = serde_json::to_string(&pending).map_err(|_| store_error())?;
    env.kv_put(&store_key, &pending, pending_ttl).await.map_err(|_| store_error())?;
    Ok(Lookup::Claimed(Claim { store_key, body_digest, claimed_at_ms: env.now_millis() }))
}

/// Stores the answer (status and body) when a message may have left (success or
/// `delivery_unknown`); otherwise releases the claim so the client can try again.
pub async fn finish<E: Environment>(env: &E, claim: Claim, status: u16, body: &[u8], keep: bool) {
    let since_claim = env.now_millis().saturating_sub(claim.claimed_at_ms) as i64;
    if since_claim < KV_WRITE_SPACING_MS {
        env.sleep((KV_WRITE_SPACING_MS - since_claim) as u64).await;
    }
    for attempt in 0..2 {
        if attempt > 0 {
            env.sleep(KV_WRITE_SPACING_MS as u64).await;
        }
        let written = if keep {
            let record = Record {
                body: claim.body_digest.clone(),
                status: Some(status),
                response: Some(String::from_utf8_lossy(body).into_owned()),
            };
            match serde_json::to_string(&record) {
                Ok(record) => env.kv_put(&claim.store_key, &record, TTL_SECONDS).await,
                Err(_) => return,
            }
        } else {
            env.kv_delete(&claim.store_key).await
        };
        if written.is_ok() {
            return;
        }
    }
}
