//! The one async driver: moves commands and replies over a [`Network`] connection.
//!
//! All protocol decisions live in the sans-IO modules; this file only sequences them,
//! applies a timeout to every wait, and turns I/O failures into error codes.

use std::future::Future;
use std::io;
use std::pin::pin;

use futures_util::future::{select, Either};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::auth::Credentials;
use super::capabilities::{AuthMechanism, Capabilities};
use super::command::Command;
use super::data::encode_for_data;
use super::outcome::{detail, reply_error, Delivery, Phase, RejectedRecipient};
use super::reply::{Reply, ReplyBuffer};
use crate::address::EmailAddress;
use crate::error::{ApiError, ErrorCode};

/// How the first bytes of the connection are protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP that may later be upgraded with STARTTLS.
    Plain { upgradable: bool },
    /// TLS from the first byte.
    Tls,
}

/// The platform: sockets and a timer. workerd in production, scripted streams in tests.
pub trait Network {
    type Conn: AsyncRead + AsyncWrite + Unpin;
    fn connect(&self, host: &str, port: u16, transport: Transport) -> impl Future<Output = io::Result<Self::Conn>>;
    /// Upgrades a plain connection to TLS, verifying the relay's certificate for `host`.
    fn start_tls(&self, conn: Self::Conn) -> impl Future<Output = io::Result<Self::Conn>>;
    fn sleep(&self, millis: u64) -> impl Future<Output = ()>;
}

/// Upper bounds for each wait, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: u64,
    pub greeting: u64,
    pub command: u64,
    pub tls: u64,
    /// The wait for the verdict after the final `.`: relays scan the message then.
    pub data_end: u64,
    pub quit: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        // Close to RFC 5321 §4.5.3.2's spirit, scaled down for an HTTP request.
        Timeouts { connect: 10_000, greeting: 15_000, command: 15_000, tls: 10_000, data_end: 60_000, quit: 2_000 }
    }
}

/// Security of the session as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityMode {
    StartTls,
    ImplicitTls,
    /// Plaintext, explicit opt-in, never with AUTH.
    None,
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct RelaySettings {
    pub host: String,
    pub port: u16,
    pub security: SecurityMode,
    pub ehlo_name: String,
    pub credentials: Option<Credentials>,
    pub timeouts: Timeouts,
}

const READ_CHUNK: usize = 8192;
/// The AUTH mechanisms this client speaks, preferred first.
const USABLE_AUTH: &[AuthMechanism] = &[AuthMechanism::Plain];

/// An open, greeted, secured and authenticated SMTP session.
pub struct Session<N: Network> {
    net: N,
    conn: N::Conn,
    replies: ReplyBuffer,
    capabilities: Capabilities,
    timeouts: Timeouts,
    /// TLS started and no reply has come over it yet: an I/O error now is a failed handshake
    /// (workerd reports certificate problems on the first read or write, not at upgrade).
    awaiting_tls: bool,
}

fn timeout_error(phase: Phase) -> ApiError {
    ApiError::new(ErrorCode::RelayTimeout, format!("the relay did not answer in time at {}", phase.name()))
}

fn protocol_error(phase: Phase, why: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::RelayProtocolError, format!("{why} (at {})", phase.name()))
}

async fn within<N: Network, T>(net: &N, millis: u64, fut: impl Future<Output = T>) -> Option<T> {
    match select(pin!(fut), pin!(net.sleep(millis))).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(_) => None,
    }
}

impl<N: Network> Session<N> {
    /// Connects, reads the greeting, says EHLO, secures the connection and authenticates.
    pub async fn open(net: N, relay: &RelaySettings) -> Result<Session<N>, ApiError> {
        let transport = match relay.security {
            SecurityMode::StartTls => Transport::Plain { upgradable: true },
            SecurityMode::ImplicitTls => Transport::Tls,
            SecurityMode::None => Transport::Plain { upgradable: false },
        };
        if relay.security == SecurityMode::None && relay.credentials.is_some() {
            return Err(ApiError::new(ErrorCode::Misconfigured, "SMTP_SECURITY none never sends credentials"));
        }
        let conn = match within(&net, relay.timeouts.connect, net.connect(&relay.host, relay.port, transport)).await {
            None => return Err(timeout_error(Phase::Connect)),
            Some(Err(_)) if transport == Transport::Tls => {
                return Err(ApiError::new(ErrorCode::RelayTlsFailed, "could not establish TLS with the relay"))
            }
            Some(Err(_)) => return Err(ApiError::new(ErrorCode::RelayUnreachable, "could not connect to the relay")),
            Some(Ok(conn)) => conn,
        };
        let mut session = Session {
            net,
            conn,
            replies: ReplyBuffer::new(),
            capabilities: Capabilities::default(),
            timeouts: relay.timeouts,
            awaiting_tls: transport == Transport::Tls,
        };

        let greeting_phase = if transport == Transport::Tls { Phase::Tls } else { Phase::Greeting };
        let greeting = session.read_reply(greeting_phase, relay.timeouts.greeting).await?;
        session.expect(Phase::Greeting, &greeting, 220)?;
        session.ehlo(&relay.ehlo_name).await?;

        if relay.security == SecurityMode::StartTls {
            if !session.capabilities.starttls {
                return Err(ApiError::new(
                    ErrorCode::RelayTlsUnavailable,
                    "the relay does not offer STARTTLS; nothing was sent",
                ));
            }
            let reply = session.command(&Command::StartTls, Phase::StartTls).await?;
            session.expect(Phase::StartTls, &reply, 220)?;
            // RFC 3207 §4: nothing may follow the 220 before the handshake. Bytes here were
            // injected by someone on the path and would be read as if they came over TLS.
            if !session.replies.is_empty() {
                return Err(protocol_error(Phase::StartTls, "the relay sent bytes after 220 to STARTTLS"));
            }
            session = session.upgrade().await?;
            session.ehlo(&relay.ehlo_name).await?;
        }

        if let Some(credentials) = &relay.credentials {
            session.authenticate(credentials).await?;
        }
        Ok(session)
    }

    /// The extensions the relay offered in the last EHLO (over TLS when TLS is in use).
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    async fn upgrade(self) -> Result<Session<N>, ApiError> {
        let Session { net, conn, timeouts, .. } = self;
        let tls_failed = || ApiError::new(ErrorCode::RelayTlsFailed, "the TLS handshake with the relay failed");
        let conn = match within(&net, timeouts.tls, net.start_tls(conn)).await {
            None => return Err(timeout_error(Phase::Tls)),
            Some(Err(_)) => return Err(tls_failed()),
            Some(Ok(conn)) => conn,
        };
        // Capabilities learned before TLS are forgotten (RFC 3207 §4.2).
        Ok(Session {
            net,
            conn,
            replies: ReplyBuffer::new(),
            capabilities: Capabilities::default(),
            timeouts,
            awaiting_tls: true,
        })
    }

    async fn ehlo(&mut self, name: &str) -> Result<(), ApiError> {
        let reply = self.command(&Command::Ehlo(name.to_string()), Phase::Ehlo).await?;
        self.expect(Phase::Ehlo, &reply, 250)?;
        self.capabilities = Capabilities::from_ehlo(&reply);
        Ok(())
    }

    async fn authenticate(&mut self, credentials: &Credentials) -> Result<(), ApiError> {
        match self.capabilities.preferred_auth(USABLE_AUTH) {
            Some(AuthMechanism::Plain) => {
                let reply =
                    self.command(&Command::AuthPlain(credentials.plain_initial_response()), Phase::Auth).await?;
                self.expect(Phase::Auth, &reply, 235)
            }
            _ => Err(ApiError::new(
                ErrorCode::RelayAuthFailed,
                "the relay offers no AUTH mechanism this client supports (PLAIN)",
            )),
        }
    }

    /// One mail transaction: MAIL, RCPT for each recipient, DATA and the message.
    ///
    /// Recipients the relay refuses are reported while the others still get the message; the
    /// transaction fails only when no recipient is accepted.
    pub async fn send(
        &mut self,
        sender: &EmailAddress,
        recipients: &[&EmailAddress],
        message: &[u8],
    ) -> Result<Delivery, ApiError> {
        let wire = encode_for_data(message)
            .map_err(|_| ApiError::new(ErrorCode::ValidationFailed, "the message has a line over 998 octets"))?;
        if let Some(limit) = self.capabilities.size.filter(|limit| *limit > 0) {
            if message.len() as u64 > limit {
                return Err(ApiError::new(
                    ErrorCode::MessageTooLarge,
                    format!("the message is {} bytes; the relay accepts at most {limit}", message.len()),
                ));
            }
        }
        let mut params = Vec::new();
        if self.capabilities.size.is_some() {
            params.push(format!("SIZE={}", message.len()));
        }
        if !message.is_ascii() && self.capabilities.eight_bit_mime {
            params.push("BODY=8BITMIME".to_string());
        }
        let reply = self.command(&Command::MailFrom { sender: sender.clone(), params }, Phase::Mail).await?;
        self.expect(Phase::Mail, &reply, 250)?;

        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        let mut last_refusal = None;
        for recipient in recipients {
            let reply = self.command(&Command::RcptTo { recipient: (*recipient).clone() }, Phase::Rcpt).await?;
            match reply.code {
                250 | 251 => accepted.push(recipient.to_string()),
                421 => return Err(reply_error(Phase::Rcpt, &reply)),
                code if (400..600).contains(&code) && code != 503 => {
                    rejected
                        .push(RejectedRecipient { email: recipient.to_string(), smtp: detail(Phase::Rcpt, &reply) });
                    last_refusal = Some(reply);
                }
                _ => return Err(reply_error(Phase::Rcpt, &reply)),
            }
        }
        if accepted.is_empty() {
            // Abandon the transaction so the connection stays usable; its reply does not matter.
            let _ = self.command(&Command::Rset, Phase::Mail).await;
            let refusal = last_refusal.unwrap_or(Reply { code: 554, enhanced: None, lines: vec![] });
            return Err(reply_error(Phase::Rcpt, &refusal));
        }

        let reply = self.command(&Command::Data, Phase::Data).await?;
        self.expect(Phase::Data, &reply, 354)?;
        // From here on, a broken connection leaves the outcome unknown: the relay may have
        // received the final dot and queued the message.
        let unknown = |why: &str| {
            ApiError::new(
                ErrorCode::DeliveryUnknown,
                format!("{why} after the message was sent; it may have been delivered"),
            )
        };
        match within(&self.net, self.timeouts.data_end, self.conn.write_all(&wire)).await {
            None => return Err(timeout_error(Phase::DataEnd)),
            Some(Err(_)) => return Err(unknown("the connection broke")),
            Some(Ok(())) => {}
        }
        let reply = match self.read_reply(Phase::DataEnd, self.timeouts.data_end).await {
            Ok(reply) => reply,
            Err(error) if error.code == ErrorCode::RelayTimeout => return Err(unknown("the relay did not answer")),
            Err(error) if error.code == ErrorCode::RelayProtocolError && error.smtp.is_none() => {
                return Err(unknown("the relay closed the connection or sent garbage"))
            }
            Err(error) => return Err(error),
        };
        self.expect(Phase::DataEnd, &reply, 250)?;
        Ok(Delivery { accepted, rejected, reply: detail(Phase::DataEnd, &reply) })
    }

    /// Resets the transaction state so another message can follow on this connection.
    pub async fn reset(&mut self) -> Result<(), ApiError> {
        let reply = self.command(&Command::Rset, Phase::Mail).await?;
        self.expect(Phase::Mail, &reply, 250)
    }

    /// Says QUIT and waits (bounded) for the answer; errors are irrelevant by now.
    pub async fn quit(self) {
        let bound = self.timeouts.quit;
        let Session { net, mut conn, .. } = self;
        let _ = within(&net, bound, async {
            // The reply does not matter: the message was already accepted.
            if conn.write_all(Command::Quit.to_string().as_bytes()).await.is_ok() {
                let mut reply = [0u8; 512];
                let _ = conn.read(&mut reply).await;
            }
            let _ = conn.shutdown().await;
        })
        .await;
    }

    fn expect(&self, phase: Phase, reply: &Reply, code: u16) -> Result<(), ApiError> {
        if reply.code == code || (code == 250 && reply.code == 251) {
            Ok(())
        } else {
            Err(reply_error(phase, reply))
        }
    }

    async fn command(&mut self, command: &Command, phase: Phase) -> Result<Reply, ApiError> {
        let bytes = command.to_string();
        match within(&self.net, self.timeouts.command, self.conn.write_all(bytes.as_bytes())).await {
            None => return Err(timeout_error(phase)),
            Some(Err(error)) => return Err(self.io_error(phase, error)),
            Some(Ok(())) => {}
        }
        self.read_reply(phase, self.timeouts.command).await
    }

    fn io_error(&self, phase: Phase, _error: io::Error) -> ApiError {
        if self.awaiting_tls {
            return ApiError::new(ErrorCode::RelayTlsFailed, "the TLS handshake with the relay failed");
        }
        protocol_error(phase, "the connection to the relay broke")
    }

    async fn read_reply(&mut self, phase: Phase, millis: u64) -> Result<Reply, ApiError> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            match self.replies.next_reply() {
                Ok(Some(reply)) => {
                    self.awaiting_tls = false;
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(malformed) => return Err(protocol_error(phase, malformed)),
            }
            match within(&self.net, millis, self.conn.read(&mut chunk)).await {
                None => return Err(timeout_error(phase)),
                Some(Err(error)) => return Err(self.io_error(phase, error)),
                Some(Ok(0)) if self.awaiting_tls => {
                    return Err(ApiError::new(ErrorCode::RelayTlsFailed, "the TLS handshake with the relay failed"))
                }
                Some(Ok(0)) => return Err(protocol_error(phase, "the relay closed the connection")),
                Some(Ok(n)) => self.replies.push(&chunk[..n]),
            }
        }
    }
}
