//! Debug answers and the demo's routes stay local (issue 29, point 4): the SMTP transcript,
//! round trips, session and `wasm_memory_bytes` go only to a request with a valid API key, or
//! to the local demo's (`DEMO_INBOX_URL` set and `CF-Connecting-IP` a loopback address);
//! `/v1/demo/*` answers only the local demo, and returns only messages the demo sent itself.

use serde_json::Value;

use crate::support::{call, chunking_opening, relay_vars, Req, ScriptedEnv, ScriptedRelay, Step::*, AUTH_DEV_SECRET};

const INBOX: &str = "http://127.0.0.1:9/message";
const FORMS: &str = r#"{"demo": {"to": "demo@example.org", "debug": true, "delivery": "sync"},
    "plain": {"to": "owner@example.org", "debug": false, "delivery": "sync"}}"#;

/// A relay that accepts every message, one session per send.
fn accepting() -> ScriptedRelay {
    let mut script = chunking_opening(AUTH_DEV_SECRET);
    script.extend([
        ExpectChunked,
        Say("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued\r\n"),
        Expect("QUIT\r\n"),
        Say("221 Bye\r\n"),
    ]);
    ScriptedRelay::new(script)
}

fn demo_env(relay: ScriptedRelay, inbox: bool) -> ScriptedEnv {
    let mut extra = vec![("SMTP_SESSIONS", "0"), ("FORMS", FORMS)];
    if inbox {
        extra.push(("DEMO_INBOX_URL", INBOX));
    }
    ScriptedEnv::new(relay, &relay_vars(&extra))
}

fn with(mut req: Req, headers: &[(&str, &str)]) -> Req {
    for (name, value) in headers {
        req = req.header(name, value);
    }
    req
}

fn form_post(form: &str, headers: &[(&str, &str)]) -> Req {
    let req = Req::new("POST", &format!("/v1/forms/{form}?debug=1"), r#"{"name": "Ada", "message": "hi"}"#)
        .header("content-type", "application/json")
        .header("accept", "application/json");
    with(req, headers)
}

type Header = (&'static str, &'static str);

const DEBUG_FIELDS: [&str; 4] = ["transcript", "round_trips", "session", "wasm_memory_bytes"];

fn debug_fields(json: &Value) -> Vec<&'static str> {
    DEBUG_FIELDS.into_iter().filter(|f| json.get(f).is_some()).collect()
}

const OUTSIDE: (&str, &str) = ("cf-connecting-ip", "203.0.113.9");
const LOOPBACK: (&str, &str) = ("cf-connecting-ip", "127.0.0.1");

/// A form's answer without the id of the message's record (a UUID, always there).
fn without_id(json: &serde_json::Value) -> serde_json::Value {
    let mut json = json.clone();
    let id = json.as_object_mut().and_then(|o| o.remove("id"));
    assert!(id.as_ref().and_then(|id| id.as_str()).is_some_and(|id| id.len() == 36), "{id:?}");
    json
}

#[test]
fn a_forms_debug_answer_needs_a_valid_key_or_the_local_demo() {
    // (DEMO_INBOX_URL set, the request's headers, debug fields shown)
    let cases: [(bool, &[Header], bool); 9] = [
        (false, &[], false),
        (true, &[], false),
        (true, &[OUTSIDE], false),
        (false, &[LOOPBACK], false),
        (true, &[("cf-connecting-ip", "not an address")], false),
        (true, &[OUTSIDE, ("authorization", "Bearer wrong")], false),
        (false, &[OUTSIDE, ("authorization", "Bearer key-one")], true),
        (true, &[LOOPBACK], true),
        (true, &[("cf-connecting-ip", "::1")], true),
    ];
    for (inbox, headers, shown) in cases {
        let env = demo_env(accepting(), inbox);
        let (response, json) = call(&env, form_post("demo", headers));
        assert_eq!(response.status, 200, "{headers:?}: {json}");
        let expected: Vec<&str> = if shown { DEBUG_FIELDS.to_vec() } else { Vec::new() };
        assert_eq!(debug_fields(&json), expected, "inbox {inbox}, {headers:?}: {json}");
        if !shown {
            assert_eq!(without_id(&json), serde_json::json!({"ok": true}), "{headers:?}");
        }
    }
    // A form without "debug": true shows nothing, even to a key.
    let env = demo_env(accepting(), true);
    let (_, json) = call(&env, form_post("plain", &[LOOPBACK, ("authorization", "Bearer key-one")]));
    assert_eq!(without_id(&json), serde_json::json!({"ok": true}));

    // A failed send: the error, and the conversation only for a key.
    for (headers, shown) in [(&[OUTSIDE][..], false), (&[OUTSIDE, ("authorization", "Bearer key-one")][..], true)] {
        let env = demo_env(ScriptedRelay::new(vec![Say("421 4.3.2 busy\r\n")]), true);
        let (response, json) = call(&env, form_post("demo", headers));
        assert_eq!((response.status, json["error"]["code"].as_str()), (503, Some("relay_busy")), "{json}");
        assert_eq!(json.get("transcript").is_some(), shown, "{headers:?}: {json}");
        assert_eq!(json.get("wasm_memory_bytes").is_some(), shown, "{headers:?}: {json}");
    }
}

fn get(path: &str, headers: &[(&str, &str)]) -> Req {
    with(Req::new("GET", path, Vec::new()), headers)
}

fn message_path(id: &str) -> String {
    format!("/v1/demo/message?{}", form_urlencoded::Serializer::new(String::new()).append_pair("id", id).finish())
}

#[test]
fn the_demo_routes_answer_only_the_local_demo() {
    // GET /v1/demo tells the page whether it may use them.
    let env = demo_env(ScriptedRelay::new(vec![]), true);
    let (_, json) = call(&env, get("/v1/demo", &[OUTSIDE]));
    assert_eq!(
        (json["form"].as_str(), &json["inbox"], &json["relay_check"]),
        (Some("demo"), &Value::Bool(false), &Value::Bool(false))
    );
    let (_, json) = call(&env, get("/v1/demo", &[LOOPBACK]));
    assert_eq!((&json["inbox"], &json["relay_check"]), (&Value::Bool(true), &Value::Bool(true)));

    // The relay check without a key: from loopback with the demo configured, nowhere else.
    for (inbox, headers) in [(true, &[OUTSIDE][..]), (true, &[][..]), (false, &[LOOPBACK][..])] {
        let env = demo_env(ScriptedRelay::new(vec![]), inbox);
        let (response, json) = call(&env, with(Req::new("POST", "/v1/demo/relay-check", Vec::new()), headers));
        assert_eq!((response.status, json["error"]["code"].as_str()), (404, Some("not_found")), "{headers:?}: {json}");
        assert_eq!(env.relay.seen.borrow().connects, 0);
    }
    let env = demo_env(ScriptedRelay::new(chunking_opening(AUTH_DEV_SECRET)), true);
    let (response, json) =
        call(&env, Req::new("POST", "/v1/demo/relay-check", Vec::new()).header(LOOPBACK.0, LOOPBACK.1));
    assert_eq!(response.status, 200, "{json}");
    assert_eq!(env.relay.seen.borrow().connects, 1);
}

#[test]
fn the_demo_returns_only_messages_it_sent_itself() {
    let env = demo_env(accepting(), true);
    *env.post_answer.borrow_mut() = (200, "Subject: the received message\r\n\r\nhi\r\n".into());
    let fetched = || env.posted.borrow().iter().filter(|(url, _)| url.starts_with(INBOX)).count();

    // Any id from outside: 404, and the inbox is not asked.
    let (response, _) = call(&env, get(&message_path("<any@example.com>"), &[OUTSIDE]));
    assert_eq!(response.status, 404);
    // From loopback, an id the demo never sent: 404 too.
    let (response, json) = call(&env, get(&message_path("<any@example.com>"), &[LOOPBACK]));
    assert_eq!(
        (response.status, json["error"]["message"].as_str()),
        (404, Some("the demo sent no message with this id"))
    );
    // A message the demo form sent for someone outside (shown to them by their key) was not
    // the local demo's: not returned.
    let (_, json) = call(&env, form_post("demo", &[OUTSIDE, ("authorization", "Bearer key-one")]));
    let theirs = json["message_id"].as_str().expect("a debug answer has the Message-ID").to_string();
    let (response, _) = call(&env, get(&message_path(&theirs), &[LOOPBACK]));
    assert_eq!(response.status, 404);
    assert_eq!(fetched(), 0, "the inbox was asked");

    // The local demo's own send: returned, from loopback only.
    let (_, json) = call(&env, form_post("demo", &[LOOPBACK]));
    let ours = json["message_id"].as_str().expect("the local demo's answer has the Message-ID").to_string();
    assert_ne!(ours, theirs);
    let (response, _) = call(&env, get(&message_path(&ours), &[OUTSIDE]));
    assert_eq!(response.status, 404);
    let (response, _) = call(&env, get(&message_path(&ours), &[LOOPBACK]));
    assert_eq!(response.status, 200);
    assert_eq!(String::from_utf8_lossy(&response.body), "Subject: the received message\r\n\r\nhi\r\n");
    assert_eq!(fetched(), 1);
}
