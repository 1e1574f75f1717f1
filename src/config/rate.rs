//! `SMTP_RATE`: the relay's own sending quota, as one or more limits such as `14/s`, `100/m`,
//! `2000/d` (comma-separated, every one enforced).

use std::fmt;

/// At most `count` messages in any `period_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub period_ms: u64,
}

const UNITS: [(&str, u64); 4] = [("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)];

impl RateLimit {
    /// `14/s`, `100/m`, `500/h` or `2000/d`; the count from 1 to 1,000,000.
    pub fn parse(text: &str) -> Option<RateLimit> {
        let (count, unit) = text.trim().split_once('/')?;
        let count = count.trim().parse::<u32>().ok().filter(|n| (1..=1_000_000).contains(n))?;
        let (_, period_ms) = UNITS.iter().find(|(name, _)| *name == unit.trim())?;
        Some(RateLimit { count, period_ms: *period_ms })
    }

    /// `SMTP_RATE` as a list of limits; `None` when any is not one.
    pub fn parse_list(text: &str) -> Option<Vec<RateLimit>> {
        text.split(',').map(RateLimit::parse).collect::<Option<Vec<_>>>().filter(|l| !l.is_empty())
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = UNITS.iter().find(|(_, ms)| *ms == self.period_ms).map_or("ms", |(name, _)| name);
        write!(f, "{}/{unit}", self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_in_each_unit_and_write_back_the_same() {
        let limits = RateLimit::parse_list("14/s, 100/m,500/h ,2000/d").unwrap();
        assert_eq!(limits.iter().map(|l| l.period_ms).collect::<Vec<_>>(), [1_000, 60_000, 3_600_000, 86_400_000]);
        let written: Vec<String> = limits.iter().map(|l| l.to_string()).collect();
        assert_eq!(written, ["14/s", "100/m", "500/h", "2000/d"]);
        for bad in ["", "14", "14/w", "0/s", "-1/s", "x/s", "14/s,", "2000000/d"] {
            assert_eq!(RateLimit::parse_list(bad), None, "{bad:?}");
        }
    }
}
