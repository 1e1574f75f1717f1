//! Services with no HTTP types: what the platform offers ([`env::Environment`]), submitting a
//! message (content → MIME → session → outcome, the one place SMTP errors become error
//! codes), warm sessions kept open between sends, `Idempotency-Key` records, and rate limits.

pub mod env;
pub mod idempotency;
pub mod inbound;
pub mod key;
pub mod listing;
pub mod queue;
pub mod quota;
pub mod ratelimit;
pub mod record;
pub mod reports;
pub mod shard;
pub mod stats;
pub mod submit;
pub mod suppression;
pub mod transaction;
pub mod warm;
pub mod webhook;
