//! Base64 (RFC 4648 §4, the standard alphabet with padding): what MIME bodies and encoded
//! words, SMTP AUTH, DKIM and attachments sent as JSON use.
//!
//! Why not the `base64` crate: its engine (configurable alphabets and padding, decoders tuned
//! with lookup tables for every position) was 4.7 KB gzip of the Worker; this is what we
//! need of it. Decoding is as strict as its `STANDARD` engine: length a multiple of four,
//! padding only at the end, and no stray bits in the last character (one text per byte string).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `data` in base64, written into `slots`, which holds exactly its length in base64. Each
/// byte is assigned on its own: at opt-level z a three- or four-byte `copy_from_slice` stays a
/// call to memcpy, and that was most of the time.
fn fill(data: &[u8], slots: &mut [u8]) {
    let symbol = |index: u32| ALPHABET[(index & 63) as usize];
    let mut chunks = data.chunks_exact(3);
    let mut quads = slots.chunks_exact_mut(4);
    for (chunk, quad) in (&mut chunks).zip(&mut quads) {
        let n = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
        quad[0] = symbol(n >> 18);
        quad[1] = symbol(n >> 12);
        quad[2] = symbol(n >> 6);
        quad[3] = symbol(n);
    }
    let rest = chunks.remainder();
    if let Some(quad) = quads.next() {
        let n = u32::from(rest[0]) << 16 | rest.get(1).map_or(0, |&b| u32::from(b) << 8);
        quad[0] = symbol(n >> 18);
        quad[1] = symbol(n >> 12);
        quad[2] = if rest.len() == 2 { symbol(n >> 6) } else { b'=' };
        quad[3] = b'=';
    }
}

/// `data` in base64, appended to `out` (sized first, then filled in place).
pub fn encode_into(data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + data.len().div_ceil(3) * 4, 0);
    fill(data, &mut out[start..]);
}

/// `data` in base64 lines of 76 characters (57 bytes each), CRLF between them and none after
/// the last, appended to `out`: a MIME body (RFC 2045 §6.8), sized once and filled in place.
pub fn encode_lines_into(data: &[u8], out: &mut Vec<u8>) {
    let lines = data.len().div_ceil(57);
    let mut at = out.len();
    out.resize(at + data.len().div_ceil(3) * 4 + 2 * lines.saturating_sub(1), 0);
    for (i, line) in data.chunks(57).enumerate() {
        if i > 0 {
            out[at] = b'\r';
            out[at + 1] = b'\n';
            at += 2;
        }
        let len = line.len().div_ceil(3) * 4;
        fill(line, &mut out[at..at + len]);
        at += len;
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
    let mut out = vec![0u8; text.len() / 4 * 3];
    for (i, (quad, slot)) in text.chunks_exact(4).zip(out.chunks_exact_mut(3)).enumerate() {
        // The last quad's padding counts as zero bits, and only those bits may be zero-filled.
        let symbols = if (i + 1) * 4 == text.len() { 4 - padding } else { 4 };
        let mut n = 0u32;
        for (j, &c) in quad.iter().enumerate() {
            let value = if j < symbols { VALUES[usize::from(c)] } else { 0 };
            if value == 64 {
                return None;
            }
            n = n << 6 | u32::from(value);
        }
        // No stray bits below the last byte kept (`Zh==` is not `Zg==`).
        if n & (0xFF_FFFF >> (8 * (symbols - 1))) != 0 {
            return None;
        }
        slot[0] = (n >> 16) as u8;
        slot[1] = (n >> 8) as u8;
        slot[2] = n as u8;
    }
    out.truncate(out.len() - padding);
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
    fn lines_are_76_characters_with_crlf_between() {
        for len in [0, 1, 56, 57, 58, 114, 1000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut out = b"x".to_vec();
            encode_lines_into(&data, &mut out);
            let text = String::from_utf8(out[1..].to_vec()).unwrap();
            let lines: Vec<&str> = text.split("\r\n").collect();
            assert!(lines.iter().all(|l| l.len() <= 76) && !text.ends_with('\n'), "{len}");
            assert_eq!(lines.concat(), encode(&data), "{len}");
        }
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
