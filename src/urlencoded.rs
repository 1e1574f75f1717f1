//! `application/x-www-form-urlencoded` (the WHATWG URL standard's form encoding): form bodies,
//! queries, and the bodies and queries we send. The `form_urlencoded` crate did the same through
//! generic serializer targets and a percent-encoding table of every byte (about 1 KB gzip of the
//! Worker); this is what we use of it.

/// The name-value pairs of `input`, in order, decoded: `+` is a space, `%XX` a byte (a `%`
/// not followed by two hex digits stays as it is), and bytes that are not UTF-8 become U+FFFD.
/// Empty pieces between `&`s are skipped; a piece without `=` is a name with an empty value.
pub fn parse(input: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    input.split(|&b| b == b'&').filter(|piece| !piece.is_empty()).map(|piece| {
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(at) => (&piece[..at], &piece[at + 1..]),
            None => (piece, &[][..]),
        };
        (decode(name), decode(value))
    })
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).map(|d| d as u8)
}

fn decode(text: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let byte = match text[i] {
            b'+' => b' ',
            b'%' => {
                match (text.get(i + 1).copied().and_then(hex_value), text.get(i + 2).copied().and_then(hex_value)) {
                    (Some(high), Some(low)) => {
                        i += 2;
                        high << 4 | low
                    }
                    _ => b'%',
                }
            }
            other => other,
        };
        bytes.push(byte);
        i += 1;
    }
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `pairs` encoded: `name=value&…`, with letters, digits and `*-._` as they are, a space as `+`,
/// and every other byte of their UTF-8 as `%XX`.
pub fn encode(pairs: &[(&str, &str)]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        for (j, text) in [name, value].into_iter().enumerate() {
            if j > 0 {
                out.push('=');
            }
            for byte in text.bytes() {
                match byte {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(char::from(byte)),
                    b' ' => out.push('+'),
                    _ => {
                        out.push('%');
                        out.push(char::from(HEX[usize::from(byte >> 4)]));
                        out.push(char::from(HEX[usize::from(byte & 15)]));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_browsers_encode() {
        let pairs: Vec<(String, String)> = parse(b"a=1&&b=x+y%20z&c&d=%e2%9c%93&e=100%&f=%zz&=v&g=%FF").collect();
        let expected = [
            ("a", "1"),
            ("b", "x y z"),
            ("c", ""),
            ("d", "✓"),
            ("e", "100%"),
            ("f", "%zz"),
            ("", "v"),
            ("g", "\u{FFFD}"),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        assert_eq!(pairs, expected);
        assert_eq!(parse(b"").count(), 0);
        assert_eq!(parse(b"x=a=b").collect::<Vec<_>>(), [("x".to_string(), "a=b".to_string())]);
    }

    #[test]
    fn encodes_what_parse_reads_back() {
        let pairs = [("error", "relay_busy"), ("message", "try again: 4.7.1 «busy» & co/50%+"), ("e mpty", "")];
        let encoded = encode(&pairs);
        assert_eq!(encoded, "error=relay_busy&message=try+again%3A+4.7.1+%C2%ABbusy%C2%BB+%26+co%2F50%25%2B&e+mpty=");
        let back: Vec<(String, String)> = parse(encoded.as_bytes()).collect();
        assert_eq!(back, pairs.map(|(n, v)| (n.to_string(), v.to_string())));
    }
}
