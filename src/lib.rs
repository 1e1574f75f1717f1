//! edge-mailer: a Cloudflare Worker that turns HTTP requests into MIME messages and submits
//! them to the SMTP relay its owner configured.
//!
//! Layout: `api/` (HTTP in, HTTP out), `config`, `address` and `message` (validation and
//! MIME), `smtp/` (the sans-IO protocol core and its one async driver), `error` (the error
//! table). Only `platform` touches the Workers runtime, and it only builds for wasm32.
#![forbid(unsafe_code)]
// An ApiError ends the request; its size on the error path costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

pub mod address;
pub mod api;
pub mod config;
pub mod error;
pub mod forms;
pub mod header;
pub mod message;
pub mod smtp;

#[cfg(target_arch = "wasm32")]
mod platform;
