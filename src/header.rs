//! Rules for any request text that ends up in a message header (subject, display names,
//! `X-…` values, attachment filenames). The MIME builder encodes non-ASCII text itself, so
//! callers send plain UTF-8; anything that could break a header line or smuggle one in is
//! refused: control characters (CR, LF, NUL, …), RFC 2047 encoded words, and percent-encoded
//! CR or LF.

/// Why `text` cannot go into a header, or `None` when it can.
pub fn problem(text: &str) -> Option<&'static str> {
    if text.chars().any(char::is_control) {
        return Some("contains control characters (CR, LF, NUL, …)");
    }
    if text.contains("=?") && text.contains("?=") {
        return Some("contains an encoded word (=?…?=); send plain UTF-8 text instead");
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("%0d") || lower.contains("%0a") {
        return Some("contains a percent-encoded CR or LF");
    }
    None
}

/// Header names a caller may add: `X-` followed by letters, digits and hyphens.
pub fn is_extension_name(name: &str) -> bool {
    name.len() > 2
        && name.len() <= 76
        && name.as_bytes()[..2].eq_ignore_ascii_case(b"x-")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_in_any_language_is_fine() {
        for ok in ["Hello", "Grüße — ✓ 日本語", "50% off", "a = b? yes", "tab\tis not allowed?"] {
            let expected =
                if ok.contains('\t') { Some("contains control characters (CR, LF, NUL, …)") } else { None };
            assert_eq!(problem(ok), expected, "{ok:?}");
        }
    }

    #[test]
    fn injection_in_every_form_is_refused() {
        for bad in [
            "x\r\nBcc: a@evil.example",
            "x\nBcc: a@evil.example",
            "x\rBcc: a@evil.example",
            "x\0y",
            "x\u{85}y",
            "=?utf-8?q?x=0D=0ABcc:_a@evil.example?=",
            "=?UTF-8?B?eA0KQmNjOiBhQGV2aWwuZXhhbXBsZQ==?=",
            "x%0D%0ABcc: a@evil.example",
            "x%0abcc: a@evil.example",
        ] {
            assert!(problem(bad).is_some(), "accepted {bad:?}");
        }
    }

    #[test]
    fn extension_header_names() {
        for ok in ["X-Campaign", "x-order-id", "X-1"] {
            assert!(is_extension_name(ok), "{ok}");
        }
        for bad in [
            "Bcc",
            "X-",
            "X-Bad Name",
            "X-Bad:Name",
            "X-Ünï",
            "Xé",
            "é",
            "ÉX-a",
            "Subject",
            "X-a\r\nBcc",
            "X-trailing-",
        ] {
            assert!(!is_extension_name(bad), "{bad}");
        }
    }
}
