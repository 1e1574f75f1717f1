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
//! - `error`, `header`, `address`, `time` — the vocabulary everything shares.
#![forbid(unsafe_code)]

/// `$name` is one `Box` of `$parts`, read and written through it. The error types and the
/// ledger's record travel in many `Result`s; boxed, a `?` moves a pointer, not the whole record
/// (clippy's `result_large_err`).
macro_rules! boxed_parts {
    ($name:ident => $parts:ident) => {
        impl $name {
            pub fn from_parts(parts: $parts) -> Self {
                $name(Box::new(parts))
            }

            pub fn into_parts(self) -> $parts {
                *self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = $parts;
            fn deref(&self) -> &$parts {
                &self.0
            }
        }

        impl std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $parts {
                &mut self.0
            }
        }
    };
}

pub mod address;
pub mod config;
pub mod delivery;
pub mod dkim;
pub mod error;
pub mod header;
pub mod http;
pub mod message;
pub mod smtp;
pub mod time;

#[cfg(target_arch = "wasm32")]
mod platform;
