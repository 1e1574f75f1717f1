//! Feeds arbitrary bytes to our JSON parser (`edge_mailer::json`) and, as the reference, to
//! serde_json. Ours must never panic; must accept exactly what serde_json accepts, but for two
//! documented limits (see `explained`); must read the same values; must read what it writes
//! back to the same value and write that the same way; and must say sanely where a text is not
//! JSON, and whether it was cut short.
#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;

use edge_mailer::json::{self, SyntaxError, ToJson, Value};
use libfuzzer_sys::fuzz_target;
use serde_json::error::Category;
use serde_json::Value as Theirs;

fuzz_target!(|data: &[u8]| {
    let ours = json::parse_bytes(data);
    if let Err(e) = &ours {
        sane_position(data, e);
    }
    let theirs = serde_json::from_slice::<Theirs>(data);
    match (&ours, &theirs) {
        (Ok(value), Ok(reference)) => {
            assert!(same(value, reference, false), "serde_json reads another value: {value:?} / {reference:?}");
        }
        (Ok(value), Err(e)) => {
            assert!(explained(data, value, e), "serde_json refuses what we accept ({e}): {value:?}");
        }
        (Err(e), Ok(reference)) => panic!("we refuse what serde_json accepts ({e}): {reference:?}"),
        (Err(ours), Err(theirs)) => {
            // `truncated` stands for serde_json's Eof category (forms.rs said "truncated" for
            // it). Where serde_json stops earlier, at a limit of its own, or later, at UTF-8 we
            // check up front, the two may differ; and serde_json calls a `\u` with fewer than
            // four bytes left cut short, whatever they are, where we say which is no hex digit.
            let message = theirs.to_string();
            let comparable = std::str::from_utf8(data).is_ok()
                && !message.starts_with("recursion limit exceeded")
                && !message.starts_with("number out of range")
                && !(ours.message == "invalid escape" && data.len() - offset(data, ours) < 4);
            if comparable {
                assert_eq!(ours.truncated, theirs.classify() == Category::Eof, "truncated? ({ours} / {theirs})");
            }
        }
    }
    if let Ok(value) = &ours {
        round_trip(value, theirs.as_ref().ok());
    }
});

/// Is `ours` what serde_json read? Numbers are compared as serde_json reads our number's text.
/// serde_json keeps the last of a repeated key (as `Value::get` does), so an object is compared
/// by its distinct keys, each at its last value, and in order where serde_json's map keeps
/// order (its preserve_order feature, which the main crate's serde_json enables, for now).
/// `tamed`: a number serde_json cannot hold stands for the 0 it was replaced by (`explained`).
fn same(ours: &Value<'_>, theirs: &Theirs, tamed: bool) -> bool {
    match (ours, theirs) {
        (Value::Null, Theirs::Null) => true,
        (Value::Bool(a), Theirs::Bool(b)) => a == b,
        (Value::Number(text), Theirs::Number(_)) => match serde_json::from_str::<Theirs>(text) {
            Ok(number) => number == *theirs,
            Err(_) => tamed && *theirs == Theirs::from(0),
        },
        (Value::String(a), Theirs::String(b)) => a == b,
        (Value::Array(a), Theirs::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b, tamed)),
        // A list of whole numbers 0 to 255, kept as bytes.
        (Value::Bytes(a), Theirs::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| b.as_u64() == Some(u64::from(*a)))
        }
        (Value::Object(members), Theirs::Object(map)) => {
            let mut seen = HashSet::new();
            let keys: Vec<&str> = members.iter().map(|(k, _)| &**k).filter(|k| seen.insert(*k)).collect();
            keys.len() == map.len()
                && (!serde_keeps_order() || keys.iter().copied().eq(map.keys().map(String::as_str)))
                && keys.iter().all(|k| map.get(*k).is_some_and(|theirs| same(ours.get(k).unwrap(), theirs, tamed)))
        }
        _ => false,
    }
}

fn serde_keeps_order() -> bool {
    static KEEPS: OnceLock<bool> = OnceLock::new();
    *KEEPS.get_or_init(|| {
        let map = serde_json::from_str::<Theirs>(r#"{"b":0,"a":0}"#).unwrap();
        map.as_object().unwrap().keys().next().unwrap() == "b"
    })
}

/// serde_json counts its depth down from 128 and fails on reaching 0: it takes 127 levels.
const SERDE_DEPTH: usize = 127;

/// The two legitimate reasons serde_json refuses a text we accept, and nothing else:
/// - nesting 128 deep: we take 128 levels (json.rs's MAX_DEPTH), one more than serde_json;
/// - numbers it would read as an infinite f64 (`1e400`, 400 digits): without
///   arbitrary_precision it refuses them ("number out of range"); we keep numbers as text.
/// To be sure that is all, each such number is replaced by `0` in the text itself, and
/// serde_json without its depth limit must then read that text as we read the original.
fn explained(data: &[u8], ours: &Value<'_>, error: &serde_json::Error) -> bool {
    let message = error.to_string();
    let too_deep = depth(ours) == SERDE_DEPTH + 1 && message.starts_with("recursion limit exceeded");
    let mut spans = Vec::new();
    out_of_range(data, ours, &mut spans);
    let too_big = !spans.is_empty() && message.starts_with("number out of range");
    if !too_deep && !too_big {
        return false;
    }
    let mut tamed = data.to_vec();
    for span in spans.into_iter().rev() {
        tamed.splice(span, *b"0");
    }
    let mut de = serde_json::Deserializer::from_slice(&tamed);
    // Safe here: we accepted the text, so it nests at most 128 deep.
    de.disable_recursion_limit();
    let mut values = de.into_iter::<Theirs>();
    match (values.next(), values.next()) {
        (Some(Ok(theirs)), None) => same(ours, &theirs, true),
        _ => false,
    }
}

fn depth(value: &Value<'_>) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Bytes(_) => 1,
        Value::Object(members) => 1 + members.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 0,
    }
}

/// The byte ranges, in `data`, of the numbers serde_json refuses as out of range, in order.
/// Parsed numbers borrow their text from the input, so where they are is where they point.
fn out_of_range(data: &[u8], value: &Value<'_>, spans: &mut Vec<std::ops::Range<usize>>) {
    match value {
        Value::Number(text) => {
            let start = (text.as_ptr() as usize).wrapping_sub(data.as_ptr() as usize);
            if start + text.len() > data.len() {
                // Not borrowed: only a byte of a list that began as bytes is written anew.
                assert!(text.parse::<u8>().is_ok(), "a parsed number not borrowed from the input: {text}");
                return;
            }
            if let Err(e) = serde_json::from_str::<Theirs>(text) {
                assert!(
                    e.to_string().starts_with("number out of range"),
                    "our number {text} is not one to serde_json: {e}"
                );
                spans.push(start..start + text.len());
            }
        }
        Value::Array(items) => items.iter().for_each(|item| out_of_range(data, item, spans)),
        Value::Object(members) => members.iter().for_each(|(_, v)| out_of_range(data, v, spans)),
        _ => {}
    }
}

/// What we write we read back as the same value, and write again the same way; serde_json
/// reads what we write as it read the original (where it did).
fn round_trip(value: &Value<'_>, theirs: Option<&Theirs>) {
    let text = value.encode();
    let again = json::parse(&text).unwrap_or_else(|e| panic!("our own encoding {text:?} does not parse: {e}"));
    assert_eq!(&again, value, "{text:?} reads back as another value");
    assert_eq!(again.encode(), text, "encoding is not stable");
    if let Some(theirs) = theirs {
        let reread = serde_json::from_str::<Theirs>(&text);
        assert!(reread.as_ref().is_ok_and(|r| r == theirs), "serde_json reads our {text:?} as {reread:?}");
        // And we read what serde_json writes (its escapes, its number formats) as it does
        // (not as `theirs`: without float_roundtrip, its floats need not read back exactly).
        let written = serde_json::to_string(theirs).unwrap();
        let ours = json::parse(&written).unwrap_or_else(|e| panic!("we refuse serde_json's {written:?}: {e}"));
        let reread = serde_json::from_str::<Theirs>(&written).unwrap();
        assert!(same(&ours, &reread, false), "we read serde_json's {written:?} as {ours:?}");
    }
}

/// An error is somewhere in the input: a line it has, a column that line has (characters, from
/// 1, up to one past its end); and `truncated` only at the very end of it.
fn sane_position(data: &[u8], e: &SyntaxError) {
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    assert!(e.line >= 1 && e.column >= 1, "{e}");
    assert!(e.line <= lines.len(), "{e}: the input has {} lines", lines.len());
    let chars = lines[e.line - 1].iter().filter(|b| is_char_start(**b)).count();
    assert!(e.column <= chars + 1, "{e}: that line has {chars} characters");
    assert!(!e.truncated || offset(data, e) == data.len(), "{e}: truncated, but not at the end of the input");
}

/// The byte offset of an error's line and column (columns count characters: bytes that are
/// not UTF-8 continuation bytes). Only for a position `sane_position` accepts.
fn offset(data: &[u8], e: &SyntaxError) -> usize {
    let line_start = match e.line {
        1 => 0,
        n => data.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(n - 2).unwrap().0 + 1,
    };
    let starts =
        data[line_start..].iter().enumerate().take_while(|(_, b)| **b != b'\n').filter(|(_, b)| is_char_start(**b));
    // Column n is the n-th character of the line, or one past its end.
    starts.map(|(i, _)| line_start + i).nth(e.column - 1).unwrap_or_else(|| {
        line_start + data[line_start..].iter().position(|b| *b == b'\n').unwrap_or(data.len() - line_start)
    })
}

fn is_char_start(b: u8) -> bool {
    (b & 0xC0) != 0x80
}
