//! A record of the conversation for debug mode and the `www/` demo: what the client sent
//! (AUTH payloads as `***`, the message as its size) and what the relay answered, with times.

use serde::{Deserialize, Serialize};

use super::command::Command;
use super::reply::Reply;

/// At most this many entries are kept; a long session keeps its beginning.
const MAX_ENTRIES: usize = 200;

/// Who said a line: `"client"` or `"relay"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Relay,
}

/// `{"at_ms", "from", "line"}`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Milliseconds since the connection was opened.
    pub at_ms: u64,
    pub from: Side,
    pub line: String,
}

/// A list of entries, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Transcript(Vec<Entry>);

impl Transcript {
    fn push(&mut self, at_ms: u64, from: Side, line: String) {
        if self.0.len() < MAX_ENTRIES {
            self.0.push(Entry { at_ms, from, line });
        }
    }

    pub fn sent(&mut self, at_ms: u64, command: &Command) {
        self.push(at_ms, Side::Client, command.redacted());
    }

    pub fn sent_message(&mut self, at_ms: u64, bytes: usize) {
        self.push(at_ms, Side::Client, format!("<message, {bytes} bytes>"));
    }

    /// Records a reply. Replies during AUTH keep only their codes: a relay may quote what
    /// it was sent.
    pub fn received(&mut self, at_ms: u64, reply: &Reply, redact_text: bool) {
        let last = reply.lines.len().saturating_sub(1);
        let enhanced = reply.enhanced.map(|e| format!("{e} ")).unwrap_or_default();
        let lines: Vec<String> = (reply.lines.iter().enumerate())
            .map(|(i, text)| {
                let separator = if i == last { ' ' } else { '-' };
                let code = if i == 0 { enhanced.as_str() } else { "" };
                let text = if redact_text { "***" } else { text.as_str() };
                format!("{}{separator}{code}{text}", reply.code)
            })
            .collect();
        self.push(at_ms, Side::Relay, lines.join("\n"));
    }

    pub fn note(&mut self, at_ms: u64, what: &str) {
        self.push(at_ms, Side::Client, format!("<{what}>"));
    }

    /// Adds `later`'s entries after these: an attempt that failed, then the one that followed
    /// on another connection (its times count from its own connection).
    pub fn append(&mut self, later: Transcript) {
        for entry in later.0 {
            self.push(entry.at_ms, entry.from, entry.line);
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::ReplyBuffer;

    #[test]
    fn records_commands_redacted_and_replies_verbatim() {
        let mut transcript = Transcript::default();
        transcript.sent(0, &Command::AuthPlain("AGRldgBwdw==".into()));
        let mut buffer = ReplyBuffer::new();
        buffer.push(b"250-relay.test\r\n250 2.0.0 SMTPUTF8\r\n");
        transcript.received(5, &buffer.next_reply().unwrap().unwrap(), false);
        buffer.push(b"535 5.7.8 bad: AGRldgBwdw==\r\n");
        transcript.received(6, &buffer.next_reply().unwrap().unwrap(), true);
        transcript.sent_message(7, 1234);
        let lines: Vec<&str> = transcript.entries().iter().map(|e| e.line.as_str()).collect();
        assert_eq!(
            lines,
            vec!["AUTH PLAIN ***", "250-relay.test\n250 SMTPUTF8", "535 5.7.8 ***", "<message, 1234 bytes>"]
        );
        assert_eq!(transcript.entries()[1].from, Side::Relay);
    }
}
