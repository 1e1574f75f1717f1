//! The listing of queued messages (`GET /v1/messages`, Resend's `GET /emails`): every ledger
//! shard asked at once, their pages merged into one ([`super::shard::merge`]).

use super::env::{Environment, Unavailable};
use super::record::{Filter, Record};
use super::shard::{merge, Cursor};
use crate::join_all;

/// One page of the records of every shard below `shards`, newest first: each shard asked at
/// once for `limit + 1` after the cursor, then [`merge`]d.
pub async fn newest_first<E: Environment>(
    env: &E,
    shards: u16,
    filter: &Filter<'_>,
    after: Option<&Cursor>,
    limit: u32,
) -> Result<(Vec<Record>, Option<Cursor>), Unavailable> {
    let asked = (0..shards.min(256)).map(|shard| env.list_records(shard as u8, filter, after, limit + 1));
    let pages = join_all(asked).await.into_iter().collect::<Result<_, _>>()?;
    Ok(merge(pages, limit as usize))
}
