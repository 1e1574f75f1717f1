//! A sliding-window rate limit: at most `limit` hits in any `window` of time. Pure; the
//! Durable Object in `platform.rs` keeps one window per form and client.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    /// Seconds until a hit would be allowed (0 when allowed).
    pub retry_after: u32,
}

#[derive(Debug, Default)]
pub struct Window {
    hits: VecDeque<u64>,
}

impl Window {
    pub fn hit(&mut self, now_ms: u64, limit: u32, window_ms: u64) -> Decision {
        while self.hits.front().is_some_and(|&t| t + window_ms <= now_ms) {
            self.hits.pop_front();
        }
        if self.hits.len() < limit as usize {
            self.hits.push_back(now_ms);
            return Decision { allowed: true, retry_after: 0 };
        }
        let oldest = self.hits.front().copied().unwrap_or(now_ms);
        let wait_ms = (oldest + window_ms).saturating_sub(now_ms);
        Decision { allowed: false, retry_after: wait_ms.div_ceil(1000).max(1) as u32 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_then_refuses_until_the_oldest_hit_leaves_the_window() {
        let mut window = Window::default();
        for t in [0, 1_000, 2_000] {
            assert!(window.hit(t, 3, 60_000).allowed);
        }
        let refused = window.hit(30_000, 3, 60_000);
        assert_eq!(refused, Decision { allowed: false, retry_after: 30 });
        assert!(!window.hit(59_999, 3, 60_000).allowed);
        assert!(window.hit(60_000, 3, 60_000).allowed, "the first hit has left the window");
        assert!(!window.hit(60_500, 3, 60_000).allowed);
    }
}
