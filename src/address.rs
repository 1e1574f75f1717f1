//! Validated e-mail addresses and mailboxes. Nothing reaches a header or an SMTP command
//! before it has been through here: CR, LF and every other control character are refused.

use std::fmt;

/// A `local@domain` address (RFC 5321 §4.1.2 dot-atom local part, host-name domain).
///
/// A non-ASCII domain is stored in its ASCII (punycode) form, so it travels everywhere
/// without SMTPUTF8. A non-ASCII local part (RFC 6531) is kept as UTF-8 and makes the
/// address [`needs_smtputf8`](EmailAddress::needs_smtputf8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailAddress(String);

/// Why an address or a name was refused; the text goes into a `validation_failed` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidAddress(pub String);

impl fmt::Display for InvalidAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const LOCAL_SPECIALS: &[u8] = b"!#$%&'*+-/=?^_`{|}~.";

fn local_char_allowed(c: char) -> bool {
    // RFC 6531 §3.3: atext extended with every non-ASCII UTF-8 character.
    c.is_ascii_alphanumeric()
        || (c.is_ascii() && LOCAL_SPECIALS.contains(&(c as u8)))
        || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
}

/// A non-ASCII domain in punycode, mapped as URLs map hosts (UTS 46). Natively the `idna`
/// crate; in the Worker the runtime's own URL parser, which the platform installs with
/// [`set_domain_to_ascii`], so a domain maps exactly as the runtime maps any URL's host.
/// `None`: not a valid internationalised name.
#[cfg(not(target_arch = "wasm32"))]
fn domain_to_ascii(domain: &str) -> Option<String> {
    idna::domain_to_ascii(domain).ok()
}

#[cfg(target_arch = "wasm32")]
static DOMAIN_TO_ASCII: std::sync::OnceLock<fn(&str) -> Option<String>> = std::sync::OnceLock::new();

/// Installs the runtime's conversion (once; later calls change nothing). Until it is, a
/// non-ASCII domain is refused as invalid rather than guessed at.
#[cfg(target_arch = "wasm32")]
pub fn set_domain_to_ascii(convert: fn(&str) -> Option<String>) {
    let _ = DOMAIN_TO_ASCII.set(convert);
}

#[cfg(target_arch = "wasm32")]
fn domain_to_ascii(domain: &str) -> Option<String> {
    DOMAIN_TO_ASCII.get().and_then(|convert| convert(domain))
}

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, InvalidAddress> {
        let invalid = |why: &str| Err(InvalidAddress(why.to_string()));
        if input.chars().any(char::is_control) {
            return invalid("contains control characters (CR, LF, NUL, …)");
        }
        if input.chars().any(|c| crate::header::is_deceptive(c) || is_invisible_joiner(c) || is_look_alike_at(c)) {
            return invalid("contains invisible, bidirectional or look-alike characters");
        }
        let Some((local, domain)) = input.rsplit_once('@') else {
            return invalid("has no @");
        };
        if local.is_empty() || local.len() > 64 {
            return invalid("local part is empty or longer than 64 octets");
        }
        if !local.chars().all(local_char_allowed)
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return invalid("local part has characters an address cannot have");
        }
        let domain = if domain.is_ascii() {
            domain.to_string()
        } else {
            domain_to_ascii(domain)
                .ok_or_else(|| InvalidAddress("domain is not a valid internationalised name".into()))?
        };
        if !is_host_name(&domain) {
            return invalid("domain is not a valid host name");
        }
        let address = format!("{local}@{domain}");
        if address.len() > 254 {
            return invalid("longer than 254 octets");
        }
        Ok(EmailAddress(address))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }

    /// A UTF-8 local part can only be sent to a relay that offers SMTPUTF8 (RFC 6531).
    pub fn needs_smtputf8(&self) -> bool {
        !self.0.is_ascii()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Joiners are fine in text but never in an address: two addresses that look the same must be
/// the same address.
fn is_invisible_joiner(c: char) -> bool {
    matches!(c, '\u{200C}' | '\u{200D}' | '\u{00AD}' | '\u{034F}' | '\u{180E}')
}

/// Characters shown as `@` that are not `@` (full-width, small, and the like).
fn is_look_alike_at(c: char) -> bool {
    matches!(c, '\u{FF20}' | '\u{FE6B}')
}

/// A dotted host name of letters, digits and hyphens, with at least two labels.
pub fn is_host_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && !labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

/// An address with an optional display name, as in `Name <a@b.c>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub email: EmailAddress,
}

impl Mailbox {
    /// Parses `a@b.c`, `<a@b.c>`, `Name <a@b.c>` or `"Last, First" <a@b.c>`.
    pub fn parse(input: &str) -> Result<Self, InvalidAddress> {
        let input = input.trim();
        match input.strip_suffix('>').and_then(|s| s.rsplit_once('<')) {
            Some((name, email)) => Mailbox::new(Some(unquote(name.trim())), email.trim()),
            None => Mailbox::new(None, input),
        }
    }

    /// A mailbox from separate parts, as in `{"name": …, "email": …}`.
    pub fn new(name: Option<&str>, email: &str) -> Result<Self, InvalidAddress> {
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        if let Some(name) = name {
            if let Some(why) = crate::header::problem(name) {
                return Err(InvalidAddress(format!("display name {why}")));
            }
            if name.chars().count() > 200 {
                return Err(InvalidAddress("display name is longer than 200 characters".into()));
            }
        }
        let name = name.map(str::to_string);
        Ok(Mailbox { name, email: EmailAddress::parse(email)? })
    }
}

fn unquote(name: &str) -> &str {
    name.strip_prefix('"').and_then(|n| n.strip_suffix('"')).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses() {
        for ok in ["a@example.com", "first.last+tag@sub.example.co.uk", "o'neil@example.org", "x_y-z@a-b.example"] {
            assert_eq!(EmailAddress::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_injection_and_nonsense() {
        for bad in [
            "b@x.com\r\nBcc: y@evil.com",
            "b@x.com\n",
            "b@x.com\0",
            "a@b",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@exa mple.com",
            "<a@example.com>",
            "a..b@example.com",
            ".a@example.com",
            "a@-example.com",
            "a@127.0.0.1",
            "a@[127.0.0.1]",
            "a,b@example.com",
            "a@example.com>",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn international_addresses() {
        let idn = EmailAddress::parse("info@bücher.example").unwrap();
        assert_eq!(idn.as_str(), "info@xn--bcher-kva.example");
        assert!(!idn.needs_smtputf8(), "a punycode domain needs no SMTPUTF8");
        let utf8 = EmailAddress::parse("jörg@example.com").unwrap();
        assert!(utf8.needs_smtputf8());
        assert!(EmailAddress::parse("jö rg@example.com").is_err());
        assert!(EmailAddress::parse("a@bü cher.example").is_err());
        assert!(EmailAddress::parse("jörg\u{2028}@example.com").is_err());
        for look_alike in [
            "admin\u{FF20}example.com@evil.example",
            "admin\u{FE6B}x@example.com",
            "pay\u{200B}pal@example.com",
            "pay\u{200D}pal@example.com",
            "user@exa\u{200B}mple.com",
            "user\u{202E}moc@example.com",
        ] {
            assert!(EmailAddress::parse(look_alike).is_err(), "accepted {look_alike:?}");
        }
    }

    #[test]
    fn mailbox_forms() {
        let m = Mailbox::parse("Ada Lovelace <ada@example.com>").unwrap();
        assert_eq!((m.name.as_deref(), m.email.as_str()), (Some("Ada Lovelace"), "ada@example.com"));
        let m = Mailbox::parse("\"Lovelace, Ada\" <ada@example.com>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Lovelace, Ada"));
        let m = Mailbox::parse("<ada@example.com>").unwrap();
        assert_eq!(m.name, None);
        let m = Mailbox::parse("ada@example.com").unwrap();
        assert_eq!(m.name, None);
        assert_eq!(m.email.domain(), "example.com");
    }

    #[test]
    fn mailbox_name_with_newline_is_refused() {
        assert!(Mailbox::parse("Eve\r\nBcc: x@evil.com <eve@example.com>").is_err());
        assert!(Mailbox::new(Some("Eve\u{85}Bcc"), "eve@example.com").is_err());
    }
}
