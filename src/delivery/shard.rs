//! Which ledger object keeps a message, and how the shards' pages make one listing
//! (docs/ledger.md).
//!
//! A new message's id is a UUID whose first byte is its shard, drawn once when the id is made.
//! So every call for one message (save, claim, load, retention) goes to one object, and the
//! shard of an id never depends on `LEDGER_SHARDS`: raising it only spreads new ids wider.
//! Ids made before the shards are 32 hex digits, and all of them live in shard 0, the object
//! that was the only one; they are told apart from new ids by their form.

use super::record::Record;

/// The object of shard `shard`: shard 0 keeps the name of the single ledger that came before,
/// so `LEDGER_SHARDS=1` is that ledger and its records stay where they are.
pub fn ledger_name(shard: u8) -> String {
    match shard {
        0 => "ledger".to_string(),
        shard => format!("ledger-{shard:02x}"),
    }
}

/// The shard of a message's id: the first byte of a UUID, 0 for an id made before the shards
/// (32 hex digits), `None` for anything else (no message has such an id).
pub fn shard_of(id: &str) -> Option<u8> {
    let bytes = id.as_bytes();
    let uuid = bytes.len() == 36;
    let dash = |i: usize| uuid && matches!(i, 8 | 13 | 18 | 23);
    let well_formed = (uuid || bytes.len() == 32)
        && bytes.iter().enumerate().all(|(i, b)| if dash(i) { *b == b'-' } else { b.is_ascii_hexdigit() });
    let nibble = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
    match (well_formed, uuid) {
        (false, _) => None,
        (true, false) => Some(0),
        (true, true) => Some(nibble(bytes[0]) << 4 | nibble(bytes[1])),
    }
}

/// A new message's id from 20 random bytes: a version 4 UUID (Resend's ids have this form)
/// whose first byte is the shard, `random[16..20]` drawn modulo `shards` (1 to 256).
pub fn new_id(shards: u16, random: [u8; 20]) -> String {
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&random[..16]);
    let draw = u32::from_be_bytes([random[16], random[17], random[18], random[19]]);
    // A bias of at most 256 / 2^32 for a count that does not divide 2^32.
    uuid[0] = (draw % u32::from(shards.clamp(1, 256))) as u8;
    uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4
    uuid[8] = (uuid[8] & 0x3f) | 0x80; // the RFC 9562 variant
    let mut id = String::with_capacity(36);
    for (i, byte) in uuid.into_iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            id.push('-');
        }
        id.push(HEX[usize::from(byte >> 4)] as char);
        id.push(HEX[usize::from(byte & 15)] as char);
    }
    id
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Where a page of a listing ends: the last record it returned, in the listing's order
/// (`created_at` then `id`, both descending). Written `{created_at}.{id}` in `next` and `after`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: u64,
    pub id: String,
}

impl Cursor {
    pub fn of(item: &impl Listed) -> Cursor {
        Cursor { created_at: item.created_at(), id: item.key().to_string() }
    }

    /// A cursor of the messages' listing (its `id` a message id).
    pub fn parse(text: &str) -> Option<Cursor> {
        Cursor::parse_with(text, |id| shard_of(id).is_some())
    }

    /// A cursor whose key `valid` accepts.
    pub fn parse_with(text: &str, valid: impl Fn(&str) -> bool) -> Option<Cursor> {
        let (created_at, id) = text.split_once('.')?;
        let created_at = created_at.parse().ok()?;
        valid(id).then(|| Cursor { created_at, id: id.to_string() })
    }
}

/// What a listing over shards lists (message records, suppressions): ordered by when it was
/// created, then by its key, both descending.
pub trait Listed {
    fn created_at(&self) -> u64;
    /// Unique within the listing (a message id, an address).
    fn key(&self) -> &str;
}

impl Listed for Record {
    fn created_at(&self) -> u64 {
        self.created_at
    }
    fn key(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.created_at, self.id)
    }
}

/// One page of a listing from every shard's page: newest first, at most `limit`, and the
/// cursor of the next page when there is one. Each shard's page must hold up to `limit + 1`
/// items after the same cursor, so that more than `limit` in all means another page exists
/// (a shard with more than `limit` left shows it by its extra one).
pub fn merge<T: Listed>(mut pages: Vec<Vec<T>>, limit: usize) -> (Vec<T>, Option<Cursor>) {
    // Each page is in the listing's order already: reversed, its newest record is its last,
    // and the newest of those last ones is the next record of the listing.
    let total: usize = pages.iter().map(Vec::len).sum();
    pages.iter_mut().for_each(|page| page.reverse());
    let mut records = Vec::with_capacity(limit.min(total));
    while records.len() < limit {
        let newest = (pages.iter_mut().filter(|page| !page.is_empty()))
            .max_by(|a, b| order(&a[a.len() - 1]).cmp(&order(&b[b.len() - 1])));
        match newest.and_then(Vec::pop) {
            Some(record) => records.push(record),
            None => break,
        }
    }
    let next = if total > limit { records.last().map(Cursor::of) } else { None };
    (records, next)
}

/// An item's place in the listing: the newer, the greater.
fn order(item: &impl Listed) -> (u64, &str) {
    (item.created_at(), item.key())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic bytes (xorshift64*), so the spread test gives the same answer every run.
    fn random_ids(count: usize, shards: u16) -> Vec<String> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..count)
            .map(|_| {
                let mut bytes = [0u8; 20];
                for chunk in bytes.chunks_mut(8) {
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    let word = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_be_bytes();
                    chunk.copy_from_slice(&word[..chunk.len()]);
                }
                new_id(shards, bytes)
            })
            .collect()
    }

    #[test]
    fn a_new_id_is_a_version_4_uuid_that_names_its_shard() {
        for id in random_ids(1000, 16) {
            assert_eq!(id.len(), 36);
            assert_eq!(&id[14..15], "4", "{id}");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
            let shard = shard_of(&id).unwrap();
            assert!(shard < 16, "{id}");
            // Stable: the id alone says its shard, whatever LEDGER_SHARDS is later.
            assert_eq!(shard_of(&id), shard_of(&id.clone()));
        }
        assert!(random_ids(1000, 1).iter().all(|id| shard_of(id) == Some(0)));
        assert!(random_ids(1000, 256).iter().any(|id| shard_of(id) == Some(255)));
    }

    #[test]
    fn ids_spread_evenly_over_the_shards() {
        for shards in [16u16, 7] {
            let mut counts = vec![0f64; shards as usize];
            for id in random_ids(100_000, shards) {
                counts[shard_of(&id).unwrap() as usize] += 1.0;
            }
            let expected = 100_000.0 / f64::from(shards);
            let chi2: f64 = counts.iter().map(|c| (c - expected).powi(2) / expected).sum();
            // The 0.999 quantile of χ² with 15 degrees of freedom is 37.7 (with 6, 22.5).
            let bound = if shards == 16 { 37.7 } else { 22.5 };
            assert!(chi2 < bound, "{shards} shards: χ² = {chi2:.1}, counts {counts:?}");
        }
    }

    #[test]
    fn an_id_from_before_the_shards_stays_in_the_first_ledger() {
        assert_eq!(shard_of("ff0123456789abcdef0123456789abcd"), Some(0));
        assert_eq!(shard_of("0a0123456789abcdef0123456789abcd"), Some(0));
        assert_eq!(shard_of("0a012345-6789-4bcd-8f01-23456789abcd"), Some(10));
        assert_eq!(ledger_name(0), "ledger");
        assert_eq!(ledger_name(10), "ledger-0a");
    }

    #[test]
    fn anything_else_is_no_message_id() {
        for id in [
            "",
            "ff0123456789abcdef0123456789abc",
            "ff0123456789abcdef0123456789abcg",
            "0a012345-6789-4bcd-8f01-23456789abc",
            "0a012345-6789-4bcd-8f0123456789abcd-",
            "0a012345x6789-4bcd-8f01-23456789abcd",
            "0a012345-6789-4bcd-8f01-23456789abcé",
            "../../etc/passwd/0a012345-6789-4bcd",
        ] {
            assert_eq!(shard_of(id), None, "{id:?}");
        }
    }

    #[test]
    fn a_cursor_reads_back_what_it_wrote() {
        let cursor = Cursor { created_at: 1_765_000_000_123, id: "0a012345-6789-4bcd-8f01-23456789abcd".into() };
        assert_eq!(Cursor::parse(&cursor.to_string()), Some(cursor));
        for bad in [
            "",
            "1765000000123",
            "x.0a012345-6789-4bcd-8f01-23456789abcd",
            "1.2.3",
            "-1.ff0123456789abcdef0123456789abcd",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }
}
