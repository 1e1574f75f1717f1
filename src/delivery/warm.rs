//! A warm SMTP session: opened, secured and authenticated once, then used by one send after
//! another, so a send costs one round trip instead of seven. The platform keeps one of these
//! in each of its `SMTP_SESSIONS` Durable Objects.
//!
//! The two sins, and what keeps each away:
//! - a duplicate: before a send, the warm session is checked without waiting (a relay that
//!   closed it while idle, with or without a `421`, is found out before anything is sent). A
//!   send that then fails is sent again on a new session only when the relay cannot have
//!   accepted it: no reply to the transaction arrived and the message had not gone out whole
//!   (the connection was closed or reset), the first reply was `421` (the relay is closing),
//!   or MAIL was refused for now (`4xx`: the relay refused the whole transaction). Anything
//!   else — a relay that closes after the whole message without a word, a timeout — is
//!   reported as it is (`delivery_unknown` when the message may have left) and never sent
//!   again;
//! - a give-up a retry would have saved: a new session is opened for a send at most twice, the
//!   second time only when the first failed before the relay could take the message (a `421`
//!   greeting from a relay at its connection limit, a connection closed on the way, or the
//!   refusals above). A warm session is long-lived, so without this a send that finds it gone
//!   would meet the relay's bad moments more often than a send with a session of its own;
//! - a loss: a session that failed is dropped, never used again; settings that changed (a new
//!   password) never reuse the old session.

use futures_util::lock::{Mutex, MutexGuard};

use super::transaction::{api_error, Outcome, SessionUse, Transaction};
use crate::smtp::client::{Network, Session};
use crate::smtp::error::{Error, ErrorKind};
use crate::smtp::outcome::Phase;
use crate::smtp::settings::RelaySettings;
use crate::smtp::transcript::Transcript;

/// New sessions a send may open: one, and one more when that one fails before the relay could
/// take the message.
const NEW_SESSIONS: u32 = 2;

struct Warm<N: Network> {
    /// [`RelaySettings::fingerprint`] of the settings the session was opened with.
    fingerprint: String,
    session: Session<N>,
    last_used_ms: u64,
}

/// At most one open session, and one transaction on it at a time.
pub struct WarmSession<N: Network> {
    slot: Mutex<Option<Warm<N>>>,
}

impl<N: Network> Default for WarmSession<N> {
    fn default() -> Self {
        WarmSession { slot: Mutex::new(None) }
    }
}

/// Whether a send that failed on a session can go again on a new one: only when the relay
/// cannot have accepted it.
fn relay_cannot_have_it(error: &Error, replies: u32) -> bool {
    if error.message_may_have_left {
        return false;
    }
    match &error.kind {
        ErrorKind::Closed | ErrorKind::Io => replies == 0,
        ErrorKind::Reply(reply) if reply.code == 421 => replies <= 1,
        // MAIL refused for now: the relay refused the transaction, whatever followed it.
        ErrorKind::Reply(reply) => error.phase == Phase::Mail && reply.is_transient(),
        _ => false,
    }
}

/// Whether opening a session failed in a way another connection may not: a temporary refusal
/// (a relay at its connection limit greets with `421`) or a connection closed or reset on the
/// way. Not a timeout (a second one would double the wait), a TLS failure, a refusal for good,
/// or an extension the relay lacks: those would only fail again.
fn may_open_again(error: &Error) -> bool {
    match &error.kind {
        ErrorKind::Closed | ErrorKind::Io => true,
        ErrorKind::Reply(reply) => reply.is_transient(),
        _ => false,
    }
}

impl<N: Network + Clone> WarmSession<N> {
    /// Sends `transaction` on the warm session, opening one first when there is none (or it
    /// was opened with other settings, or it failed); waits while another send has it.
    pub async fn send(&self, net: &N, relay: &RelaySettings, transaction: &Transaction) -> Outcome {
        let slot = self.slot.lock().await;
        self.send_holding(slot, net, relay, transaction).await
    }

    /// [`WarmSession::send`] when no other send has the session; `None` (and nothing sent)
    /// while one does.
    pub async fn send_if_free(&self, net: &N, relay: &RelaySettings, transaction: &Transaction) -> Option<Outcome> {
        let slot = self.slot.try_lock()?;
        Some(self.send_holding(slot, net, relay, transaction).await)
    }

    async fn send_holding(
        &self,
        mut slot: MutexGuard<'_, Option<Warm<N>>>,
        net: &N,
        relay: &RelaySettings,
        transaction: &Transaction,
    ) -> Outcome {
        let fingerprint = relay.fingerprint();
        if let Some(old) = slot.take_if(|warm| warm.fingerprint != fingerprint || !warm.session.is_usable()) {
            if old.session.is_usable() {
                old.session.quit().await; // other settings: end the old session politely
            }
        }
        // What earlier attempts said, shown before the conversation that answers.
        let mut earlier = Transcript::default();
        let mut round_trips = 0;
        let mut note = None;
        if let Some(warm) = slot.as_mut() {
            if !warm.session.still_open().await {
                note = Some("the relay had closed the warm session; a new one takes the message".to_string());
                *slot = None;
            }
        }
        if let Some(warm) = slot.as_mut() {
            let before = warm.session.round_trips();
            let result = transaction.run(&mut warm.session).await;
            warm.last_used_ms = net.now_millis();
            earlier = warm.session.take_transcript();
            round_trips = warm.session.round_trips() - before;
            match result {
                Err(error) if relay_cannot_have_it(&error, warm.session.transaction_replies()) => {
                    note = Some(format!("the warm session did not take the message ({error}); a new one takes it"));
                    if let Some(old) = slot.take() {
                        if old.session.is_usable() {
                            old.session.quit().await;
                        }
                    }
                }
                result => {
                    if !warm.session.is_usable() {
                        *slot = None;
                    }
                    let result = result.map_err(|e| api_error(&e, &transaction.message_id));
                    return Outcome { result, transcript: earlier, round_trips, session: SessionUse::Warm };
                }
            }
        }
        for attempt in 1..=NEW_SESSIONS {
            let last = attempt == NEW_SESSIONS;
            if let Some(note) = note.take() {
                earlier.note(0, &note);
            }
            let mut session = match Session::open(net.clone(), relay).await {
                Ok(session) => session,
                Err((error, transcript)) => {
                    earlier.append(transcript);
                    if !last && may_open_again(&error) {
                        note =
                            Some(format!("the relay refused a new session ({error}); another one takes the message"));
                        continue;
                    }
                    let result = Err(api_error(&error, &transaction.message_id));
                    return Outcome { result, transcript: earlier, round_trips, session: SessionUse::New };
                }
            };
            let result = transaction.run(&mut session).await;
            earlier.append(session.take_transcript());
            round_trips += session.round_trips();
            match result {
                Err(error) if !last && relay_cannot_have_it(&error, session.transaction_replies()) => {
                    note = Some(format!("the relay did not take the message ({error}); another session takes it"));
                    if session.is_usable() {
                        session.quit().await;
                    }
                }
                result => {
                    if session.is_usable() {
                        *slot = Some(Warm { fingerprint, session, last_used_ms: net.now_millis() });
                    }
                    let result = result.map_err(|e| api_error(&e, &transaction.message_id));
                    return Outcome { result, transcript: earlier, round_trips, session: SessionUse::New };
                }
            }
        }
        unreachable!("the last new session always answers")
    }

    /// Ends the session with QUIT when it has been idle for `idle_ms`. Answers how long until
    /// it would be idle that long, when it is still open.
    pub async fn close_if_idle(&self, now_ms: u64, idle_ms: u64) -> Option<u64> {
        let mut slot = self.slot.lock().await;
        let idle_since = slot.as_ref()?.last_used_ms;
        let idle_for = now_ms.saturating_sub(idle_since);
        if idle_for < idle_ms {
            return Some(idle_ms - idle_for);
        }
        if let Some(warm) = slot.take() {
            warm.session.quit().await;
        }
        None
    }
}
