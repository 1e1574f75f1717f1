//! The one async driver: moves commands and replies over a [`Network`] connection.
//!
//! Protocol decisions live in the sans-IO modules (replies, commands, capabilities,
//! parameters, DATA encoding); this file sequences them, applies a timeout to every wait, and
//! turns I/O failures into [`Error`]s that say whether the message may have left.
//!
//! Round trips: with PIPELINING, MAIL, every RCPT and DATA go out in one write; with
//! CHUNKING as well, `BDAT <n> LAST` and the message join that same flight. So a STARTTLS
//! submission waits 7 times after connecting (greeting, EHLO, STARTTLS, TLS handshake, EHLO,
//! AUTH, transaction) and an implicit-TLS one 5 times.

use std::future::Future;
use std::io;
use std::pin::pin;

use futures_util::future::{select, Either};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::auth::Credentials;
use super::capabilities::{AuthMechanism, Capabilities};
use super::command::Command;
use super::data::{Payload, END_OF_DATA};
use super::envelope::{parameters, Envelope};
use super::error::{Error, ErrorKind, Extension};
use super::outcome::{Delivery, Phase, Refusal};
use super::reply::{Reply, ReplyBuffer};
use super::settings::{RelaySettings, Security, Timeouts};
use super::transcript::Transcript;

/// The platform: sockets, a timer and a clock. workerd in production, scripted streams in tests.
pub trait Network {
    type Conn: AsyncRead + AsyncWrite + Unpin;
    /// Opens a connection protected as `security` says: TLS from the first byte for
    /// `ImplicitTls`, plain TCP (upgradable only for `StartTls`) otherwise. A port that takes
    /// TCP but fails the implicit-TLS handshake answers `io::ErrorKind::InvalidData`.
    fn connect(&self, host: &str, port: u16, security: Security) -> impl Future<Output = io::Result<Self::Conn>>;
    /// Upgrades a plain connection to TLS, verifying the relay's certificate.
    fn start_tls(&self, conn: Self::Conn) -> impl Future<Output = io::Result<Self::Conn>>;
    /// A timer that completes `millis` from now; dropping it cancels it.
    type Timer: Future<Output = ()> + Unpin;
    fn sleep(&self, millis: u64) -> Self::Timer;
    /// Wall-clock milliseconds since the Unix epoch: the one clock, for timeouts, the
    /// transcript's timings and the Date header.
    fn now_millis(&self) -> u64;
}

const READ_CHUNK: usize = 16 * 1024;
/// Largest write: a flight (commands and a message that fits) goes out as one; a larger message
/// goes out in writes of this size, large enough that none stalls and small enough that neither
/// side of the socket ever holds the whole message twice.
const ONE_WRITE: usize = 64 * 1024;

/// An open, greeted, secured and authenticated SMTP session.
pub struct Session<N: Network> {
    net: N,
    /// `None` only while STARTTLS swaps the plain connection for the TLS one.
    conn: Option<N::Conn>,
    replies: ReplyBuffer,
    capabilities: Capabilities,
    timeouts: Timeouts,
    /// TLS started and no reply has come over it yet: an I/O error now is a failed handshake
    /// (workerd reports certificate problems on the first read or write, not at upgrade).
    awaiting_tls: bool,
    opened_at: u64,
    transcript: Transcript,
    /// Something was written since the last read from the socket.
    wrote: bool,
    round_trips: u32,
    /// A transaction failed after MAIL went out: RSET before the next one.
    needs_reset: bool,
    /// The connection failed, timed out, or the relay said it is closing: never reuse it.
    broken: bool,
    /// Replies read in the current transaction (not counting an RSET before it).
    transaction_replies: u32,
    clock: Clock<N::Timer>,
}

fn timeout(phase: Phase) -> Error {
    Error::new(phase, ErrorKind::Timeout)
}

fn gone(phase: Phase) -> Error {
    Error::new(phase, ErrorKind::Malformed("the connection is gone"))
}

/// The timeouts of a session's waits, on one timer for as long as it fits: a timer costs the
/// runtime about as much CPU as a read (a callback, `setTimeout`, `clearTimeout`), and a send
/// waits about ten times. The timer is kept while each new deadline is no earlier than the one
/// it is armed for; when it fires before the current deadline, it is armed again for the rest.
struct Clock<T> {
    armed: Option<(u64, T)>,
}

impl<T: Future<Output = ()> + Unpin> Clock<T> {
    fn new() -> Self {
        Clock { armed: None }
    }

    /// `fut`'s output, or `None` when `millis` pass first.
    async fn within<N: Network<Timer = T>, F: Future>(&mut self, net: &N, millis: u64, fut: F) -> Option<F::Output> {
        let deadline = net.now_millis().saturating_add(millis);
        let mut fut = pin!(fut);
        loop {
            if !matches!(&self.armed, Some((at, _)) if *at <= deadline) {
                self.armed = Some((deadline, net.sleep(deadline.saturating_sub(net.now_millis()))));
            }
            let (_, timer) = self.armed.as_mut()?;
            match select(fut.as_mut(), timer).await {
                Either::Left((value, _)) => return Some(value),
                Either::Right(((), _)) => {
                    self.armed = None;
                    if net.now_millis() >= deadline {
                        return None;
                    }
                }
            }
        }
    }

    /// Cancels the timer: nothing is waited for until the next wait (which may be in another
    /// request, for a warm session).
    fn stop(&mut self) {
        self.armed = None;
    }
}

impl<N: Network> Session<N> {
    /// Connects, reads the greeting, says EHLO, secures the connection and authenticates. A
    /// failure comes with the conversation up to it.
    pub async fn open(net: N, relay: &RelaySettings) -> Result<Session<N>, (Error, Transcript)> {
        if relay.security == Security::None && relay.credentials.is_some() {
            return Err((Error::new(Phase::Connect, ErrorKind::Insecure), Transcript::default()));
        }
        let opened_at = net.now_millis();
        let mut clock = Clock::new();
        let conn = match clock
            .within(&net, relay.timeouts.connect, net.connect(&relay.host, relay.port, relay.security))
            .await
        {
            None => return Err((timeout(Phase::Connect), Transcript::default())),
            // A failed implicit-TLS handshake (here, or on the first read as `awaiting_tls`), or
            // a refused or unroutable connection: nothing was said yet either way.
            Some(Err(error)) => {
                let kind = if error.kind() == io::ErrorKind::InvalidData { ErrorKind::Tls } else { ErrorKind::Io };
                return Err((Error::io(Phase::Connect, kind, error), Transcript::default()));
            }
            Some(Ok(conn)) => conn,
        };
        let mut session = Session {
            net,
            conn: Some(conn),
            replies: ReplyBuffer::new(),
            capabilities: Capabilities::default(),
            timeouts: relay.timeouts,
            awaiting_tls: relay.security == Security::ImplicitTls,
            opened_at,
            transcript: Transcript::default(),
            // Waiting for the greeting is the first round trip after connect.
            wrote: true,
            round_trips: 0,
            needs_reset: false,
            broken: false,
            transaction_replies: 0,
            clock,
        };
        session.note("connected");
        if relay.security == Security::ImplicitTls {
            // The implicit-TLS handshake happened inside connect: one more round trip.
            session.round_trips += 1;
            session.note("TLS established");
        }
        let opened = session.handshake(relay).await;
        session.clock.stop();
        match opened {
            Ok(()) => Ok(session),
            Err(error) => Err((error, session.transcript)),
        }
    }

    /// Greeting, EHLO, STARTTLS and EHLO again when configured, AUTH when configured.
    async fn handshake(&mut self, relay: &RelaySettings) -> Result<(), Error> {
        let greeting = self.read_reply(Phase::Greeting, relay.timeouts.command).await?;
        expect(Phase::Greeting, greeting, 220)?;
        self.ehlo(&relay.ehlo_name).await?;

        if relay.security == Security::StartTls {
            if !self.capabilities.starttls {
                return Err(Error::new(Phase::Ehlo, ErrorKind::Missing(Extension::StartTls)));
            }
            let reply = self.command(Command::StartTls, Phase::StartTls).await?;
            expect(Phase::StartTls, reply, 220)?;
            // RFC 3207 §4: nothing may follow the 220 before the handshake. Bytes here were
            // injected by someone on the path and would be read as if they came over TLS.
            if !self.replies.is_empty() {
                return Err(Error::new(
                    Phase::StartTls,
                    ErrorKind::Malformed("the relay sent bytes after 220 to STARTTLS"),
                ));
            }
            self.upgrade().await?;
            self.ehlo(&relay.ehlo_name).await?;
        }

        if let Some(credentials) = &relay.credentials {
            self.authenticate(credentials).await?;
        }
        Ok(())
    }

    /// The extensions the relay offered in the last EHLO (over TLS when TLS is in use).
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// What was said so far, AUTH payloads hidden.
    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    /// What was said so far, leaving the record empty for what follows (one transaction's
    /// worth at a time, on a session that lives for many).
    pub fn take_transcript(&mut self) -> Transcript {
        std::mem::take(&mut self.transcript)
    }

    /// How many times the client has waited for the relay (TLS handshakes included).
    pub fn round_trips(&self) -> u32 {
        self.round_trips
    }

    /// The connection is still good for another transaction.
    pub fn is_usable(&self) -> bool {
        self.conn.is_some() && !self.broken
    }

    /// Whether a session that sat idle is still open, checked without waiting: the relay may
    /// have closed it meanwhile, or said something unasked (a `421` before closing). Either way
    /// the session is done, and nothing was sent on it.
    pub async fn still_open(&mut self) -> bool {
        if !self.is_usable() || !self.replies.is_empty() {
            self.broken = true;
            return false;
        }
        let Some(conn) = self.conn.as_mut() else { return false };
        let mut chunk = [0u8; 512];
        let open = match self.clock.within(&self.net, 0, conn.read(&mut chunk)).await {
            None => true, // nothing has arrived
            Some(Ok(0) | Err(_)) => false,
            Some(Ok(n)) => {
                let said = String::from_utf8_lossy(&chunk[..n]).trim_end().to_string();
                self.note(&format!("while idle the relay said: {said}"));
                false
            }
        };
        self.broken |= !open;
        open
    }

    /// Replies the relay gave to the last transaction (an RSET before it not counted): none
    /// means the relay cannot have accepted that transaction's message.
    pub fn transaction_replies(&self) -> u32 {
        self.transaction_replies
    }

    fn elapsed(&self) -> u64 {
        self.net.now_millis().saturating_sub(self.opened_at)
    }

    /// Adds a line of our own to the transcript (`<what>`).
    pub fn note(&mut self, what: &str) {
        let at = self.elapsed();
        self.transcript.note(at, what);
    }

    async fn upgrade(&mut self) -> Result<(), Error> {
        // start_tls consumes the plain connection; until it returns there is none.
        let plain = self.conn.take().ok_or_else(|| gone(Phase::Tls))?;
        let upgraded = match self.clock.within(&self.net, self.timeouts.command, self.net.start_tls(plain)).await {
            None => return Err(timeout(Phase::Tls)),
            Some(Err(error)) => return Err(Error::io(Phase::Tls, ErrorKind::Tls, error)),
            Some(Ok(conn)) => conn,
        };
        self.conn = Some(upgraded);
        self.round_trips += 1;
        self.awaiting_tls = true;
        self.wrote = true;
        // Capabilities and bytes from before TLS are forgotten (RFC 3207 §4.2).
        self.capabilities = Capabilities::default();
        self.replies = ReplyBuffer::new();
        self.note("TLS established");
        Ok(())
    }

    async fn ehlo(&mut self, name: &str) -> Result<(), Error> {
        let reply = self.command(Command::Ehlo(name.to_string()), Phase::Ehlo).await?;
        let reply = expect(Phase::Ehlo, reply, 250)?;
        self.capabilities = Capabilities::from_ehlo(&reply);
        Ok(())
    }

    async fn authenticate(&mut self, credentials: &Credentials) -> Result<(), Error> {
        let Some(mechanism) = self.capabilities.preferred_auth(credentials.choice.acceptable()) else {
            return Err(Error::new(Phase::Auth, ErrorKind::Missing(Extension::Auth)));
        };
        let reply = match mechanism {
            AuthMechanism::Plain => {
                self.command(Command::AuthPlain(credentials.plain_initial_response()), Phase::Auth).await?
            }
            AuthMechanism::Login => {
                let mut reply = self.command(Command::AuthLogin, Phase::Auth).await?;
                for response in credentials.login_responses() {
                    if reply.code != 334 {
                        break;
                    }
                    reply = self.command(Command::AuthResponse(response), Phase::Auth).await?;
                }
                reply
            }
            AuthMechanism::XOAuth2 => {
                let reply =
                    self.command(Command::AuthXOAuth2(credentials.xoauth2_initial_response()), Phase::Auth).await?;
                if reply.code == 334 {
                    // A base64 JSON error; RFC 7628 §3.2.3: answer with an empty line, then
                    // the relay sends the final failure.
                    self.command(Command::AuthResponse(String::new()), Phase::Auth).await?
                } else {
                    reply
                }
            }
        };
        expect(Phase::Auth, reply, 235).map(drop)
    }

    /// One mail transaction. Recipients the relay refuses are reported while the others
    /// still get the message; the transaction fails only when no recipient is accepted.
    ///
    /// Transactions can follow each other on one session: after one that failed half-way,
    /// the next starts with RSET (in the same flight with PIPELINING).
    pub async fn send(&mut self, envelope: &Envelope<'_>, message: &[u8]) -> Result<Delivery, Error> {
        self.transaction_replies = 0;
        let result = self.transaction(envelope, message).await;
        self.clock.stop();
        if let Err(error) = &result {
            // 421: the relay is closing the connection.
            self.broken |= error.reply().is_some_and(|r| r.code == 421) || is_fatal(error);
            self.needs_reset = true;
        }
        result
    }

    async fn transaction(&mut self, envelope: &Envelope<'_>, message: &[u8]) -> Result<Delivery, Error> {
        let params = parameters(&self.capabilities, envelope, message)?;
        let chunking = self.capabilities.chunking;
        let pipelining = self.capabilities.pipelining;
        let encoded = if chunking { Payload::for_bdat(message) } else { Payload::for_data(message) };
        let payload = encoded.map_err(|_| Error::new(Phase::Mail, ErrorKind::LineTooLong))?;

        let mail = Command::MailFrom { sender: envelope.sender.clone(), params: params.mail };
        let rcpts: Vec<Command> = envelope
            .recipients
            .iter()
            .map(|r| Command::RcptTo { recipient: (*r).clone(), params: params.rcpt.clone() })
            .collect();
        let last = if chunking { Command::Bdat { size: payload.len(), last: true } } else { Command::Data };

        // Once the whole message is out, a lost answer means the relay may have it — unless a
        // reply has already said it cannot (a refused MAIL, or every RCPT refused).
        let mut message_sent = false;
        let reset = std::mem::take(&mut self.needs_reset);
        if pipelining {
            let mut flight = if reset { vec![Command::Rset, mail] } else { vec![mail] };
            flight.extend(rcpts.iter().cloned());
            flight.push(last.clone());
            if chunking {
                let head = self.flight(&flight);
                self.write_message(&head, &payload, false).await?;
                message_sent = true;
            } else {
                self.write(&flight, Phase::Mail).await?;
            }
            if reset {
                // Its answer comes first; nothing of this transaction has been read yet, but
                // with CHUNKING the whole message is already out.
                let reply = self.read_reply(Phase::Mail, self.timeouts.command).await.map_err(|mut error| {
                    error.message_may_have_left = message_sent;
                    error
                })?;
                if reply.code != 250 {
                    // The pipelined replies behind it are unread: the session is out of step,
                    // and unless the relay is closing (421) it may have taken the message.
                    self.broken = true;
                    let closing = reply.code == 421;
                    let mut error = refusal(Phase::Mail, reply);
                    error.message_may_have_left = message_sent && !closing;
                    return Err(error);
                }
            }
        } else {
            if reset {
                let reply = self.command(Command::Rset, Phase::Mail).await?;
                expect(Phase::Mail, reply, 250)?;
            }
            self.write(&[mail], Phase::Mail).await?;
        }

        let mail_reply = self.read_in_transaction(Phase::Mail, self.timeouts.command, message_sent).await?;
        let mail_ok = (200..300).contains(&mail_reply.code);
        // 421: the relay is closing the connection; nothing more will be read or delivered.
        if mail_reply.code == 421 || (!pipelining && !mail_ok) {
            return Err(refusal(Phase::Mail, mail_reply));
        }

        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        for (recipient, rcpt) in envelope.recipients.iter().zip(&rcpts) {
            if !pipelining {
                self.write(std::slice::from_ref(rcpt), Phase::Rcpt).await?;
            }
            let reply =
                match self.read_in_transaction(Phase::Rcpt, self.timeouts.command, message_sent && mail_ok).await {
                    Ok(reply) => reply,
                    // MAIL was refused: that is the answer, whatever happens to the rest.
                    Err(_) if !mail_ok => return Err(refusal(Phase::Mail, mail_reply)),
                    Err(error) => return Err(error),
                };
            match reply.code {
                421 => return Err(refusal(Phase::Rcpt, reply)),
                // After a refused MAIL, pipelined RCPTs answer 503: not the recipient's fault.
                _ if !mail_ok => {}
                200..=299 => accepted.push((*recipient).clone()),
                _ => rejected.push(Refusal { recipient: (*recipient).clone(), reply }),
            }
        }

        if !pipelining {
            if accepted.is_empty() {
                return Err(refused_all(&rejected));
            }
            if chunking {
                let head = self.flight(std::slice::from_ref(&last));
                self.write_message(&head, &payload, false).await?;
                message_sent = true;
            } else {
                self.write(std::slice::from_ref(&last), Phase::Data).await?;
            }
        }

        let failed = if !mail_ok {
            Some(refusal(Phase::Mail, mail_reply))
        } else if accepted.is_empty() {
            Some(refused_all(&rejected))
        } else {
            None
        };
        let final_phase = if chunking { Phase::DataEnd } else { Phase::Data };
        let wait = if chunking { self.timeouts.data_end } else { self.timeouts.command };
        let reply = match self.read_in_transaction(final_phase, wait, message_sent && failed.is_none()).await {
            Ok(reply) => reply,
            Err(error) => return Err(failed.unwrap_or(error)),
        };
        if let Some(error) = failed {
            if !chunking && reply.code == 354 {
                // The relay opened DATA despite the failure: close it with an empty message
                // that has no recipients, so the connection stays in step.
                self.write_message(b"", &Payload::EMPTY, true).await?;
                let _ = self.read_reply(Phase::DataEnd, self.timeouts.command).await;
            }
            return Err(error);
        }

        let reply = if chunking {
            reply
        } else {
            expect(Phase::Data, reply, 354)?;
            self.write_message(b"", &payload, true).await?;
            self.read_in_transaction(Phase::DataEnd, self.timeouts.data_end, true).await?
        };
        let reply = expect(Phase::DataEnd, reply, 250)?;
        Ok(Delivery { accepted, rejected, reply })
    }

    /// Ends the current transaction so another can follow on this connection.
    pub async fn reset(&mut self) -> Result<(), Error> {
        let reply = self.command(Command::Rset, Phase::Mail).await?;
        self.needs_reset = false;
        expect(Phase::Mail, reply, 250).map(drop)
    }

    /// Says QUIT and waits, within the QUIT timeout, for the answer and the close.
    pub async fn quit(self) {
        let Session { net, conn, timeouts, .. } = self;
        let Some(mut conn) = conn else { return };
        let _ = Clock::new()
            .within(&net, timeouts.quit, async {
                // The reply does not matter: the message was already accepted or refused.
                if conn.write_all(Command::Quit.to_string().as_bytes()).await.is_ok() {
                    let mut reply = [0u8; 512];
                    let _ = conn.read(&mut reply).await;
                }
                let _ = conn.shutdown().await;
            })
            .await;
    }

    async fn command(&mut self, command: Command, phase: Phase) -> Result<Reply, Error> {
        self.write(std::slice::from_ref(&command), phase).await?;
        self.read_reply(phase, self.timeouts.command).await
    }

    /// Writes commands in one flight, recording each in the transcript.
    async fn write(&mut self, commands: &[Command], phase: Phase) -> Result<(), Error> {
        let bytes = self.flight(commands);
        let awaiting_tls = self.awaiting_tls;
        let Some(conn) = self.conn.as_mut() else { return Err(gone(phase)) };
        let result = match self.clock.within(&self.net, self.timeouts.command, conn.write_all(&bytes)).await {
            None => Err(timeout(phase)),
            Some(Err(error)) => Err(io_error(phase, error, awaiting_tls)),
            Some(Ok(())) => Ok(()),
        };
        self.broken |= result.is_err();
        result
    }

    /// The commands as they go on the wire, each recorded in the transcript.
    fn flight(&mut self, commands: &[Command]) -> Vec<u8> {
        let mut bytes = String::new();
        let at = self.elapsed();
        for command in commands {
            bytes.push_str(&command.to_string());
            self.transcript.sent(at, command);
        }
        self.wrote = true;
        bytes.into_bytes()
    }

    /// Writes the message after `head` (the commands of its flight, if any) and, for DATA,
    /// the final dot. A message of up to [`ONE_WRITE`] goes out in the same write as its
    /// commands: two small writes stall on a relay that delays its ACKs (Nagle), one TLS
    /// record each. A larger one goes out in writes of about [`ONE_WRITE`], so neither side of
    /// the socket ever holds a second copy of it. If writing or the flush after it fails, the
    /// relay cannot have the whole message: its end was in what did not go out (on workerd a
    /// write is handed over and waited for at the flush, so a failed last write shows there).
    /// Only an answer lost after that may hide a delivery.
    async fn write_message(&mut self, head: &[u8], payload: &Payload<'_>, end_of_data: bool) -> Result<(), Error> {
        let at = self.elapsed();
        self.transcript.sent_message(at, payload.len());
        self.wrote = true;
        let tail: &[u8] = if end_of_data { END_OF_DATA } else { b"" };
        let Some(conn) = self.conn.as_mut() else { return Err(gone(Phase::DataEnd)) };
        let write = async {
            let mut out = Vec::with_capacity((head.len() + payload.len() + tail.len()).min(ONE_WRITE + head.len()));
            out.extend_from_slice(head);
            for piece in payload.pieces(ONE_WRITE) {
                if out.len() + piece.len() > ONE_WRITE && !out.is_empty() {
                    conn.write_all(&out).await?;
                    out.clear();
                }
                out.extend_from_slice(&piece);
            }
            out.extend_from_slice(tail);
            conn.write_all(&out).await?;
            conn.flush().await
        };
        let written = match self.clock.within(&self.net, self.timeouts.data_end, write).await {
            None => Err(timeout(Phase::DataEnd)),
            Some(Err(error)) => Err(io_error(Phase::DataEnd, error, false)),
            Some(Ok(())) => Ok(()),
        };
        self.broken |= written.is_err();
        written
    }

    /// Reads a reply; when the message may already be with the relay (`at_risk`), losing the
    /// answer means it may have been accepted.
    async fn read_in_transaction(&mut self, phase: Phase, millis: u64, at_risk: bool) -> Result<Reply, Error> {
        let reply = self.read_reply(phase, millis).await.map_err(|mut error| {
            error.message_may_have_left = at_risk;
            error
        })?;
        self.transaction_replies += 1;
        Ok(reply)
    }

    /// Reads one reply within `millis` in all, however the relay dribbles its bytes.
    async fn read_reply(&mut self, phase: Phase, millis: u64) -> Result<Reply, Error> {
        let mut chunk = vec![0u8; READ_CHUNK];
        let deadline = self.net.now_millis().saturating_add(millis);
        loop {
            match self.replies.next_reply() {
                Ok(Some(reply)) => {
                    self.awaiting_tls = false;
                    let at = self.elapsed();
                    self.transcript.received(at, &reply, phase == Phase::Auth);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(malformed) => {
                    self.broken = true;
                    return Err(Error::new(phase, ErrorKind::Malformed(malformed.0)));
                }
            }
            if std::mem::take(&mut self.wrote) {
                self.round_trips += 1;
            }
            let awaiting_tls = self.awaiting_tls;
            let Some(conn) = self.conn.as_mut() else { return Err(gone(phase)) };
            let left = deadline.saturating_sub(self.net.now_millis());
            if left == 0 {
                self.broken = true;
                return Err(timeout(phase));
            }
            let failed = match self.clock.within(&self.net, left, conn.read(&mut chunk)).await {
                None => timeout(phase),
                Some(Err(error)) => io_error(phase, error, awaiting_tls),
                Some(Ok(0)) if awaiting_tls => Error::new(phase, ErrorKind::Tls),
                Some(Ok(0)) => Error::new(phase, ErrorKind::Closed),
                Some(Ok(n)) => {
                    self.replies.push(&chunk[..n]);
                    continue;
                }
            };
            // Whatever the caller makes of it, this connection cannot carry another transaction.
            self.broken = true;
            return Err(failed);
        }
    }
}

/// The connection cannot carry another transaction after this.
fn is_fatal(error: &Error) -> bool {
    matches!(
        error.kind,
        ErrorKind::Timeout | ErrorKind::Closed | ErrorKind::Io | ErrorKind::Tls | ErrorKind::Malformed(_)
    )
}

/// An I/O failure; before the first reply over TLS it is the handshake that failed.
fn io_error(phase: Phase, error: io::Error, awaiting_tls: bool) -> Error {
    Error::io(phase, if awaiting_tls { ErrorKind::Tls } else { ErrorKind::Io }, error)
}

fn refusal(phase: Phase, reply: Reply) -> Error {
    Error::new(phase, ErrorKind::Reply(reply))
}

/// `reply` when it has `code` (251 counts as 250); otherwise the refusal it is.
fn expect(phase: Phase, reply: Reply, code: u16) -> Result<Reply, Error> {
    if reply.code == code || (code == 250 && reply.code == 251) {
        Ok(reply)
    } else {
        Err(refusal(phase, reply))
    }
}

/// Every recipient refused: one answer for all of them, the same whatever their order. A
/// temporary refusal speaks for the whole list when there is one (a retry may reach that
/// recipient), else the first permanent one.
fn refused_all(rejected: &[Refusal]) -> Error {
    let speaker = rejected.iter().find(|r| r.reply.is_transient()).or(rejected.first());
    let reply = match speaker {
        Some(refusal) => refusal.reply.clone(),
        None => Reply { code: 554, enhanced: None, lines: vec!["no valid recipients".into()] },
    };
    refusal(Phase::Rcpt, reply)
}
