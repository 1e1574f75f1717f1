//! The relay check: the steps of opening a session (connect, greeting, EHLO, STARTTLS, TLS,
//! EHLO again, AUTH), each with its time and the relay's reply, read off the session's
//! transcript — so the check runs the very code a send runs, and AUTH stays redacted.

use super::error::{Error, ErrorKind, Extension};
use super::outcome::Phase;
use super::transcript::{Side, Transcript};

/// One step of opening a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// `connect`, `greeting`, `ehlo`, `starttls`, `tls`, `ehlo_tls` or `auth`.
    pub name: &'static str,
    pub ok: bool,
    /// Milliseconds from the end of the step before (the start, for `connect`).
    pub ms: u64,
    /// The relay's reply that ended the step, as the transcript has it (AUTH's text hidden).
    pub reply: Option<String>,
}

/// The step an opening failed at. A relay that offers no STARTTLS fails at `starttls`; a
/// TLS failure at `tls` wherever it surfaced (workerd finishes a handshake, and so reports a
/// certificate that does not verify, on the first read over TLS).
pub fn failed_step(error: &Error, tls_established: bool) -> &'static str {
    match (error.phase, &error.kind) {
        (_, ErrorKind::Missing(Extension::StartTls)) => "starttls",
        (_, ErrorKind::Tls) => "tls",
        (Phase::Connect, _) => "connect",
        (Phase::Greeting, _) => "greeting",
        (Phase::Ehlo, _) if tls_established => "ehlo_tls",
        (Phase::Ehlo, _) => "ehlo",
        (Phase::StartTls, _) => "starttls",
        (Phase::Tls, _) => "tls",
        _ => "auth",
    }
}

/// The steps of an opening, from its transcript. `failed`: the step it failed at, if it
/// did; `end_ms`: when it ended, since the start (for a step that got no reply).
pub fn steps(transcript: &Transcript, failed: Option<&'static str>, end_ms: u64) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut last_at = 0;
    let mut tls = false;
    // The step the relay's next reply ends.
    let mut awaiting = Some("greeting");
    let mut finish = |steps: &mut Vec<Step>, name, at: u64, reply: Option<String>| {
        steps.push(Step { name, ok: true, ms: at.saturating_sub(last_at), reply });
        last_at = at;
    };
    for entry in transcript.entries() {
        match entry.from {
            Side::Client if entry.line == "<connected>" => finish(&mut steps, "connect", entry.at_ms, None),
            Side::Client if entry.line == "<TLS established>" => {
                tls = true;
                finish(&mut steps, "tls", entry.at_ms, None);
            }
            Side::Client if entry.line.starts_with("EHLO ") => awaiting = Some(if tls { "ehlo_tls" } else { "ehlo" }),
            Side::Client if entry.line == "STARTTLS" => awaiting = Some("starttls"),
            Side::Client if entry.line.starts_with("AUTH ") => awaiting = Some("auth"),
            Side::Client => {}
            // AUTH LOGIN's 334 prompts are part of the auth step.
            Side::Relay if awaiting == Some("auth") && entry.line.starts_with("334") => {}
            Side::Relay => {
                if let Some(name) = awaiting.take() {
                    finish(&mut steps, name, entry.at_ms, Some(entry.line.clone()));
                }
            }
        }
    }
    if let Some(name) = failed {
        match steps.last_mut() {
            // It ended with a reply that refused it.
            Some(last) if last.name == name => last.ok = false,
            // Nothing came back over TLS at all: workerd does the handshake on the first read,
            // so a handshake that never finished looks like a silent greeting or EHLO.
            Some(last) if last.name == "tls" && matches!(name, "greeting" | "ehlo_tls") => {
                last.ok = false;
                last.ms = end_ms.saturating_sub(last_at.saturating_sub(last.ms));
            }
            _ => steps.push(Step { name, ok: false, ms: end_ms.saturating_sub(last_at), reply: None }),
        }
    }
    steps
}

/// The extensions of the last EHLO reply in the transcript (over TLS when TLS is in use), as
/// the relay wrote them: `["PIPELINING", "SIZE 10240000", "AUTH PLAIN LOGIN", …]`.
pub fn capabilities(transcript: &Transcript) -> Vec<String> {
    let entries = transcript.entries();
    let ehlo = entries.iter().enumerate().rev().find(|(_, e)| e.from == Side::Client && e.line.starts_with("EHLO "));
    let Some(reply) = ehlo.and_then(|(i, _)| entries.get(i + 1)).filter(|e| e.from == Side::Relay) else {
        return Vec::new();
    };
    if !reply.line.starts_with("250") {
        return Vec::new();
    }
    reply.line.lines().skip(1).filter_map(|line| line.get(4..)).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::command::Command;
    use crate::smtp::reply::ReplyBuffer;

    fn reply(text: &str) -> crate::smtp::reply::Reply {
        let mut buffer = ReplyBuffer::new();
        buffer.push(text.as_bytes());
        buffer.next_reply().unwrap().unwrap()
    }

    fn starttls_opening() -> Transcript {
        let mut t = Transcript::default();
        t.note(12, "connected");
        t.received(20, &reply("220 relay.test ESMTP\r\n"), false);
        t.sent(20, &Command::Ehlo("worker".into()));
        t.received(25, &reply("250-relay.test\r\n250-STARTTLS\r\n250 SIZE 1000\r\n"), false);
        t.sent(25, &Command::StartTls);
        t.received(30, &reply("220 2.0.0 Ready\r\n"), false);
        t.note(45, "TLS established");
        t.sent(45, &Command::Ehlo("worker".into()));
        t.received(50, &reply("250-relay.test\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n"), false);
        t.sent(50, &Command::AuthPlain("secret".into()));
        t
    }

    #[test]
    fn every_step_of_a_starttls_opening_with_its_time_and_reply() {
        let mut t = starttls_opening();
        t.received(58, &reply("235 2.7.0 Authentication successful\r\n"), true);
        let steps = steps(&t, None, 58);
        let names: Vec<_> = steps.iter().map(|s| (s.name, s.ok, s.ms)).collect();
        assert_eq!(
            names,
            [
                ("connect", true, 12),
                ("greeting", true, 8),
                ("ehlo", true, 5),
                ("starttls", true, 5),
                ("tls", true, 15),
                ("ehlo_tls", true, 5),
                ("auth", true, 8)
            ]
        );
        assert_eq!(steps[1].reply.as_deref(), Some("220 relay.test ESMTP"));
        assert_eq!(steps[6].reply.as_deref(), Some("235 2.7.0 ***"), "AUTH replies stay hidden");
        assert_eq!(capabilities(&t), ["PIPELINING", "AUTH PLAIN LOGIN"], "the capabilities offered over TLS");
    }

    #[test]
    fn the_list_ends_at_the_failing_step() {
        let mut t = starttls_opening();
        t.received(58, &reply("535 5.7.8 Authentication failed\r\n"), true);
        let refused = steps(&t, Some("auth"), 58);
        assert_eq!(refused.last().map(|s| (s.name, s.ok)), Some(("auth", false)));
        assert_eq!(refused.len(), 7);

        // No reply at all: the step is added, failed, with the time it waited.
        let mut t = Transcript::default();
        t.note(3, "connected");
        let silent = steps(&t, Some("greeting"), 10_003);
        assert_eq!(
            silent.iter().map(|s| (s.name, s.ok, s.ms)).collect::<Vec<_>>(),
            [("connect", true, 3), ("greeting", false, 10_000)]
        );

        // A TLS handshake that never finishes: the first read over TLS times out.
        let mut t = Transcript::default();
        t.note(3, "connected");
        t.note(3, "TLS established");
        let stalled = steps(&t, Some("greeting"), 30_003);
        assert_eq!(
            stalled.iter().map(|s| (s.name, s.ok, s.ms)).collect::<Vec<_>>(),
            [("connect", true, 3), ("tls", false, 30_000)]
        );

        let unreachable = steps(&Transcript::default(), Some("connect"), 40);
        assert_eq!(unreachable, [Step { name: "connect", ok: false, ms: 40, reply: None }]);
    }

    #[test]
    fn a_relay_without_starttls_fails_at_starttls_and_implicit_tls_failures_at_tls() {
        let no_starttls = Error::new(Phase::Ehlo, ErrorKind::Missing(Extension::StartTls));
        assert_eq!(failed_step(&no_starttls, false), "starttls");
        let handshake = Error::io(Phase::Connect, ErrorKind::Tls, std::io::Error::other("bad certificate"));
        assert_eq!(failed_step(&handshake, false), "tls");
        let on_first_read = Error::io(Phase::Ehlo, ErrorKind::Tls, std::io::Error::other("bad certificate"));
        assert_eq!(failed_step(&on_first_read, true), "tls");
        assert_eq!(failed_step(&Error::new(Phase::Ehlo, ErrorKind::Timeout), true), "ehlo_tls");
    }
}
