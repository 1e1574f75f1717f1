//! What the Worker's runtime offers the services, beyond the network and its clock
//! ([`Network`]): a key-value store, the rate limiter, outbound HTTP, and warm SMTP sessions.

use std::future::Future;

use super::ratelimit::Decision;
use super::transaction::{Outcome, Transaction};
use crate::smtp::client::Network;

/// A platform service (KV, the rate limiter, an outbound fetch) is missing or failed.
#[derive(Debug)]
pub struct Unavailable;

pub trait Environment: Network + Clone {
    /// The key-value store for idempotency records (`Err` when it is not bound).
    fn kv_get(&self, key: &str) -> impl Future<Output = Result<Option<String>, Unavailable>>;
    fn kv_put(&self, key: &str, value: &str, ttl_seconds: u64) -> impl Future<Output = Result<(), Unavailable>>;
    fn kv_delete(&self, key: &str) -> impl Future<Output = Result<(), Unavailable>>;
    /// Counts a hit for `key`: at most `limit` in any `window_seconds`.
    fn rate_limit(
        &self,
        key: &str,
        limit: u32,
        window_seconds: u32,
    ) -> impl Future<Output = Result<Decision, Unavailable>>;
    /// POSTs `fields` urlencoded to `url`; answers status and body.
    fn post_form(&self, url: &str, fields: &[(&str, &str)])
        -> impl Future<Output = Result<(u16, String), Unavailable>>;
    /// GETs `url`; answers status and body.
    fn get_text(&self, url: &str) -> impl Future<Output = Result<(u16, String), Unavailable>>;
    /// Runs `transaction` on one of `sessions` warm sessions (a [`super::warm::WarmSession`]
    /// each, kept by the platform between requests).
    fn send_warm(&self, transaction: &Transaction, sessions: u32)
        -> impl Future<Output = Result<Outcome, Unavailable>>;
}
