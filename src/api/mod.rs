//! The HTTP API, independent of the Workers runtime: requests in, responses out.

pub mod http;
pub mod idempotency;
pub mod send;
