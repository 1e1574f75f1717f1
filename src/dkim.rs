//! DKIM signing (RFC 6376, and RFC 8463 for Ed25519), everything but the signature itself:
//! the key's algorithm read off its PKCS#8 form, relaxed/relaxed canonicalisation, the body
//! hash, and the `DKIM-Signature` header. The private-key operation is the runtime's
//! WebCrypto (the platform layer), so no RSA code is in the bundle.
//!
//! Signed headers: those RFC 6376 §5.4.1 recommends that the message has, and `From` once more
//! than it has (§5.4.2, "oversigning"): a `From` prepended in transit breaks the signature.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The signing algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl Algorithm {
    /// The `a=` tag's value.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }
}

/// A signing key and where it signs for. (Its `Debug` leaves the key out.)
#[derive(Clone, PartialEq, Eq)]
pub struct DkimKey {
    pub algorithm: Algorithm,
    /// The private key, PKCS#8 DER (what WebCrypto imports).
    pub pkcs8: Vec<u8>,
    /// `s=`: the DNS record is at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// `d=`; `None` signs for the domain of each message's `From`.
    pub domain: Option<String>,
}

impl std::fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKey").field("algorithm", &self.algorithm).field("selector", &self.selector).finish()
    }
}

/// The headers signed when the message has them, in this order (RFC 6376 §5.4.1).
const SIGNED: [&str; 12] = [
    "from",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// OIDs of the key algorithms in PKCS#8, as DER contents.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// One DER element at the start of `input`: (tag, contents, the rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        (rest[..count].iter().fold(0usize, |n, b| n << 8 | usize::from(*b)), &rest[count..])
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

impl DkimKey {
    /// A `-----BEGIN PRIVATE KEY-----` PEM (PKCS#8, RSA of 2048 bits or more, or Ed25519).
    /// Literal `\n` are read as line breaks, for a key pasted into one line. The error says
    /// what is wrong, never what the key holds.
    pub fn from_pem(pem: &str, selector: &str, domain: Option<&str>) -> Result<DkimKey, String> {
        let pem = pem.replace("\\n", "\n");
        let body = pem
            .trim()
            .strip_prefix("-----BEGIN PRIVATE KEY-----")
            .and_then(|rest| rest.trim_end().strip_suffix("-----END PRIVATE KEY-----"))
            .ok_or("must be a PKCS#8 PEM (-----BEGIN PRIVATE KEY-----); convert with openssl pkcs8 -topk8 -nocrypt")?;
        let encoded: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let pkcs8 = BASE64.decode(encoded.as_bytes()).map_err(|_| "is not valid PEM (bad base64)")?;
        let algorithm = Self::algorithm(&pkcs8)?;
        let label =
            |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        // At most 253 characters, as a DNS name: the header's first line stays far below 998.
        if selector.len() > 253 || !selector.split('.').all(label) {
            return Err("DKIM_SELECTOR must be set to a DNS label such as mail2026".into());
        }
        Ok(DkimKey { algorithm, pkcs8, selector: selector.to_string(), domain: domain.map(str::to_string) })
    }

    /// PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier { OID, … }, OCTET STRING key }.
    fn algorithm(pkcs8: &[u8]) -> Result<Algorithm, String> {
        let bad = || "is not a PKCS#8 private key".to_string();
        let (0x30, info, _) = der(pkcs8).ok_or_else(bad)? else { return Err(bad()) };
        let (0x02, _, rest) = der(info).ok_or_else(bad)? else { return Err(bad()) };
        let (0x30, identifier, rest) = der(rest).ok_or_else(bad)? else { return Err(bad()) };
        let (0x06, oid, _) = der(identifier).ok_or_else(bad)? else { return Err(bad()) };
        let (0x04, key, _) = der(rest).ok_or_else(bad)? else { return Err(bad()) };
        if oid == ED25519 {
            return Ok(Algorithm::Ed25519Sha256);
        }
        if oid != RSA_ENCRYPTION {
            return Err("must be an RSA or Ed25519 key".into());
        }
        // RSAPrivateKey ::= SEQUENCE { version, modulus, … }
        let modulus = der(key)
            .filter(|(tag, ..)| *tag == 0x30)
            .and_then(|(_, fields, _)| der(fields).and_then(|(_, _, rest)| der(rest)))
            .filter(|(tag, ..)| *tag == 0x02)
            .map(|(_, modulus, _)| modulus)
            .ok_or_else(bad)?;
        let significant: Vec<u8> = modulus.iter().copied().skip_while(|b| *b == 0).collect();
        let bits = significant.first().map_or(0, |first| significant.len() * 8 - first.leading_zeros() as usize);
        if bits < 2048 {
            return Err(format!("is a {bits}-bit RSA key; DKIM needs 2048 bits or more"));
        }
        Ok(Algorithm::RsaSha256)
    }
}

/// Relaxed header canonicalisation (§3.4.2) of one header field, `name:value` with its
/// folding: the name lower-cased, line breaks unfolded, runs of whitespace one space, none
/// at the ends of the value; with CRLF.
fn relaxed_header(field: &[u8], out: &mut Vec<u8>) {
    let colon = field.iter().position(|b| *b == b':').unwrap_or(field.len());
    out.extend(field[..colon].iter().map(u8::to_ascii_lowercase).filter(|b| !matches!(b, b' ' | b'\t')));
    out.push(b':');
    let start = out.len();
    let mut space = false;
    for &byte in field.get(colon + 1..).unwrap_or_default() {
        match byte {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && out.len() > start {
                    out.push(b' ');
                }
                space = false;
                out.push(byte);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The SHA-256 of the relaxed body (§3.4.4): whitespace runs one space, none at line ends,
/// no empty lines at the end; a non-empty body ends with CRLF. Hashed line by line, never
/// copied whole.
pub fn body_hash(body: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut empty_lines = 0usize;
    let mut line = Vec::new();
    let mut lines = body.split(|b| *b == b'\n').peekable();
    while let Some(raw) = lines.next() {
        // The last piece after a final LF is no line at all.
        if lines.peek().is_none() && raw.is_empty() {
            break;
        }
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        line.clear();
        let mut space = false;
        for &byte in raw {
            if matches!(byte, b' ' | b'\t') {
                space = true;
            } else {
                if space {
                    line.push(b' ');
                }
                space = false;
                line.push(byte);
            }
        }
        if line.is_empty() {
            empty_lines += 1;
            continue;
        }
        for _ in 0..empty_lines {
            hash.update(b"\r\n");
        }
        empty_lines = 0;
        hash.update(&line);
        hash.update(b"\r\n");
    }
    hash.finalize().into()
}

/// A message's header fields, each with its folding (without the final CRLF), and its body.
fn split(message: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let end = message.windows(4).position(|w| w == b"\r\n\r\n").map_or(message.len(), |i| i + 2);
    let body = message.get(end + 2..).unwrap_or_default();
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let head = &message[..end];
    let mut i = 0;
    while i < head.len() {
        if head[i] == b'\n' {
            let continues = matches!(head.get(i + 1), Some(b' ' | b'\t'));
            if !continues {
                let field = &head[start..i + 1];
                fields.push(field.strip_suffix(b"\r\n").or(field.strip_suffix(b"\n")).unwrap_or(field));
                start = i + 1;
            }
        }
        i += 1;
    }
    (fields, body)
}

fn field_name(field: &[u8]) -> String {
    let colon = field.iter().position(|b| *b == b':').unwrap_or(field.len());
    String::from_utf8_lossy(&field[..colon]).trim().to_ascii_lowercase()
}

/// What is left to do once the signature is made.
pub struct Unsigned {
    /// The `DKIM-Signature` header field up to its empty `b=`.
    header: String,
    /// What the signature covers: for rsa-sha256 these bytes (WebCrypto hashes them), for
    /// ed25519-sha256 their SHA-256 (RFC 8463 signs the hash).
    pub signing_input: Vec<u8>,
}

/// Prepares the signature of `message` for `domain` at `now_seconds`.
pub fn prepare(message: &[u8], key: &DkimKey, domain: &str, now_seconds: u64) -> Unsigned {
    let (fields, body) = split(message);
    let mut names: Vec<&str> = Vec::new();
    for name in SIGNED {
        let count = fields.iter().filter(|f| field_name(f) == name).count();
        names.extend(std::iter::repeat_n(name, count + usize::from(name == "from")));
    }
    let header = format!(
        "DKIM-Signature: v=1; a={}; c=relaxed/relaxed; d={domain}; s={};\r\n\tt={now_seconds}; h={};\r\n\tbh={};\r\n\tb=",
        key.algorithm.name(),
        key.selector,
        names.join(":"),
        BASE64.encode(body_hash(body)),
    );
    // Each name takes its instances from the bottom up; one past the last is empty (§5.4.2).
    let mut input = Vec::new();
    let mut used: Vec<(&str, usize)> = Vec::new();
    for name in &names {
        let taken = match used.iter_mut().find(|(n, _)| n == name) {
            Some((_, taken)) => taken,
            None => {
                used.push((name, 0));
                &mut used.last_mut().expect("just pushed").1
            }
        };
        if let Some(field) = fields.iter().rev().filter(|f| field_name(f) == *name).nth(*taken) {
            relaxed_header(field, &mut input);
        }
        *taken += 1;
    }
    relaxed_header(header.as_bytes(), &mut input);
    input.truncate(input.len() - 2); // the signature's own header goes in without its CRLF
    let signing_input = match key.algorithm {
        Algorithm::RsaSha256 => input,
        Algorithm::Ed25519Sha256 => Sha256::digest(&input).to_vec(),
    };
    Unsigned { header, signing_input }
}

/// Puts the finished `DKIM-Signature` header at the top of `message`.
pub fn finish(message: &mut Vec<u8>, unsigned: Unsigned, signature: &[u8]) {
    let b = BASE64.encode(signature);
    let mut header = unsigned.header.into_bytes();
    // Folded every 72 characters: a header line stays short, and whitespace in b= is ignored.
    for (i, piece) in b.as_bytes().chunks(72).enumerate() {
        if i > 0 {
            header.extend_from_slice(b"\r\n\t ");
        }
        header.extend_from_slice(piece);
    }
    header.extend_from_slice(b"\r\n");
    message.reserve_exact(header.len());
    message.splice(0..0, header);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"From: A <a@example.com>\r\nTo: b@example.org\r\nSubject:  Hello\r\n  world \r\nDate: Wed, 25 Nov 2026 18:00:00 +0000\r\nMessage-ID: <x@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nX-Other: not signed\r\n\r\nHi  there \t\r\n\r\n\r\n";

    fn key() -> DkimKey {
        DkimKey { algorithm: Algorithm::RsaSha256, pkcs8: vec![], selector: "sel".into(), domain: None }
    }

    #[test]
    fn relaxed_canonicalisation_follows_rfc_6376() {
        let mut out = Vec::new();
        relaxed_header(b"SubJect :  Hello\r\n  world \t", &mut out);
        assert_eq!(out, b"subject:Hello world\r\n");
        // RFC 6376 §3.4.6's example body, relaxed.
        let example = b" C \r\nD \t E\r\n\r\n\r\n";
        assert_eq!(body_hash(example), <[u8; 32]>::from(Sha256::digest(b" C\r\nD E\r\n")));
        assert_eq!(body_hash(b""), <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(body_hash(b"no final line break"), <[u8; 32]>::from(Sha256::digest(b"no final line break\r\n")));
    }

    #[test]
    fn the_signature_covers_the_recommended_headers_and_from_twice() {
        let unsigned = prepare(MESSAGE, &key(), "example.com", 1_795_000_000);
        assert!(unsigned.header.contains("h=from:from:subject:date:to:message-id:mime-version:content-type;"));
        assert!(unsigned.header.contains(&format!("bh={};", BASE64.encode(Sha256::digest(b"Hi there\r\n")))));
        let input = String::from_utf8(unsigned.signing_input).unwrap();
        assert!(input.starts_with("from:A <a@example.com>\r\nsubject:Hello world\r\ndate:"), "{input}");
        assert!(!input.contains("x-other"));
        assert!(input.ends_with("; b="), "the signature's own header, with b= empty and no CRLF: {input}");
        assert!(input
            .contains("dkim-signature:v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=sel; t=1795000000; h="));
        let mut message = MESSAGE.to_vec();
        let unsigned = prepare(MESSAGE, &key(), "example.com", 1_795_000_000);
        finish(&mut message, unsigned, &[7u8; 256]);
        assert!(message.starts_with(b"DKIM-Signature: v=1;"));
        assert!(message.ends_with(MESSAGE));
        assert!(message.split(|b| *b == b'\n').all(|line| line.len() <= 100), "folded");
    }

    #[test]
    fn keys_are_read_by_their_algorithm_and_weak_ones_refused() {
        // PKCS#8 Ed25519 key from RFC 8410 §10.3.
        let ed = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let key = DkimKey::from_pem(ed, "mail", Some("example.com")).unwrap();
        assert_eq!(key.algorithm, Algorithm::Ed25519Sha256);
        assert_eq!(DkimKey::from_pem(&ed.replace('\n', "\\n"), "mail", None).unwrap().pkcs8, key.pkcs8);
        assert!(DkimKey::from_pem(ed, "", None).unwrap_err().contains("DKIM_SELECTOR"));
        assert!(DkimKey::from_pem("-----BEGIN RSA PRIVATE KEY-----\nAA==\n-----END RSA PRIVATE KEY-----", "s", None)
            .unwrap_err()
            .contains("PKCS#8"));
        // An RSA PKCS#8 key with a 1024-bit modulus: refused by size.
        let mut rsa = vec![0x02, 0x01, 0x00, 0x02, 0x81, 0x81, 0x00];
        rsa.extend([0xc5u8; 128]);
        let rsa_key = [&[0x30, 0x81, rsa.len() as u8][..], &rsa].concat();
        let mut info = vec![0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09];
        info.extend(RSA_ENCRYPTION);
        info.extend([0x05, 0x00, 0x04, 0x81, rsa_key.len() as u8]);
        info.extend(&rsa_key);
        let der = [&[0x30, 0x81, info.len() as u8][..], &info].concat();
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----", BASE64.encode(der));
        assert!(DkimKey::from_pem(&pem, "s", None).unwrap_err().contains("1024-bit"));
        // Bits, not bytes: a 256-byte modulus whose first byte is 0x7f has 2047 bits.
        let rsa_of = |modulus: &[u8]| {
            let long = |tag: u8, content: &[u8]| {
                [&[tag, 0x82, (content.len() >> 8) as u8, content.len() as u8][..], content].concat()
            };
            let key = long(0x30, &[&[0x02, 0x01, 0x00][..], &long(0x02, modulus)].concat());
            let mut info = vec![0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09];
            info.extend(RSA_ENCRYPTION);
            info.extend([0x05, 0x00]);
            info.extend(long(0x04, &key));
            let der = long(0x30, &info);
            format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----", BASE64.encode(der))
        };
        let mut modulus = vec![0x7fu8; 256];
        assert!(DkimKey::from_pem(&rsa_of(&modulus), "s", None).unwrap_err().contains("2047-bit"));
        modulus[0] = 0xc1;
        assert_eq!(DkimKey::from_pem(&rsa_of(&modulus), "s", None).unwrap().algorithm, Algorithm::RsaSha256);
        assert!(DkimKey::from_pem(ed, "a.".repeat(128).trim_end_matches('.'), None).is_err(), "selector over 253");
    }
}
