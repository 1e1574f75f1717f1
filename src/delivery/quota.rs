//! The relay's quota (`SMTP_RATE`): one token per message, taken before anything reaches the
//! relay, by every path that sends (sync and queued, API, forms and batches, warm and cold
//! sessions) from one Durable Object per relay account. A burst then waits here, or is refused
//! with `Retry-After`, instead of tripping the relay's own limit (SES starts at 14 a second,
//! Gmail at 2,000 a day, Microsoft 365 at 30 a minute) and failing as `relay_busy`, or worse.
//!
//! Each limit counts messages per window of its period, windows aligned to the Unix epoch
//! (whole seconds, minutes, hours, UTC days), as Nodemailer's pool counts them: at most
//! `count` in any one window, so a relay's log grouped by second (or minute, or day) never
//! shows more. A token bucket would let twice the count through around a refill; a window
//! lets a whole window's count go at once, which is what a burst under a daily quota wants.

use serde::{Deserialize, Serialize};

use crate::config::rate::RateLimit;
use crate::error::{ApiError, ErrorCode};

/// The counts of one relay account, as its object keeps them between calls: per limit, the
/// messages counted in the current window and in later ones that queued messages have
/// reserved, in the order of the windows: `{"limits", "windows": [[[window, count], …], …]}`
/// (a window is `at_ms / period_ms`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Windows {
    /// The limits counted (`14/s,100/m`): with other limits, counting starts afresh.
    limits: String,
    windows: Vec<Vec<(u64, u32)>>,
}

/// What a message got from the quota: `"Now"`, `{"Later": ms}` (a place held for it that many
/// milliseconds from now) or `{"Refused": ms}` (none taken; there is room again then).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Token {
    Now,
    Later(u64),
    Refused(u64),
}

fn written(limits: &[RateLimit]) -> String {
    limits.iter().map(RateLimit::to_string).collect::<Vec<_>>().join(",")
}

impl Windows {
    /// Forgets windows that have passed, and everything when the limits changed.
    fn prune(&mut self, limits: &[RateLimit], now_ms: u64) {
        if self.limits != written(limits) || self.windows.len() != limits.len() {
            *self = Windows { limits: written(limits), windows: vec![Vec::new(); limits.len()] };
        }
        for (counts, limit) in self.windows.iter_mut().zip(limits) {
            let current = now_ms / limit.period_ms;
            counts.retain(|(window, _)| *window >= current);
        }
    }

    /// The first moment from `now_ms` at which every limit's window has room.
    fn first_room(&self, limits: &[RateLimit], now_ms: u64) -> u64 {
        let mut at = now_ms;
        loop {
            let mut moved = false;
            for (counts, limit) in self.windows.iter().zip(limits) {
                let window = at / limit.period_ms;
                if counts.iter().any(|&(w, n)| w == window && n >= limit.count) {
                    at = (window + 1) * limit.period_ms;
                    moved = true;
                }
            }
            if !moved {
                return at;
            }
        }
    }

    fn count(&mut self, limits: &[RateLimit], at_ms: u64) {
        for (counts, limit) in self.windows.iter_mut().zip(limits) {
            let window = at_ms / limit.period_ms;
            match counts.binary_search_by_key(&window, |&(w, _)| w) {
                Ok(found) => counts[found].1 += 1,
                Err(place) => counts.insert(place, (window, 1)),
            }
        }
    }

    /// A place in every limit's current window, or none: for a send that answers now. Places
    /// queued messages reserved come first.
    pub fn take(&mut self, limits: &[RateLimit], now_ms: u64) -> Token {
        self.prune(limits, now_ms);
        match self.first_room(limits, now_ms) {
            at if at == now_ms => {
                self.count(limits, now_ms);
                Token::Now
            }
            at => Token::Refused(at - now_ms),
        }
    }

    /// A place now, or in the first windows with room after the places reserved before it:
    /// for a queued message, which then waits for its own moment and needs no other place.
    /// A backlog so leaves in order, a window's count at a time, instead of waking all at once
    /// and asking again.
    pub fn reserve(&mut self, limits: &[RateLimit], now_ms: u64) -> Token {
        self.prune(limits, now_ms);
        let at = self.first_room(limits, now_ms);
        self.count(limits, at);
        match at - now_ms {
            0 => Token::Now,
            wait => Token::Later(wait),
        }
    }
}

/// `relay_rate_limited`: the quota has no room now; `Retry-After` when it will.
pub fn rate_limited(limits: &[RateLimit], wait_ms: u64) -> ApiError {
    let mut error = ApiError::new(
        ErrorCode::RelayRateLimited,
        format!("the relay's quota (SMTP_RATE={}) is used up for now; nothing was sent", written(limits)),
    );
    error.retry_after = Some(wait_ms.div_ceil(1000).max(1) as u32);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(text: &str) -> Vec<RateLimit> {
        RateLimit::parse_list(text).unwrap()
    }

    /// Takes until refused: how many were taken, and the wait then.
    fn burst(windows: &mut Windows, limits: &[RateLimit], now_ms: u64) -> (u32, u64) {
        let mut taken = 0;
        loop {
            match windows.take(limits, now_ms) {
                Token::Now => taken += 1,
                Token::Refused(wait) | Token::Later(wait) => return (taken, wait),
            }
        }
    }

    #[test]
    fn each_unit_allows_its_count_per_window_and_then_waits_for_the_next() {
        // 2023-11-14 22:13:20.250 UTC: a quarter of a second into a second.
        let now = 1_700_000_000_250;
        for (text, count, period) in
            [("14/s", 14, 1_000), ("30/m", 30, 60_000), ("500/h", 500, 3_600_000), ("2000/d", 2000, 86_400_000)]
        {
            let limits = limits(text);
            let mut windows = Windows::default();
            let next = (now / period + 1) * period;
            assert_eq!(burst(&mut windows, &limits, now), (count, next - now), "{text}");
            assert_eq!(windows.take(&limits, next - 1), Token::Refused(1), "{text}");
            assert_eq!(burst(&mut windows, &limits, next).0, count, "{text}: the next window, whole");
        }
    }

    #[test]
    fn every_limit_holds() {
        let limits = limits("5/s,8/m");
        let mut windows = Windows::default();
        assert_eq!(burst(&mut windows, &limits, 0), (5, 1_000), "the second's 5 first");
        // The next second has room for 5, the minute for 3 only: then the next minute.
        assert_eq!(burst(&mut windows, &limits, 1_000), (3, 59_000));
        assert_eq!(burst(&mut windows, &limits, 60_000).0, 5);
    }

    #[test]
    fn the_counts_survive_a_restart_and_start_over_when_the_limits_change() {
        let limits = limits("3/m");
        let mut windows = Windows::default();
        assert_eq!(burst(&mut windows, &limits, 0).0, 3);
        // The object restarts: what it stored reads back and refuses the same.
        let stored = serde_json::to_string(&windows).unwrap();
        let mut restored: Windows = serde_json::from_str(&stored).unwrap();
        assert_eq!(restored.take(&limits, 1_000), Token::Refused(59_000));
        // Other settings: counting starts afresh.
        assert_eq!(burst(&mut restored, &self::limits("10/m"), 1_000).0, 10);
    }

    #[test]
    fn a_clock_that_goes_back_counts_in_the_window_it_says() {
        let limits = limits("1/s");
        let mut windows = Windows::default();
        assert_eq!(windows.take(&limits, 10_000), Token::Now);
        assert_eq!(windows.take(&limits, 10_500), Token::Refused(500));
        assert_eq!(windows.take(&limits, 11_000), Token::Now);
    }

    #[test]
    fn reserved_places_fill_window_after_window_and_come_before_sends_that_answer_now() {
        let limits = limits("2/s");
        let mut windows = Windows::default();
        let places: Vec<Token> = (0..5).map(|_| windows.reserve(&limits, 400)).collect();
        let expected = [Token::Now, Token::Now, Token::Later(600), Token::Later(600), Token::Later(1_600)];
        assert_eq!(places, expected);
        // A send that answers now waits behind them all: the second window after them.
        assert_eq!(windows.take(&limits, 400), Token::Refused(1_600));
        assert_eq!(windows.take(&limits, 2_000), Token::Now, "the third window has one place left");
        assert_eq!(windows.take(&limits, 2_000), Token::Refused(1_000));
        // What passed is forgotten: the map holds the current window and later ones only.
        assert!(windows.windows[0].iter().all(|&(w, _)| w >= 2));
    }
}
