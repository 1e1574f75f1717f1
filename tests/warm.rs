//! Warm sessions natively: sends through the HTTP layer share one session per pool slot, the
//! way the platform's Durable Objects keep them, and the rules that keep a message from being
//! lost or sent twice when the relay closes a session.

use serde_json::Value;

use crate::support::{relay_vars, run, serve_now, Req, ScriptedEnv, ScriptedRelay, Step, Step::*};
use edge_mailer::delivery::transaction::Transaction;
use edge_mailer::delivery::warm::WarmSession;
use edge_mailer::http::body::WholeBody;
use edge_mailer::http::HttpResponse;

static VARS: std::sync::LazyLock<Vec<(&str, &str)>> =
    std::sync::LazyLock::new(|| relay_vars(&[("SMTP_SESSIONS", "1")]));

const SEND: &str = r#"{"to": "a@example.org", "subject": "Hi", "text": "Hello"}"#;

use crate::support::chunking_opening as opening;

const AUTH_SECRET: &str = crate::support::AUTH_DEV_SECRET;

/// One accepted transaction: MAIL, RCPT and BDAT LAST with the message in one flight.
fn accepted() -> [Step; 2] {
    [ExpectChunked, Say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued\r\n")]
}

async fn send(env: &ScriptedEnv) -> (HttpResponse, Value) {
    let req = Req::new("POST", "/v1/send?debug=1", SEND)
        .header("content-type", "application/json")
        .header("authorization", "Bearer key-one");
    serve_now(env, req.head, WholeBody::new(req.body)).await
}

/// Sends `count` messages one after the other on one runtime (the relay's), with a pause
/// between them as between requests.
fn sends(env: &ScriptedEnv, count: usize) -> Vec<(HttpResponse, Value)> {
    run(async {
        let mut answers = Vec::new();
        for _ in 0..count {
            answers.push(send(env).await);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        answers
    })
}

fn summary(json: &Value) -> (String, u64) {
    (json["session"].as_str().unwrap_or("-").to_string(), json["round_trips"].as_u64().unwrap_or(0))
}

#[test]
fn sends_in_a_row_share_one_session_and_cost_one_round_trip_each() {
    let mut script = opening(AUTH_SECRET);
    for _ in 0..5 {
        script.extend(accepted());
    }
    let env = ScriptedEnv::new(ScriptedRelay::new(script), &VARS);
    let answers: Vec<(String, u64)> = sends(&env, 5)
        .iter()
        .map(|(response, json)| {
            assert_eq!(response.status, 200, "{json}");
            assert!(!json["transcript"].to_string().contains("AUTH") || json["session"] == "new");
            summary(json)
        })
        .collect();
    let seen = env.relay.seen.borrow();
    assert_eq!(seen.mismatch, None);
    assert_eq!((seen.connects, seen.messages), (1, 5));
    assert_eq!(answers[0], ("new".into(), 7));
    assert!(answers[1..].iter().all(|a| *a == ("warm".into(), 1)), "{answers:?}");
    assert!(!String::from_utf8_lossy(&seen.wire).contains("QUIT"), "a warm session stays open");
}

#[test]
fn a_session_the_relay_closed_while_idle_is_replaced_before_anything_is_sent() {
    // With a 421 first, and without a word.
    for goodbye in [vec![Say("421 4.4.2 relay.test Error: timeout exceeded\r\n"), Close], vec![Close]] {
        let mut first = opening(AUTH_SECRET);
        first.extend(accepted());
        first.extend(goodbye);
        let mut second = opening(AUTH_SECRET);
        second.extend(accepted());
        let env = ScriptedEnv::new(ScriptedRelay::per_connection(vec![first, second]), &VARS);
        let answers = sends(&env, 2);
        assert_eq!(answers[0].0.status, 200);
        let (response, json) = &answers[1];
        assert_eq!(response.status, 200, "{json}");
        assert_eq!(summary(json), ("new".into(), 7));
        let seen = env.relay.seen.borrow();
        assert_eq!(seen.mismatch, None);
        assert_eq!((seen.connects, seen.messages), (2, 2), "one copy of each message");
    }
}

/// The relay takes the flight, then says 421: it is closing and did not take the message, so
/// a new session sends it, once.
#[test]
fn a_421_as_the_first_reply_sends_the_message_on_a_new_session() {
    let mut first = opening(AUTH_SECRET);
    first.extend(accepted());
    first.extend([Pause(1), ExpectChunked, Say("421 4.3.2 shutting down\r\n"), Close]);
    let mut second = opening(AUTH_SECRET);
    second.extend(accepted());
    let relay = ScriptedRelay::per_connection(vec![first, second]);
    let env = ScriptedEnv::new(relay, &VARS);
    let answers = sends(&env, 2);
    assert_eq!(answers[0].0.status, 200);
    let (response, json) = &answers[1];
    assert_eq!(response.status, 200, "{json}");
    assert_eq!(json["session"], "new");
    assert!(json["transcript"].to_string().contains("421"), "the failed attempt is noted: {json}");
    assert_eq!(env.relay.seen.borrow().connects, 2);
}

/// The relay reads the whole message and closes without a reply: it may have it, so it is
/// `delivery_unknown` and never sent again.
#[test]
fn a_relay_that_closes_after_the_message_is_delivery_unknown_not_resent() {
    let mut first = opening(AUTH_SECRET);
    first.extend(accepted());
    first.extend([Pause(1), ExpectChunked, Close]);
    let env = ScriptedEnv::new(ScriptedRelay::per_connection(vec![first, opening(AUTH_SECRET)]), &VARS);
    let answers = sends(&env, 2);
    assert_eq!(answers[0].0.status, 200);
    let (response, json) = &answers[1];
    assert_eq!((response.status, json["error"]["code"].as_str()), (502, Some("delivery_unknown")), "{json}");
    assert_eq!(json["session"], "warm");
    let seen = env.relay.seen.borrow();
    assert_eq!((seen.connects, seen.messages), (1, 2), "not sent again");
}

#[test]
fn after_a_refused_transaction_rset_joins_the_next_flight() {
    let mut script = opening(AUTH_SECRET);
    script.extend([ExpectChunked, Say("250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n")]);
    script.extend([
        Expect("RSET\r\n"),
        ExpectChunked,
        Say("250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued\r\n"),
    ]);
    let env = ScriptedEnv::new(ScriptedRelay::new(script), &VARS);
    let answers = sends(&env, 2);
    assert_eq!(answers[0].0.status, 422);
    let (response, json) = &answers[1];
    assert_eq!(response.status, 200, "{json}");
    assert_eq!(summary(json), ("warm".into(), 1), "RSET costs no extra round trip");
    assert_eq!(env.relay.seen.borrow().mismatch, None);
}

#[test]
fn a_changed_password_opens_a_new_session_with_the_new_secret() {
    let mut first = opening(AUTH_SECRET);
    first.extend(accepted());
    first.extend([Expect("QUIT\r\n"), Say("221 Bye\r\n")]);
    let mut second = opening("AUTH PLAIN AGRldgBuZXctc2VjcmV0\r\n"); // \0dev\0new-secret
    second.extend(accepted());
    let relay = ScriptedRelay::per_connection(vec![first, second]);
    let env = ScriptedEnv::new(relay.clone(), &VARS);
    let mut vars = VARS.to_vec();
    vars.retain(|(k, _)| *k != "SMTP_PASSWORD");
    vars.push(("SMTP_PASSWORD", "new-secret"));
    let mut changed = ScriptedEnv::new(relay, &vars);
    changed.warm = env.warm.clone(); // the same objects, now seeing the new setting
    let ((first, _), (response, json)) = run(async { (send(&env).await, send(&changed).await) });
    assert_eq!(first.status, 200);
    assert_eq!(response.status, 200, "{json}");
    assert_eq!(json["session"], "new");
    let seen = changed.relay.seen.borrow();
    assert_eq!((seen.connects, seen.mismatch.as_deref()), (2, None), "the old session ended with QUIT");
}

#[test]
fn an_idle_session_ends_with_quit() {
    let mut script = opening(AUTH_SECRET);
    script.extend(accepted());
    script.extend([Expect("QUIT\r\n"), Say("221 2.0.0 Bye\r\n")]);
    let relay = ScriptedRelay::new(script);
    let env = ScriptedEnv::new(relay.clone(), &VARS);
    let warm: &WarmSession<ScriptedRelay> = &env.warm[0];
    run(async {
        assert_eq!(send(&env).await.0.status, 200);
        let now = crate::support::virtual_now();
        assert_eq!(warm.close_if_idle(now, 30_000).await.map(|left| left > 29_000), Some(true), "not idle yet");
        assert_eq!(warm.close_if_idle(now + 30_000, 30_000).await, None);
    });
    let seen = relay.seen.borrow();
    assert_eq!(seen.mismatch, None);
    assert!(String::from_utf8_lossy(&seen.wire).ends_with("QUIT\r\n"));
}

fn two_sessions() -> Vec<(&'static str, &'static str)> {
    let mut vars = VARS.to_vec();
    vars.retain(|(k, _)| *k != "SMTP_SESSIONS");
    vars.push(("SMTP_SESSIONS", "2"));
    vars
}

/// Sends one at a time all go to the first session of the pool: only the first opens one.
#[test]
fn sends_one_at_a_time_use_the_first_warm_session_only() {
    let mut script = opening(AUTH_SECRET);
    for _ in 0..6 {
        script.extend(accepted());
    }
    let env = ScriptedEnv::new(ScriptedRelay::new(script), &two_sessions());
    let sessions: Vec<String> = sends(&env, 6).iter().map(|(_, json)| summary(json).0).collect();
    assert_eq!(sessions, ["new", "warm", "warm", "warm", "warm", "warm"]);
    assert_eq!(*env.warm_used.borrow(), vec![0; 6], "the second session was never asked");
    assert_eq!(env.relay.seen.borrow().connects, 1);
}

/// Ten sends at once: the second session opens while the first is busy, and no more than two.
#[test]
fn concurrent_sends_share_the_pool() {
    let mut script = opening(AUTH_SECRET);
    for _ in 0..10 {
        script.extend(accepted()); // however the ten split between the two connections
    }
    let env = ScriptedEnv::new(ScriptedRelay::new(script), &two_sessions());
    let statuses = run(async {
        let all = (0..10).map(|_| async { send(&env).await.0.status });
        futures_util::future::join_all(all).await
    });
    assert_eq!(statuses, vec![200; 10]);
    let seen = env.relay.seen.borrow();
    assert_eq!((seen.connects, seen.messages), (2, 10), "two sessions for ten sends");
}

/// The transaction crosses from the Worker to a Durable Object as JSON plus the message.
#[test]
fn a_transaction_survives_the_trip_to_its_session_object() {
    let t = Transaction {
        message_id: "<x@example.com>".into(),
        sender: "noreply@example.com".into(),
        recipients: vec!["jörg@example.com".into()],
        suppressed: vec!["gone@example.com".into()],
        dsn: None,
        utf8_headers: true,
        message: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
    };
    let bytes = t.to_bytes();
    let back = Transaction::from_bytes(&bytes).unwrap();
    assert_eq!((back.recipients, back.suppressed, back.utf8_headers), (t.recipients, t.suppressed, true));
    assert_eq!(back.message, t.message);
    assert!(Transaction::from_bytes(b"{\"message_id\": 1}\nx").is_none());
}

/// RSET leads a chunked flight that carries the whole message; a relay that closes before
/// answering even the RSET may have the message, so it is not sent again.
#[test]
fn a_close_before_the_rset_reply_of_a_chunked_flight_is_delivery_unknown_not_resent() {
    let mut first = opening(AUTH_SECRET);
    first.extend([ExpectChunked, Say("250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n")]);
    first.extend([Pause(1), Expect("RSET\r\n"), ExpectChunked, Close]);
    let mut second = opening(AUTH_SECRET);
    second.extend(accepted());
    let env = ScriptedEnv::new(ScriptedRelay::per_connection(vec![first, second]), &VARS);
    let answers = sends(&env, 2);
    assert_eq!(answers[0].0.status, 422);
    let (response, json) = &answers[1];
    assert_eq!((response.status, json["error"]["code"].as_str()), (502, Some("delivery_unknown")), "{json}");
    let seen = env.relay.seen.borrow();
    assert_eq!((seen.connects, seen.messages), (1, 2), "not sent again on a new session");
}

/// A relay at its connection limit greets a new session with `421`: another new session takes
/// the message, once, and the answer shows both.
#[test]
fn a_421_greeting_of_a_new_session_is_tried_once_more_on_another() {
    let mut second = opening(AUTH_SECRET);
    second.extend(accepted());
    let refused = vec![Say("421 4.3.2 too many connections\r\n"), Close];
    let env = ScriptedEnv::new(ScriptedRelay::per_connection(vec![refused, second]), &VARS);
    let (response, json) = &sends(&env, 1)[0];
    assert_eq!(response.status, 200, "{json}");
    assert_eq!(json["session"], "new");
    let transcript = json["transcript"].to_string();
    assert!(transcript.contains("421 4.3.2 too many connections"), "{json}");
    assert!(transcript.contains("another one takes the message"), "{json}");
    let seen = env.relay.seen.borrow();
    assert_eq!((seen.connects, seen.messages, seen.mismatch.as_deref()), (2, 1, None));
}

/// Only once: a relay that refuses every new session gets two connections per send, not more.
#[test]
fn a_relay_that_keeps_refusing_new_sessions_gets_two_connections_then_relay_busy() {
    let env = ScriptedEnv::new(ScriptedRelay::new(vec![Say("421 4.3.2 too many connections\r\n"), Close]), &VARS);
    let (response, json) = &sends(&env, 1)[0];
    assert_eq!((response.status, json["error"]["code"].as_str()), (503, Some("relay_busy")), "{json}");
    assert_eq!(env.relay.seen.borrow().connects, 2);
}

/// A pipelined flight whose MAIL the relay refuses for now: it took nothing (RCPT and BDAT
/// answer 503), so another session takes the message, on a warm session and on a new one
/// alike; the refusing session ends with QUIT.
#[test]
fn a_451_to_mail_sends_the_message_once_on_another_session() {
    let refused = [
        ExpectChunked,
        Say("451 4.3.0 queue file write error\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n"),
        Expect("QUIT\r\n"),
        Say("221 2.0.0 Bye\r\n"),
    ];
    let mut warm_first = opening(AUTH_SECRET);
    warm_first.extend(accepted());
    warm_first.extend(refused.clone());
    let mut new_first = opening(AUTH_SECRET);
    new_first.extend(refused);
    for (first, count) in [(warm_first, 2), (new_first, 1)] {
        let mut second = opening(AUTH_SECRET);
        second.extend(accepted());
        let env = ScriptedEnv::new(ScriptedRelay::per_connection(vec![first, second]), &VARS);
        let answers = sends(&env, count);
        let (_, json) = answers.last().unwrap();
        assert!(answers.iter().all(|(response, _)| response.status == 200), "{json}");
        assert_eq!(json["session"], "new");
        assert!(json["transcript"].to_string().contains("451 4.3.0"), "the refusal is shown: {json}");
        let seen = env.relay.seen.borrow();
        // Flights the relay read: each message once where it was accepted, plus the refused one.
        assert_eq!((seen.connects, seen.messages, seen.mismatch.as_deref()), (2, count + 1, None));
    }
}

/// A temporary refusal of the message itself (after it was read) is the relay's answer: it
/// is reported for the caller to retry later, not sent again at once.
#[test]
fn a_4xx_to_the_message_is_reported_not_sent_again() {
    let mut script = opening(AUTH_SECRET);
    script.extend([ExpectChunked, Say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n451 4.3.0 try later\r\n")]);
    let env = ScriptedEnv::new(ScriptedRelay::per_connection(vec![script]), &VARS);
    let (response, json) = &sends(&env, 1)[0];
    assert_eq!((response.status, json["error"]["code"].as_str()), (503, Some("relay_busy")), "{json}");
    assert_eq!(env.relay.seen.borrow().connects, 1);
}

/// RSET leads a chunked flight; a relay that refuses the RSET (other than closing with 421)
/// may still have read and taken the message behind it, unread: `delivery_unknown`, never
/// sent again.
#[test]
fn a_refused_rset_before_a_chunked_flight_is_delivery_unknown_not_resent() {
    let mut first = opening(AUTH_SECRET);
    first.extend([ExpectChunked, Say("250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n")]);
    first.extend([Expect("RSET\r\n"), ExpectChunked, Say("451 4.3.0 try later\r\n")]);
    let env = ScriptedEnv::new(ScriptedRelay::per_connection(vec![first, opening(AUTH_SECRET)]), &VARS);
    let answers = sends(&env, 2);
    assert_eq!(answers[0].0.status, 422);
    let (response, json) = &answers[1];
    assert_eq!((response.status, json["error"]["code"].as_str()), (502, Some("delivery_unknown")), "{json}");
    assert_eq!(env.relay.seen.borrow().connects, 1, "not sent again on a new session");
}
