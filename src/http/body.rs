//! Reading a request body within its limits: a running count that stops at the size limit
//! (chunked bodies and multipart files included), and a deadline for the whole body, so a
//! body that trickles in cannot hold the Worker.

use std::future::Future;
use std::pin::pin;

use futures_util::future::{select, Either};

use super::request::RequestHead;
use crate::error::{ApiError, ErrorCode};
use crate::smtp::client::Network;

/// The body as it arrives: the platform's stream, or bytes in tests.
pub trait BodySource {
    /// The next chunk; `Ok(None)` at the end.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Vec<u8>>, ()>>;
}

/// A body that is already in memory (tests, and requests without one).
pub struct WholeBody(Option<Vec<u8>>);

impl WholeBody {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        WholeBody(Some(bytes.into()))
    }

    pub fn empty() -> Self {
        WholeBody(None)
    }
}

impl BodySource for WholeBody {
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ()> {
        Ok(self.0.take())
    }
}

/// `payload_too_large` for a body over `limit` bytes.
pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(ErrorCode::PayloadTooLarge, format!("the body is over {limit} bytes"))
}

/// Reads the whole body: refused at once when `Content-Length` is over `limit`, stopped as
/// soon as the count passes it, and `request_timeout` when it has not all arrived within
/// `timeout_ms`.
pub async fn read<N: Network>(
    net: &N,
    head: &RequestHead,
    source: &mut impl BodySource,
    limit: usize,
    timeout_ms: u64,
) -> Result<Vec<u8>, ApiError> {
    let declared = head.header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    // One timer for the whole body, not one per chunk (each is a setTimeout and a closure).
    let mut timer = pin!(net.sleep(timeout_ms));
    // Room for a little more than the declared length: once the body is parsed and dropped, the
    // message rendered from it (attachments as base64 again, with line breaks, about 3% longer)
    // fits in the space it leaves, instead of growing the Worker's memory by another copy.
    let mut body = Vec::with_capacity(declared.map_or(0, |n| n as usize + n as usize / 16 + 4096));
    loop {
        let chunk = match select(pin!(source.next_chunk()), timer.as_mut()).await {
            Either::Left((chunk, _)) => chunk,
            Either::Right(_) => {
                let mut error =
                    ApiError::new(ErrorCode::RequestTimeout, format!("the body did not arrive within {timeout_ms} ms"));
                error.retry_after = Some(1);
                return Err(error);
            }
        };
        match chunk {
            Err(()) => return Err(ApiError::new(ErrorCode::InvalidRequest, "the body could not be read")),
            Ok(None) => return Ok(body),
            Ok(Some(bytes)) => {
                let needed = body.len() + bytes.len();
                if needed > limit {
                    return Err(too_large(limit));
                }
                if needed > body.capacity() {
                    // Doubling as a Vec does, but never past the limit: a chunked body near a
                    // form's 1.1 MiB limit holds 1.1 MiB, not a 2 MiB buffer and its 1 MiB
                    // predecessor.
                    let grown = (body.capacity() * 2).max(needed).min(limit);
                    body.reserve_exact(grown - body.len());
                }
                body.extend_from_slice(&bytes);
            }
        }
    }
}
