//! Queued delivery natively: accepted only once stored, delivered by the consumer over one
//! session per batch, retried when it may help, never sent again once delivered.

use serde_json::Value;

use crate::support::{
    call, chunking_opening, relay_vars, run, Req, ScriptedEnv, ScriptedRelay, Step, Step::*, AUTH_DEV_SECRET,
};
use edge_mailer::delivery::queue::{deliver_batch, retry_delay, Status, Verdict};
use edge_mailer::delivery::shard;

static VARS: std::sync::LazyLock<Vec<(&str, &str)>> = std::sync::LazyLock::new(|| {
    relay_vars(&[("SMTP_SESSIONS", "0"), ("DELIVERY_RETRY_SECONDS", "1,2,4"), ("DELIVERY_MAX_ATTEMPTS", "3")])
});

fn opening() -> Vec<Step> {
    chunking_opening(AUTH_DEV_SECRET)
}

/// A session whose transactions get `replies` (MAIL, RCPT and end of data in one string).
fn relay_answering(replies: &[&'static str]) -> Vec<Step> {
    let mut script = opening();
    for reply in replies {
        script.extend([ExpectChunked, Say(reply)]);
    }
    script.extend([Expect("QUIT\r\n"), Say("221 Bye\r\n")]);
    script
}

const OK: &str = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as Q1\r\n";

fn queued_send(env: &ScriptedEnv, prefer: bool) -> (u16, Value, Vec<(String, String)>) {
    let mut req = Req::new("POST", "/v1/send", r#"{"to": "a@example.org", "subject": "Hi", "text": "Hello"}"#)
        .header("content-type", "application/json")
        .header("authorization", "Bearer key-one");
    if prefer {
        req = req.header("Prefer", "respond-async");
    }
    let (response, json) = call(env, req);
    (response.status, json, response.headers)
}

/// Runs the consumer on everything queued until nothing is left, as the queue would (retry
/// delays only counted, not waited for). Answers each round's verdicts.
fn drain(env: &ScriptedEnv) -> Vec<Vec<Verdict>> {
    run(drain_now(env))
}

async fn drain_now(env: &ScriptedEnv) -> Vec<Vec<Verdict>> {
    let config = env.config().unwrap();
    let mut rounds = Vec::new();
    loop {
        let ids: Vec<String> = env.queue.borrow_mut().drain(..).map(|(id, _)| id).collect();
        if ids.is_empty() {
            return rounds;
        }
        let verdicts = deliver_batch(env, &config, &ids).await;
        for (id, verdict) in ids.iter().zip(&verdicts) {
            if let Verdict::Retry(delay) = verdict {
                env.queue.borrow_mut().push((id.clone(), *delay));
            }
        }
        rounds.push(verdicts);
    }
}

fn record(env: &ScriptedEnv, id: &str) -> Value {
    let req = Req::new("GET", &format!("/v1/messages/{id}"), Vec::new()).header("authorization", "Bearer key-one");
    call(env, req).1
}

#[test]
fn a_queued_send_is_answered_202_once_stored_and_delivered_once() {
    let env = ScriptedEnv::new(ScriptedRelay::new(relay_answering(&[OK])), &VARS);
    let (status, json, headers) = queued_send(&env, true);
    assert_eq!(status, 202, "{json}");
    let id = json["id"].as_str().unwrap().to_string();
    assert!(headers.contains(&("location".into(), format!("/v1/messages/{id}"))));
    assert_eq!(json["status"], "queued");
    assert_eq!(env.relay.seen.borrow().connects, 0, "the answer does not wait for the relay");
    assert!(env.bodies.borrow().contains_key(&id) && env.queue.borrow().len() == 1);
    assert_eq!(drain(&env), vec![vec![Verdict::Ack]]);
    let stored = record(&env, &id);
    assert_eq!((stored["status"].as_str(), stored["attempts"].as_u64()), (Some("sent"), Some(1)), "{stored}");
    assert_eq!(stored["smtp"]["text"], "Ok: queued as Q1");
    let data = String::from_utf8(env.relay.seen.borrow().data.clone()).unwrap();
    assert!(data.contains(&format!("Message-ID: {}", json["message_id"].as_str().unwrap())));
    // A redelivery of the same queue message sends nothing again.
    env.queue.borrow_mut().push((id.clone(), 0));
    assert_eq!(drain(&env), vec![vec![Verdict::Ack]]);
    assert_eq!((env.relay.seen.borrow().connects, env.relay.seen.borrow().messages), (1, 1));
}

#[test]
fn the_deployment_default_queues_and_forms_queue_unless_they_say_sync() {
    let mut vars = VARS.to_vec();
    vars.push(("DELIVERY_MODE", "queue"));
    vars.push(("FORMS", r#"{"q": {"to": "o@example.com"}, "s": {"to": "o@example.com", "delivery": "sync"}}"#));
    let env = ScriptedEnv::new(ScriptedRelay::new(vec![]), &vars);
    assert_eq!(queued_send(&env, false).0, 202);
    let form = |name: &str| {
        let req = Req::new("POST", &format!("/v1/forms/{name}"), "message=hi")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json");
        call(&env, req)
    };
    let (response, json) = form("q");
    assert_eq!(response.status, 200, "{json}");
    let id = json["id"].as_str().unwrap();
    assert_eq!(env.ledger.borrow().iter().find(|r| r.id == id).unwrap().form.as_deref(), Some("q"));
    let (response, json) = form("s");
    assert_eq!(json["error"]["code"], "relay_timeout", "a sync form waits for the relay, silent here");
    assert_eq!(response.status, 504);
    assert_eq!(env.queue.borrow().len(), 2);
}

#[test]
fn a_refused_recipient_fails_after_one_attempt_with_the_reply() {
    let refused = "250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n";
    let env = ScriptedEnv::new(ScriptedRelay::new(relay_answering(&[refused])), &VARS);
    let id = queued_send(&env, true).1["id"].as_str().unwrap().to_string();
    assert_eq!(drain(&env), vec![vec![Verdict::Ack]]);
    let stored = record(&env, &id);
    assert_eq!((stored["status"].as_str(), stored["attempts"].as_u64()), (Some("failed"), Some(1)), "{stored}");
    assert_eq!(stored["last_error"]["code"], "relay_rejected_recipient");
    assert_eq!(stored["smtp"]["code"], 550);
    assert!(env.dead_letters.borrow().is_empty(), "a permanent refusal is not retried");
}

#[test]
fn a_deferred_recipient_is_retried_with_backoff_then_failed_and_dead_lettered() {
    let deferred = "250 2.1.0 Ok\r\n450 4.2.0 mailbox busy\r\n554 5.5.1 no valid recipients\r\n";
    let sessions = vec![relay_answering(&[deferred]); 3];
    let env = ScriptedEnv::new(ScriptedRelay::per_connection(sessions), &VARS);
    let id = queued_send(&env, true).1["id"].as_str().unwrap().to_string();
    let rounds = drain(&env);
    assert_eq!(rounds.len(), 3, "DELIVERY_MAX_ATTEMPTS");
    let delays: Vec<u32> = rounds[..2]
        .iter()
        .map(|r| match r[0] {
            Verdict::Retry(delay) => delay,
            Verdict::Ack => panic!("not retried: {rounds:?}"),
        })
        .collect();
    assert!((1..=1).contains(&delays[0]) && (2..=3).contains(&delays[1]), "{delays:?}");
    let stored = record(&env, &id);
    assert_eq!((stored["status"].as_str(), stored["attempts"].as_u64()), (Some("failed"), Some(3)), "{stored}");
    assert_eq!(stored["last_error"]["code"], "relay_busy");
    assert_eq!(*env.dead_letters.borrow(), vec![id]);
    assert_eq!(stored["dead_lettered"], true);
}

#[test]
fn a_relay_that_is_down_delays_the_message_and_loses_nothing() {
    let mut relay = ScriptedRelay::new(relay_answering(&[OK]));
    relay.refuse_connect = true;
    let env = ScriptedEnv::new(relay, &VARS);
    let id = queued_send(&env, true).1["id"].as_str().unwrap().to_string();
    let config = env.config().unwrap();
    let first = run(deliver_batch(&env, &config, std::slice::from_ref(&id)));
    assert!(matches!(first[..], [Verdict::Retry(_)]), "{first:?}");
    assert_eq!(record(&env, &id)["status"], "queued");
    let mut relay = env.relay.clone();
    relay.refuse_connect = false;
    let env = ScriptedEnv { relay, ..env };
    let second = run(deliver_batch(&env, &config, std::slice::from_ref(&id)));
    assert_eq!(second, vec![Verdict::Ack]);
    let stored = record(&env, &id);
    assert_eq!((stored["status"].as_str(), stored["attempts"].as_u64()), (Some("sent"), Some(2)), "{stored}");
}

#[test]
fn a_lost_verdict_is_unknown_and_never_retried() {
    let mut script = opening();
    script.extend([ExpectChunked, Close]);
    let env = ScriptedEnv::new(ScriptedRelay::new(script), &VARS);
    let id = queued_send(&env, true).1["id"].as_str().unwrap().to_string();
    assert_eq!(drain(&env), vec![vec![Verdict::Ack]]);
    let stored = record(&env, &id);
    assert_eq!(
        (stored["status"].as_str(), stored["last_error"]["code"].as_str()),
        (Some("unknown"), Some("delivery_unknown"))
    );
}

#[test]
fn a_batch_shares_one_session() {
    let env = ScriptedEnv::new(ScriptedRelay::new(relay_answering(&[OK, OK, OK])), &VARS);
    for _ in 0..3 {
        assert_eq!(queued_send(&env, true).0, 202);
    }
    assert_eq!(drain(&env), vec![vec![Verdict::Ack; 3]]);
    let seen = env.relay.seen.borrow();
    assert_eq!((seen.connects, seen.messages, seen.mismatch.as_deref()), (1, 3, None));
}

#[test]
fn status_answers_need_the_key_and_list_the_newest_first() {
    let env = ScriptedEnv::new(ScriptedRelay::new(vec![]), &VARS);
    let ids: Vec<String> = (0..3).map(|_| queued_send(&env, true).1["id"].as_str().unwrap().to_string()).collect();
    let list = |query: &str, key: Option<&str>| {
        let mut req = Req::new("GET", &format!("/v1/messages{query}"), Vec::new());
        if let Some(key) = key {
            req = req.header("authorization", &format!("Bearer {key}"));
        }
        call(&env, req)
    };
    let (response, _) = list("", None);
    assert_eq!(response.status, 401);
    let (response, json) = list("?status=queued&limit=2", Some("key-one"));
    assert_eq!(response.status, 200);
    let listed: Vec<&str> = json["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    // Newest first: by created_at, then (sent in one millisecond) by id, both descending.
    let mut newest_first: Vec<(u64, &str)> =
        ids.iter().map(|id| (record(&env, id)["created_at"].as_u64().unwrap(), id.as_str())).collect();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(listed, vec![newest_first[0].1, newest_first[1].1]);
    assert!(json["next"].is_string(), "a third record is left: {json}");
    assert_eq!(list("?status=failed", Some("key-one")).1["messages"], serde_json::json!([]));
    assert_eq!(list("?status=lost", Some("key-one")).0.status, 422);
    assert_eq!(record(&env, &"0".repeat(32))["error"]["code"], "not_found");
    let (response, _) = call(&env, Req::new("GET", &format!("/v1/messages/{}", ids[0]), Vec::new()));
    assert_eq!(response.status, 401);
}

#[test]
fn a_queued_message_costs_three_ledger_calls() {
    let env = ScriptedEnv::new(ScriptedRelay::new(relay_answering(&[OK; 20])), &VARS);
    let ids: Vec<String> = (0..20).map(|_| queued_send(&env, true).1["id"].as_str().unwrap().to_string()).collect();
    drain(&env);
    let calls = env.ledger_calls.borrow();
    // Accepted (save), claimed by the consumer (claim), ended (save): scripts/bench --load
    // reports this count beside its throughput.
    assert_eq!(calls.len(), 3 * ids.len(), "{calls:?}");
    let kinds: Vec<&str> = calls.iter().map(|(call, _)| *call).collect();
    assert_eq!(kinds.iter().filter(|c| **c == "save").count(), 40);
    assert_eq!(kinds.iter().filter(|c| **c == "claim").count(), 20);
    let shards: std::collections::HashSet<u8> = calls.iter().map(|(_, shard)| *shard).collect();
    assert!(shards.len() > 1, "20 messages' calls all went to one shard");
}

/// Every page of `GET /v1/messages` with `query`, following `next` until it is null.
fn all_pages(env: &ScriptedEnv, query: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut after = String::new();
    loop {
        let path = format!("/v1/messages?{query}{after}");
        let (response, json) = call(env, Req::new("GET", &path, Vec::new()).header("authorization", "Bearer key-one"));
        assert_eq!(response.status, 200, "{json}");
        pages.push(json["messages"].as_array().unwrap().clone());
        match json["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return pages,
        }
        assert!(pages.len() < 100, "the listing does not end");
    }
}

#[test]
fn a_listing_of_every_shard_pages_newest_first_without_gaps_or_repeats() {
    let env = ScriptedEnv::new(ScriptedRelay::new(vec![]), &VARS);
    // Some in one millisecond, some a millisecond apart, and one from before the shards.
    let mut ids: Vec<String> = Vec::new();
    for round in 0..6u64 {
        for _ in 0..8 {
            ids.push(queued_send(&env, true).1["id"].as_str().unwrap().to_string());
        }
        let mut ledger = env.ledger.borrow_mut();
        for record in ledger.iter_mut().filter(|r| r.created_at > 1_000_000) {
            record.created_at = 1_000 + round; // this round's eight, in one millisecond
        }
    }
    let mut legacy = env.ledger.borrow()[0].clone();
    legacy.id = "ff0123456789abcdef0123456789abcd".into();
    legacy.created_at = 1_003;
    env.ledger.borrow_mut().push(legacy);
    ids.push("ff0123456789abcdef0123456789abcd".into());

    let shards: std::collections::HashSet<u8> = ids.iter().map(|id| shard::shard_of(id).unwrap()).collect();
    assert!(shards.len() > 4, "49 ids in only {} of 16 shards", shards.len());
    let ledger = env.ledger.borrow().clone();
    let mut expected: Vec<(u64, String)> = ledger.iter().map(|r| (r.created_at, r.id.clone())).collect();
    expected.sort_by(|a, b| b.cmp(a));

    for limit in [1, 7, 49, 50] {
        let pages = all_pages(&env, &format!("limit={limit}"));
        assert!(pages.iter().all(|page| page.len() <= limit && !page.is_empty()), "limit {limit}");
        let listed: Vec<(u64, String)> = (pages.iter().flatten())
            .map(|m| (m["created_at"].as_u64().unwrap(), m["id"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(listed, expected, "limit {limit}: every record once, newest first");
    }
    // A status picks its records in every shard, and pages the same way.
    env.ledger.borrow_mut().iter_mut().step_by(3).for_each(|r| r.status = Status::Failed);
    let failed: Vec<String> =
        all_pages(&env, "status=failed&limit=4").iter().flatten().map(|m| m["id"].as_str().unwrap().into()).collect();
    let expected_failed: Vec<String> = (expected.iter())
        .filter(|(_, id)| env.ledger.borrow().iter().any(|r| &r.id == id && r.status == Status::Failed))
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!((failed.len(), &failed), (17, &expected_failed));
    // Each record is found by its id, the one from before the shards too.
    for id in &ids {
        assert_eq!(record(&env, id)["id"], id.as_str());
    }
    assert_eq!(all_pages(&env, "after=1.0a012345-6789-4bcd-8f01-23456789abcd"), vec![Vec::<Value>::new()]);
    let (response, json) =
        call(&env, Req::new("GET", "/v1/messages?after=x", Vec::new()).header("authorization", "Bearer key-one"));
    assert_eq!((response.status, json["error"]["code"].as_str()), (422, Some("validation_failed")), "{json}");
}

#[test]
fn retry_delays_follow_the_schedule_with_jitter() {
    let env =
        ScriptedEnv::new(ScriptedRelay::new(vec![]), &[&VARS[..], &[("DELIVERY_RETRY_SECONDS", "30,120")]].concat());
    let config = env.config().unwrap();
    assert_eq!((retry_delay(&config, 1, 0), retry_delay(&config, 1, 255)), (24, 36));
    assert_eq!((retry_delay(&config, 2, 0), retry_delay(&config, 5, 255)), (96, 144), "the last step repeats");
}

fn batch(env: &ScriptedEnv, messages: Value, prefer: bool) -> (u16, Value) {
    crate::support::post_json(env, "/v1/send/batch", &serde_json::json!({ "messages": messages }), prefer)
}

fn batch_of(count: usize, invalid_at: usize) -> Value {
    let messages: Vec<Value> = (0..count)
        .map(|i| {
            let to = if i == invalid_at { "not an address".to_string() } else { format!("r{i}@example.org") };
            serde_json::json!({"to": to, "subject": format!("batch {i}"), "text": "x"})
        })
        .collect();
    Value::Array(messages)
}

#[test]
fn a_sync_batch_goes_over_one_session_and_an_invalid_message_fails_alone() {
    let env = ScriptedEnv::new(ScriptedRelay::new(relay_answering(&[OK, OK])), &VARS);
    let (status, json) = batch(&env, batch_of(3, 1), false);
    assert_eq!(status, 200, "{json}");
    let results = json["data"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!((results[0]["ok"].as_bool(), results[2]["ok"].as_bool()), (Some(true), Some(true)), "{json}");
    assert_eq!(results[1]["error"]["code"], "validation_failed");
    let seen = env.relay.seen.borrow();
    assert_eq!((seen.connects, seen.messages, seen.mismatch.as_deref()), (1, 2, None));
}

#[test]
fn a_queued_batch_answers_one_id_per_message() {
    let env = ScriptedEnv::new(ScriptedRelay::new(vec![]), &VARS);
    let (status, json) = batch(&env, batch_of(4, 2), true);
    assert_eq!(status, 202, "{json}");
    let results = json["data"].as_array().unwrap();
    assert_eq!(results.iter().filter(|r| r["status"] == "queued").count(), 3);
    assert_eq!(results[2]["error"]["code"], "validation_failed");
    assert_eq!(env.queue.borrow().len(), 3);
    assert_eq!(batch(&env, batch_of(101, 200), true).0, 422);
    assert_eq!(batch(&env, Value::Array(vec![]), true).0, 422);
}

#[test]
fn with_warm_sessions_the_consumer_sends_batch_after_batch_on_one_session() {
    let mut vars = VARS.to_vec();
    vars.retain(|(k, _)| *k != "SMTP_SESSIONS");
    vars.push(("SMTP_SESSIONS", "1"));
    let mut script = opening();
    script.extend([ExpectChunked, Say(OK), ExpectChunked, Say(OK)]);
    let env = ScriptedEnv::new(ScriptedRelay::new(script), &vars);
    let rounds = run(async {
        let mut rounds = Vec::new();
        for _ in 0..2 {
            let req = Req::new("POST", "/v1/send", r#"{"to": "a@example.org", "subject": "Hi", "text": "Hello"}"#)
                .header("content-type", "application/json")
                .header("authorization", "Bearer key-one")
                .header("Prefer", "respond-async");
            let (response, _) =
                crate::support::serve_now(&env, req.head, edge_mailer::http::body::WholeBody::new(req.body)).await;
            assert_eq!(response.status, 202);
            rounds.extend(drain_now(&env).await);
        }
        rounds
    });
    assert_eq!(rounds, vec![vec![Verdict::Ack], vec![Verdict::Ack]]);
    let seen = env.relay.seen.borrow();
    assert_eq!((seen.connects, seen.messages, seen.mismatch.as_deref()), (1, 2, None), "two batches, one session");
}
