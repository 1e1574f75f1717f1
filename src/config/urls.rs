//! The URLs settings hold (redirects, allowed origins, verification endpoints) and the ones
//! browsers send (`Referer`): absolute http(s) URLs, read strictly. Anything a browser might
//! read differently from a plain reading — credentials (`@`), backslashes, whitespace or
//! control characters, percent-encoding or non-ASCII in the host, odd ports, IPv4 addresses
//! not written as a dotted quad, IPv6 literals other than `[::1]` — is refused
//! rather than guessed at, so a setting or a header can never name one host to us and
//! another to a browser (`http://127.0.0.1:80@evil.example/` is on evil.example). Browsers
//! send hosts already in punycode and lower case; settings must be written that way too.
//!
//! Not the `url` crate: it parses as the WHATWG URL standard does, which is to accept and
//! normalise much of what this reader refuses (backslashes, credentials, odd IPv4 forms), and
//! refusing is the point here.

/// An absolute http(s) URL: its origin's parts, and what follows the authority.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpUrl<'a> {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Lower-cased; an IPv6 address keeps its brackets.
    pub host: String,
    /// `None` for the scheme's default port (written or not).
    pub port: Option<u16>,
    /// Path, query and fragment, as written (empty when there are none).
    pub rest: &'a str,
}

impl HttpUrl<'_> {
    /// The origin as browsers write it in `Origin`: `https://example.com`, with the port only
    /// when it is not the default.
    pub fn origin(&self) -> String {
        match self.port {
            Some(port) => format!("{}://{}:{port}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }

    /// The host is this machine: `localhost`, an IPv4 address in 127.0.0.0/8, or `[::1]`.
    pub fn is_loopback(&self) -> bool {
        let ipv4_loopback = {
            let parts: Vec<&str> = self.host.split('.').collect();
            parts.len() == 4
                && parts[0] == "127"
                && parts.iter().all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u8>().is_ok())
        };
        self.host == "localhost" || self.host == "[::1]" || ipv4_loopback
    }
}

fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'
}

/// Four decimal octets, each 0 to 255 without leading zeros, and no trailing dot: an IPv4
/// address as browsers write it.
fn is_dotted_quad(host: &str) -> bool {
    let octets: Vec<&str> = host.split('.').collect();
    octets.len() == 4
        && octets
            .iter()
            .all(|o| !o.is_empty() && o.len() <= 3 && (o.len() == 1 || !o.starts_with('0')) && o.parse::<u8>().is_ok())
}

/// Reads `raw` as an absolute http(s) URL with a host and no credentials.
pub fn parse(raw: &str) -> Option<HttpUrl<'_>> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_graphic()) || raw.contains('\\') {
        return None;
    }
    let (scheme, after) = raw.split_once("://")?;
    let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "http" => ("http", 80),
        "https" => ("https", 443),
        _ => return None,
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if authority.contains(['@', '%']) {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (address, port) = bracketed.split_once(']')?;
            // Only the loopback address, written as browsers write it: any other IPv6 literal
            // has many spellings, and a browser's origin is only one of them.
            if address != "::1" {
                return None;
            }
            (format!("[{address}]"), port)
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((host, _)) => (host, &authority[host.len()..]),
                None => (authority, ""),
            };
            let labels_ok = host.split('.').enumerate().all(|(i, label)| {
                // A final dot (a fully qualified name) is allowed; empty labels elsewhere are not.
                !label.is_empty() || (i > 0 && host.ends_with('.') && i == host.split('.').count() - 1)
            });
            if host.is_empty() || !host.bytes().all(is_host_char) || !labels_ok {
                return None;
            }
            // A browser reads a host whose last label is a number as an IPv4 address in any of
            // its forms (`127.1`, `0x7f.1`, `2130706433`) and rewrites it: only the dotted
            // quad it would write is taken as is.
            let last = host.trim_end_matches('.').rsplit('.').next().unwrap_or_default();
            let numeric = last.bytes().all(|b| b.is_ascii_digit()) || last.to_ascii_lowercase().starts_with("0x");
            if numeric && !is_dotted_quad(host) {
                return None;
            }
            (host.to_ascii_lowercase(), port)
        }
    };
    let port = match port {
        "" | ":" => None,
        digits => {
            let digits = digits.strip_prefix(':')?;
            if digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(digits.parse::<u16>().ok()?).filter(|p| *p != default_port)
        }
    };
    Some(HttpUrl { scheme, host, port, rest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_written_as_browsers_write_them() {
        let origin = |raw: &str| parse(raw).map(|u| u.origin());
        assert_eq!(origin("HTTPS://Example.COM:443/x?y#z").as_deref(), Some("https://example.com"));
        assert_eq!(origin("https://b.example:8443/contact?x=1").as_deref(), Some("https://b.example:8443"));
        assert_eq!(origin("http://localhost:8080").as_deref(), Some("http://localhost:8080"));
        assert_eq!(origin("http://[::1]:80/").as_deref(), Some("http://[::1]"));
        assert_eq!(origin("https://example.com.").as_deref(), Some("https://example.com."));
        assert_eq!(parse("https://example.com/a/b?c").unwrap().rest, "/a/b?c");
        assert_eq!(parse("https://example.com").unwrap().rest, "");
    }

    #[test]
    fn whatever_a_browser_might_read_differently_is_refused() {
        for bad in [
            "http://127.0.0.1:80@evil.example/",
            "https://user:pw@example.com/",
            "https://example.com\\@evil.example/",
            "https://exa mple.com/",
            "https://ex%61mple.com/",
            "https://bücher.example/",
            "https://example.com:99999/",
            "https://example.com:8o/",
            "https://a..b/",
            "https://.example.com/",
            "https:///path",
            "https://",
            "ftp://example.com/",
            "javascript:alert(1)",
            "//example.com/",
            "/relative",
            "https://[fe80::1%25eth0]/",
            "",
            // Hosts a browser rewrites (its origin would not be the one written).
            "http://0x7f.1/",
            "http://2130706433/",
            "http://127.1/",
            "http://0177.0.0.1/",
            "http://127.0.0.1./",
            "http://1.2.3/",
            "https://example.123/",
            "https://a.b.0x10/",
            "http://[0:0::1]/",
            "http://[::FFFF:1.2.3.4]/",
            "http://[1::2::3]/",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn loopback_is_localhost_127_slash_8_and_ipv6_one() {
        for host in ["http://localhost:9000/x", "http://127.0.0.1/", "http://127.8.9.10:1/", "http://[::1]:8787/"] {
            assert!(parse(host).unwrap().is_loopback(), "{host}");
        }
        for host in ["http://127.0.0.1.evil.example/", "http://128.0.0.1/", "http://localhost.evil/"] {
            assert!(!parse(host).unwrap().is_loopback(), "{host}");
        }
        assert_eq!(parse("http://203.0.113.7:8080/").unwrap().origin(), "http://203.0.113.7:8080");
        assert_eq!(parse("http://[2001:db8::1]/"), None, "IPv6 literals other than [::1] are refused");
    }
}
