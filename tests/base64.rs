//! Our base64 (src/base64.rs) against the base64 crate's STANDARD engine, which the Worker used
//! before: the same text for every input, and the same verdict on every text, valid or not.

use ::base64::{engine::general_purpose::STANDARD, Engine};
use edge_mailer::base64 as ours;

/// A small deterministic generator (xorshift): the same inputs on every run.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn take(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn encodes_as_the_base64_crate_does() {
    let mut random = Bytes(0x9E37_79B9_7F4A_7C15);
    for len in (0..200).chain([1000, 4095, 57 * 1024 + 1]) {
        let data = random.take(len);
        assert_eq!(ours::encode(&data), STANDARD.encode(&data), "{len} bytes");
    }
}

#[test]
fn decodes_and_refuses_what_the_base64_crate_does() {
    let mut random = Bytes(0x2545_F491_4F6C_DD1D);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut texts: Vec<Vec<u8>> = Vec::new();
    for len in 0..300 {
        let valid = STANDARD.encode(random.take(len)).into_bytes();
        // Each valid text, and one changed in one place: another symbol, padding, a stray
        // character, one cut short or grown by one.
        let mut changed = valid.clone();
        if !changed.is_empty() {
            let at = random.next() as usize % changed.len();
            changed[at] = match random.next() % 4 {
                0 => alphabet[random.next() as usize % 64],
                1 => b'=',
                2 => b"-_ \n.\0\xC3"[random.next() as usize % 7],
                _ => changed[at],
            };
        }
        let mut short = valid.clone();
        short.pop();
        let mut long = valid.clone();
        long.push(alphabet[random.next() as usize % 64]);
        texts.extend([valid, changed, short, long]);
    }
    // Random symbols and padding: mostly invalid, now and then valid with stray bits.
    for len in [4, 8, 12] {
        for _ in 0..2000 {
            let mut text: Vec<u8> = (0..len).map(|_| alphabet[random.next() as usize % 64]).collect();
            for pad in 0..(random.next() % 3) as usize {
                text[len - 1 - pad] = b'=';
            }
            texts.push(text);
        }
    }
    let mut valid = 0;
    for text in &texts {
        let theirs = STANDARD.decode(text).ok();
        valid += usize::from(theirs.is_some());
        assert_eq!(ours::decode(text), theirs, "{:?}", String::from_utf8_lossy(text));
    }
    assert!(valid > 300 && valid < texts.len() - 1000, "{valid} of {} valid: the cases test both ways", texts.len());
}
