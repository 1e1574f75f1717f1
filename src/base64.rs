//! Base64 (RFC 4648 §4, the standard alphabet with padding): what MIME bodies and encoded
//! words, SMTP AUTH, DKIM and attachments sent as JSON use.
//!
//! Why not the `base64` crate: its engine (configurable alphabets and padding, decoders tuned
//! with lookup tables for every position) was about 3 KB gzip of the Worker; this is what we
//! need of it. Decoding is as strict as its `STANDARD` engine: length a multiple of four,
//! padding only at the end, and no stray bits in the last character (one text per byte string).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `data` in base64, appended to `out`.
pub fn encode_into(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len().div_ceil(3) * 4);
    let mut chunks = data.chunks_exact(3);
    let symbol = |index: u32| ALPHABET[(index & 63) as usize];
    for chunk in &mut chunks {
        let n = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
        out.extend_from_slice(&[symbol(n >> 18), symbol(n >> 12), symbol(n >> 6), symbol(n)]);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let n = u32::from(rest[0]) << 16 | rest.get(1).map_or(0, |&b| u32::from(b) << 8);
        let third = if rest.len() == 2 { symbol(n >> 6) } else { b'=' };
        out.extend_from_slice(&[symbol(n >> 18), symbol(n >> 12), third, b'=']);
    }
}

/// `data` in base64.
pub fn encode(data: impl AsRef<[u8]>) -> String {
    let mut out = Vec::new();
    encode_into(data.as_ref(), &mut out);
    // Only alphabet characters were written.
    String::from_utf8(out).unwrap_or_default()
}

/// The value of a base64 character, or 64 for anything else.
const fn value_table() -> [u8; 256] {
    let mut table = [64u8; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
}

const VALUES: [u8; 256] = value_table();

/// The bytes `text` encodes; `None` unless it is canonical padded base64 (no white space).
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let padding = text.iter().rev().take(2).take_while(|&&c| c == b'=').count();
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for (i, quad) in text.chunks_exact(4).enumerate() {
        let last = (i + 1) * 4 == text.len();
        // The last quad's padding counts as zero bits, and only those bits may be zero-filled.
        let symbols = if last { 4 - padding } else { 4 };
        let mut n = 0u32;
        for (j, &c) in quad.iter().enumerate() {
            let value = if j < symbols { VALUES[usize::from(c)] } else { 0 };
            if value == 64 {
                return None;
            }
            n = n << 6 | u32::from(value);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let keep = symbols - 1;
        // No stray bits below the last byte kept (`Zh==` is not `Zg==`).
        if n & (0xFF_FFFF >> (8 * keep)) != 0 {
            return None;
        }
        out.extend_from_slice(&bytes[..keep]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(encode(plain), encoded);
            assert_eq!(decode(encoded.as_bytes()).as_deref(), Some(plain.as_bytes()), "{encoded}");
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(encode(&all[..]).as_bytes()[..8], *b"AAECAwQF");
        assert_eq!(decode(encode(&all[..]).as_bytes()).unwrap(), all);
        assert_eq!(encode([0xFB, 0xFF]), "+/8=");
    }

    #[test]
    fn decoding_refuses_what_is_not_canonical_padded_base64() {
        for bad in [
            "Zg",
            "Zg=",
            "Zm8",
            "Z===",
            "====",
            "Zh==",
            "Zm9=",
            "Zg==Zg==",
            "Zm=v",
            "Zm9v\n",
            "Zm9v Zg==",
            "Zm-v",
            "Zm_v",
            "Zm9vä",
        ] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
