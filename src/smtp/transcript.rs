//! A record of the conversation for debug mode and the `www/` demo: what the client sent
//! (AUTH payloads as `***`, the message as its size) and what the relay answered, with times.

use std::borrow::Cow;

use super::command::Command;
use super::reply::Reply;
use crate::json::{object, Fields, FromJson, ShapeError, ToJson, Value};

/// At most this many entries are kept; a long session keeps its beginning.
const MAX_ENTRIES: usize = 200;

/// Who said a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Relay,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Milliseconds since the connection was opened.
    pub at_ms: u64,
    pub from: Side,
    pub line: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
        let lines = crate::map_vec(reply.lines.iter().enumerate(), |(i, text)| {
            let separator = if i == last { ' ' } else { '-' };
            let code = if i == 0 { enhanced.as_str() } else { "" };
            let text = if redact_text { "***" } else { text.as_str() };
            format!("{}{separator}{code}{text}", reply.code)
        });
        self.push(at_ms, Side::Relay, crate::join(&lines, "\n"));
    }

    pub fn note(&mut self, at_ms: u64, what: &str) {
        self.push(at_ms, Side::Client, format!("<{what}>"));
    }

    pub fn entries(&self) -> &[Entry] {
        &self.0
    }
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Relay => "relay",
        }
    }
}

/// `[{"at_ms", "from": "client" | "relay", "line"}, …]`
impl ToJson for Transcript {
    fn to_json(&self) -> Value<'_> {
        Value::Array(crate::map_vec(&self.0, |e| object! {"at_ms": e.at_ms, "from": e.from.as_str(), "line": &e.line}))
    }
}

impl<'a> FromJson<'a> for Transcript {
    fn from_json(value: &Value<'a>) -> Result<Self, ShapeError> {
        let entries = value.as_array().ok_or_else(|| ShapeError::expected("a list", value))?;
        let entry = |value: &Value<'a>| {
            let mut fields = Fields::of(value)?;
            let from = match fields.required::<Cow<str>>("from")?.as_ref() {
                "client" => Side::Client,
                "relay" => Side::Relay,
                other => return Err(ShapeError::new(format!("not a side: {other}")).at("from")),
            };
            let entry = Entry { at_ms: fields.required("at_ms")?, from, line: fields.required("line")? };
            fields.finish()?;
            Ok(entry)
        };
        crate::try_map(entries.iter().enumerate(), |(i, e)| entry(e).map_err(|e| e.at_index(i))).map(Transcript)
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
