//! `GET /v1/stats`: messages per hour by status, and how long the relay took to answer each
//! attempt, from the ledger. Each shard counts its own hours; the Worker adds the shards up.
//! Answer times are counted in buckets, so shards merge exactly and a percentile read from the
//! merged buckets is within 12.5 % of the exact one.

use serde::{Deserialize, Serialize};

use super::record::{EventType, Record, Status};

pub const HOUR_MS: u64 = 3_600_000;

/// The bucket of an answer time: the milliseconds themselves below 16, then eight buckets per
/// power of two (each at most 12.5 % wide).
pub fn bucket_of(ms: u64) -> u16 {
    if ms < 16 {
        return ms as u16;
    }
    let exponent = 63 - ms.leading_zeros() as u64; // 4 and up
    let mantissa = (ms >> (exponent - 3)) & 7;
    (16 + (exponent - 4) * 8 + mantissa) as u16
}

/// The smallest time of bucket `bucket` ([`bucket_of`]'s inverse, to the bucket's start).
pub fn bucket_start(bucket: u16) -> u64 {
    let bucket = u64::from(bucket);
    if bucket < 16 {
        return bucket;
    }
    let (exponent, mantissa) = ((bucket - 16) / 8 + 4, (bucket - 16) % 8);
    (8 + mantissa) << (exponent - 3)
}

/// One shard's hour: its messages by status (by when they were created) and its attempts'
/// answer times by bucket (by when they ended).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HourCounts {
    /// Hours since the Unix epoch.
    pub hour: u64,
    pub statuses: Vec<(Status, u64)>,
    pub answers: Vec<(u16, u64)>,
}

/// The attempts' events that say how long the relay took.
fn is_attempt(kind: EventType) -> bool {
    matches!(kind, EventType::Sent | EventType::Deferred | EventType::Failed | EventType::Unknown)
}

/// The hours of `records` from `since_ms` on, as a shard counts them (the platform's object
/// does the same in SQL; this is what tests and the native environment use).
pub fn count(records: &[Record], since_ms: u64) -> Vec<HourCounts> {
    let mut hours: Vec<HourCounts> = Vec::new();
    for record in records {
        if record.created_at >= since_ms {
            add(&mut hour_of(&mut hours, record.created_at / HOUR_MS).statuses, record.status, 1);
        }
        for event in record.events.iter().filter(|e| e.at >= since_ms && is_attempt(e.kind)) {
            if let Some(took) = event.took_ms {
                add(&mut hour_of(&mut hours, event.at / HOUR_MS).answers, bucket_of(took), 1);
            }
        }
    }
    hours
}

/// The entry of `hour` in `hours`, added when there is none.
pub fn hour_of(hours: &mut Vec<HourCounts>, hour: u64) -> &mut HourCounts {
    match hours.iter().position(|h| h.hour == hour) {
        Some(at) => &mut hours[at],
        None => {
            hours.push(HourCounts { hour, ..Default::default() });
            hours.last_mut().expect("just pushed")
        }
    }
}

/// Adds `n` to the count of `key`.
pub fn add<K: PartialEq>(counts: &mut Vec<(K, u64)>, key: K, n: u64) {
    match counts.iter_mut().find(|(k, _)| *k == key) {
        Some((_, count)) => *count += n,
        None => counts.push((key, n)),
    }
}

/// Every shard's hours added up, one entry per hour from `first_hour` to `last_hour` (empty
/// hours too, so a chart has no gaps).
pub fn merge(shards: Vec<Vec<HourCounts>>, first_hour: u64, last_hour: u64) -> Vec<HourCounts> {
    let mut hours: Vec<HourCounts> =
        (first_hour..=last_hour).map(|hour| HourCounts { hour, ..Default::default() }).collect();
    for shard in shards {
        for counts in shard {
            let Some(hour) = counts.hour.checked_sub(first_hour).and_then(|i| hours.get_mut(i as usize)) else {
                continue;
            };
            counts.statuses.into_iter().for_each(|(status, n)| add(&mut hour.statuses, status, n));
            counts.answers.into_iter().for_each(|(bucket, n)| add(&mut hour.answers, bucket, n));
        }
    }
    hours
}

/// The `quantile` (0 to 1) of the answer times counted in `answers`, as its bucket's start;
/// `None` when there are none.
pub fn percentile(answers: &[(u16, u64)], quantile: f64) -> Option<u64> {
    let total: u64 = answers.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let mut sorted = answers.to_vec();
    sorted.sort_unstable_by_key(|(bucket, _)| *bucket);
    // The smallest time with at least `quantile` of the attempts at or below it.
    let rank = ((quantile * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (bucket, n) in sorted {
        seen += n;
        if seen >= rank {
            return Some(bucket_start(bucket));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_at_most_an_eighth_wide_and_read_back_to_their_start() {
        for ms in (0..5_000).chain([65_535, 600_000, 3_600_000]) {
            let start = bucket_start(bucket_of(ms));
            assert!(start <= ms && ms - start <= ms / 8, "{ms} in a bucket from {start}");
            assert_eq!(bucket_of(start), bucket_of(ms));
        }
        assert!(bucket_of(u64::MAX) > bucket_of(3_600_000));
    }

    #[test]
    fn percentiles_of_merged_buckets() {
        let answers: Vec<(u16, u64)> = (1..=100).map(|ms| (bucket_of(ms), 1)).collect();
        let merged = merge(
            vec![
                vec![HourCounts { hour: 5, statuses: vec![(Status::Sent, 2)], answers: answers[..50].to_vec() }],
                vec![HourCounts { hour: 5, statuses: vec![(Status::Sent, 1)], answers: answers[50..].to_vec() }],
            ],
            4,
            6,
        );
        assert_eq!(merged.iter().map(|h| h.hour).collect::<Vec<_>>(), [4, 5, 6]);
        assert_eq!(merged[1].statuses, [(Status::Sent, 3)]);
        let p50 = percentile(&merged[1].answers, 0.5).unwrap();
        let p95 = percentile(&merged[1].answers, 0.95).unwrap();
        assert!((44..=50).contains(&p50), "{p50}");
        assert!((84..=95).contains(&p95), "{p95}");
        assert_eq!(percentile(&merged[0].answers, 0.5), None);
    }
}
