//! What the Worker's runtime offers the services, beyond the network and its clock
//! ([`Network`]): Idempotency-Key records, the rate limiter, outbound HTTP, warm SMTP
//! sessions, and the parts of queued delivery (bodies, the ledger, the queues).

use std::future::Future;

use super::key::{KeyAnswer, KeyCall};
use super::quota::Token;
use super::ratelimit::Decision;
use super::record::{Claimed, Filter, Record};
use super::reports::{Applied, Finding};
use super::shard::Cursor;
use super::stats::HourCounts;
use super::suppression::Suppression;
use super::transaction::{Outcome, Transaction};
use super::webhook::Delivery;
use crate::config::rate::RateLimit;
use crate::dkim::DkimKey;
use crate::smtp::client::Network;

/// A platform service (a store, the rate limiter, an outbound fetch) is missing or failed.
#[derive(Debug)]
pub struct Unavailable;

/// The warm session's object could not be used; `handed_over` when the transaction had
/// already gone to it (it may have sent the message).
#[derive(Debug)]
pub struct WarmUnavailable {
    pub handed_over: bool,
}

/// A store a deployment binds (wrangler.toml), for telling a missing binding from one that
/// did not answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Ledger,
    SuppressionList,
}

pub trait Environment: Network + Clone {
    /// Whether this deployment binds `store` at all: asked only once a call to it failed, so
    /// that a missing binding is answered as the owner's to fix, not as a retry's.
    fn binds(&self, store: Store) -> bool {
        let _ = store;
        true
    }
    /// Applies `call` to the record of one Idempotency-Key in one step ([`super::key::apply`]),
    /// in a strongly consistent store (a Durable Object per key).
    fn idempotency(&self, store_key: &str, call: KeyCall) -> impl Future<Output = Result<KeyAnswer, Unavailable>>;
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
    /// The body store (R2): a queued message's rendered transaction, by id.
    fn put_body(&self, id: &str, bytes: &[u8]) -> impl Future<Output = Result<(), Unavailable>>;
    fn get_body(&self, id: &str) -> impl Future<Output = Result<Option<Vec<u8>>, Unavailable>>;
    /// The queue: deliver `id` after `delay_seconds`.
    fn enqueue(&self, id: &str, delay_seconds: u32) -> impl Future<Output = Result<(), Unavailable>>;
    /// The dead-letter queue: `id` failed after its last attempt.
    fn dead_letter(&self, id: &str) -> impl Future<Output = Result<(), Unavailable>>;
    /// The ledger (strongly consistent): writes a record whole, in the shard its id names
    /// ([`super::shard::shard_of`]), as every call by id below.
    fn save_record(&self, record: &Record) -> impl Future<Output = Result<(), Unavailable>>;
    /// Writes records of one shard whole, in one call (the records of a request's sends).
    fn save_records(&self, shard: u8, records: &[Record]) -> impl Future<Output = Result<(), Unavailable>>;
    fn load_record(&self, id: &str) -> impl Future<Output = Result<Option<Record>, Unavailable>>;
    /// How the webhooks of record `id` fared, in the order of their events.
    fn webhook_deliveries(&self, id: &str) -> impl Future<Output = Result<Vec<Delivery>, Unavailable>>;
    /// One shard's records after the cursor (all when `None`) that `filter` keeps, newest
    /// first (`created_at`, then `id`, descending).
    fn list_records(
        &self,
        shard: u8,
        filter: &Filter<'_>,
        after: Option<&Cursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Record>, Unavailable>>;
    /// Claims an attempt in one step ([`super::record::claim`]); no record is `Done`.
    fn claim_attempt(&self, id: &str, now_ms: u64, lease_ms: u64)
        -> impl Future<Output = Result<Claimed, Unavailable>>;
    /// Signs `data` with the DKIM key: RSASSA-PKCS1-v1_5 with SHA-256, or Ed25519 (the
    /// runtime's WebCrypto, so no RSA code is in the Worker).
    fn dkim_sign(&self, key: &DkimKey, data: &[u8]) -> impl Future<Output = Result<Vec<u8>, Unavailable>>;
    /// One token of the relay account's quota, in one step, in a strongly consistent store (a
    /// Durable Object per account): [`super::quota::Windows::reserve`] when `reserve`, else
    /// [`super::quota::Windows::take`].
    fn take_relay_token(
        &self,
        account: &str,
        limits: &[RateLimit],
        reserve: bool,
    ) -> impl Future<Output = Result<Token, Unavailable>>;
    /// Runs `transaction` on warm session number `index` (a [`super::warm::WarmSession`] each,
    /// kept by the platform between requests): waiting while another send has it when `wait`,
    /// else `None` at once ([`super::warm::WarmSession::send_if_free`]).
    fn send_warm(
        &self,
        transaction: &Transaction,
        index: u32,
        wait: bool,
    ) -> impl Future<Output = Result<Option<Outcome>, WarmUnavailable>>;
    /// The suppression list's object `shard` ([`super::suppression::shard_of`]): which of
    /// `keys` (addresses as [`super::suppression::key`] writes them) it holds.
    fn suppressed(&self, shard: u8, keys: &[String]) -> impl Future<Output = Result<Vec<Suppression>, Unavailable>>;
    /// Puts an address on the list, in the object its key names; `false` when it was there
    /// already (the entry that was there first stays as it was).
    fn suppress(&self, entry: &Suppression) -> impl Future<Output = Result<bool, Unavailable>>;
    /// Takes an address off the list; `None` when it was not on it, else the entry removed.
    fn unsuppress(&self, key: &str) -> impl Future<Output = Result<Option<Suppression>, Unavailable>>;
    /// One object's entries after the cursor, newest first (`created_at`, then `address`,
    /// descending).
    fn list_suppressions(
        &self,
        shard: u8,
        after: Option<&Cursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Suppression>, Unavailable>>;
    /// Applies a report's findings to the record of `id` in one step, in its shard
    /// ([`Record::apply_findings`]); `None` when there is no such record.
    fn apply_report(
        &self,
        id: &str,
        findings: &[Finding],
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<Applied>, Unavailable>>;
    /// Counts one message at the bounce domain that changed nothing, under `name`.
    fn count_report(&self, name: &str) -> impl Future<Output = Result<(), Unavailable>>;
    /// Those counts, by name.
    fn report_counts(&self) -> impl Future<Output = Result<Vec<(String, u64)>, Unavailable>>;
    /// One ledger shard's hours from `since_ms` on ([`super::stats::count`]).
    fn hour_stats(&self, shard: u8, since_ms: u64) -> impl Future<Output = Result<Vec<HourCounts>, Unavailable>>;
}
