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
//! - `report` — delivery and feedback reports read (mail-parser), no I/O;
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

/// Every future's output, in order, once all are done; they run at once. `join_all`'s way for
/// a few futures (each one polled again on every wake-up). futures_util's own `join_all` also
/// carries a second way, for many futures (`FuturesOrdered`: 8 KB of wasm, BENCHMARKS.md), and
/// a listing asks at most 256 shards, a send's suppression screen at most 16 objects.
pub(crate) async fn join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    use futures_util::future::{maybe_done, MaybeDone};
    use std::future::Future;
    use std::task::Poll;
    let mut all: Vec<std::pin::Pin<Box<MaybeDone<F>>>> = futures.map(|future| Box::pin(maybe_done(future))).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for future in &mut all {
            done &= future.as_mut().poll(cx).is_ready();
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    all.iter_mut().filter_map(|future| future.as_mut().take_output()).collect()
}

pub mod address;
pub mod config;
pub mod delivery;
pub mod dkim;
pub mod error;
pub mod header;
pub mod http;
pub mod message;
pub mod report;
pub mod smtp;
pub mod time;

#[cfg(target_arch = "wasm32")]
mod platform;
