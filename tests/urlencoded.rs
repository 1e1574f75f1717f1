//! Our form encoding (src/urlencoded.rs) against the form_urlencoded crate the Worker used
//! before: the same pairs from every input, and the same text for every pair.

use edge_mailer::urlencoded as ours;

/// Inputs made of the characters that matter: separators, escapes, hex digits, `+`, bytes
/// that are not UTF-8 on their own, and a few letters (a deterministic xorshift picks them).
fn inputs() -> Vec<Vec<u8>> {
    let alphabet: &[&[u8]] = &[
        b"&",
        b"=",
        b"%",
        b"+",
        b"a",
        b"Z",
        b"0",
        b"f",
        b"F",
        b"g",
        b" ",
        b"\xC3",
        b"\xA9",
        "✓".as_bytes(),
        b"%2",
        b"%e2%9c%93",
        b"%FF",
        b"*-._~",
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..3000)
        .map(|_| {
            let len = next() % 12;
            (0..len).flat_map(|_| alphabet[(next() % alphabet.len() as u64) as usize].to_vec()).collect()
        })
        .collect()
}

#[test]
fn parses_as_form_urlencoded_does() {
    for input in inputs() {
        let theirs: Vec<(String, String)> =
            form_urlencoded::parse(&input).map(|(n, v)| (n.into_owned(), v.into_owned())).collect();
        let mine: Vec<(String, String)> = ours::parse(&input).collect();
        assert_eq!(mine, theirs, "{:?}", String::from_utf8_lossy(&input));
    }
}

#[test]
fn encodes_as_form_urlencoded_does() {
    for input in inputs() {
        let text = String::from_utf8_lossy(&input);
        let middle = (0..=text.len() / 2).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        let (name, value) = text.split_at(middle);
        let pairs = [("name", name), (value, "value"), (name, value)];
        let theirs = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        assert_eq!(ours::encode(&pairs), theirs, "{pairs:?}");
    }
}
