//! A warm SMTP session: opened, secured and authenticated once, then used by one send after
//! another, so a send costs one round trip instead of seven. The platform keeps one of these
//! in each of its `SMTP_SESSIONS` Durable Objects.
//!
//! The two sins, and what keeps each away:
//! - a duplicate: before a send, the warm session is checked without waiting (a relay that
//!   closed it while idle, with or without a `421`, is found out before anything is sent). A
//!   send that then fails is sent again on a new session only when the relay cannot have
//!   accepted it: the message had not gone out whole and no reply to the transaction arrived
//!   (the connection was closed or reset), or the first reply was `421` (the relay is
//!   closing). Anything else — a relay that closes after the whole message without a word, a
//!   timeout — is reported as it is (`delivery_unknown` when the message may have left) and
//!   never sent again;
//! - a loss: a session that failed is dropped, never used again; settings that changed (a new
//!   password) never reuse the old session.

use futures_util::lock::Mutex;

use super::transaction::{api_error, Outcome, SessionUse, Transaction};
use crate::smtp::client::{Network, Session};
use crate::smtp::error::{Error, ErrorKind};
use crate::smtp::settings::RelaySettings;

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

/// Whether a send that failed on a session that had already been used can go again on a new
/// one: only when the relay cannot have accepted it.
fn relay_cannot_have_it(error: &Error, replies: u32) -> bool {
    if error.message_may_have_left {
        return false;
    }
    match &error.kind {
        ErrorKind::Closed | ErrorKind::Io => replies == 0,
        ErrorKind::Reply(reply) => reply.code == 421 && replies <= 1,
        _ => false,
    }
}

impl<N: Network + Clone> WarmSession<N> {
    /// Sends `transaction` on the warm session, opening one first when there is none (or it
    /// was opened with other settings, or it failed).
    pub async fn send(&self, net: &N, relay: &RelaySettings, transaction: &Transaction) -> Outcome {
        let mut slot = self.slot.lock().await;
        let fingerprint = relay.fingerprint();
        if let Some(old) = slot.take_if(|warm| warm.fingerprint != fingerprint || !warm.session.is_usable()) {
            if old.session.is_usable() {
                old.session.quit().await; // other settings: end the old session politely
            }
        }
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
            let transcript = warm.session.take_transcript();
            let round_trips = warm.session.round_trips() - before;
            match result {
                Err(error) if relay_cannot_have_it(&error, warm.session.transaction_replies()) => {
                    // The relay closed the session while it was idle: a new one takes the message.
                    note = Some(format!("the warm session was gone ({error}); a new one takes the message"));
                    *slot = None;
                }
                result => {
                    if !warm.session.is_usable() {
                        *slot = None;
                    }
                    let result = result.map_err(|e| api_error(&e, &transaction.message_id));
                    return Outcome { result, transcript, round_trips, session: SessionUse::Warm };
                }
            }
        }
        let mut session = match Session::open(net.clone(), relay).await {
            Ok(session) => session,
            Err((error, transcript)) => {
                let result = Err(api_error(&error, &transaction.message_id));
                return Outcome { result, transcript, round_trips: 0, session: SessionUse::New };
            }
        };
        if let Some(note) = note {
            session.note(&note);
        }
        let result = transaction.run(&mut session).await.map_err(|e| api_error(&e, &transaction.message_id));
        let (transcript, round_trips) = (session.take_transcript(), session.round_trips());
        if session.is_usable() {
            *slot = Some(Warm { fingerprint, session, last_used_ms: net.now_millis() });
        }
        Outcome { result, transcript, round_trips, session: SessionUse::New }
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
