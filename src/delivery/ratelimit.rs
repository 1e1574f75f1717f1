//! A sliding-window rate limit: at most `limit` hits in any `window` of time. Pure; the
//! platform's Durable Object keeps one window per form and client.

use std::collections::VecDeque;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// `{"allowed", "retry_after"}`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// The client a rate limit counts, from its address (`CF-Connecting-IP`): an IPv4 address
/// (an IPv4-mapped IPv6 address counts as its IPv4 address), or an IPv6 /64, since one host
/// can rotate through a whole /64. Anything unparseable shares one bucket.
pub fn client_key(ip: &str) -> String {
    match ip.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
            }
        },
        Err(_) => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_by_ipv4_address_or_ipv6_64() {
        assert_eq!(client_key("198.51.100.7"), "198.51.100.7");
        assert_eq!(client_key("2001:db8:1:2:3:4:5:6"), client_key("2001:0DB8:1:2:ffff::1"));
        assert_eq!(client_key("2001:db8::1"), "2001:db8:0:0::/64");
        assert_ne!(client_key("2001:db8:1:2::1"), client_key("2001:db8:1:3::1"));
        // IPv4-mapped clients are their IPv4 address, not one shared ::ffff:0:0/64 bucket.
        assert_eq!(client_key("::ffff:198.51.100.7"), "198.51.100.7");
        assert_ne!(client_key("::ffff:198.51.100.7"), client_key("::ffff:203.0.113.9"));
        assert_eq!(client_key(" 10.0.0.1 "), "10.0.0.1");
        for unreadable in ["not an address", "", "256.1.1.1", "01.2.3.4", "1::2::3", "::ffff:1.2.3.4:5"] {
            assert_eq!(client_key(unreadable), "unknown", "{unreadable:?}");
        }
    }

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
