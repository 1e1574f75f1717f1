//! The Resend-compatible API natively: Resend's shapes in and out, every email through the
//! queue, its status by id, batches strict or permissive, and Resend's error shape.

use serde_json::{json, Value};

use crate::support::{
    call, chunking_opening, relay_vars, run, Req, ScriptedEnv, ScriptedRelay, Step::*, AUTH_DEV_SECRET,
};
use edge_mailer::delivery::queue::deliver_batch;

static VARS: std::sync::LazyLock<Vec<(&str, &str)>> =
    std::sync::LazyLock::new(|| relay_vars(&[("SMTP_SESSIONS", "0"), ("ALLOWED_FROM", "*@example.com")]));

const OK: &str = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as Q1\r\n";

fn relay_for(messages: usize) -> ScriptedRelay {
    let mut script = chunking_opening(AUTH_DEV_SECRET);
    for _ in 0..messages {
        script.extend([ExpectChunked, Say(OK)]);
    }
    script.extend([Expect("QUIT\r\n"), Say("221 Bye\r\n")]);
    ScriptedRelay::new(script)
}

fn post(env: &ScriptedEnv, path: &str, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = Req::new("POST", path, body.to_string())
        .header("content-type", "application/json")
        .header("authorization", "Bearer key-one");
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let (response, json) = call(env, req);
    (response.status, json)
}

fn get(env: &ScriptedEnv, path: &str) -> (u16, Value) {
    let (response, json) = call(env, Req::new("GET", path, Vec::new()).header("authorization", "Bearer key-one"));
    (response.status, json)
}

/// Delivers everything queued, as the consumer would.
fn deliver(env: &ScriptedEnv) {
    let ids: Vec<String> = env.queue.borrow_mut().drain(..).map(|(id, _)| id).collect();
    let config = env.config().unwrap();
    run(deliver_batch(env, &config, &ids));
}

fn email() -> Value {
    json!({"from": "Acme <hello@example.com>", "to": ["a@example.org"], "subject": "Hi", "html": "<p>Hello</p>",
           "tags": [{"name": "category", "value": "welcome"}]})
}

#[test]
fn an_email_is_queued_answered_with_its_id_and_its_status_follows_it() {
    let env = ScriptedEnv::new(relay_for(1), &VARS);
    let (status, answer) = post(&env, "/emails", &email(), &[]);
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    assert_eq!(answer.as_object().unwrap().len(), 1, "Resend answers only the id: {answer}");
    let (_, queued) = get(&env, &format!("/emails/{id}"));
    assert_eq!((queued["object"].as_str(), queued["last_event"].as_str()), (Some("email"), Some("queued")), "{queued}");
    deliver(&env);
    let (status, sent) = get(&env, &format!("/emails/{id}"));
    assert_eq!(status, 200);
    assert_eq!(sent["last_event"], "sent");
    assert_eq!(sent["from"], "Acme <hello@example.com>");
    assert_eq!(sent["to"], json!(["a@example.org"]));
    assert_eq!(sent["subject"], "Hi");
    assert_eq!(sent["tags"], json!([{"name": "category", "value": "welcome"}]));
    assert_eq!(sent["created_at"], "2023-11-14T22:13:20.000Z");
    assert_eq!(sent["scheduled_at"], Value::Null);
    assert_eq!(env.relay.seen.borrow().messages, 1);
    let (status, list) = get(&env, "/emails?limit=1");
    assert_eq!((status, list["object"].as_str(), list["data"][0]["id"].as_str()), (200, Some("list"), Some(&id[..])));
}

#[test]
fn attachment_content_is_taken_as_base64_or_as_a_node_buffer() {
    let env = ScriptedEnv::new(relay_for(1), &VARS);
    let mut body = email();
    body["attachments"] = json!([
        {"filename": "a.txt", "content": "aGVsbG8="},
        {"filename": "b.bin", "content": {"type": "Buffer", "data": [0, 255, 16]}, "content_type": "application/octet-stream"},
    ]);
    let (status, answer) = post(&env, "/emails", &body, &[]);
    assert_eq!(status, 200, "{answer}");
    deliver(&env);
    let data = String::from_utf8(env.relay.seen.borrow().data.clone()).unwrap();
    assert!(data.contains("aGVsbG8="), "the base64 file");
    assert!(data.contains("AP8Q"), "the Buffer's three bytes, base64-encoded: {data}");

    body["attachments"] = json!([{"filename": "c.pdf", "path": "https://example.com/c.pdf"}]);
    let (status, error) = post(&env, "/emails", &body, &[]);
    assert_eq!((status, error["name"].as_str()), (422, Some("validation_error")), "{error}");
    assert!(error["message"].as_str().unwrap().contains("attachments[0].path: remote attachments are not supported"));
}

#[test]
fn scheduled_at_delays_the_queue_message_up_to_twelve_hours() {
    let env = ScriptedEnv::new(relay_for(0), &VARS);
    let mut body = email();
    body["scheduled_at"] = json!("2023-11-14T23:13:20+00:00");
    let (status, answer) = post(&env, "/emails", &body, &[]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(env.queue.borrow()[0].1, 3600, "delivered by the queue an hour later");
    let (_, record) = get(&env, &format!("/emails/{}", answer["id"].as_str().unwrap()));
    assert_eq!(
        (record["last_event"].as_str(), record["scheduled_at"].as_str()),
        (Some("scheduled"), Some("2023-11-14T23:13:20.000Z"))
    );

    for (when, why) in [("2023-11-15T10:13:21Z", "at most 12 hours ahead"), ("in 1 min", "ISO 8601")] {
        body["scheduled_at"] = json!(when);
        let (status, error) = post(&env, "/emails", &body, &[]);
        assert_eq!(status, 422, "{error}");
        assert!(error["message"].as_str().unwrap().contains(why), "{error}");
    }
    assert_eq!(env.queue.borrow().len(), 1, "nothing more was queued");
}

#[test]
fn a_batch_is_all_or_nothing_unless_permissive() {
    let env = ScriptedEnv::new(relay_for(0), &VARS);
    let batch =
        json!([email(), {"from": "hello@example.com", "to": "not an address", "subject": "x", "text": "y"}, email()]);
    let (status, error) = post(&env, "/emails/batch", &batch, &[]);
    assert_eq!((status, error["name"].as_str()), (422, Some("validation_error")), "{error}");
    assert!(error["message"].as_str().unwrap().starts_with("emails[1]: "), "{error}");
    assert!(env.queue.borrow().is_empty(), "strict: nothing queued");

    let (status, answer) = post(&env, "/emails/batch", &batch, &[("x-batch-validation", "permissive")]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);
    assert_eq!(answer["errors"][0]["index"], 1);
    assert_eq!(env.queue.borrow().len(), 2);

    let (status, answer) = post(&env, "/emails/batch", &json!([email(), email()]), &[]);
    assert_eq!((status, answer["data"].as_array().map(Vec::len)), (200, Some(2)), "{answer}");
    assert!(answer.get("errors").is_none());

    let (status, error) = post(&env, "/emails/batch", &email(), &[]);
    assert_eq!((status, error["message"].as_str()), (400, Some("the body must be a JSON array of emails")), "{error}");
}

#[test]
fn an_idempotency_key_gives_a_retry_the_first_answer_and_queues_once() {
    let env = ScriptedEnv::new(relay_for(0), &VARS);
    let (_, first) = post(&env, "/emails", &email(), &[("idempotency-key", "welcome-42")]);
    let (status, again) = post(&env, "/emails", &email(), &[("idempotency-key", "welcome-42")]);
    assert_eq!((status, &again), (200, &first));
    assert_eq!(env.queue.borrow().len(), 1);
    let mut other = email();
    other["subject"] = json!("Different");
    let (status, error) = post(&env, "/emails", &other, &[("idempotency-key", "welcome-42")]);
    assert_eq!((status, error["name"].as_str()), (409, Some("invalid_idempotent_request")), "{error}");
}

#[test]
fn errors_come_in_resends_shape() {
    let env = ScriptedEnv::new(relay_for(0), &VARS);
    let shape =
        |(status, json): (u16, Value)| (status, json["statusCode"].as_u64(), json["name"].as_str().map(str::to_string));
    let no_key = call(&env, Req::new("POST", "/emails", email().to_string()));
    assert_eq!(shape((no_key.0.status, no_key.1)), (401, Some(401), Some("missing_api_key".into())));
    let wrong = call(&env, Req::new("GET", "/emails", Vec::new()).header("authorization", "Bearer nope"));
    assert_eq!(shape((wrong.0.status, wrong.1)), (403, Some(403), Some("invalid_api_key".into())));
    assert_eq!(shape(get(&env, "/domains")), (404, Some(404), Some("not_found".into())));
    assert_eq!(
        shape(get(&env, "/emails/0123456789abcdef0123456789abcdef")),
        (404, Some(404), Some("not_found".into()))
    );
    assert_eq!(shape(get(&env, "/emails/batch")), (405, Some(405), Some("method_not_allowed".into())));
    let mut body = email();
    body["from"] = json!("someone@elsewhere.org");
    assert_eq!(shape(post(&env, "/emails", &body, &[])), (403, Some(403), Some("invalid_from_address".into())));
    assert_eq!(
        shape(post(&env, "/emails", &json!({"to": "a@example.org"}), &[])).2.as_deref(),
        Some("validation_error")
    );
    // /v1 keeps its own shape, and refuses what only /emails takes.
    let (status, v1) = post(&env, "/v1/send", &email(), &[]);
    assert_eq!((status, v1["error"]["code"].as_str()), (422, Some("validation_failed")), "{v1}");
    assert!(v1["error"]["message"].as_str().unwrap().contains("tags: is taken by POST /emails"));
}

#[test]
fn a_batch_the_queue_fails_midway_says_which_emails_were_queued_and_a_retry_queues_none_twice() {
    let env = ScriptedEnv::new(relay_for(0), &VARS);
    *env.queue_room.borrow_mut() = Some(1);
    let batch = json!([email(), email(), email()]);
    let key = [("idempotency-key", "batch-7")];
    let (status, answer) = post(&env, "/emails/batch", &batch, &key);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"].as_array().unwrap().len(), 1, "{answer}");
    let failed: Vec<u64> = answer["errors"].as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect();
    assert_eq!(failed, [1, 2]);
    // The ones not queued say so in their records: nobody waits for them.
    let statuses: Vec<String> = env.ledger.borrow().iter().map(|r| r.status.as_str().to_string()).collect();
    assert_eq!(statuses, ["queued", "failed", "failed"]);
    // The same request again gets the same answer and queues nothing more (no duplicate of
    // the one already queued); a new key would send the two that failed.
    *env.queue_room.borrow_mut() = None;
    let (status, again) = post(&env, "/emails/batch", &batch, &key);
    assert_eq!((status, &again), (200, &answer));
    assert_eq!(env.queue.borrow().len(), 1);

    // Nothing stored at all: the storage error itself, in Resend's shape, and the key is free.
    *env.queue_room.borrow_mut() = Some(0);
    let (status, error) = post(&env, "/emails", &email(), &[("idempotency-key", "single-8")]);
    assert_eq!((status, error["name"].as_str()), (503, Some("application_error")), "{error}");
    *env.queue_room.borrow_mut() = None;
    let (status, answer) = post(&env, "/emails", &email(), &[("idempotency-key", "single-8")]);
    assert_eq!(status, 200, "a retry with the same key is sent: {answer}");
}

#[test]
fn a_permissive_batch_that_stored_nothing_answers_each_failure_and_frees_its_key() {
    let env = ScriptedEnv::new(relay_for(0), &VARS);
    *env.queue_room.borrow_mut() = Some(0);
    let batch = json!([email(), {"from": "hello@example.com", "to": "not an address", "subject": "x", "text": "y"}]);
    let headers = [("x-batch-validation", "permissive"), ("idempotency-key", "perm-1")];
    let (status, answer) = post(&env, "/emails/batch", &batch, &headers);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"], json!([]));
    let failed: Vec<u64> = answer["errors"].as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect();
    assert_eq!(failed, [0, 1], "the storage failure is reported too, not only the invalid email");
    // Nothing was queued and a retry may work: the key is free, and the retry queues the valid one.
    *env.queue_room.borrow_mut() = None;
    let (status, again) = post(&env, "/emails/batch", &batch, &headers);
    assert_eq!((status, again["data"].as_array().map(Vec::len)), (200, Some(1)), "{again}");
}

#[test]
fn one_key_for_the_same_body_on_another_route_is_a_conflict_not_a_replay() {
    let env = ScriptedEnv::new(relay_for(0), &VARS);
    let body = json!({"from": "hello@example.com", "to": "a@example.org", "subject": "Hi", "text": "x"});
    let (status, _) = post(&env, "/emails", &body, &[("idempotency-key", "shared-1")]);
    assert_eq!(status, 200);
    let (status, answer) = post(&env, "/v1/send", &body, &[("idempotency-key", "shared-1")]);
    assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("idempotency_conflict")), "{answer}");
    let (status, answer) = post(&env, "/emails/batch", &json!([body]), &[("idempotency-key", "batch-2")]);
    assert_eq!(status, 200, "{answer}");
    let permissive = [("idempotency-key", "batch-2"), ("x-batch-validation", "permissive")];
    let (status, answer) = post(&env, "/emails/batch", &json!([body]), &permissive);
    assert_eq!((status, answer["name"].as_str()), (409, Some("invalid_idempotent_request")), "{answer}");
}
