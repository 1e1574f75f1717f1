//! The relay's quota (`SMTP_RATE`) on every path natively: a send that answers now is refused
//! with `relay_rate_limited` and `Retry-After` before anything reaches the relay, a batch
//! answers per message, and a queued message waits on the queue for its slot without it
//! counting as an attempt, then goes without asking again.

use std::time::Duration;

use serde_json::Value;

use crate::support::AUTH_DEV_SECRET;
use crate::support::{chunking_opening, relay_vars, run, serve_now, Req, ScriptedEnv, ScriptedRelay, Step, Step::*};
use edge_mailer::delivery::queue::{deliver_batch, Verdict};
use edge_mailer::http::body::WholeBody;
use edge_mailer::http::HttpResponse;

const OK: &str = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued\r\n";
const MESSAGE: &str = r#"{"to": "a@example.org", "subject": "Hi", "text": "Hello"}"#;

/// A session per send: the message accepted, then QUIT.
fn one_message_each() -> Vec<Step> {
    let mut script = chunking_opening(AUTH_DEV_SECRET);
    script.extend([ExpectChunked, Say(OK), Expect("QUIT\r\n"), Say("221 Bye\r\n")]);
    script
}

fn env(script: Vec<Step>, rate: &'static str) -> ScriptedEnv {
    ScriptedEnv::new(ScriptedRelay::new(script), &relay_vars(&[("SMTP_SESSIONS", "0"), ("SMTP_RATE", rate)]))
}

async fn post(env: &ScriptedEnv, path: &str, body: &str, prefer: bool) -> (HttpResponse, Value) {
    let mut req = Req::new("POST", path, body.to_string())
        .header("content-type", "application/json")
        .header("authorization", "Bearer key-one");
    if prefer {
        req = req.header("prefer", "respond-async");
    }
    serve_now(env, req.head, WholeBody::new(req.body)).await
}

fn retry_after(response: &HttpResponse) -> Option<&str> {
    response.headers.iter().find(|(name, _)| name == "retry-after").map(|(_, value)| value.as_str())
}

#[test]
fn a_send_over_the_quota_is_429_with_retry_after_and_never_reaches_the_relay() {
    let env = env(one_message_each(), "2/m");
    let answers = run(async {
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(post(&env, "/v1/send", MESSAGE, false).await);
        }
        // The test clock starts 20 s into a minute: the next minute has room again.
        tokio::time::advance(Duration::from_secs(40)).await;
        answers.push(post(&env, "/v1/send", MESSAGE, false).await);
        answers
    });
    let statuses: Vec<u16> = answers.iter().map(|(response, _)| response.status).collect();
    assert_eq!(statuses, [200, 200, 429, 200], "{:?}", answers[2].1);
    let (refused, json) = &answers[2];
    assert_eq!(json["error"]["code"], "relay_rate_limited");
    assert_eq!((json["error"]["retryable"].as_bool(), retry_after(refused)), (Some(true), Some("40")));
    assert_eq!(env.relay.seen.borrow().connects, 3, "the refused send opened no connection");
}

#[test]
fn a_batch_takes_a_token_per_message_and_answers_each() {
    let mut script = chunking_opening(AUTH_DEV_SECRET);
    script.extend([ExpectChunked, Say(OK), ExpectChunked, Say(OK), Expect("QUIT\r\n"), Say("221 Bye\r\n")]);
    let env = env(script, "2/s");
    let batch = format!(r#"{{"messages": [{MESSAGE}, {MESSAGE}, {MESSAGE}]}}"#);
    let (response, json) = run(async { post(&env, "/v1/send/batch", &batch, false).await });
    assert_eq!(response.status, 200, "{json}");
    let data = json["data"].as_array().unwrap();
    assert!(data[0]["message_id"].is_string() && data[1]["message_id"].is_string(), "{json}");
    assert_eq!(data[2]["error"]["code"], "relay_rate_limited");
    assert_eq!(data[2]["error"]["retry_after"], 1, "a batch item has no header of its own");
    assert_eq!(env.relay.seen.borrow().messages, 2);
}

/// Three messages queued under 1/m, and the consumer's first batch: the first goes at once,
/// the others get places in the next two minutes (the test clock starts 20 s into a minute)
/// and go back on the queue until then. Answers their ids.
async fn three_queued_under_one_a_minute(env: &ScriptedEnv) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (response, json) = post(env, "/v1/send", MESSAGE, true).await;
        assert_eq!(response.status, 202, "{json}");
        ids.push(json["id"].as_str().unwrap().to_string());
    }
    env.queue.borrow_mut().clear();
    let verdicts = deliver_batch(env, &env.config().unwrap(), &ids).await;
    assert_eq!(verdicts, [Verdict::Ack, Verdict::Retry(40), Verdict::Retry(100)]);
    ids
}

/// The two that wait keep their attempts untouched; when each comes back at its moment it is
/// sent without asking the quota again, so none is turned away twice.
#[test]
fn queued_messages_wait_for_their_places_without_spending_attempts() {
    let env = env(one_message_each(), "1/m");
    let config = env.config().unwrap();
    run(async {
        let ids = three_queued_under_one_a_minute(&env).await;
        let waiting = env.ledger.borrow().iter().filter(|r| r.id != ids[0]).cloned().collect::<Vec<_>>();
        assert!(waiting.iter().all(|r| r.status.as_str() == "queued" && r.attempts == 0), "{waiting:?}");
        // Back early (a queue may deliver sooner), 10 s before its place: it waits for it in
        // the consumer, asking nothing, and goes.
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(deliver_batch(&env, &config, &ids[1..2]).await, [Verdict::Ack]);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(deliver_batch(&env, &config, &ids[2..]).await, [Verdict::Ack]);
    });
    let ledger = env.ledger.borrow();
    assert!(ledger.iter().all(|r| r.status.as_str() == "sent" && r.attempts == 1), "{ledger:?}");
    assert!(ledger.iter().all(|r| r.relay_slot_at.is_none()), "a used place is not kept");
    assert_eq!(env.relay.seen.borrow().messages, 3);
}

/// A message that comes back after its window has closed (the queue was late) gives its place
/// up and asks for a new one: sent in a window it holds no place in, it could take the relay
/// past the count.
#[test]
fn a_message_back_after_its_window_closed_asks_for_a_new_place() {
    let env = env(one_message_each(), "1/m");
    let config = env.config().unwrap();
    run(async {
        let ids = three_queued_under_one_a_minute(&env).await;
        // The second comes back 110 s in: its minute (40 s to 100 s) has passed, the next is
        // the third's, so its new place is the one after.
        tokio::time::advance(Duration::from_secs(110)).await;
        assert_eq!(deliver_batch(&env, &config, &ids[1..2]).await, [Verdict::Retry(50)]);
    });
    assert_eq!(env.relay.seen.borrow().messages, 1);
}
