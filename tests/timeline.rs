//! Every message has a record: sync sends write theirs once the answer has gone out, and the
//! answer carries its `id`; each record keeps a timeline (`events`, `last_event`).

use serde_json::{json, Value};

use crate::support::{
    call, chunking_opening, post_json, relay_vars, run, Req, ScriptedEnv, ScriptedRelay, Step, Step::*, AUTH_DEV_SECRET,
};
use edge_mailer::delivery::queue::deliver_batch;

const OK: &str = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as Q1\r\n";

fn relay(replies: &[&'static str]) -> Vec<Step> {
    let mut script = chunking_opening(AUTH_DEV_SECRET);
    for reply in replies {
        script.extend([ExpectChunked, Say(reply)]);
    }
    script.extend([Expect("QUIT\r\n"), Say("221 Bye\r\n")]);
    script
}

fn env(script: Vec<Step>, extra: &[(&'static str, &'static str)]) -> ScriptedEnv {
    let mut vars =
        relay_vars(&[("SMTP_SESSIONS", "0"), ("DELIVERY_RETRY_SECONDS", "1"), ("DELIVERY_MAX_ATTEMPTS", "3")]);
    vars.extend_from_slice(extra);
    ScriptedEnv::new(ScriptedRelay::new(script), &vars)
}

fn post(env: &ScriptedEnv, path: &str, body: Value, queued: bool) -> (u16, Value) {
    post_json(env, path, &body, queued)
}

fn record(env: &ScriptedEnv, id: &str) -> Value {
    let req = Req::new("GET", &format!("/v1/messages/{id}"), Vec::new()).header("authorization", "Bearer key-one");
    let (response, json) = call(env, req);
    assert_eq!(response.status, 200, "{json}");
    json
}

fn kinds(record: &Value) -> Vec<&str> {
    record["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[test]
fn a_sync_send_answers_its_id_and_writes_its_record_after_the_answer() {
    let env = env(relay(&[OK]), &[]);
    let (status, answer) = post(&env, "/v1/send", json!({"to": "a@example.org", "subject": "Hi", "text": "x"}), false);
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_str().expect("the answer names its record");
    let stored = record(&env, id);
    assert_eq!((stored["status"].as_str(), stored["attempts"].as_u64()), (Some("sent"), Some(1)), "{stored}");
    assert_eq!(stored["v"], 2);
    assert_eq!(stored["message_id"], answer["message_id"]);
    assert_eq!(stored["accepted"], json!(["a@example.org"]));
    assert_eq!(kinds(&stored), ["accepted", "sent"]);
    assert_eq!(stored["last_event"], "sent");
    let sent = &stored["events"][1];
    assert_eq!(
        (sent["code"].as_u64(), sent["status"].as_str(), sent["diagnostic"].as_str()),
        (Some(250), Some("2.0.0"), Some("Ok: queued as Q1"))
    );
    assert!(sent["took_ms"].is_u64(), "{sent}");
    // Written after the answer, in one call to its shard.
    let calls = env.ledger_calls.borrow();
    assert_eq!(calls.iter().filter(|(c, _)| *c == "save_records").count(), 1, "{calls:?}");
}

#[test]
fn a_sync_send_the_relay_refuses_is_recorded_failed_with_its_reply() {
    let env = env(relay(&["250 2.1.0 Ok\r\n550 5.1.1 No such user\r\n554 5.5.1 No valid recipients\r\n"]), &[]);
    let (status, answer) = post(&env, "/v1/send", json!({"to": "x@example.org", "subject": "Hi", "text": "x"}), false);
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("relay_rejected_recipient")), "{answer}");
    let ledger = env.ledger.borrow();
    assert_eq!(ledger.len(), 1);
    let stored = serde_json::to_value(&ledger[0]).unwrap();
    assert_eq!(stored["status"], "failed");
    assert_eq!(kinds(&stored), ["accepted", "failed"]);
    assert_eq!(stored["events"][1]["status"], "5.1.1", "{stored}");
    assert_eq!(stored["events"][1]["code"], 550, "the reply code beside the enhanced one: {stored}");
}

#[test]
fn a_form_submission_is_recorded_with_its_form() {
    let env = env(relay(&[OK]), &[("FORMS", r#"{"contact": {"to": "owner@example.com"}}"#)]);
    let req = Req::new("POST", "/v1/forms/contact", "email=v%40example.org&message=hi")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json");
    let (response, json) = call(&env, req);
    assert_eq!(response.status, 200, "{json}");
    let ledger = env.ledger.borrow();
    assert_eq!((ledger.len(), ledger[0].form.as_deref()), (1, Some("contact")));
}

#[test]
fn a_sync_batch_writes_every_record_in_one_call_per_shard() {
    let env = env(relay(&[OK; 30]), &[]);
    let messages: Vec<Value> =
        (0..30).map(|n| json!({"to": "a@example.org", "subject": format!("n{n}"), "text": "x"})).collect();
    let (status, answer) = post(&env, "/v1/send/batch", json!({ "messages": messages }), false);
    assert_eq!(status, 200, "{answer}");
    let ids: Vec<&str> = answer["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 30);
    assert_eq!(env.ledger.borrow().len(), 30);
    let calls = env.ledger_calls.borrow();
    let shards: std::collections::HashSet<u8> = calls.iter().map(|(_, shard)| *shard).collect();
    assert_eq!(calls.len(), shards.len(), "one call per shard: {calls:?}");
    // And the suppression list was asked once per object for the whole batch.
    let asked = env.suppression_checks.borrow();
    let objects: std::collections::HashSet<&u8> = asked.iter().collect();
    assert_eq!(asked.len(), objects.len());
}

#[test]
fn a_queued_message_keeps_each_attempt_in_its_timeline() {
    let mut env = env(Vec::new(), &[]);
    env.relay = ScriptedRelay::per_connection(vec![
        relay(&["250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n451 4.3.0 Try later\r\n"]),
        relay(&[OK]),
    ]);
    let (status, answer) = post(&env, "/v1/send", json!({"to": "a@example.org", "subject": "Hi", "text": "x"}), true);
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    assert_eq!(kinds(&record(&env, &id)), ["accepted"]);
    let config = env.config().unwrap();
    for _ in 0..2 {
        let ids: Vec<String> = env.queue.borrow_mut().drain(..).map(|(id, _)| id).collect();
        run(deliver_batch(&env, &config, &ids));
        env.queue.borrow_mut().push((id.clone(), 0));
    }
    let stored = record(&env, &id);
    assert_eq!((stored["status"].as_str(), stored["attempts"].as_u64()), (Some("sent"), Some(2)), "{stored}");
    assert_eq!(kinds(&stored), ["accepted", "deferred", "sent"]);
    let deferred = &stored["events"][1];
    assert_eq!((deferred["status"].as_str(), deferred["diagnostic"].as_str()), (Some("4.3.0"), Some("Try later")));
    assert_eq!(stored["last_event"], "sent");
    // The listing answers last_event too.
    let req = Req::new("GET", "/v1/messages?status=sent", Vec::new()).header("authorization", "Bearer key-one");
    let (_, list) = call(&env, req);
    assert_eq!(list["messages"][0]["last_event"], "sent", "{list}");
}

#[test]
fn stats_count_each_hours_messages_by_status_and_the_relays_answer_times() {
    let mut env = env(Vec::new(), &[]);
    env.relay = ScriptedRelay::per_connection(vec![
        relay(&[OK]),
        relay(&["250 2.1.0 Ok\r\n550 5.1.1 No such user\r\n554 5.5.1 No valid recipients\r\n"]),
        relay(&[OK]),
    ]);
    for to in ["a@example.org", "x@example.org", "b@example.org"] {
        post(&env, "/v1/send", json!({"to": to, "subject": "Hi", "text": "x"}), false);
    }
    let (status, _) = post(&env, "/v1/send", json!({"to": "q@example.org", "subject": "Hi", "text": "x"}), true);
    assert_eq!(status, 202);
    let req = Req::new("GET", "/v1/stats?hours=3", Vec::new()).header("authorization", "Bearer key-one");
    let (response, stats) = call(&env, req);
    assert_eq!(response.status, 200, "{stats}");
    assert_eq!(stats["hours"], 3);
    let totals = &stats["totals"];
    assert_eq!(
        (totals["sent"].as_u64(), totals["failed"].as_u64(), totals["queued"].as_u64()),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(totals["delivered"], 0, "every status is there, at 0 too: {totals}");
    assert_eq!(stats["relay_answer_ms"]["attempts"], 3, "{stats}");
    let hours = stats["per_hour"].as_array().unwrap();
    assert_eq!(hours.len(), 3, "the hour under way and the two before, empty ones too");
    assert_eq!(hours[2]["statuses"], *totals);
    assert_eq!(hours[0]["relay_answer_ms"], json!({"p50": null, "p95": null, "attempts": 0}));
    assert!(
        hours[2]["hour"].as_str().unwrap().ends_with(":00:00.000Z")
            || hours[2]["hour"].as_str().unwrap().ends_with(":00:00Z")
    );

    for bad in ["hours=0", "hours=169", "hours=x"] {
        let req = Req::new("GET", &format!("/v1/stats?{bad}"), Vec::new()).header("authorization", "Bearer key-one");
        assert_eq!(call(&env, req).0.status, 422, "{bad}");
    }
    assert_eq!(call(&env, Req::new("GET", "/v1/stats", Vec::new())).0.status, 401);
}

#[test]
fn the_listing_finds_a_subject_or_a_recipient_in_any_case_and_pages_through_what_it_finds() {
    let env = env(relay(&[OK; 6]), &[]);
    for (to, subject) in [
        ("alice@example.org", "Invoice 100%"),
        ("bob@example.org", "Welcome"),
        ("ALICE.B@example.org", "Hello"),
        ("carol@example.org", "invoice 2"),
        ("dave@example.org", "a_b"),
        ("erin@example.org", "ab"),
    ] {
        let (status, json) = post(&env, "/v1/send", json!({"to": to, "subject": subject, "text": "x"}), false);
        assert_eq!(status, 200, "{json}");
    }
    let found = |query: &str| -> Vec<String> {
        let (mut subjects, mut after) = (Vec::new(), String::new());
        loop {
            let path = format!("/v1/messages?limit=1&q={query}{after}");
            let (response, json) =
                call(&env, Req::new("GET", &path, Vec::new()).header("authorization", "Bearer key-one"));
            assert_eq!(response.status, 200, "{json}");
            subjects.extend(
                json["messages"].as_array().unwrap().iter().map(|m| m["subject"].as_str().unwrap().to_string()),
            );
            match json["next"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => return subjects,
            }
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(sorted(found("INVOICE")), ["Invoice 100%", "invoice 2"]);
    assert_eq!(sorted(found("alice")), ["Hello", "Invoice 100%"], "a recipient, in any case");
    assert_eq!(found("100%25"), ["Invoice 100%"], "% is a letter, not a wildcard");
    assert_eq!(found("a_b"), ["a_b"], "and so is _");
    assert!(found("nobody").is_empty());
    for bad in ["q=", &format!("q={}", "x".repeat(49)), &format!("q={}", "%25".repeat(25))] {
        let req = Req::new("GET", &format!("/v1/messages?{bad}"), Vec::new()).header("authorization", "Bearer key-one");
        assert_eq!(call(&env, req).0.status, 422, "{bad}");
    }
}

/// `POST /v1/messages/search`: the listing with its query in a JSON body, so that an address
/// or a subject searched for stays out of URLs (the dashboard's search).
#[test]
fn the_search_in_a_body_answers_what_the_listing_answers() {
    let env = env(relay(&[OK; 3]), &[]);
    for (to, subject) in
        [("alice@example.org", "Invoice 1"), ("bob@example.org", "Welcome"), ("carol@example.org", "x")]
    {
        let (status, json) = post(&env, "/v1/send", json!({"to": to, "subject": subject, "text": "x"}), false);
        assert_eq!(status, 200, "{json}");
    }
    let search = |body: Value| {
        let req = Req::new("POST", "/v1/messages/search", body.to_string().into_bytes())
            .header("authorization", "Bearer key-one")
            .header("content-type", "application/json");
        let (response, json) = call(&env, req);
        (response.status, json)
    };
    let get = |query: &str| {
        let req =
            Req::new("GET", &format!("/v1/messages?{query}"), Vec::new()).header("authorization", "Bearer key-one");
        call(&env, req).1
    };
    let (status, found) = search(json!({"q": "ALICE@"}));
    assert_eq!(status, 200, "{found}");
    assert_eq!(found, get("q=ALICE%40"));
    assert_eq!(found["messages"].as_array().unwrap().len(), 1);
    let (_, first) = search(json!({"status": "sent", "limit": 2}));
    assert_eq!(first, get("status=sent&limit=2"));
    let (_, second) = search(json!({"status": "sent", "limit": 2, "after": first["next"]}));
    assert_eq!(second["messages"].as_array().unwrap().len(), 1, "{second}");
    for bad in [json!({"q": ""}), json!({"limit": 0}), json!({"status": "lost"}), json!({"after": "x"})] {
        assert_eq!(search(bad.clone()).0, 422, "{bad}");
    }
    let (status, json) = search(json!({"query": "alice"}));
    assert_eq!((status, json["error"]["code"].as_str()), (422, Some("validation_failed")), "unknown member: {json}");
    assert_eq!(search(json!([])).0, 422, "not an object");
    let req = Req::new("POST", "/v1/messages/search", b"{}".to_vec());
    assert_eq!(call(&env, req).0.status, 401, "the key first");
    let big = json!({"q": "x".repeat(5000)});
    assert_eq!(search(big).0, 413, "a body past 4 KiB is not read");
}

/// A deployment without a ledger binding is told so (`misconfigured`, naming the binding),
/// not told to retry.
#[test]
fn the_routes_that_read_the_ledger_name_its_missing_binding() {
    let env = env(relay(&[]), &[]);
    env.unbound.borrow_mut().push(edge_mailer::delivery::env::Store::Ledger);
    for path in ["/v1/messages", "/v1/messages/0123456789abcdef0123456789abcdef", "/v1/stats"] {
        let req = Req::new("GET", path, Vec::new()).header("authorization", "Bearer key-one");
        let (response, json) = call(&env, req);
        assert_eq!((response.status, json["error"]["code"].as_str()), (500, Some("misconfigured")), "{path}: {json}");
        assert!(json["error"]["message"].as_str().unwrap().contains("DELIVERY_LEDGER"), "{json}");
        assert_eq!(json["error"]["retryable"], false);
    }
}

/// With webhooks set up, a message's answer says how each of its webhooks fared, beside the
/// event it tells of.
#[test]
fn a_message_answers_how_its_webhooks_fared() {
    use edge_mailer::delivery::webhook::Delivery;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let env = env(relay(&[OK]), &[("WEBHOOK_URL", "https://hooks.example.org/in"), ("WEBHOOK_SECRET", secret)]);
    let (status, answer) = post(&env, "/v1/send", json!({"to": "a@example.org", "subject": "Hi", "text": "x"}), false);
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_str().unwrap();
    assert_eq!(record(&env, id)["webhooks"], json!([]), "none in the outbox yet");
    env.webhook_outbox.borrow_mut().extend([
        Delivery { id: format!("msg_{id}_1"), attempts: 2, delivered_at: Some(5_000), next_at: None },
        Delivery {
            id: "msg_ffffffffffffffffffffffffffffffff_1".into(),
            attempts: 1,
            delivered_at: None,
            next_at: None,
        },
    ]);
    let stored = record(&env, id);
    assert_eq!(
        stored["webhooks"],
        json!([{"id": format!("msg_{id}_1"), "event": 1, "type": "email.sent", "status": "delivered",
                "attempts": 2, "delivered_at": 5_000}])
    );

    // Without WEBHOOK_URL, no `webhooks` member (and no outbox asked).
    let plain = self::env(relay(&[OK]), &[]);
    let (_, answer) = post(&plain, "/v1/send", json!({"to": "a@example.org", "subject": "Hi", "text": "x"}), false);
    let without = record(&plain, answer["id"].as_str().unwrap());
    assert!(without.get("webhooks").is_none(), "{without}");
}
