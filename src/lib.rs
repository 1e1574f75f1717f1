//! edge-mailer: a Cloudflare Worker that turns HTTP requests into MIME messages and submits
//! them to the SMTP relay its owner configured.
//!
//! Layers, each importing only those below it (`scripts/check-layers` enforces the order):
//!
//! - `platform` — the only code that touches the Workers runtime (wasm32 only);
//! - `http` — requests and answers, the route table, one file per route family;
//! - `delivery` — services with no HTTP types: the environment, submission, idempotency,
//!   rate limits;
//! - `config` — every setting and default, `FORMS` included;
//! - `dkim` — canonicalisation, body hash and the DKIM-Signature header (the signing is the
//!   platform's WebCrypto);
//! - `message` — content → MIME bytes;
//! - `smtp` — the sans-IO protocol and its one async driver, with its own errors;
//! - `error`, `header`, `address`, `time`, `json` — the vocabulary everything shares.
#![forbid(unsafe_code)]
// An ApiError ends the request; its size on the error path costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

pub mod address;
pub mod config;
pub mod delivery;
pub mod dkim;
pub mod error;
pub mod header;
pub mod http;
pub mod json;
pub mod message;
pub mod smtp;
pub mod time;

#[cfg(target_arch = "wasm32")]
mod platform;
