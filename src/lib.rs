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
//! - `error`, `header`, `address`, `time`, `base64` — the vocabulary everything shares; and
//!   below all of them the few helpers here (`join`, `try_map`, `map_vec`, `hex`), still used
//!   by the files the serde change did not touch (std's `collect`, `join` and `format!` replace
//!   them where it did).
#![forbid(unsafe_code)]

/// `$name` is one `Box` of `$parts`, read and written through it. The error types and the
/// ledger's record travel in many `Result`s; at one word each, a `?` moves a pointer, not the
/// record (boxing these four took 12.5 KB gzip off the Worker's bundle; see BENCHMARKS.md).
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

/// `parts` with `separator` between them: what `[String]::join` does, without std's version
/// (about 1 KB of wasm for each element type it is used with).
pub(crate) fn join<S: AsRef<str>>(parts: &[S], separator: &str) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        out.push_str(part.as_ref());
    }
    out
}

/// `f` of each item, or its first error: what `collect::<Result<Vec<_>, _>>()` does, as a plain
/// loop (std's version goes through its adapters, about 0.5 KB of wasm for each use).
pub(crate) fn try_map<T, U, E>(
    items: impl IntoIterator<Item = T>,
    mut f: impl FnMut(T) -> Result<U, E>,
) -> Result<Vec<U>, E> {
    let mut mapped = Vec::new();
    for item in items {
        mapped.push(f(item)?);
    }
    Ok(mapped)
}

/// `bytes` in lower-case hex, two digits each (ids and digests).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    out
}

/// `f` of each item, in a new `Vec`: what `.map(f).collect()` does, as a plain loop (std's
/// version is three adapter functions for each use, about 0.3 KB of wasm).
pub(crate) fn map_vec<T, U>(items: impl IntoIterator<Item = T>, mut f: impl FnMut(T) -> U) -> Vec<U> {
    let mut mapped = Vec::new();
    for item in items {
        mapped.push(f(item));
    }
    mapped
}

pub mod address;
pub mod base64;
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
