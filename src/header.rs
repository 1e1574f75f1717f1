//! The one rule for request text that ends up in a message header (subject, display names,
//! `X-…` values, attachment filenames). The MIME builder encodes non-ASCII text itself, so
//! callers send plain UTF-8; anything that could break a header line or smuggle one in is
//! refused: control characters (CR, LF, NUL, …), RFC 2047 encoded words, and percent-encoded
//! CR or LF; so is text that renders as something else (bidirectional controls, line and
//! paragraph separators, invisible characters). The API refuses ([`problem`]); forms, which
//! cannot ask a visitor to fix a field, repair ([`repair`]).

/// Characters that change how the text around them is shown, or are not shown at all:
/// bidirectional embeddings, overrides, isolates and marks (a filename `invoice` U+202E
/// `fdp.exe` shows as `invoiceexe.pdf`), the line and paragraph separators, and zero-width
/// spaces. ZWJ and ZWNJ (U+200D, U+200C) are not here: emoji sequences and scripts such as
/// Persian and the Indic ones need them in ordinary text.
pub fn is_deceptive(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        | '\u{2028}' | '\u{2029}' | '\u{2060}' | '\u{FEFF}')
}

/// Why `text` cannot go into a header, or `None` when it can.
pub fn problem(text: &str) -> Option<&'static str> {
    if text.chars().any(char::is_control) {
        return Some("contains control characters (CR, LF, NUL, …)");
    }
    if text.chars().any(is_deceptive) {
        return Some("contains invisible or bidirectional control characters");
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

/// `text` made fit for a header: control characters become spaces, deceptive ones go, the
/// sequences [`problem`] refuses are taken apart, runs of white space become one space, and
/// the result is cut to `max_chars`. Repairing the whole assembled text (not only its
/// pieces) matters: two harmless halves can join into an encoded word.
pub fn repair(text: &str, max_chars: usize) -> String {
    let mut text: String =
        text.chars().filter(|c| !is_deceptive(*c)).map(|c| if c.is_control() { ' ' } else { c }).collect();
    // Taking one sequence apart can form another, so repeat until nothing changes.
    loop {
        let before = text.len();
        for (bad, good) in
            [("=?", "= ?"), ("?=", "? ="), ("%0d", "%0 d"), ("%0D", "%0 D"), ("%0a", "%0 a"), ("%0A", "%0 A")]
        {
            text = text.replace(bad, good);
        }
        if text.len() == before {
            break;
        }
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    text.chars().take(max_chars).collect()
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
    fn text_that_renders_as_something_else_is_refused() {
        for bad in
            ["invoice\u{202E}fdp.exe", "a\u{2066}b", "a\u{2028}b", "a\u{2029}b", "zero\u{200B}width", "\u{FEFF}bom"]
        {
            assert!(problem(bad).is_some(), "accepted {bad:?}");
            assert!(problem(&repair(bad, 200)).is_none(), "repair left {bad:?}");
        }
        assert_eq!(repair("invoice\u{202E}fdp.exe", 200), "invoicefdp.exe");
        // Joiners stay: emoji sequences and Persian text need them.
        assert_eq!(problem("👨\u{200D}👩\u{200D}👧 می\u{200C}خواهم"), None);
    }

    #[test]
    fn repair_takes_apart_what_problem_refuses_even_across_pieces() {
        for bad in ["=?utf-8?b?", "?=", "a=?=b", "=?utf-8?q?x?=", "x%0D%0Ay", "a\r\nBcc: x", "%0%0dd"] {
            let joined = format!("{bad}{bad}");
            assert_eq!(problem(&repair(&joined, 500)), None, "{joined:?} -> {:?}", repair(&joined, 500));
        }
        assert_eq!(repair("  a \t b  ", 10), "a b");
        assert_eq!(repair("abcdef", 3), "abc");
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
