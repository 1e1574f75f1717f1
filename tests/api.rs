//! The HTTP layer natively: routing, auth, validation before any connection, the answers'
//! shapes, and what reaches the relay.

use edge_mailer::http::body::BodySource;
use edge_mailer::http::HttpResponse;
use serde_json::Value;

use crate::support::{self, call_with_body, Req, ScriptedEnv, ScriptedRelay, Step::*};

const VARS: &[(&str, &str)] = &[
    ("SMTP_HOST", "relay.test"),
    // A session per send: these tests follow one session from open to QUIT (tests/warm.rs
    // has the pooled sessions).
    ("SMTP_SESSIONS", "0"),
    ("SMTP_USERNAME", "dev"),
    ("SMTP_PASSWORD", "secret"),
    ("MAIL_FROM", "Site <noreply@example.com>"),
    ("API_KEYS", "key-one,key-two"),
];

fn request(method: &str, path_and_query: &str, key: Option<&str>, body: &str) -> Req {
    let req = Req::new(method, path_and_query, body).header("content-type", "application/json");
    match key {
        Some(key) => req.header("authorization", &format!("Bearer {key}")),
        None => req,
    }
}

fn call(env: ScriptedEnv, req: Req) -> (HttpResponse, Value) {
    support::call(&env, req)
}

fn no_relay() -> ScriptedEnv {
    ScriptedEnv::new(ScriptedRelay::new(vec![]), VARS)
}

/// A lock-step relay that takes the message and answers `final_reply` (or, with `None`,
/// closes the connection instead of answering), then QUIT.
fn accepting_relay(final_reply: Option<&'static str>) -> ScriptedRelay {
    let mut steps = vec![
        Say("220 relay.test ESMTP\r\n"),
        Expect("EHLO example.com\r\n"),
        Say("250-relay.test\r\n250 STARTTLS\r\n"),
        Expect("STARTTLS\r\n"),
        Say("220 go\r\n"),
        Expect("EHLO example.com\r\n"),
        Say("250-relay.test\r\n250-AUTH PLAIN\r\n250 ENHANCEDSTATUSCODES\r\n"),
        Expect("AUTH PLAIN AGRldgBzZWNyZXQ=\r\n"),
        Say("235 2.7.0 ok\r\n"),
        Expect("MAIL FROM:<noreply@example.com>\r\n"),
        Say("250 2.1.0 Ok\r\n"),
        Expect("RCPT TO:<a@example.org>\r\n"),
        Say("250 2.1.5 Ok\r\n"),
        Expect("RCPT TO:<hidden@example.net>\r\n"),
        Say("250 2.1.5 Ok\r\n"),
        Expect("DATA\r\n"),
        Say("354 go\r\n"),
        ExpectData,
    ];
    match final_reply {
        Some(reply) => steps.extend([Say(reply), Expect("QUIT\r\n"), Say("221 2.0.0 Bye\r\n")]),
        None => steps.push(Close),
    }
    ScriptedRelay::new(steps)
}

const SEND: &str = r#"{"to": "Ada <a@example.org>", "bcc": "hidden@example.net", "subject": "Hi", "text": "Hello"}"#;

#[test]
fn health_and_routes() {
    let (response, json) = call(no_relay(), request("GET", "/v1/health", None, ""));
    assert_eq!(response.status, 200);
    assert_eq!(json["ok"], true);
    assert!(!String::from_utf8_lossy(&response.body).contains("relay.test"));

    let cases = [
        ("GET", "/v1/nothing", 404, "not_found"),
        ("GET", "/v1/send", 405, "method_not_allowed"),
        ("POST", "/v1/health", 405, "method_not_allowed"),
    ];
    for (method, path, status, code) in cases {
        let (response, json) = call(no_relay(), request(method, path, None, ""));
        assert_eq!((response.status, json["error"]["code"].as_str()), (status, Some(code)), "{method} {path}");
    }
}

#[test]
fn api_key_is_checked_before_anything_else_happens() {
    for key in [None, Some("key-on"), Some("key-one2"), Some("")] {
        let env = no_relay();
        let (response, json) = call(env.clone(), request("POST", "/v1/send", key, SEND));
        assert_eq!((response.status, json["error"]["code"].as_str()), (401, Some("unauthorized")));
        assert_eq!(env.relay.seen.borrow().connects, 0);
        let body = String::from_utf8_lossy(&response.body);
        assert!(!body.contains("key-one") && !body.contains("key-two"));
    }
}

#[test]
fn misconfiguration_names_the_variable_at_the_first_request() {
    let vars: Vec<(&str, &str)> = VARS.iter().copied().filter(|(k, _)| *k != "API_KEYS").collect();
    let (response, json) =
        call(ScriptedEnv::new(ScriptedRelay::new(vec![]), &vars), request("POST", "/v1/send", Some("x"), SEND));
    assert_eq!(response.status, 500);
    assert_eq!(json["error"]["code"], "misconfigured");
    assert!(json["error"]["message"].as_str().unwrap().starts_with("API_KEYS"));
}

#[test]
fn header_injection_never_reaches_the_relay() {
    let env = no_relay();
    let body =
        r#"{"to": "a@example.org", "cc": "b@example.org\r\nBcc: x@evil.example", "subject": "x\u0000y", "text": "t"}"#;
    let (response, json) = call(env.clone(), request("POST", "/v1/send", Some("key-two"), body));
    assert_eq!(response.status, 422);
    assert_eq!(json["error"]["code"], "validation_failed");
    let fields: Vec<&str> =
        json["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, vec!["cc", "subject"]);
    assert_eq!(env.relay.seen.borrow().connects, 0);
}

#[test]
fn successful_send_answers_with_the_relays_reply_and_keeps_bcc_out_of_headers() {
    let env = ScriptedEnv::new(accepting_relay(Some("250 2.0.0 Ok: queued as Q1\r\n")), VARS);
    let (response, json) = call(env.clone(), request("POST", "/v1/send", Some("key-one"), SEND));
    assert_eq!(response.status, 200, "{json}");
    assert_eq!(json["accepted"], serde_json::json!(["a@example.org", "hidden@example.net"]));
    assert_eq!(json["smtp"]["code"], 250);
    assert_eq!(json["smtp"]["text"], "Ok: queued as Q1");
    assert!(json.get("transcript").is_none(), "the transcript is for debug mode only");
    let data = String::from_utf8(env.relay.seen.borrow().data.clone()).unwrap();
    let message_id = json["message_id"].as_str().unwrap();
    assert!(data.contains(&format!("Message-ID: {message_id}\r\n")), "{data}");
    assert!(data.contains("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"), "{data}");
    assert!(!data.contains("hidden@example.net"), "bcc leaked into the message: {data}");
    assert_eq!(env.relay.seen.borrow().mismatch, None);
    assert!(env.relay.wire().ends_with("QUIT\r\n"), "QUIT after the answer");
}

#[test]
fn debug_mode_returns_the_transcript_without_secrets() {
    let env = ScriptedEnv::new(accepting_relay(Some("250 2.0.0 Ok\r\n")), VARS);
    let (response, json) = call(env, request("POST", "/v1/send?debug=1", Some("key-one"), SEND));
    assert_eq!(response.status, 200);
    let transcript = json["transcript"].to_string();
    assert!(transcript.contains("AUTH PLAIN ***") && !transcript.contains("AGRldgBzZWNyZXQ="), "{transcript}");
    assert!(json["round_trips"].as_u64().unwrap() >= 7);
}

#[test]
fn lost_answer_after_the_message_is_delivery_unknown_with_the_message_id() {
    let env = ScriptedEnv::new(accepting_relay(None), VARS);
    let (response, json) = call(env.clone(), request("POST", "/v1/send", Some("key-one"), SEND));
    assert_eq!(response.status, 502);
    assert_eq!(json["error"]["code"], "delivery_unknown");
    assert_eq!(json["error"]["retryable"], false);
    let id = json["error"]["message_id"].as_str().unwrap();
    let data = String::from_utf8(env.relay.seen.borrow().data.clone()).unwrap();
    assert!(data.contains(&format!("Message-ID: {id}\r\n")));
}

#[test]
fn transient_relay_failure_sets_retry_after() {
    let env = ScriptedEnv::new(ScriptedRelay::new(vec![Say("421 4.3.2 shutting down\r\n")]), VARS);
    let (response, json) = call(env, request("POST", "/v1/send", Some("key-one"), SEND));
    assert_eq!(response.status, 503);
    assert_eq!(json["error"]["code"], "relay_busy");
    assert!(response.headers.iter().any(|(name, value)| name == "retry-after" && value == "60"));
}

/// Every request field that reaches a header or an SMTP command, with every way to smuggle a
/// line break into it: each answer is 422 and the relay is never contacted.
#[test]
fn header_injection_in_every_field_is_422_and_nothing_reaches_the_relay() {
    let payloads = [
        "\r\nBcc: v@evil.example",
        "\nBcc: v@evil.example",
        "\rBcc: v@evil.example",
        "\0",
        "=?utf-8?q?=0D=0ABcc:_v@evil.example?=",
        "%0d%0aBcc: v@evil.example",
    ];
    // Each template puts the payload (as JSON string content) into one field.
    let templates: &[(&str, &str)] = &[
        ("from", r#""from": "Eve{P} <noreply@example.com>""#),
        ("from.email", r#""from": {"name": "Eve", "email": "noreply@example.com{P}"}"#),
        ("from.name", r#""from": {"name": "Eve{P}", "email": "noreply@example.com"}"#),
        ("to", r#""to": "a@example.org{P}""#),
        ("to name", r#""to": "Ann{P} <a@example.org>""#),
        ("cc", r#""cc": ["c@example.org{P}"]"#),
        ("bcc", r#""bcc": {"email": "b@example.org{P}"}"#),
        ("reply_to", r#""reply_to": "Rae{P} <r@example.org>""#),
        ("subject", r#""subject": "Hi{P}""#),
        ("header value", r#""headers": {"X-Tag": "v{P}"}"#),
        ("header name", r#""headers": {"X-Tag{P}": "v"}"#),
        ("filename", r#""attachments": [{"filename": "a{P}.txt", "content": "aGk="}]"#),
        (
            "content_type",
            r#""attachments": [{"filename": "a.txt", "content_type": "text/plain{P}", "content": "aGk="}]"#,
        ),
        (
            "content_id",
            r#""html": "<p>x</p>", "attachments": [{"filename": "a.png", "content_id": "logo{P}", "content": "aGk="}]"#,
        ),
        ("dsn envelope_id", r#""dsn": {"envelope_id": "id{P}"}"#),
    ];
    for (field, template) in templates {
        for payload in payloads {
            let escaped = serde_json::to_string(payload).unwrap();
            let escaped = &escaped[1..escaped.len() - 1];
            let extra = template.replace("{P}", escaped);
            let mut body: serde_json::Map<String, Value> = serde_json::from_str(&format!("{{{extra}}}")).unwrap();
            for (key, value) in [("to", "a@example.org"), ("subject", "Hi"), ("text", "body")] {
                body.entry(key).or_insert(Value::String(value.into()));
            }
            let env = no_relay();
            let (response, json) =
                call(env.clone(), request("POST", "/v1/send", Some("key-one"), &Value::Object(body).to_string()));
            assert_eq!(response.status, 422, "{field} with {payload:?}: {json}");
            assert_eq!(json["error"]["code"], "validation_failed");
            assert_eq!(env.relay.seen.borrow().connects, 0, "{field} with {payload:?} reached the relay");
        }
    }
}

fn with_key(req: Req, key: &str) -> Req {
    req.header("Idempotency-Key", key)
}

#[test]
fn idempotent_retry_returns_the_first_answer_and_sends_once() {
    let env = ScriptedEnv::new(accepting_relay(Some("250 2.0.0 Ok: queued as ONCE\r\n")), VARS);
    let send = || with_key(request("POST", "/v1/send", Some("key-one"), SEND), "order-42");
    let (first, first_json) = call(env.clone(), send());
    let (second, second_json) = call(env.clone(), send());
    assert_eq!(first.status, 200);
    assert_eq!((second.status, &second_json), (200, &first_json));
    assert!(second.headers.iter().any(|(n, v)| n == "idempotent-replayed" && v == "true"));
    assert_eq!(env.relay.seen.borrow().connects, 1, "sent twice");
    // Stored for 24 hours, under a hash: neither the API key nor the Idempotency-Key in clear.
    let keys = env.keys.borrow();
    let (store_key, record) = keys.iter().next().unwrap();
    let record = record.clone().unwrap();
    let ttl = (record.expires_at_ms - crate::support::virtual_now()) / 1000;
    let record = serde_json::to_string(&record).unwrap();
    assert!((86_390..=86_400).contains(&ttl), "kept 24 hours: {ttl} s");
    assert!(!store_key.contains("order-42") && !store_key.contains("key-one"));
    assert!(!record.contains("key-one"));

    // The same key with another body is a conflict; another API key has its own namespace.
    drop(keys);
    let other = with_key(request("POST", "/v1/send", Some("key-one"), &SEND.replace("Hello", "Bye")), "order-42");
    let (response, json) = call(env.clone(), other);
    assert_eq!((response.status, json["error"]["code"].as_str()), (409, Some("idempotency_conflict")));
    assert_eq!(env.relay.seen.borrow().connects, 1);
}

#[test]
fn failed_send_releases_the_key_so_a_retry_can_send() {
    let env = ScriptedEnv::new(ScriptedRelay::new(vec![Say("421 4.3.2 busy\r\n")]), VARS);
    let send = || with_key(request("POST", "/v1/send", Some("key-one"), SEND), "retry-me");
    let (first, _) = call(env.clone(), send());
    assert_eq!(first.status, 503);
    assert!(env.keys.borrow().values().all(Option::is_none), "nothing was sent, so the key is free again");
    let (second, _) = call(env.clone(), send());
    assert_eq!(second.status, 503);
    assert_eq!(env.relay.seen.borrow().connects, 2);
}

#[test]
fn delivery_unknown_is_kept_so_a_retry_never_sends_again() {
    let env = ScriptedEnv::new(accepting_relay(None), VARS);
    let send = || with_key(request("POST", "/v1/send", Some("key-one"), SEND), "maybe");
    let (first, first_json) = call(env.clone(), send());
    let (second, second_json) = call(env.clone(), send());
    assert_eq!(first.status, 502);
    assert_eq!(first_json["error"]["code"], "delivery_unknown");
    assert_eq!((second.status, second_json), (502, first_json));
    assert_eq!(env.relay.seen.borrow().connects, 1);
}

#[test]
fn malformed_idempotency_key_is_422() {
    for key in ["", "has space", "ünïcode", &"k".repeat(256)] {
        let env = no_relay();
        let (response, json) = call(env.clone(), with_key(request("POST", "/v1/send", Some("key-one"), SEND), key));
        assert_eq!((response.status, json["error"]["code"].as_str()), (422, Some("validation_failed")), "{key:?}");
        assert_eq!(env.relay.seen.borrow().connects, 0);
    }
}

#[test]
fn request_over_the_configured_limit_is_413() {
    let mut vars = VARS.to_vec();
    vars.push(("MAX_REQUEST_BYTES", "2048"));
    let env = ScriptedEnv::new(ScriptedRelay::new(vec![]), &vars);
    let big = format!(r#"{{"to": "a@example.org", "subject": "x", "text": "{}"}}"#, "y".repeat(3000));
    let (response, json) = call(env.clone(), request("POST", "/v1/send", Some("key-one"), &big));
    assert_eq!((response.status, json["error"]["code"].as_str()), (413, Some("payload_too_large")));
    assert_eq!(env.relay.seen.borrow().connects, 0);
}

/// N requests racing with one key: one claims it and sends; the others are told it is in
/// progress, and nothing is sent twice.
#[test]
fn concurrent_requests_with_one_key_send_once() {
    let env = ScriptedEnv::new(accepting_relay(Some("250 2.0.0 Ok\r\n")), VARS);
    let statuses = crate::support::run(async {
        let all = (0..20).map(|_| async {
            let req = with_key(request("POST", "/v1/send", Some("key-one"), SEND), "race");
            crate::support::serve_now(&env, req.head, edge_mailer::http::body::WholeBody::new(req.body)).await.0.status
        });
        futures_util::future::join_all(all).await
    });
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 409), "{statuses:?}");
    assert_eq!(env.relay.seen.borrow().connects, 1);
}

/// The slowest relay the default timeouts allow: every write and every reply of a lock-step
/// session with STARTTLS, AUTH LOGIN and two recipients waits until just before its timeout.
/// The idempotency claim must still be alive when the answer is stored.
#[test]
fn the_idempotency_claim_outlives_the_slowest_send_the_timeouts_allow() {
    const C: u64 = 30_000 - 50; // just under SMTP_COMMAND_TIMEOUT_MS's default
    const D: u64 = 60_000 - 50; // just under SMTP_DATA_TIMEOUT_MS's default
    let exchange = |expect: &'static str, say: &'static str| [Pause(C), Expect(expect), Pause(C), Say(say)];
    let mut script = vec![Pause(C), Say("220 relay.test ESMTP\r\n")];
    script.extend(exchange("EHLO example.com\r\n", "250-relay.test\r\n250 STARTTLS\r\n"));
    script.extend(exchange("STARTTLS\r\n", "220 go\r\n"));
    script.extend(exchange("EHLO example.com\r\n", "250-relay.test\r\n250 AUTH LOGIN\r\n"));
    script.extend(exchange("AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n"));
    script.extend(exchange("ZGV2\r\n", "334 UGFzc3dvcmQ6\r\n"));
    script.extend(exchange("c2VjcmV0\r\n", "235 2.7.0 ok\r\n"));
    script.extend(exchange("MAIL FROM:<noreply@example.com>\r\n", "250 2.1.0 Ok\r\n"));
    script.extend(exchange("RCPT TO:<a@example.org>\r\n", "250 2.1.5 Ok\r\n"));
    script.extend(exchange("RCPT TO:<hidden@example.net>\r\n", "250 2.1.5 Ok\r\n"));
    script.extend(exchange("DATA\r\n", "354 go\r\n"));
    script.extend([Pause(D), ExpectData, Pause(D), Say("250 2.0.0 Ok\r\n"), Expect("QUIT\r\n"), Say("221 Bye\r\n")]);
    let mut relay = ScriptedRelay::new(script);
    // A tiny socket buffer: a write waits until the relay reads, as on a real connection.
    relay.buffer = 4;
    relay.handshake_delay = 10_000 - 50; // connect (SMTP_CONNECT_TIMEOUT_MS) and the TLS handshake
    let mut vars = VARS.to_vec();
    vars.push(("SMTP_AUTH", "auto"));
    let env = ScriptedEnv::new(relay, &vars);
    let (response, json) = call(env.clone(), with_key(request("POST", "/v1/send", Some("key-one"), SEND), "slow"));
    assert_eq!(response.status, 200, "{json}");
    assert_eq!(env.relay.seen.borrow().mismatch, None);
    let calls = env.key_calls.borrow();
    let (claim, answer) = (&calls[0], &calls[1]);
    let edge_mailer::delivery::idempotency::KeyCall::Begin { pending_ms, .. } = claim.0 else { panic!("{calls:?}") };
    let took_ms = answer.1 - claim.1;
    assert!(took_ms > 20 * C, "the relay was not slow: {took_ms} ms");
    assert!(pending_ms > took_ms, "the claim ({pending_ms} ms) expired before the answer was stored ({took_ms} ms)");
    let key = env.keys.borrow().values().next().cloned().flatten().unwrap();
    assert!(key.answer.is_some(), "the answer was kept, so a retry gets it");
}

/// A body that arrives in pieces, each after `gap_ms` of virtual time.
struct Trickle {
    pieces: Vec<Vec<u8>>,
    gap_ms: u64,
}

impl BodySource for Trickle {
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ()> {
        tokio::time::sleep(std::time::Duration::from_millis(self.gap_ms)).await;
        Ok(if self.pieces.is_empty() { None } else { Some(self.pieces.remove(0)) })
    }
}

#[test]
fn a_body_is_read_only_after_the_key_and_only_up_to_the_limit() {
    let mut vars = VARS.to_vec();
    vars.push(("MAX_REQUEST_BYTES", "2048"));
    vars.push(("REQUEST_BODY_TIMEOUT_MS", "5000"));
    let env = ScriptedEnv::new(ScriptedRelay::new(vec![]), &vars);
    let endless = || Trickle { pieces: vec![vec![b' '; 1024]; 100_000], gap_ms: 0 };
    // No key: refused before a byte is read (the body would take 100 MB).
    let mut head = request("POST", "/v1/send", None, "").head;
    let (response, json) = call_with_body(&env, head.clone(), endless());
    assert_eq!((response.status, json["error"]["code"].as_str()), (401, Some("unauthorized")));
    // A wrong key with an oversized body is told about the key, not the size: the key is
    // checked before Content-Length is.
    let mut wrong = head.clone();
    wrong.headers.push(("authorization".into(), "Bearer not-a-key".into()));
    wrong.headers.push(("content-length".into(), "104857600".into()));
    let (response, json) = call_with_body(&env, wrong, Trickle { pieces: vec![], gap_ms: 0 });
    assert_eq!((response.status, json["error"]["code"].as_str()), (401, Some("unauthorized")));
    // With a key: the count stops at the limit, chunked (no Content-Length) or not.
    head.headers.push(("authorization".into(), "Bearer key-one".into()));
    let (response, json) = call_with_body(&env, head.clone(), endless());
    assert_eq!((response.status, json["error"]["code"].as_str()), (413, Some("payload_too_large")));
    let mut declared = head.clone();
    declared.headers.push(("content-length".into(), "104857600".into()));
    let (response, _) = call_with_body(&env, declared, Trickle { pieces: vec![], gap_ms: 0 });
    assert_eq!(response.status, 413);
    // A body that trickles in slower than REQUEST_BODY_TIMEOUT_MS.
    let slow = Trickle { pieces: vec![b"{".to_vec(); 10], gap_ms: 1_000 };
    let (response, json) = call_with_body(&env, head, slow);
    assert_eq!((response.status, json["error"]["code"].as_str()), (408, Some("request_timeout")));
    assert_eq!(env.relay.seen.borrow().connects, 0);
}

/// An error answer lists at most 20 details and counts the rest (`details_omitted`), however
/// many items of the request are bad: a thousand bad addresses draw a small answer.
#[test]
fn a_thousand_bad_items_answer_twenty_details_and_the_count_of_the_rest() {
    let bad: Vec<String> = (0..1000).map(|i| format!("not-an-address-{i}")).collect();
    let body = serde_json::json!({"to": bad, "cc": bad, "subject": "x", "text": "y"}).to_string();
    let env = no_relay();
    let (response, json) = call(env.clone(), request("POST", "/v1/send", Some("key-one"), &body));
    assert_eq!((response.status, json["error"]["code"].as_str()), (422, Some("validation_failed")));
    let details = json["error"]["details"].as_array().unwrap();
    assert_eq!(details.len(), 20, "{json}");
    // The count comes first (the cap never hides it), then the addresses in order.
    assert_eq!(details[0]["message"], "2000 recipients; at most 50 are allowed");
    assert_eq!(details[1]["field"], "to[0]");
    // Of each list, the first 50 were read (and found bad), the rest counted by the recipients
    // check: 100 addresses and one count, of which 20 are listed.
    assert_eq!(json["error"]["details_omitted"], 81, "{json}");
    assert!(json["error"]["message"].as_str().unwrap().ends_with("; and 81 more"), "{json}");
    assert!(response.body.len() < 4096, "a small answer: {} bytes", response.body.len());
    assert_eq!(env.relay.seen.borrow().connects, 0);

    // A single bad field: no count.
    let (_, json) = call(no_relay(), request("POST", "/v1/send", Some("key-one"), r#"{"to": "x", "text": "y"}"#));
    assert!(json["error"].get("details_omitted").is_none(), "{json}");

    // /emails/batch, strict: the refused emails by index, the first 20, then how many more.
    let emails: Vec<Value> = (0..100).map(|_| serde_json::json!({"to": "x", "subject": "s", "text": "t"})).collect();
    let req = request("POST", "/emails/batch", Some("key-one"), &Value::Array(emails).to_string());
    let (response, json) = call(no_relay(), req);
    assert_eq!(response.status, 422, "{json}");
    let message = json["message"].as_str().unwrap();
    assert!(message.contains("emails[19]") && !message.contains("emails[20]"), "{message}");
    assert!(message.ends_with("; and 80 more"), "{message}");
}

/// The delivery mode is part of what an Idempotency-Key stands for: a sync send replayed with
/// `Prefer: respond-async` (or under another `DELIVERY_MODE`) is a conflict, not the sync
/// answer given where a 202 was asked, and nothing is sent or queued again.
#[test]
fn an_idempotency_key_replayed_with_another_delivery_mode_is_a_conflict() {
    let env = ScriptedEnv::new(accepting_relay(Some("250 2.0.0 Ok: queued as ONCE\r\n")), VARS);
    let send = || with_key(request("POST", "/v1/send", Some("key-one"), SEND), "mode-1");
    let (first, _) = call(env.clone(), send());
    assert_eq!(first.status, 200);
    // The forged replay: same key, same body, another mode.
    let (response, json) = call(env.clone(), send().header("Prefer", "respond-async"));
    assert_eq!((response.status, json["error"]["code"].as_str()), (409, Some("idempotency_conflict")), "{json}");
    assert!(env.queue.borrow().is_empty(), "queued after all");
    // The same mode still replays.
    let (again, _) = call(env.clone(), send());
    assert_eq!(again.status, 200);
    assert!(again.headers.iter().any(|(n, v)| n == "idempotent-replayed" && v == "true"));
    assert_eq!(env.relay.seen.borrow().connects, 1, "sent twice");

    // Queued first (Prefer), then asked in sync: a conflict too; asked queued again: the 202.
    let queued =
        || with_key(request("POST", "/v1/send", Some("key-one"), SEND), "mode-2").header("Prefer", "respond-async");
    let (first, first_json) = call(env.clone(), queued());
    assert_eq!(first.status, 202, "{first_json}");
    let (response, json) = call(env.clone(), with_key(request("POST", "/v1/send", Some("key-one"), SEND), "mode-2"));
    assert_eq!((response.status, json["error"]["code"].as_str()), (409, Some("idempotency_conflict")), "{json}");
    let (again, again_json) = call(env.clone(), queued());
    assert_eq!((again.status, &again_json), (202, &first_json));
    assert_eq!(env.queue.borrow().len(), 1, "queued once");
    assert_eq!(env.relay.seen.borrow().connects, 1);

    // The deployment's DELIVERY_MODE counts the same way: under DELIVERY_MODE=queue, the key
    // of a sync send (no Prefer either time) is a conflict.
    let mut vars = VARS.to_vec();
    vars.push(("DELIVERY_MODE", "queue"));
    let mut queue_mode = ScriptedEnv::new(ScriptedRelay::new(vec![]), &vars);
    queue_mode.keys = env.keys.clone();
    let (response, json) = call(queue_mode.clone(), send());
    assert_eq!((response.status, json["error"]["code"].as_str()), (409, Some("idempotency_conflict")), "{json}");
    assert!(queue_mode.queue.borrow().is_empty());
}
