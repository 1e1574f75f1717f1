//! The listing of queued messages (`GET /v1/messages`, Resend's `GET /emails`): every ledger
//! shard asked at once, their pages merged into one ([`super::shard::merge`]).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use futures_util::future::{maybe_done, MaybeDone};

use super::env::{Environment, Unavailable};
use super::record::{Record, Status};
use super::shard::{merge, Cursor};

/// One page of the records of every shard below `shards`, newest first: each shard asked at
/// once for `limit + 1` after the cursor, then [`merge`]d.
pub async fn newest_first<E: Environment>(
    env: &E,
    shards: u16,
    status: Option<Status>,
    after: Option<&Cursor>,
    limit: u32,
) -> Result<(Vec<Record>, Option<Cursor>), Unavailable> {
    let asked = (0..shards.min(256)).map(|shard| env.list_records(shard as u8, status, after, limit + 1));
    let pages = join_all(asked).await.into_iter().collect::<Result<_, _>>()?;
    Ok(merge(pages, limit as usize))
}

/// Every future's output, in order, once all are done; they run at once. `join_all`'s way for
/// a few futures (each one polled again on every wake-up). futures_util's own `join_all` also
/// carries a second way, for many futures (`FuturesOrdered`: 8 KB of wasm, BENCHMARKS.md), and
/// a listing asks at most 256 shards.
async fn join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut all: Vec<Pin<Box<MaybeDone<F>>>> = futures.map(|future| Box::pin(maybe_done(future))).collect();
    poll_fn(|cx| {
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
