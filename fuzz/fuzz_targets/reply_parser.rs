//! Feeds arbitrary relay bytes, split at an arbitrary point, to the reply parser.
//! It must never panic, never hold more than its bounds, and give the same replies however
//! the bytes are split across reads.
#![no_main]

use edge_mailer::smtp::reply::{ReplyBuffer, MAX_LINE, MAX_LINES};
use libfuzzer_sys::fuzz_target;

fn replies(chunks: &[&[u8]]) -> Vec<Result<(u16, Vec<String>), String>> {
    let mut buffer = ReplyBuffer::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buffer.push(chunk);
        loop {
            match buffer.next_reply() {
                Ok(Some(reply)) => {
                    assert!((200..=599).contains(&reply.code));
                    assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_LINES);
                    assert!(reply.lines.iter().all(|l| l.len() <= MAX_LINE));
                    out.push(Ok((reply.code, reply.lines)));
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, wire)) = data.split_first() else { return };
    let split = (split as usize).min(wire.len());
    let whole = replies(&[wire]);
    let parts = replies(&[&wire[..split], &wire[split..]]);
    // A malformed line may be detected earlier when split, but successes must agree.
    let ok_whole: Vec<_> = whole.iter().filter_map(|r| r.as_ref().ok()).collect();
    let ok_parts: Vec<_> = parts.iter().filter_map(|r| r.as_ref().ok()).collect();
    let shorter = ok_whole.len().min(ok_parts.len());
    assert_eq!(ok_whole[..shorter], ok_parts[..shorter]);
});
