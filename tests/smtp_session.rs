//! The SMTP driver against scripted relays: exact bytes on the wire, round trips, and the
//! error for each fault.

use edge_mailer::address::EmailAddress;
use edge_mailer::delivery::transaction::{api_error, sent, Sent};
use edge_mailer::error::{ApiError, ErrorCode};
use edge_mailer::smtp::auth::{AuthChoice, Credentials};
use edge_mailer::smtp::capabilities::AuthMechanism;
use edge_mailer::smtp::client::Session;
use edge_mailer::smtp::envelope::Envelope;
use edge_mailer::smtp::settings::{RelaySettings, Security, Timeouts};
use edge_mailer::smtp::transcript::Transcript;

use crate::support::{run, virtual_now, ScriptedRelay, Step, Step::*};

const GREETING: Step = Say("220 relay.test ESMTP\r\n");
const EHLO: Step = Expect("EHLO client.example.com\r\n");
const EHLO_PLAIN_REPLY: Step = Say("250-relay.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n");
/// After TLS: no PIPELINING, no CHUNKING, so everything is lock-step.
const EHLO_LOCK_STEP: Step =
    Say("250-relay.test\r\n250-SIZE 1000000\r\n250-AUTH PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES\r\n");
const EHLO_PIPELINING: Step = Say("250-relay.test\r\n250-PIPELINING\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n");
const EHLO_PIPELINING_CHUNKING: Step = Say(
    "250-relay.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-AUTH PLAIN LOGIN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n",
);
const STARTTLS: [Step; 2] = [Expect("STARTTLS\r\n"), Say("220 2.0.0 Ready to start TLS\r\n")];
const AUTH_OK: [Step; 2] = [Expect("AUTH PLAIN AGRldgBzZWNyZXQ=\r\n"), Say("235 2.7.0 Authentication successful\r\n")];

const MESSAGE: &[u8] = b"Subject: hi\r\n\r\nhello\r\n";
const MESSAGE_LEN: usize = 22;
/// The pipelined flight with CHUNKING for one recipient, as the relay reads it.
const CHUNKED_FLIGHT_ONE: &str =
    "MAIL FROM:<noreply@example.com> SIZE=22\r\nRCPT TO:<a@example.org>\r\nBDAT 22 LAST\r\nSubject: hi\r\n\r\nhello\r\n";

fn settings() -> RelaySettings {
    RelaySettings {
        host: "relay.test".into(),
        port: 587,
        security: Security::StartTls,
        ehlo_name: "client.example.com".into(),
        credentials: Some(Credentials::new("dev", "secret")),
        timeouts: Timeouts::default(),
    }
}

/// Greeting, EHLO, STARTTLS, EHLO again (answered with `ehlo_after_tls`) and AUTH PLAIN.
fn opening(ehlo_after_tls: Step) -> Vec<Step> {
    let mut steps = vec![GREETING, EHLO, EHLO_PLAIN_REPLY];
    steps.extend(STARTTLS);
    steps.extend([EHLO, ehlo_after_tls]);
    steps.extend(AUTH_OK);
    steps
}

/// MAIL (the line `mail`), RCPT TO a@example.org, DATA and the message, all accepted.
fn accepted_lock_step(mail: &'static str) -> [Step; 8] {
    [
        Expect(mail),
        Say("250 Ok\r\n"),
        Expect("RCPT TO:<a@example.org>\r\n"),
        Say("250 Ok\r\n"),
        Expect("DATA\r\n"),
        Say("354 go\r\n"),
        ExpectData,
        Say("250 Ok\r\n"),
    ]
}

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

const MESSAGE_ID: &str = "<test@example.com>";

/// Opens a session and sends one message from noreply@example.com to `to`; the outcome as
/// the services report it (the error table's code for a failure).
fn submit(relay: &ScriptedRelay, relay_settings: RelaySettings, to: &[&str], message: &[u8]) -> Result<Sent, ApiError> {
    let sender = addr("noreply@example.com");
    let recipients: Vec<EmailAddress> = to.iter().map(|r| addr(r)).collect();
    let recipients: Vec<&EmailAddress> = recipients.iter().collect();
    run(async {
        let mut session = match Session::open(relay.clone(), &relay_settings).await {
            Ok(session) => session,
            Err((error, _transcript)) => return Err(api_error(&error, MESSAGE_ID)),
        };
        let envelope = Envelope { sender: &sender, recipients: &recipients, dsn: None, utf8_headers: false };
        let delivery = session.send(&envelope, message).await;
        if delivery.is_ok() {
            assert_eq!(session.round_trips() as usize, relay.seen.borrow().round_trips(), "client and relay disagree");
        }
        session.quit().await;
        delivery.map(|d| sent(MESSAGE_ID.into(), d)).map_err(|e| api_error(&e, MESSAGE_ID))
    })
}

/// Opens a session that must fail: the error table's answer and the conversation.
fn open_error(relay: ScriptedRelay, relay_settings: &RelaySettings) -> (ApiError, Transcript) {
    match run(Session::open(relay, relay_settings)) {
        Ok(_) => panic!("the session opened"),
        Err((error, transcript)) => (api_error(&error, MESSAGE_ID), transcript),
    }
}

fn assert_script_followed(relay: &ScriptedRelay) {
    assert_eq!(relay.seen.borrow().mismatch, None);
}

#[test]
fn lock_step_submission_puts_exact_bytes_on_the_wire() {
    let mut script = opening(EHLO_LOCK_STEP);
    script.extend([
        Expect("MAIL FROM:<noreply@example.com> SIZE=22\r\n"),
        Say("250 2.1.0 Ok\r\n"),
        Expect("RCPT TO:<a@example.org>\r\n"),
        Say("250 2.1.5 Ok\r\n"),
        Expect("DATA\r\n"),
        Say("354 End data with <CR><LF>.<CR><LF>\r\n"),
        ExpectData,
        Say("250 2.0.0 Ok: queued as ABC123\r\n"),
        Expect("QUIT\r\n"),
        Say("221 2.0.0 Bye\r\n"),
    ]);
    let relay = ScriptedRelay::new(script);
    let delivery = submit(&relay, settings(), &["a@example.org"], MESSAGE).unwrap();
    assert_script_followed(&relay);
    let seen = relay.seen.borrow();
    assert_eq!(seen.tls_upgrades, 1);
    // One timer for opening the session, one for the transaction, one for QUIT: not one for
    // each of the 12 waits (lock-step replies, STARTTLS, writes) the timeouts cover.
    assert_eq!(seen.timers, 3);
    assert_eq!(seen.data, b"Subject: hi\r\n\r\nhello\r\n.\r\n");
    assert_eq!(delivery.accepted, vec!["a@example.org"]);
    assert_eq!((delivery.smtp.code, delivery.smtp.enhanced.as_deref()), (250, Some("2.0.0")));
    assert_eq!(delivery.smtp.text, "Ok: queued as ABC123");
}

#[test]
fn pipelining_and_chunking_send_the_whole_transaction_in_one_flight_within_7_round_trips() {
    let flight: &'static str = Box::leak(
        format!(
            "MAIL FROM:<noreply@example.com> SIZE={MESSAGE_LEN}\r\nRCPT TO:<a@example.org>\r\n\
             RCPT TO:<b@example.org>\r\nBDAT {MESSAGE_LEN} LAST\r\n{}",
            String::from_utf8_lossy(MESSAGE)
        )
        .into_boxed_str(),
    );
    let mut script = opening(EHLO_PIPELINING_CHUNKING);
    script.extend([
        // The relay reads everything before it says anything: a client that waited for the
        // MAIL reply before sending RCPT would hang here and time out.
        Expect(flight),
        Say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 22 bytes queued as XYZ\r\n"),
    ]);
    let relay = ScriptedRelay::new(script);
    let delivery = submit(&relay, settings(), &["a@example.org", "b@example.org"], MESSAGE).unwrap();
    assert_script_followed(&relay);
    assert_eq!(delivery.accepted, vec!["a@example.org", "b@example.org"]);
    assert_eq!(delivery.smtp.text, "Ok: 22 bytes queued as XYZ");
    // greeting, EHLO, STARTTLS, TLS handshake, EHLO, AUTH, transaction
    assert_eq!(relay.seen.borrow().round_trips(), 7);
    // One write per flight — EHLO, STARTTLS, EHLO, AUTH, the transaction with its message —
    // and QUIT: never a command and its payload as two small writes (each its own TLS record,
    // which stalls on a relay that delays its ACKs).
    assert_eq!(relay.seen.borrow().writes, 6);
}

#[test]
fn implicit_tls_with_pipelining_and_chunking_takes_5_round_trips() {
    let script = vec![
        GREETING,
        EHLO,
        EHLO_PIPELINING_CHUNKING,
        AUTH_OK[0].clone(),
        AUTH_OK[1].clone(),
        Expect(CHUNKED_FLIGHT_ONE),
        Say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued\r\n"),
    ];
    let relay = ScriptedRelay::new(script);
    let relay_settings = RelaySettings { security: Security::ImplicitTls, port: 465, ..settings() };
    submit(&relay, relay_settings, &["a@example.org"], MESSAGE).unwrap();
    assert_script_followed(&relay);
    let seen = relay.seen.borrow();
    assert_eq!((seen.tls_connects, seen.tls_upgrades), (1, 0));
    // TLS handshake, greeting, EHLO, AUTH, transaction
    assert_eq!(seen.round_trips(), 5);
}

#[test]
fn pipelining_without_chunking_sends_mail_rcpt_and_data_together() {
    let mut script = opening(EHLO_PIPELINING);
    script.extend([
        Expect("MAIL FROM:<noreply@example.com>\r\nRCPT TO:<a@example.org>\r\nDATA\r\n"),
        Say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n"),
        ExpectData,
        Say("250 2.0.0 Ok: queued\r\n"),
    ]);
    let relay = ScriptedRelay::new(script);
    submit(&relay, settings(), &["a@example.org"], MESSAGE).unwrap();
    assert_script_followed(&relay);
    assert_eq!(relay.seen.borrow().round_trips(), 8);
}

#[test]
fn plaintext_mode_never_starts_tls_and_never_authenticates() {
    let mut script = vec![GREETING, EHLO, Say("250-relay.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n")];
    script.extend(accepted_lock_step("MAIL FROM:<noreply@example.com>\r\n"));
    let relay = ScriptedRelay::new(script);
    let relay_settings = RelaySettings { security: Security::None, credentials: None, ..settings() };
    submit(&relay, relay_settings, &["a@example.org"], MESSAGE).unwrap();
    assert_script_followed(&relay);
    assert_eq!(relay.seen.borrow().tls_upgrades, 0);
    assert!(!relay.wire().contains("AUTH"));

    // And with credentials, plaintext mode refuses before connecting.
    let relay = ScriptedRelay::new(vec![]);
    let error = open_error(relay.clone(), &RelaySettings { security: Security::None, ..settings() }).0;
    assert_eq!(error.code, ErrorCode::Misconfigured);
    assert_eq!(relay.seen.borrow().connects, 0);
}

#[test]
fn relay_without_starttls_gets_nothing_but_ehlo() {
    let relay = ScriptedRelay::new(vec![GREETING, EHLO, Say("250-relay.test\r\n250 AUTH PLAIN\r\n")]);
    let error = open_error(relay.clone(), &settings()).0;
    assert_eq!(error.code, ErrorCode::RelayTlsUnavailable);
    assert_eq!(relay.wire(), "EHLO client.example.com\r\n");
}

#[test]
fn bytes_injected_after_220_to_starttls_abort_before_the_handshake() {
    let relay = ScriptedRelay::new(vec![
        GREETING,
        EHLO,
        EHLO_PLAIN_REPLY,
        Expect("STARTTLS\r\n"),
        Say("220 2.0.0 Ready to start TLS\r\n250-relay.test\r\n250 AUTH PLAIN\r\n"),
    ]);
    let error = open_error(relay.clone(), &settings()).0;
    assert_eq!(error.code, ErrorCode::RelayProtocolError);
    let seen = relay.seen.borrow();
    assert_eq!(seen.tls_upgrades, 0, "must not start TLS");
    assert_eq!(String::from_utf8_lossy(&seen.wire), "EHLO client.example.com\r\nSTARTTLS\r\n");
}

#[test]
fn capabilities_offered_before_tls_do_not_count_after_it() {
    // Before TLS the relay offers AUTH PLAIN; after TLS it offers no AUTH at all.
    let mut script = vec![GREETING, EHLO, Say("250-relay.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n")];
    script.extend(STARTTLS);
    script.extend([EHLO, Say("250-relay.test\r\n250 PIPELINING\r\n")]);
    let relay = ScriptedRelay::new(script);
    let error = open_error(relay.clone(), &settings()).0;
    assert_eq!(error.code, ErrorCode::RelayAuthFailed);
    assert!(!relay.wire().contains("AUTH"));
}

#[test]
fn busy_relay_at_greeting_is_relay_busy() {
    let relay = ScriptedRelay::new(vec![Say("421 4.3.2 Service not available\r\n")]);
    let error = open_error(relay, &settings()).0;
    assert_eq!(error.code, ErrorCode::RelayBusy);
    assert_eq!(error.smtp.as_ref().map(|s| (s.code, s.phase.as_str())), Some((421, "greeting")));
    assert!(error.retry_after.is_some());
}

#[test]
fn refused_connection_is_relay_unreachable() {
    let mut relay = ScriptedRelay::new(vec![]);
    relay.refuse_connect = true;
    let error = open_error(relay, &settings()).0;
    assert_eq!(error.code, ErrorCode::RelayUnreachable);
}

#[test]
fn failed_tls_handshake_is_relay_tls_failed() {
    let mut script = vec![GREETING, EHLO, EHLO_PLAIN_REPLY];
    script.extend(STARTTLS);
    let mut relay = ScriptedRelay::new(script);
    relay.fail_tls = true;
    let error = open_error(relay, &settings()).0;
    assert_eq!(error.code, ErrorCode::RelayTlsFailed);
}

#[test]
fn connection_dropped_right_after_tls_is_relay_tls_failed() {
    // workerd reports a certificate that does not verify on the first I/O after upgrade.
    let mut script = vec![GREETING, EHLO, EHLO_PLAIN_REPLY];
    script.extend(STARTTLS);
    script.push(ReadThenClose(4));
    let error = open_error(ScriptedRelay::new(script), &settings()).0;
    assert_eq!(error.code, ErrorCode::RelayTlsFailed);
}

/// A session whose AUTH PLAIN the relay answers with `reply`.
fn auth_answered(reply: &'static str) -> (ApiError, Transcript) {
    let mut script = vec![GREETING, EHLO, EHLO_PLAIN_REPLY];
    script.extend(STARTTLS);
    script.extend([EHLO, EHLO_LOCK_STEP, Expect("AUTH PLAIN AGRldgBzZWNyZXQ=\r\n"), Say(reply)]);
    open_error(ScriptedRelay::new(script), &settings())
}

#[test]
fn wrong_credentials_are_relay_auth_failed_without_echoing_anything() {
    let (error, transcript) = auth_answered("535 5.7.8 Error: authentication failed: AGRldgBzZWNyZXQ=\r\n");
    assert_eq!(error.code, ErrorCode::RelayAuthFailed);
    let json = error.answer().to_string();
    assert!(!json.contains("AGRldgBzZWNyZXQ") && !json.contains("secret"), "{json}");
    let transcript = serde_json::to_string(&transcript).unwrap();
    assert!(transcript.contains("AUTH PLAIN ***") && !transcript.contains("AGRldgBzZWNyZXQ=\""), "{transcript}");
}

#[test]
fn auth_login_when_chosen() {
    let mut script = vec![GREETING, EHLO, EHLO_PLAIN_REPLY];
    script.extend(STARTTLS);
    script.extend([
        EHLO,
        EHLO_LOCK_STEP,
        Expect("AUTH LOGIN\r\n"),
        Say("334 VXNlcm5hbWU6\r\n"),
        Expect("ZGV2\r\n"),
        Say("334 UGFzc3dvcmQ6\r\n"),
        Expect("c2VjcmV0\r\n"),
        Say("235 2.7.0 Authentication successful\r\n"),
    ]);
    let relay = ScriptedRelay::new(script);
    let credentials = Credentials::new("dev", "secret").with_choice(AuthChoice::Only(AuthMechanism::Login));
    let session = run(Session::open(relay.clone(), &RelaySettings { credentials: Some(credentials), ..settings() }));
    assert!(session.is_ok());
    assert_script_followed(&relay);
    let transcript = serde_json::to_string(session.ok().unwrap().transcript()).unwrap();
    assert!(!transcript.contains("c2VjcmV0") && !transcript.contains("ZGV2"), "{transcript}");
}

#[test]
fn xoauth2_failure_is_answered_with_an_empty_line_then_reported() {
    let mut script = vec![GREETING, EHLO, EHLO_PLAIN_REPLY];
    script.extend(STARTTLS);
    script.extend([
        EHLO,
        Say("250-relay.test\r\n250 AUTH LOGIN PLAIN XOAUTH2\r\n"),
        Expect("AUTH XOAUTH2 dXNlcj1kZXYBYXV0aD1CZWFyZXIgdG9rZW4BAQ==\r\n"),
        Say("334 eyJzdGF0dXMiOiI0MDEifQ==\r\n"),
        Expect("\r\n"),
        Say("535 5.7.8 Username and Password not accepted\r\n"),
    ]);
    let relay = ScriptedRelay::new(script);
    let credentials = Credentials::new("dev", "token").with_choice(AuthChoice::Only(AuthMechanism::XOAuth2));
    let (error, _) = open_error(relay.clone(), &RelaySettings { credentials: Some(credentials), ..settings() });
    assert_script_followed(&relay);
    assert_eq!(error.code, ErrorCode::RelayAuthFailed);
}

#[test]
fn relay_that_never_answers_times_out_within_the_bound() {
    let relay = ScriptedRelay::new(vec![Hang]);
    let timeouts = Timeouts { command: 3_000, ..Timeouts::default() };
    let (error, waited) = run(async {
        let start = virtual_now();
        let error = Session::open(relay, &RelaySettings { timeouts, ..settings() })
            .await
            .err()
            .map(|(e, _)| api_error(&e, MESSAGE_ID))
            .unwrap();
        (error, virtual_now() - start)
    });
    assert_eq!(error.code, ErrorCode::RelayTimeout);
    assert!((3_000..3_100).contains(&waited), "waited {waited} ms");
}

#[test]
fn multi_line_reply_split_at_every_byte_gives_the_same_session() {
    let ehlo: &str = "250-relay.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n";
    for split in 1..ehlo.len() {
        let (first, second) = ehlo.split_at(split);
        let first: &'static str = Box::leak(first.to_string().into_boxed_str());
        let second: &'static str = Box::leak(second.to_string().into_boxed_str());
        let mut script = vec![GREETING, EHLO, Say(first), Pause(10), Say(second)];
        script.extend(STARTTLS);
        script.extend([EHLO, EHLO_LOCK_STEP]);
        script.extend(AUTH_OK);
        let relay = ScriptedRelay::new(script);
        let session = run(Session::open(relay.clone(), &settings()));
        assert!(session.is_ok(), "split at {split}: {:?}", session.err());
        assert_script_followed(&relay);
    }
}

fn lock_step_transaction(mail: &'static str, rcpt: &'static str, end: &'static str) -> Vec<Step> {
    let mut script = opening(EHLO_LOCK_STEP);
    script.extend([Expect("MAIL FROM:<noreply@example.com> SIZE=22\r\n"), Say(mail)]);
    if !mail.starts_with('2') {
        return script;
    }
    script.extend([Expect("RCPT TO:<a@example.org>\r\n"), Say(rcpt)]);
    if !rcpt.starts_with('2') {
        return script;
    }
    script.extend([Expect("DATA\r\n"), Say("354 go ahead\r\n"), ExpectData, Say(end)]);
    script
}

#[test]
fn transient_and_permanent_failures_at_each_phase() {
    let ok = "250 2.0.0 Ok\r\n";
    let cases = [
        (lock_step_transaction("451 4.3.0 try later\r\n", ok, ok), ErrorCode::RelayBusy, "mail", 451),
        (lock_step_transaction("550 5.7.1 sender refused\r\n", ok, ok), ErrorCode::RelayRejectedSender, "mail", 550),
        (lock_step_transaction("553 5.1.8 bad sender\r\n", ok, ok), ErrorCode::RelayRejectedSender, "mail", 553),
        (
            lock_step_transaction("530 5.7.0 Authentication required\r\n", ok, ok),
            ErrorCode::RelayAuthFailed,
            "mail",
            530,
        ),
        (lock_step_transaction(ok, "452 4.5.3 too many\r\n", ok), ErrorCode::RelayBusy, "rcpt", 452),
        (lock_step_transaction(ok, "551 5.1.6 moved\r\n", ok), ErrorCode::RelayRejectedRecipient, "rcpt", 551),
        (lock_step_transaction(ok, "503 5.5.1 bad sequence\r\n", ok), ErrorCode::RelayProtocolError, "rcpt", 503),
        (lock_step_transaction(ok, ok, "450 4.7.1 greylisted\r\n"), ErrorCode::RelayBusy, "data_end", 450),
        (lock_step_transaction(ok, ok, "554 5.7.1 spam\r\n"), ErrorCode::RelayRejectedMessage, "data_end", 554),
        (lock_step_transaction(ok, ok, "552 5.3.4 too big\r\n"), ErrorCode::MessageTooLarge, "data_end", 552),
    ];
    for (script, code, phase, smtp_code) in cases {
        let relay = ScriptedRelay::new(script);
        let error = submit(&relay, settings(), &["a@example.org"], MESSAGE).unwrap_err();
        assert_script_followed(&relay);
        assert_eq!(error.code, code, "{phase} {smtp_code}");
        assert_eq!(error.smtp.as_ref().map(|s| (s.phase.as_str(), s.code)), Some((phase, smtp_code)));
        assert_eq!(error.code.retryable(), smtp_code < 500, "{phase} {smtp_code}");
    }
}

#[test]
fn pipelined_failure_at_mail_reads_every_reply_and_reports_the_sender() {
    let mut script = opening(EHLO_PIPELINING_CHUNKING);
    script.extend([
        Expect(CHUNKED_FLIGHT_ONE),
        Say("550 5.7.1 sender refused\r\n503 5.5.1 Error: need MAIL command\r\n503 5.5.1 Error: need RCPT command\r\n"),
    ]);
    let relay = ScriptedRelay::new(script);
    let error = submit(&relay, settings(), &["a@example.org"], MESSAGE).unwrap_err();
    assert_eq!(error.code, ErrorCode::RelayRejectedSender);
}

#[test]
fn pipelined_data_with_every_recipient_refused() {
    let mut script = opening(EHLO_PIPELINING);
    script.extend([
        Expect("MAIL FROM:<noreply@example.com>\r\nRCPT TO:<reject-a@example.org>\r\nDATA\r\n"),
        Say("250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n554 5.5.1 Error: no valid recipients\r\n"),
    ]);
    let relay = ScriptedRelay::new(script);
    let error = submit(&relay, settings(), &["reject-a@example.org"], MESSAGE).unwrap_err();
    assert_script_followed(&relay);
    assert_eq!(error.code, ErrorCode::RelayRejectedRecipient);
    assert_eq!(error.code.status(), 422);
}

#[test]
fn one_refused_recipient_of_several_still_delivers_to_the_rest() {
    let mut script = opening(EHLO_PIPELINING_CHUNKING);
    script.extend([
        Expect(
            "MAIL FROM:<noreply@example.com> SIZE=22\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<reject-b@example.org>\r\n\
             BDAT 22 LAST\r\nSubject: hi\r\n\r\nhello\r\n",
        ),
        Say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <reject-b@example.org>: Recipient address rejected\r\n250 2.0.0 Ok: queued\r\n"),
    ]);
    let relay = ScriptedRelay::new(script);
    let delivery = submit(&relay, settings(), &["a@example.org", "reject-b@example.org"], MESSAGE).unwrap();
    assert_script_followed(&relay);
    assert_eq!(delivery.accepted, vec!["a@example.org"]);
    assert_eq!(delivery.rejected.len(), 1);
    assert_eq!(delivery.rejected[0].email, "reject-b@example.org");
    assert_eq!(
        (
            delivery.rejected[0].smtp.as_ref().unwrap().code,
            delivery.rejected[0].smtp.as_ref().unwrap().enhanced.as_deref()
        ),
        (550, Some("5.1.1"))
    );
}

#[test]
fn every_recipient_refused_in_lock_step_sends_no_data() {
    let relay = ScriptedRelay::new(lock_step_transaction("250 2.1.0 Ok\r\n", "550 5.1.1 no such user\r\n", ""));
    let error = submit(&relay, settings(), &["a@example.org"], MESSAGE).unwrap_err();
    assert_eq!(error.code, ErrorCode::RelayRejectedRecipient);
    assert!(!relay.wire().contains("DATA"));
}

#[test]
fn connection_lost_after_the_final_dot_is_delivery_unknown() {
    let mut script = lock_step_transaction("250 Ok\r\n", "250 Ok\r\n", "");
    script.pop(); // no verdict:
    script.push(Close);
    let relay = ScriptedRelay::new(script);
    let error = submit(&relay, settings(), &["a@example.org"], MESSAGE).unwrap_err();
    assert_eq!(error.code, ErrorCode::DeliveryUnknown);
    assert!(!error.code.retryable());
}

#[test]
fn connection_lost_after_bdat_last_is_delivery_unknown() {
    let mut script = opening(EHLO_PIPELINING_CHUNKING);
    script.extend([Expect(CHUNKED_FLIGHT_ONE), Close]);
    let error = submit(&ScriptedRelay::new(script), settings(), &["a@example.org"], MESSAGE).unwrap_err();
    assert_eq!(error.code, ErrorCode::DeliveryUnknown);
}

/// On workerd a write is waited for at the flush that follows the message; when it fails, the
/// end of the message did not go out, so the relay cannot have it: a retry may send it, and
/// it is not reported as possibly delivered (which would never be retried: a loss).
#[test]
fn a_failed_flush_after_the_message_is_retryable_not_delivery_unknown() {
    let mut script = opening(EHLO_PIPELINING_CHUNKING);
    script.extend([Expect(CHUNKED_FLIGHT_ONE), Hang]);
    let mut relay = ScriptedRelay::new(script);
    relay.fail_flush = true;
    let error = submit(&relay, settings(), &["a@example.org"], MESSAGE).unwrap_err();
    assert_ne!(error.code, ErrorCode::DeliveryUnknown);
    assert!(error.code.retryable(), "{:?}", error.code);
}

#[test]
fn relay_that_closes_mid_data_is_never_a_success() {
    let mut script = lock_step_transaction("250 Ok\r\n", "250 Ok\r\n", "");
    script.truncate(script.len() - 2); // up to the 354; the relay then reads a little and closes
    script.push(ReadThenClose(5));
    let error = submit(&ScriptedRelay::new(script), settings(), &["a@example.org"], MESSAGE).unwrap_err();
    assert_eq!(error.code, ErrorCode::DeliveryUnknown);
}

#[test]
fn relay_that_hangs_after_the_message_is_delivery_unknown_within_the_bound() {
    let mut script = lock_step_transaction("250 Ok\r\n", "250 Ok\r\n", "");
    script.pop();
    script.push(Hang);
    let relay = ScriptedRelay::new(script);
    let timeouts = Timeouts { data_end: 5_000, ..Timeouts::default() };
    let error = submit(&relay, RelaySettings { timeouts, ..settings() }, &["a@example.org"], MESSAGE).unwrap_err();
    assert_eq!(error.code, ErrorCode::DeliveryUnknown);
}

/// A body built to break naive clients: bare LF, bare CR, lone dots, smuggling sequences.
const HOSTILE: &[u8] =
    b"Subject: x\r\n\r\nline\n.\nMAIL FROM:<evil@example.net>\r\n\r.\r\n.\r\n..two\rbare cr\n\n.\r\nend";

#[test]
fn hostile_body_is_normalised_byte_for_byte_with_data() {
    let mut script = opening(EHLO_LOCK_STEP);
    let mail: &'static str =
        Box::leak(format!("MAIL FROM:<noreply@example.com> SIZE={}\r\n", HOSTILE.len()).into_boxed_str());
    script.extend(accepted_lock_step(mail));
    let relay = ScriptedRelay::new(script);
    submit(&relay, settings(), &["a@example.org"], HOSTILE).unwrap();
    assert_script_followed(&relay);
    assert_eq!(
        relay.seen.borrow().data,
        b"Subject: x\r\n\r\nline\r\n..\r\nMAIL FROM:<evil@example.net>\r\n\r\n..\r\n..\r\n...two\r\nbare cr\r\n\r\n..\r\nend\r\n.\r\n"
            .to_vec()
    );
}

#[test]
fn hostile_body_is_normalised_byte_for_byte_with_bdat() {
    let expected_payload =
        "Subject: x\r\n\r\nline\r\n.\r\nMAIL FROM:<evil@example.net>\r\n\r\n.\r\n.\r\n..two\r\nbare cr\r\n\r\n.\r\nend\r\n";
    let flight: &'static str = Box::leak(
        format!(
            "MAIL FROM:<noreply@example.com> SIZE={}\r\nRCPT TO:<a@example.org>\r\nBDAT {} LAST\r\n{expected_payload}",
            HOSTILE.len(),
            expected_payload.len()
        )
        .into_boxed_str(),
    );
    let mut script = opening(EHLO_PIPELINING_CHUNKING);
    script.extend([Expect(flight), Say("250 Ok\r\n250 Ok\r\n250 Ok: queued\r\n")]);
    let relay = ScriptedRelay::new(script);
    submit(&relay, settings(), &["a@example.org"], HOSTILE).unwrap();
    assert_script_followed(&relay);
}

#[test]
fn several_messages_over_one_connection_with_rset_between() {
    let mut script = opening(EHLO_LOCK_STEP);
    for _ in 0..2 {
        script.extend(accepted_lock_step("MAIL FROM:<noreply@example.com> SIZE=22\r\n"));
        script.extend([Expect("RSET\r\n"), Say("250 2.0.0 Ok\r\n")]);
    }
    let relay = ScriptedRelay::new(script);
    let sender = addr("noreply@example.com");
    let to = addr("a@example.org");
    let recipients = [&to];
    run(async {
        let mut session = Session::open(relay.clone(), &settings()).await.unwrap();
        for _ in 0..2 {
            session
                .send(&Envelope { sender: &sender, recipients: &recipients, dsn: None, utf8_headers: false }, MESSAGE)
                .await
                .unwrap();
            session.reset().await.unwrap();
        }
    });
    assert_script_followed(&relay);
    assert_eq!(relay.seen.borrow().connects, 1);
}

#[test]
fn non_ascii_local_part_asks_for_smtputf8() {
    let mut script = opening(EHLO_PIPELINING_CHUNKING);
    script.extend([
        Expect("MAIL FROM:<noreply@example.com> SIZE=22 SMTPUTF8\r\nRCPT TO:<jörg@example.org>\r\nBDAT 22 LAST\r\nSubject: hi\r\n\r\nhello\r\n"),
        Say("250 Ok\r\n250 Ok\r\n250 Ok: queued\r\n"),
    ]);
    let relay = ScriptedRelay::new(script);
    submit(&relay, settings(), &["jörg@example.org"], MESSAGE).unwrap();
    assert_script_followed(&relay);

    // A relay without SMTPUTF8 gets nothing after AUTH.
    let relay = ScriptedRelay::new(opening(EHLO_LOCK_STEP));
    let error = submit(&relay, settings(), &["jörg@example.org"], MESSAGE).unwrap_err();
    assert_eq!(error.code, ErrorCode::RelayCapabilityMissing);
    assert!(!relay.wire().contains("MAIL FROM"));
}

#[test]
fn message_over_the_relays_size_is_refused_before_mail() {
    let relay = ScriptedRelay::new(opening(EHLO_LOCK_STEP));
    let line = [vec![b'a'; 900], b"\r\n".to_vec()].concat();
    let big = line.repeat(1200);
    let error = submit(&relay, settings(), &["a@example.org"], &big).unwrap_err();
    assert_eq!(error.code, ErrorCode::MessageTooLarge);
    assert!(!relay.wire().contains("MAIL FROM"));
}

#[test]
fn pipelined_421_at_mail_is_relay_busy_not_delivery_unknown() {
    // The message was already written, but the relay said it is closing before any of it.
    let mut script = opening(EHLO_PIPELINING_CHUNKING);
    script.extend([Expect(CHUNKED_FLIGHT_ONE), Say("421 4.7.0 try again later, closing\r\n"), Close]);
    let error = submit(&ScriptedRelay::new(script), settings(), &["a@example.org"], MESSAGE).unwrap_err();
    assert_eq!(error.code, ErrorCode::RelayBusy);
    assert!(error.code.retryable());
}

#[test]
fn connection_lost_after_a_refused_mail_reports_the_refusal() {
    let mut script = opening(EHLO_PIPELINING_CHUNKING);
    script.extend([Expect(CHUNKED_FLIGHT_ONE), Say("550 5.7.1 sender refused\r\n"), Close]);
    let error = submit(&ScriptedRelay::new(script), settings(), &["a@example.org"], MESSAGE).unwrap_err();
    assert_eq!(error.code, ErrorCode::RelayRejectedSender, "nothing can have been delivered");
}

#[test]
fn odd_rcpt_reply_after_an_accepted_one_is_a_refused_recipient_not_a_lost_message() {
    let mut script = opening(EHLO_PIPELINING_CHUNKING);
    script.extend([
        Expect(
            "MAIL FROM:<noreply@example.com> SIZE=22\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n\
             RCPT TO:<c@example.org>\r\nBDAT 22 LAST\r\nSubject: hi\r\n\r\nhello\r\n",
        ),
        Say("250 Ok\r\n250 Ok\r\n252 2.1.5 will try\r\n503 5.5.1 odd\r\n250 2.0.0 Ok: queued\r\n"),
    ]);
    let relay = ScriptedRelay::new(script);
    let delivery = submit(&relay, settings(), &["a@example.org", "b@example.org", "c@example.org"], MESSAGE).unwrap();
    assert_script_followed(&relay);
    assert_eq!(delivery.accepted, vec!["a@example.org", "b@example.org"]);
    assert_eq!(delivery.rejected.iter().map(|r| r.smtp.as_ref().unwrap().code).collect::<Vec<_>>(), vec![503]);
    assert_eq!(delivery.smtp.code, 250);
}

#[test]
fn a_relay_that_dribbles_bytes_still_times_out_within_the_bound() {
    // One byte every 2.9 s would reset a per-read timer forever; the deadline is per reply.
    let mut script = vec![];
    for byte in ["2", "2", "0", " ", "h", "i"] {
        script.push(Say(byte));
        script.push(Pause(2_900));
    }
    script.push(Hang);
    let relay = ScriptedRelay::new(script);
    let timeouts = Timeouts { command: 3_000, ..Timeouts::default() };
    let (error, waited) = run(async {
        let start = virtual_now();
        let error = Session::open(relay, &RelaySettings { timeouts, ..settings() })
            .await
            .err()
            .map(|(e, _)| api_error(&e, MESSAGE_ID))
            .unwrap();
        (error, virtual_now() - start)
    });
    assert_eq!(error.code, ErrorCode::RelayTimeout);
    assert!((3_000..3_100).contains(&waited), "waited {waited} ms");
}

#[test]
fn a_connection_that_breaks_before_the_message_is_retryable_relay_unreachable() {
    // Reset by the relay during EHLO, closed at MAIL: nothing of the message left.
    let reset_at_ehlo = vec![GREETING, ReadThenClose(4)];
    let mut closed_at_mail = opening(EHLO_LOCK_STEP);
    closed_at_mail.extend([Expect("MAIL FROM:<noreply@example.com> SIZE=22\r\n"), Close]);
    for script in [reset_at_ehlo, closed_at_mail] {
        let relay = ScriptedRelay::new(script);
        let error = submit(&relay, settings(), &["a@example.org"], MESSAGE).unwrap_err();
        assert_eq!(error.code, ErrorCode::RelayUnreachable, "{}", error.message);
        assert!(error.code.retryable() && error.retry_after.is_some());
        assert!(error.message.contains("nothing was delivered"), "{}", error.message);
    }
}

#[test]
fn a_temporary_auth_failure_is_retryable() {
    let (error, _) = auth_answered("454 4.7.0 Temporary authentication failure\r\n");
    assert_eq!(error.code, ErrorCode::RelayBusy);
    assert!(error.code.retryable() && error.retry_after.is_some());
}

/// Every recipient refused, some for now (4xx) and some for good (5xx): the same answer in
/// either order, and a retryable one, since a retry may reach the deferred recipient.
#[test]
fn mixed_refusals_give_one_answer_whatever_the_order() {
    let refusals = ["450 4.2.0 <a@example.org>: mailbox busy\r\n", "550 5.1.1 <b@example.org>: no such user\r\n"];
    let mut answers = Vec::new();
    for (first, second, to) in [(0, 1, ["a@example.org", "b@example.org"]), (1, 0, ["b@example.org", "a@example.org"])]
    {
        let mut script = opening(EHLO_LOCK_STEP);
        script.extend([
            Expect("MAIL FROM:<noreply@example.com> SIZE=22\r\n"),
            Say("250 2.1.0 Ok\r\n"),
            Expect(if first == 0 { "RCPT TO:<a@example.org>\r\n" } else { "RCPT TO:<b@example.org>\r\n" }),
            Say(refusals[first]),
            Expect(if second == 0 { "RCPT TO:<a@example.org>\r\n" } else { "RCPT TO:<b@example.org>\r\n" }),
            Say(refusals[second]),
        ]);
        let relay = ScriptedRelay::new(script);
        let error = submit(&relay, settings(), &to, MESSAGE).unwrap_err();
        assert_script_followed(&relay);
        answers.push((error.code, error.smtp.as_ref().map(|s| s.code)));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], (ErrorCode::RelayBusy, Some(450)));
}

#[test]
fn a_deferred_recipient_of_an_accepted_message_is_reported_retryable() {
    let mut script = opening(EHLO_PIPELINING_CHUNKING);
    script.extend([
        Expect(
            "MAIL FROM:<noreply@example.com> SIZE=22\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n\
             RCPT TO:<c@example.org>\r\nBDAT 22 LAST\r\nSubject: hi\r\n\r\nhello\r\n",
        ),
        Say(
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n451 4.3.0 try later\r\n550 5.1.1 no such user\r\n250 2.0.0 Ok: queued\r\n",
        ),
    ]);
    let relay = ScriptedRelay::new(script);
    let sent = submit(&relay, settings(), &["a@example.org", "b@example.org", "c@example.org"], MESSAGE).unwrap();
    assert_script_followed(&relay);
    let rejected: Vec<(&str, u16, bool)> =
        sent.rejected.iter().map(|r| (r.email.as_str(), r.smtp.as_ref().unwrap().code, r.retryable)).collect();
    assert_eq!(rejected, vec![("b@example.org", 451, true), ("c@example.org", 550, false)]);
}

/// With CHUNKING the message went out in the same flight as the refused RCPTs; the relay
/// discards it, and the answer says so without claiming nothing was sent.
#[test]
fn every_recipient_refused_in_a_chunked_flight_says_nothing_was_delivered() {
    let mut script = opening(EHLO_PIPELINING_CHUNKING);
    script.extend([
        Expect(CHUNKED_FLIGHT_ONE),
        Say("250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n554 5.5.1 Error: no valid recipients\r\n"),
    ]);
    let relay = ScriptedRelay::new(script);
    let error = submit(&relay, settings(), &["a@example.org"], MESSAGE).unwrap_err();
    assert_script_followed(&relay);
    assert_eq!(error.code, ErrorCode::RelayRejectedRecipient);
    assert!(error.message.contains("nothing was delivered"), "{}", error.message);
    assert!(!error.message.contains("nothing sent") && !error.message.contains("not sent"));
}

#[test]
fn a_port_that_takes_tcp_but_not_implicit_tls_is_relay_tls_failed() {
    let mut relay = ScriptedRelay::new(vec![]);
    relay.refuse_connect = true;
    relay.refuse_with = std::io::ErrorKind::InvalidData;
    let (error, _) = open_error(relay, &RelaySettings { security: Security::ImplicitTls, ..settings() });
    assert_eq!(error.code, ErrorCode::RelayTlsFailed);
    let mut relay = ScriptedRelay::new(vec![]);
    relay.refuse_connect = true;
    let (error, _) = open_error(relay, &RelaySettings { security: Security::ImplicitTls, ..settings() });
    assert_eq!(error.code, ErrorCode::RelayUnreachable, "a closed port is not a TLS failure");
}
