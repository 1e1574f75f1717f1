//! A sliding-window rate limit: at most `limit` hits in any `window` of time. Pure; the
//! platform's Durable Object keeps one window per form and client.

use std::collections::VecDeque;

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
    let ip = ip.trim();
    if let Some([a, b, c, d]) = ipv4(ip) {
        return format!("{a}.{b}.{c}.{d}");
    }
    match ipv6(ip) {
        Some([0, 0, 0, 0, 0, 0xFFFF, high, low]) => format!("{}.{}.{}.{}", high >> 8, high & 255, low >> 8, low & 255),
        Some([a, b, c, d, ..]) => format!("{a:x}:{b:x}:{c:x}:{d:x}::/64"),
        None => "unknown".into(),
    }
}

/// Dotted decimal, four parts of 0 to 255 without leading zeros (as std's parser reads it; the
/// std one, with IPv6's, was 1 KB gzip of the Worker for this one header).
fn ipv4(text: &str) -> Option<[u8; 4]> {
    let mut parts = text.split('.');
    let mut address = [0u8; 4];
    for byte in &mut address {
        let part = parts.next()?;
        let digits = part.len();
        if !(1..=3).contains(&digits)
            || (digits > 1 && part.starts_with('0'))
            || !part.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        *byte = u8::try_from(part.bytes().fold(0u32, |n, b| n * 10 + u32::from(b - b'0'))).ok()?;
    }
    parts.next().is_none().then_some(address)
}

/// Eight groups of 1 to 4 hex digits, at most one `::` standing for one or more zero groups,
/// the last 32 bits optionally in dotted decimal (RFC 4291 §2.2).
fn ipv6(text: &str) -> Option<[u16; 8]> {
    /// The groups of `text` (`::`-free); `last` when the address ends with it (dotted allowed).
    fn groups(text: &str, last: bool, out: &mut Vec<u16>) -> Option<()> {
        if text.is_empty() {
            return Some(());
        }
        let mut pieces = text.split(':').peekable();
        while let Some(piece) = pieces.next() {
            if last && pieces.peek().is_none() && piece.contains('.') {
                let [a, b, c, d] = ipv4(piece)?;
                out.extend([u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])]);
            } else if (1..=4).contains(&piece.len()) && piece.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push(piece.bytes().fold(0, |n, b| n << 4 | char::from(b).to_digit(16).unwrap_or(0) as u16));
            } else {
                return None;
            }
        }
        Some(())
    }
    let mut head = Vec::new();
    let mut tail = Vec::new();
    match text.split_once("::") {
        Some((before, after)) => {
            groups(before, false, &mut head)?;
            groups(after, true, &mut tail)?;
            if head.len() + tail.len() > 7 {
                return None;
            }
        }
        None => {
            groups(text, true, &mut head)?;
            if head.len() != 8 {
                return None;
            }
        }
    }
    let mut address = [0u16; 8];
    address[..head.len()].copy_from_slice(&head);
    address[8 - tail.len()..].copy_from_slice(&tail);
    Some(address)
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
        assert_eq!(client_key("not an address"), "unknown");
    }

    /// The key std's parser gave (what this module used before its own parser).
    fn std_key(ip: &str) -> String {
        use std::net::IpAddr;
        match ip.trim().parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => v4.to_string(),
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
            Err(_) => "unknown".into(),
        }
    }

    #[test]
    fn addresses_are_read_as_std_reads_them() {
        let fixed = [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            " 10.0.0.1 ",
            "::",
            "::1",
            "1::",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1::2::3",
            ":1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:",
            "::ffff:1.2.3.4",
            "::1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5:6:7:1.2.3.4",
            "1.2.3.4::",
            "::ffff:1.2.3.4:5",
            "12345::",
            "fFfF::aBc",
            "+1::",
            "1:+2::",
            "::ffff:01.2.3.4",
            "",
        ];
        for ip in fixed {
            assert_eq!(client_key(ip), std_key(ip), "{ip:?}");
        }
        // Random strings of the characters that matter (a deterministic xorshift).
        let alphabet = ["0", "1", "9", "f", "F", "g", ":", "::", ".", "255", "256", "ffff", "12345", "+"];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..50_000 {
            let mut ip = String::new();
            for _ in 0..(state % 16) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ip.push_str(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            assert_eq!(client_key(&ip), std_key(&ip), "{ip:?}");
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
