//! The SMTP driver against scripted relays: exact bytes on the wire and the error for each fault.

use edge_mailer::address::EmailAddress;
use edge_mailer::error::ErrorCode;
use edge_mailer::smtp::auth::Credentials;
use edge_mailer::smtp::client::{RelaySettings, SecurityMode, Session, Timeouts};

use crate::support::{run, ScriptedRelay, Step, Step::*};

const GREETING: Step = Say("220 relay.test ESMTP\r\n");
const EHLO: Step = Expect("EHLO client.example.com\r\n");
const EHLO_PLAIN_REPLY: Step = Say("250-relay.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n");
const EHLO_TLS_REPLY: Step =
    Say("250-relay.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-AUTH PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES\r\n");
const STARTTLS: [Step; 2] = [Expect("STARTTLS\r\n"), Say("220 2.0.0 Ready to start TLS\r\n")];
const AUTH_OK: [Step; 2] = [Expect("AUTH PLAIN AGRldgBzZWNyZXQ=\r\n"), Say("235 2.7.0 Authentication successful\r\n")];

fn settings() -> RelaySettings {
    RelaySettings {
        host: "relay.test".into(),
        port: 587,
        security: SecurityMode::StartTls,
        ehlo_name: "client.example.com".into(),
        credentials: Some(Credentials::new("dev", "secret")),
        timeouts: Timeouts::default(),
    }
}

/// Greeting, EHLO, STARTTLS, EHLO again and AUTH, all answered positively.
fn secured_opening() -> Vec<Step> {
    let mut steps = vec![GREETING, EHLO, EHLO_PLAIN_REPLY];
    steps.extend(STARTTLS);
    steps.extend([EHLO, EHLO_TLS_REPLY]);
    steps.extend(AUTH_OK);
    steps
}

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

const MESSAGE: &[u8] = b"Subject: hi\r\n\r\nhello\r\n";

#[test]
fn lock_step_submission_with_starttls_and_auth_puts_exact_bytes_on_the_wire() {
    let mut script = secured_opening();
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
    let delivery = run(async {
        let mut session = Session::open(relay.clone(), &settings()).await.unwrap();
        let delivery = session.send(&addr("noreply@example.com"), &[&addr("a@example.org")], MESSAGE).await;
        session.quit().await;
        delivery
    })
    .unwrap();
    let seen = relay.seen.borrow();
    assert_eq!(seen.mismatch, None);
    assert_eq!(seen.tls_upgrades, 1);
    assert_eq!(seen.data, b"Subject: hi\r\n\r\nhello\r\n.\r\n");
    assert_eq!(delivery.accepted, vec!["a@example.org"]);
    assert_eq!((delivery.reply.code, delivery.reply.enhanced.as_deref()), (250, Some("2.0.0")));
    assert_eq!(delivery.reply.text, "Ok: queued as ABC123");
}

#[test]
fn relay_without_starttls_gets_nothing_but_ehlo() {
    let relay = ScriptedRelay::new(vec![GREETING, EHLO, Say("250-relay.test\r\n250 AUTH PLAIN\r\n")]);
    let error = run(Session::open(relay.clone(), &settings())).err().unwrap();
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
    let error = run(Session::open(relay.clone(), &settings())).err().unwrap();
    assert_eq!(error.code, ErrorCode::RelayProtocolError);
    let seen = relay.seen.borrow();
    assert_eq!(seen.tls_upgrades, 0, "must not start TLS");
    assert_eq!(String::from_utf8_lossy(&seen.wire), "EHLO client.example.com\r\nSTARTTLS\r\n");
}

#[test]
fn busy_relay_at_greeting_is_relay_busy() {
    let relay = ScriptedRelay::new(vec![Say("421 4.3.2 Service not available\r\n")]);
    let error = run(Session::open(relay, &settings())).err().unwrap();
    assert_eq!(error.code, ErrorCode::RelayBusy);
    assert_eq!(error.smtp.as_ref().map(|s| (s.code, s.phase)), Some((421, "greeting")));
    assert!(error.retry_after.is_some());
}

#[test]
fn refused_connection_is_relay_unreachable() {
    let mut relay = ScriptedRelay::new(vec![]);
    relay.refuse_connect = true;
    let error = run(Session::open(relay, &settings())).err().unwrap();
    assert_eq!(error.code, ErrorCode::RelayUnreachable);
}

#[test]
fn failed_tls_handshake_is_relay_tls_failed() {
    let mut script = vec![GREETING, EHLO, EHLO_PLAIN_REPLY];
    script.extend(STARTTLS);
    let mut relay = ScriptedRelay::new(script);
    relay.fail_tls = true;
    let error = run(Session::open(relay, &settings())).err().unwrap();
    assert_eq!(error.code, ErrorCode::RelayTlsFailed);
}

#[test]
fn wrong_credentials_are_relay_auth_failed_without_echoing_anything() {
    let mut script = vec![GREETING, EHLO, EHLO_PLAIN_REPLY];
    script.extend(STARTTLS);
    script.extend([
        EHLO,
        EHLO_TLS_REPLY,
        Expect("AUTH PLAIN AGRldgBzZWNyZXQ=\r\n"),
        Say("535 5.7.8 Error: authentication failed: AGRldgBzZWNyZXQ=\r\n"),
    ]);
    let error = run(Session::open(ScriptedRelay::new(script), &settings())).err().unwrap();
    assert_eq!(error.code, ErrorCode::RelayAuthFailed);
    let json = error.to_json().to_string();
    assert!(!json.contains("AGRldgBzZWNyZXQ") && !json.contains("secret"), "{json}");
}

#[test]
fn relay_that_never_answers_times_out() {
    let relay = ScriptedRelay::new(vec![Hang]);
    let error = run(Session::open(relay, &settings())).err().unwrap();
    assert_eq!(error.code, ErrorCode::RelayTimeout);
}

#[test]
fn one_refused_recipient_of_several_still_delivers_to_the_rest() {
    let mut script = secured_opening();
    script.extend([
        Expect("MAIL FROM:<noreply@example.com> SIZE=22\r\n"),
        Say("250 2.1.0 Ok\r\n"),
        Expect("RCPT TO:<a@example.org>\r\n"),
        Say("250 2.1.5 Ok\r\n"),
        Expect("RCPT TO:<reject-b@example.org>\r\n"),
        Say("550 5.1.1 <reject-b@example.org>: Recipient address rejected\r\n"),
        Expect("DATA\r\n"),
        Say("354 go ahead\r\n"),
        ExpectData,
        Say("250 2.0.0 Ok: queued\r\n"),
    ]);
    let relay = ScriptedRelay::new(script);
    let delivery = run(async {
        let mut session = Session::open(relay.clone(), &settings()).await.unwrap();
        session
            .send(&addr("noreply@example.com"), &[&addr("a@example.org"), &addr("reject-b@example.org")], MESSAGE)
            .await
    })
    .unwrap();
    assert_eq!(relay.seen.borrow().mismatch, None);
    assert_eq!(delivery.accepted, vec!["a@example.org"]);
    assert_eq!(delivery.rejected.len(), 1);
    assert_eq!(delivery.rejected[0].email, "reject-b@example.org");
    assert_eq!((delivery.rejected[0].smtp.code, delivery.rejected[0].smtp.enhanced.as_deref()), (550, Some("5.1.1")));
}

#[test]
fn every_recipient_refused_is_relay_rejected_recipient_and_no_data_is_sent() {
    let mut script = secured_opening();
    script.extend([
        Expect("MAIL FROM:<noreply@example.com> SIZE=22\r\n"),
        Say("250 2.1.0 Ok\r\n"),
        Expect("RCPT TO:<reject-a@example.org>\r\n"),
        Say("550 5.1.1 no such user\r\n"),
        Expect("RSET\r\n"),
        Say("250 2.0.0 Ok\r\n"),
    ]);
    let relay = ScriptedRelay::new(script);
    let error = run(async {
        let mut session = Session::open(relay.clone(), &settings()).await.unwrap();
        session.send(&addr("noreply@example.com"), &[&addr("reject-a@example.org")], MESSAGE).await
    })
    .unwrap_err();
    assert_eq!(error.code, ErrorCode::RelayRejectedRecipient);
    assert_eq!(error.code.status(), 422);
    assert!(!relay.wire().contains("DATA"));
}

#[test]
fn connection_lost_after_the_final_dot_is_delivery_unknown() {
    let mut script = secured_opening();
    script.extend([
        Expect("MAIL FROM:<noreply@example.com> SIZE=22\r\n"),
        Say("250 2.1.0 Ok\r\n"),
        Expect("RCPT TO:<a@example.org>\r\n"),
        Say("250 2.1.5 Ok\r\n"),
        Expect("DATA\r\n"),
        Say("354 go ahead\r\n"),
        ExpectData,
        Close,
    ]);
    let error = run(async {
        let mut session = Session::open(ScriptedRelay::new(script), &settings()).await.unwrap();
        session.send(&addr("noreply@example.com"), &[&addr("a@example.org")], MESSAGE).await
    })
    .unwrap_err();
    assert_eq!(error.code, ErrorCode::DeliveryUnknown);
    assert!(!error.code.retryable());
}

#[test]
fn message_over_the_relays_size_is_refused_before_mail() {
    let relay = ScriptedRelay::new(secured_opening());
    let big = vec![b'a'; 900].repeat(1200);
    let error = run(async {
        let mut session = Session::open(relay.clone(), &settings()).await.unwrap();
        let lines: Vec<u8> = big.chunks(900).flat_map(|c| [c, b"\r\n"].concat()).collect();
        session.send(&addr("noreply@example.com"), &[&addr("a@example.org")], &lines).await
    })
    .unwrap_err();
    assert_eq!(error.code, ErrorCode::MessageTooLarge);
    assert!(!relay.wire().contains("MAIL FROM"));
}
