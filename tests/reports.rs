//! After the relay: reports asked for (VERP and DSN with `BOUNCE_DOMAIN`), read in the shapes
//! Postfix, Exim, Gmail and Microsoft 365 send them, and applied: the message's events and
//! status, the suppression list, and what changes nothing, counted.

use serde_json::{json, Value};

use crate::support::{
    call, opening_with, post_json, relay_vars, run, Req, ScriptedEnv, ScriptedRelay, Step, Step::*, AUTH_DEV_SECRET,
};
use edge_mailer::delivery::inbound::{receive, Received};
use edge_mailer::delivery::suppression::Reason;
use edge_mailer::report::{self, Action, Kind};

const POSTFIX_BOUNCE: &str = include_str!("reports/postfix-bounce.eml");
const POSTFIX_SUCCESS: &str = include_str!("reports/postfix-success.eml");
const POSTFIX_DELAY: &str = include_str!("reports/postfix-delay.eml");
const EXIM_BOUNCE: &str = include_str!("reports/exim-bounce.eml");
const GMAIL_BOUNCE: &str = include_str!("reports/gmail-bounce.eml");
const M365_BOUNCE: &str = include_str!("reports/m365-bounce.eml");
const COMPLAINT: &str = include_str!("reports/arf-complaint.eml");
const AUTO_REPLY: &str = include_str!("reports/auto-reply.eml");

const BOUNCES: &str = "bounces.example.com";

/// A sample as it would arrive for message `id` about recipient `rcpt`, in CRLF lines.
fn sample(text: &str, id: &str, rcpt: &str) -> Vec<u8> {
    text.replace("{ID}", id).replace("{RCPT}", rcpt).replace('\n', "\r\n").into_bytes()
}

fn verp(id: &str) -> String {
    format!("bounce+{id}@{BOUNCES}")
}

const ID: &str = "0a012345-6789-4bcd-8f01-23456789abcd";

#[test]
fn each_mta_shape_is_read_for_its_recipient_status_and_diagnostic() {
    let cases: [(&str, &str, Action, &str, &str, bool); 6] = [
        ("postfix bounce", POSTFIX_BOUNCE, Action::Failed, "5.1.1", "User unknown in virtual mailbox table", true),
        ("postfix success", POSTFIX_SUCCESS, Action::Relayed, "2.0.0", "250 2.0.0 Ok: queued as 7C3DE", true),
        ("postfix delay", POSTFIX_DELAY, Action::Delayed, "4.4.1", "Connection timed out", true),
        ("exim", EXIM_BOUNCE, Action::Failed, "5.0.0", "550 5.1.1 <jane@example.org>: Recipient address", true),
        ("gmail", GMAIL_BOUNCE, Action::Failed, "5.1.1", "does not exist. Please try 550-5.1.1 double-checking", false),
        (
            "microsoft 365",
            M365_BOUNCE,
            Action::Failed,
            "5.1.10",
            "RESOLVER.ADR.RecipientNotFound; Recipient not found",
            false,
        ),
    ];
    for (name, text, action, status, diagnostic, has_envid) in cases {
        let read = report::read(&sample(text, ID, "jane@example.org"));
        assert_eq!(read.envelope_id.as_deref(), has_envid.then_some(ID), "{name}");
        let Kind::Delivery(entries) = &read.kind else { panic!("{name}: {:?}", read.kind) };
        assert_eq!(entries.len(), 1, "{name}");
        let entry = &entries[0];
        assert_eq!(
            (entry.recipient.as_str(), entry.action, entry.status.as_str()),
            ("jane@example.org", action, status),
            "{name}"
        );
        let got = entry.diagnostic.as_deref().unwrap_or_default();
        assert!(got.contains(diagnostic), "{name}: {got:?}");
        assert!(!got.starts_with("smtp;") && !got.contains('\n'), "{name}: {got:?}");
    }
}

#[test]
fn a_feedback_report_names_its_recipient_and_an_auto_reply_is_no_report() {
    let read = report::read(&sample(COMPLAINT, ID, "jane@example.org"));
    assert_eq!(
        read.kind,
        Kind::Complaint { feedback_type: "abuse".into(), recipients: vec!["jane@example.org".into()] }
    );
    let redacted = COMPLAINT.replace("Original-Rcpt-To: <{RCPT}>\n", "");
    let read = report::read(&sample(&redacted, ID, "jane@example.org"));
    assert_eq!(read.kind, Kind::Complaint { feedback_type: "abuse".into(), recipients: vec![] });
    assert!(matches!(report::read(&sample(AUTO_REPLY, ID, "jane@example.org")).kind, Kind::Other(_)));
    assert!(matches!(report::read(b"not mail at all").kind, Kind::Other(_)));
    // A report whose machine-readable part is missing is not read from its prose.
    let cut = POSTFIX_BOUNCE.replace("Content-Type: message/delivery-status", "Content-Type: text/plain");
    assert!(matches!(report::read(&sample(&cut, ID, "jane@example.org")).kind, Kind::Other(_)));
}

/// A relay that offers DSN, and takes `messages` messages to two recipients.
fn dsn_relay(messages: usize) -> Vec<Step> {
    let capabilities = "250-relay.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-DSN\r\n250 AUTH PLAIN\r\n";
    let mut script = opening_with(capabilities, AUTH_DEV_SECRET);
    for _ in 0..messages {
        script.extend([
            ExpectChunked,
            Say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as Q1\r\n"),
        ]);
    }
    script.extend([Expect("QUIT\r\n"), Say("221 Bye\r\n")]);
    script
}

fn env_with(script: Vec<Step>, bounce_domain: bool) -> ScriptedEnv {
    let mut vars = relay_vars(&[("SMTP_SESSIONS", "0")]);
    if bounce_domain {
        vars.push(("BOUNCE_DOMAIN", BOUNCES));
    }
    ScriptedEnv::new(ScriptedRelay::new(script), &vars)
}

fn send(env: &ScriptedEnv, to: Value) -> (u16, Value) {
    post_json(env, "/v1/send", &json!({"to": to, "subject": "Hi", "text": "Hello"}), false)
}

fn get(env: &ScriptedEnv, path: &str) -> Value {
    let (response, json) = call(env, Req::new("GET", path, Vec::new()).header("authorization", "Bearer key-one"));
    assert_eq!(response.status, 200, "{path}: {json}");
    json
}

fn arrive(env: &ScriptedEnv, to: &str, raw: &[u8]) -> Received {
    let config = env.config().unwrap();
    run(receive(env, &config, to, raw)).expect("the ledger and the list are up")
}

fn kinds(record: &Value) -> Vec<String> {
    record["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_string()).collect()
}

#[test]
fn with_a_bounce_domain_every_message_asks_for_reports_to_its_own_address() {
    let env = env_with(dsn_relay(1), true);
    let (status, answer) = send(&env, json!(["jane@example.org", "joe@example.org"]));
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_str().unwrap();
    let wire = env.relay.wire();
    assert!(wire.contains(&format!("MAIL FROM:<bounce+{id}@{BOUNCES}>")), "{wire}");
    assert!(wire.contains(&format!(" RET=HDRS ENVID={id}")), "{wire}");
    assert!(wire.contains("RCPT TO:<jane@example.org> NOTIFY=SUCCESS,FAILURE,DELAY\r\n"), "{wire}");
    assert!(
        wire.contains("From: \"Site\" <noreply@example.com>") || wire.contains("From: Site <noreply@example.com>"),
        "{wire}"
    );

    // Without it, nothing changes.
    let env = env_with(dsn_relay(1), false);
    send(&env, json!(["jane@example.org", "joe@example.org"]));
    let wire = env.relay.wire();
    assert!(
        wire.contains("MAIL FROM:<noreply@example.com>") && !wire.contains("NOTIFY=") && !wire.contains("ENVID"),
        "{wire}"
    );
}

#[test]
fn a_hard_bounce_marks_the_message_bounced_and_suppresses_the_address_once() {
    let env = env_with(dsn_relay(1), true);
    let (_, answer) = send(&env, json!(["jane@example.org", "joe@example.org"]));
    let id = answer["id"].as_str().unwrap().to_string();
    for (name, text) in
        [("postfix", POSTFIX_BOUNCE), ("exim", EXIM_BOUNCE), ("gmail", GMAIL_BOUNCE), ("m365", M365_BOUNCE)]
    {
        let received = arrive(&env, &verp(&id), &sample(text, &id, "Jane@EXAMPLE.org"));
        assert!(matches!(received, Received::Applied { matched: 1, .. }), "{name}: {received:?}");
    }
    let record = get(&env, &format!("/v1/messages/{id}"));
    assert_eq!(record["status"], "bounced", "{record}");
    assert_eq!(record["last_event"], "bounced");
    let bounce = &record["events"][2];
    assert_eq!((bounce["recipient"].as_str(), bounce["status"].as_str()), (Some("jane@example.org"), Some("5.1.1")));
    assert!(bounce["diagnostic"].as_str().unwrap().contains("User unknown"), "{bounce}");
    // Each MTA's status is its own event (5.1.1, 5.0.0, 5.1.10); the same one again adds nothing.
    assert_eq!(kinds(&record).iter().filter(|k| *k == "bounced").count(), 3, "{record}");
    let again = arrive(&env, &verp(&id), &sample(POSTFIX_BOUNCE, &id, "jane@example.org"));
    assert_eq!(again, Received::Applied { matched: 1, added: 0 });
    assert_eq!(get(&env, &format!("/v1/messages/{id}")), record, "a report that comes twice changes nothing");

    let list = env.suppressions.borrow();
    assert_eq!(list.len(), 1, "{list:?}");
    let entry = &list[0].1;
    assert_eq!(
        (entry.address.as_str(), entry.reason, entry.message_id.as_deref()),
        ("jane@example.org", Reason::Bounce, Some(id.as_str()))
    );
    assert!(entry.detail.as_deref().unwrap().starts_with("5.1.1 550 5.1.1"), "{entry:?}");
    drop(list);
    let (status, refused) = send(&env, json!("jane@example.org"));
    assert_eq!((status, refused["error"]["code"].as_str()), (422, Some("recipient_suppressed")), "{refused}");
}

#[test]
fn success_reports_for_every_recipient_make_it_delivered_and_a_delay_is_only_an_event() {
    let env = env_with(dsn_relay(1), true);
    let (_, answer) = send(&env, json!(["jane@example.org", "joe@example.org"]));
    let id = answer["id"].as_str().unwrap().to_string();
    arrive(&env, &verp(&id), &sample(POSTFIX_DELAY, &id, "joe@example.org"));
    let record = get(&env, &format!("/v1/messages/{id}"));
    assert_eq!((record["status"].as_str(), record["last_event"].as_str()), (Some("sent"), Some("delayed")));
    let resend = get(&env, &format!("/emails/{id}"));
    assert_eq!(resend["last_event"], "delivery_delayed", "{resend}");

    arrive(&env, &verp(&id), &sample(POSTFIX_SUCCESS, &id, "jane@example.org"));
    assert_eq!(get(&env, &format!("/v1/messages/{id}"))["status"], "sent", "one of two delivered");
    arrive(&env, &verp(&id), &sample(POSTFIX_SUCCESS, &id, "joe@example.org"));
    let record = get(&env, &format!("/v1/messages/{id}"));
    assert_eq!(record["status"], "delivered", "{record}");
    assert_eq!(kinds(&record), ["accepted", "sent", "delayed", "delivered", "delivered"]);
    assert_eq!(get(&env, &format!("/emails/{id}"))["last_event"], "delivered");
    assert!(env.suppressions.borrow().is_empty(), "a delay or a delivery suppresses nobody");
}

#[test]
fn a_complaint_suppresses_the_recipient_and_leaves_the_status() {
    let env = env_with(dsn_relay(2), true);
    let (_, answer) = send(&env, json!(["jane@example.org", "joe@example.org"]));
    let id = answer["id"].as_str().unwrap().to_string();
    assert!(matches!(
        arrive(&env, &verp(&id), &sample(COMPLAINT, &id, "joe@example.org")),
        Received::Applied { matched: 1, added: 1 }
    ));
    let record = get(&env, &format!("/v1/messages/{id}"));
    assert_eq!((record["status"].as_str(), record["last_event"].as_str()), (Some("sent"), Some("complained")));
    assert_eq!(get(&env, &format!("/emails/{id}"))["last_event"], "complained");
    let list = env.suppressions.borrow();
    assert_eq!((list.len(), list[0].1.reason, list[0].1.address.as_str()), (1, Reason::Complaint, "joe@example.org"));
    drop(list);
    // A complaint that names nobody, about a message to two: nobody is suppressed.
    let redacted = COMPLAINT.replace("Original-Rcpt-To: <{RCPT}>\n", "");
    assert_eq!(arrive(&env, &verp(&id), &sample(&redacted, &id, "x")), Received::UnknownRecipient);
    assert_eq!(env.suppressions.borrow().len(), 1);
}

#[test]
fn what_names_no_message_or_recipient_of_ours_changes_nothing_and_is_counted() {
    let env = env_with(dsn_relay(1), true);
    let (_, answer) = send(&env, json!(["jane@example.org", "joe@example.org"]));
    let id = answer["id"].as_str().unwrap().to_string();
    let before = get(&env, &format!("/v1/messages/{id}"));
    let unknown = "0b012345-6789-4bcd-8f01-23456789abcd";
    let cases = [
        (verp(unknown), sample(POSTFIX_BOUNCE, unknown, "jane@example.org"), Received::UnknownMessage),
        (verp(&id), sample(POSTFIX_BOUNCE, &id, "nobody@example.org"), Received::UnknownRecipient),
        (verp(&id), sample(AUTO_REPLY, &id, "jane@example.org"), Received::NotAReport),
        (
            format!("bounce+not-an-id@{BOUNCES}"),
            sample(GMAIL_BOUNCE, "not-an-id", "jane@example.org"),
            Received::NotOurs,
        ),
    ];
    for (to, raw, expected) in cases {
        assert_eq!(arrive(&env, &to, &raw), expected, "{to}");
    }
    assert_eq!(get(&env, &format!("/v1/messages/{id}")), before);
    assert!(env.suppressions.borrow().is_empty());
    let counts = get(&env, "/v1/reports");
    assert_eq!(
        counts,
        json!({"bounce_domain": BOUNCES, "ignored": {"not_a_report": 1, "unknown_message": 1, "unknown_recipient": 1, "not_ours": 1}})
    );
    // Without a bounce domain, nothing is read at all.
    let env = env_with(dsn_relay(0), false);
    assert_eq!(arrive(&env, &verp(&id), &sample(POSTFIX_BOUNCE, &id, "jane@example.org")), Received::NotOurs);
}

#[test]
fn a_report_to_another_address_still_finds_its_message_by_envid() {
    let env = env_with(dsn_relay(1), true);
    let (_, answer) = send(&env, json!(["jane@example.org", "joe@example.org"]));
    let id = answer["id"].as_str().unwrap().to_string();
    let received = arrive(&env, &format!("postmaster@{BOUNCES}"), &sample(POSTFIX_BOUNCE, &id, "jane@example.org"));
    assert_eq!(received, Received::Applied { matched: 1, added: 1 });
    assert_eq!(get(&env, &format!("/v1/messages/{id}"))["status"], "bounced");
}

#[test]
fn each_event_an_app_acts_on_is_one_webhook_in_resends_shape() {
    use edge_mailer::delivery::webhook::{new_webhooks, signature};
    let env = env_with(dsn_relay(1), true);
    env.suppressions.borrow_mut().push((
        edge_mailer::delivery::suppression::shard_of("gone@example.org"),
        edge_mailer::delivery::suppression::Suppression {
            address: "gone@example.org".into(),
            reason: Reason::Manual,
            detail: None,
            message_id: None,
            created_at: 1,
        },
    ));
    let (_, answer) = send(&env, json!(["jane@example.org", "joe@example.org", "gone@example.org"]));
    let id = answer["id"].as_str().unwrap().to_string();
    let sent = env.ledger.borrow()[0].clone();
    arrive(&env, &verp(&id), &sample(POSTFIX_BOUNCE, &id, "jane@example.org"));
    let bounced = env.ledger.borrow()[0].clone();

    // accepted has none; suppressed, sent; then the bounce alone as new.
    let first: Vec<Value> = new_webhooks(None, &sent).iter().map(|h| serde_json::from_str(&h.body).unwrap()).collect();
    let types: Vec<&str> = first.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["email.suppressed", "email.sent"]);
    let later = new_webhooks(Some(&sent), &bounced);
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].id, format!("msg_{id}_3"), "the id names the event: the same on every delivery");
    let body: Value = serde_json::from_str(&later[0].body).unwrap();
    assert_eq!(body["type"], "email.bounced");
    let data = &body["data"];
    assert_eq!((data["email_id"].as_str(), data["subject"].as_str()), (Some(id.as_str()), Some("Hi")));
    assert_eq!(data["to"], json!(["jane@example.org", "joe@example.org", "gone@example.org"]));
    assert_eq!(data["bounce"]["type"], "Permanent");
    assert_eq!(data["bounce"]["recipient"], "jane@example.org");
    assert!(data["bounce"]["message"].as_str().unwrap().starts_with("5.1.1 550 5.1.1"), "{data}");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(first[0]["data"]["suppressed"]["recipient"], "gone@example.org");
    // Signed over id, timestamp and body.
    let key = b"0123456789abcdef";
    let signed = signature(key, &later[0].id, 1_800_000_000, &later[0].body);
    assert_ne!(signed, signature(key, &later[0].id, 1_800_000_001, &later[0].body));
    assert!(signed.starts_with("v1,") && signed.len() == 3 + 44);
}

#[test]
fn webhook_settings_come_whole_and_only_over_tls() {
    let config = |extra: &[(&'static str, &'static str)]| {
        let mut vars = relay_vars(&[]);
        vars.extend_from_slice(extra);
        ScriptedEnv::new(ScriptedRelay::new(vec![]), &vars).config()
    };
    let secret = ("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let ok = config(&[("WEBHOOK_URL", "https://app.example.com/hooks"), secret]).unwrap();
    assert_eq!(ok.webhook.unwrap().retry_seconds, [10, 60, 300, 1800, 7200, 21600]);
    assert!(config(&[("WEBHOOK_URL", "http://127.0.0.1:9000/hooks"), secret]).is_ok());
    for bad in [
        vec![("WEBHOOK_URL", "http://app.example.com/hooks"), secret],
        vec![("WEBHOOK_URL", "https://app.example.com/hooks")],
        vec![secret],
        vec![("WEBHOOK_URL", "https://app.example.com/hooks"), ("WEBHOOK_SECRET", "not-whsec")],
        vec![("WEBHOOK_URL", "https://app.example.com/hooks"), secret, ("WEBHOOK_RETRY_SECONDS", "0")],
    ] {
        let error = config(&bad).unwrap_err();
        assert!(!error.message.contains("MfKQ9r8"), "never the secret: {}", error.message);
    }
}
