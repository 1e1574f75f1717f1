//! The suppression list natively: its routes, and every send path leaving its addresses out
//! (all of them suppressed: 422 and nothing at the relay; some: the others get the message).

use serde_json::{json, Value};

use crate::support::{
    call, chunking_opening, post_json, relay_vars, Req, ScriptedEnv, ScriptedRelay, Step, Step::*, AUTH_DEV_SECRET,
};
use edge_mailer::delivery::queue::deliver_batch;
use edge_mailer::delivery::suppression::{self, Reason, Suppression};

fn env_with(script: Vec<Step>, extra: &[(&'static str, &'static str)]) -> ScriptedEnv {
    let mut vars = relay_vars(&[("SMTP_SESSIONS", "0")]);
    vars.extend_from_slice(extra);
    ScriptedEnv::new(ScriptedRelay::new(script), &vars)
}

fn no_relay() -> ScriptedEnv {
    env_with(Vec::new(), &[])
}

fn api(env: &ScriptedEnv, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let mut req = Req::new(method, path, body).header("authorization", "Bearer key-one");
    if method == "POST" {
        req = req.header("content-type", "application/json");
    }
    let (response, json) = call(env, req);
    (response.status, json)
}

fn send(env: &ScriptedEnv, to: Value, queued: bool) -> (u16, Value) {
    post_json(env, "/v1/send", &json!({"to": to, "subject": "Hi", "text": "Hello"}), queued)
}

fn suppress(env: &ScriptedEnv, address: &str, created_at: u64) {
    let entry = Suppression {
        address: suppression::key(address).unwrap(),
        reason: Reason::Bounce,
        detail: Some("5.1.1 no such user".into()),
        message_id: None,
        created_at,
    };
    env.suppressions.borrow_mut().push((suppression::shard_of(&entry.address), entry));
}

#[test]
fn an_address_is_added_once_found_by_any_case_of_its_domain_and_removed() {
    let env = no_relay();
    let (status, added) = api(&env, "POST", "/v1/suppressions", Some(json!({"address": "Jane@Example.ORG"})));
    assert_eq!(status, 201, "{added}");
    assert_eq!((added["address"].as_str(), added["reason"].as_str()), (Some("Jane@example.org"), Some("manual")));
    let again = json!({"address": "Jane@example.org", "reason": "complaint", "detail": "later"});
    let (status, kept) = api(&env, "POST", "/v1/suppressions", Some(again));
    assert_eq!((status, &kept), (200, &added), "the first entry stays as it was");

    for path in ["/v1/suppressions/Jane@EXAMPLE.org", "/v1/suppressions/Jane%40example.org"] {
        let (status, found) = api(&env, "GET", path, None);
        assert_eq!((status, &found), (200, &added), "{path}");
    }
    let (status, missing) = api(&env, "GET", "/v1/suppressions/jane@example.org", None);
    assert_eq!((status, missing["error"]["code"].as_str()), (404, Some("not_found")), "the local part is exact");

    let (status, deleted) = api(&env, "DELETE", "/v1/suppressions/jane%40EXAMPLE.org", None);
    assert_eq!((status, deleted["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, deleted) = api(&env, "DELETE", "/v1/suppressions/Jane%40EXAMPLE.org", None);
    assert_eq!((status, deleted), (200, json!({"address": "Jane@example.org", "deleted": true})));
    assert_eq!(api(&env, "GET", "/v1/suppressions/Jane@example.org", None).0, 404);
}

#[test]
fn the_routes_need_the_key_and_refuse_what_is_no_address_or_reason() {
    let env = no_relay();
    for (method, path) in
        [("GET", "/v1/suppressions"), ("GET", "/v1/suppressions/a@b.org"), ("DELETE", "/v1/suppressions/a@b.org")]
    {
        let (response, json) = call(&env, Req::new(method, path, Vec::new()));
        assert_eq!((response.status, json["error"]["code"].as_str()), (401, Some("unauthorized")), "{method} {path}");
    }
    let post = Req::new("POST", "/v1/suppressions", json!({"address": "a@b.org"}).to_string());
    assert_eq!(call(&env, post).0.status, 401);
    assert!(env.suppressions.borrow().is_empty());

    let field = |json: &Value| json["error"]["details"][0]["field"].as_str().map(str::to_string);
    for (body, bad) in [
        (json!({"address": "not an address"}), "address"),
        (json!({"address": "a@b.org", "reason": "spam"}), "reason"),
        (json!({"address": "a@b.org", "detail": "x".repeat(501)}), "detail"),
    ] {
        let (status, json) = api(&env, "POST", "/v1/suppressions", Some(body));
        assert_eq!((status, field(&json).as_deref()), (422, Some(bad)), "{json}");
    }
    let (status, json) = api(&env, "POST", "/v1/suppressions", Some(json!({"address": "a@b.org", "why": 1})));
    assert_eq!((status, json["error"]["code"].as_str()), (422, Some("validation_failed")), "{json}");
    let (status, json) = api(&env, "POST", "/v1/suppressions", Some(json!(["a@b.org"])));
    assert_eq!((status, json["error"]["code"].as_str()), (422, Some("validation_failed")), "{json}");
    let (response, json) =
        call(&env, Req::new("POST", "/v1/suppressions", "{").header("authorization", "Bearer key-one"));
    assert_eq!((response.status, json["error"]["code"].as_str()), (400, Some("invalid_request")), "{json}");
    assert_eq!(api(&env, "GET", "/v1/suppressions/nobody", None).0, 422);
    assert_eq!(api(&env, "GET", "/v1/suppressions?limit=0", None).0, 422);
    assert_eq!(api(&env, "GET", "/v1/suppressions?after=x", None).0, 422);
    assert_eq!(api(&env, "PUT", "/v1/suppressions/a@b.org", None).0, 405);
    assert!(env.suppressions.borrow().is_empty());
}

#[test]
fn the_list_pages_newest_first_over_every_object() {
    let env = no_relay();
    // Many in one millisecond: the address breaks the tie, so pages neither skip nor repeat.
    for n in 0..40u64 {
        suppress(&env, &format!("user{n}@example.org"), 1_000 + n / 3);
    }
    let objects: std::collections::HashSet<u8> = env.suppressions.borrow().iter().map(|(s, _)| *s).collect();
    assert!(objects.len() > 8, "spread over the objects: {objects:?}");
    let mut expected: Vec<(u64, String)> =
        env.suppressions.borrow().iter().map(|(_, e)| (e.created_at, e.address.clone())).collect();
    expected.sort_by(|a, b| b.cmp(a));
    for limit in [1, 7, 40, 100] {
        let (mut seen, mut after) = (Vec::new(), None::<String>);
        loop {
            let mut path = format!("/v1/suppressions?limit={limit}");
            if let Some(after) = &after {
                path += &format!("&after={}", form_urlencoded::byte_serialize(after.as_bytes()).collect::<String>());
            }
            let (status, page) = api(&env, "GET", &path, None);
            assert_eq!(status, 200, "{page}");
            // The same page, asked with the cursor (an address) in a body instead.
            let body = json!({"limit": limit, "after": after});
            assert_eq!(api(&env, "POST", "/v1/suppressions/list", Some(body)), (200, page.clone()));
            let entries = page["suppressions"].as_array().unwrap();
            assert!(entries.len() <= limit);
            seen.extend(
                entries.iter().map(|e| (e["created_at"].as_u64().unwrap(), e["address"].as_str().unwrap().to_string())),
            );
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, expected, "limit {limit}");
    }
}

fn relay_taking_one(rcpt_replies: &'static str) -> Vec<Step> {
    let mut script = chunking_opening(AUTH_DEV_SECRET);
    script.extend([ExpectChunked, Say(rcpt_replies), Expect("QUIT\r\n"), Say("221 Bye\r\n")]);
    script
}

const OK_ONE: &str = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: queued as Q1\r\n";

#[test]
fn a_send_to_suppressed_addresses_only_is_422_and_nothing_reaches_the_relay() {
    for queued in [false, true] {
        let env = no_relay();
        suppress(&env, "gone@Example.org", 1);
        suppress(&env, "left@example.org", 2);
        let (status, json) = send(&env, json!(["gone@example.ORG", "left@example.org"]), queued);
        assert_eq!(status, 422, "{json}");
        assert_eq!(json["error"]["code"], "recipient_suppressed");
        assert_eq!(json["error"]["details"].as_array().map(Vec::len), Some(2), "{json}");
        assert_eq!(env.relay.seen.borrow().connects, 0);
        assert!(env.bodies.borrow().is_empty() && env.queue.borrow().is_empty() && env.ledger.borrow().is_empty());
    }
}

#[test]
fn the_others_get_the_message_and_the_suppressed_are_rejected_with_the_code() {
    let env = env_with(relay_taking_one(OK_ONE), &[]);
    suppress(&env, "gone@example.org", 1);
    let (status, json) = send(&env, json!(["gone@EXAMPLE.org", "here@example.org"]), false);
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["accepted"], json!(["here@example.org"]));
    assert_eq!(
        json["rejected"],
        json!([{"email": "gone@EXAMPLE.org", "code": "recipient_suppressed", "retryable": false}])
    );
    let wire = env.relay.wire();
    assert!(wire.contains("RCPT TO:<here@example.org>") && !wire.to_lowercase().contains("rcpt to:<gone@"), "{wire}");
    assert!(wire.contains("To: <gone@EXAMPLE.org>, <here@example.org>"), "the headers still name both: {wire}");
}

#[test]
fn a_queued_message_keeps_its_suppressed_recipient_in_rejected() {
    let env = env_with(relay_taking_one(OK_ONE), &[]);
    suppress(&env, "gone@example.org", 1);
    let (status, json) = send(&env, json!(["gone@example.org", "here@example.org"]), true);
    assert_eq!(status, 202, "{json}");
    let id = json["id"].as_str().unwrap().to_string();
    let ids: Vec<String> = env.queue.borrow_mut().drain(..).map(|(id, _)| id).collect();
    let config = env.config().unwrap();
    crate::support::run(deliver_batch(&env, &config, &ids));
    let (_, record) = api(&env, "GET", &format!("/v1/messages/{id}"), None);
    assert_eq!(record["status"], "sent", "{record}");
    assert_eq!(record["accepted"], json!(["here@example.org"]));
    assert_eq!(record["rejected"][0]["code"], "recipient_suppressed", "{record}");
}

#[test]
fn a_list_that_cannot_be_asked_stops_the_send() {
    let env = no_relay();
    *env.suppression_list_down.borrow_mut() = true;
    for queued in [false, true] {
        let (status, json) = send(&env, json!("a@example.org"), queued);
        assert_eq!((status, json["error"]["code"].as_str()), (503, Some("storage_unavailable")), "{json}");
    }
    assert_eq!(env.relay.seen.borrow().connects, 0);
    assert_eq!(api(&env, "GET", "/v1/suppressions", None).0, 503);
}

#[test]
fn a_send_asks_each_object_once_for_all_its_recipients() {
    let env = env_with(relay_taking_one("250 2.1.0 Ok\r\n250 Ok\r\n250 Ok\r\n250 Ok\r\n250 2.0.0 queued\r\n"), &[]);
    let (status, json) = send(&env, json!(["a@example.org", "b@example.org", "c@example.org"]), false);
    assert_eq!(status, 200, "{json}");
    let mut asked = env.suppression_checks.borrow().clone();
    let count = asked.len();
    asked.dedup();
    assert_eq!(asked.len(), count, "no object asked twice");
    let shards: std::collections::HashSet<u8> =
        ["a@example.org", "b@example.org", "c@example.org"].iter().map(|a| suppression::shard_of(a)).collect();
    assert_eq!(count, shards.len());
}

/// `POST /v1/suppressions/delete` with `{"address"}`: the DELETE route's work with the address
/// out of the URL (the dashboard's button).
#[test]
fn an_address_is_removed_by_a_body_that_names_it() {
    let env = no_relay();
    assert_eq!(api(&env, "POST", "/v1/suppressions", Some(json!({"address": "Jane@Example.ORG"}))).0, 201);
    let (status, deleted) = api(&env, "POST", "/v1/suppressions/delete", Some(json!({"address": "Jane@EXAMPLE.org"})));
    assert_eq!((status, deleted), (200, json!({"address": "Jane@example.org", "deleted": true})));
    let (status, again) = api(&env, "POST", "/v1/suppressions/delete", Some(json!({"address": "Jane@example.org"})));
    assert_eq!((status, again["error"]["code"].as_str()), (404, Some("not_found")));
    for bad in [json!({"address": "nobody"}), json!({"email": "a@b.org"}), json!({})] {
        let (status, json) = api(&env, "POST", "/v1/suppressions/delete", Some(bad.clone()));
        assert_eq!((status, json["error"]["code"].as_str()), (422, Some("validation_failed")), "{bad}: {json}");
    }
    assert_eq!(api(&env, "GET", "/v1/suppressions/delete", None).0, 405);
    assert_eq!(api(&env, "GET", "/v1/suppressions/list", None).0, 405);
    for bad in [json!({"limit": 0}), json!({"after": "nobody"}), json!({"next": "x"})] {
        let (status, json) = api(&env, "POST", "/v1/suppressions/list", Some(bad.clone()));
        assert_eq!((status, json["error"]["code"].as_str()), (422, Some("validation_failed")), "{bad}: {json}");
    }
    let (response, _) = call(&env, Req::new("POST", "/v1/suppressions/delete", b"{\"address\":\"a@b.org\"}".to_vec()));
    assert_eq!(response.status, 401);
}

#[test]
fn a_deployment_without_the_list_is_told_its_binding_is_missing() {
    let env = no_relay();
    env.unbound.borrow_mut().push(edge_mailer::delivery::env::Store::SuppressionList);
    let (status, json) = api(&env, "GET", "/v1/suppressions", None);
    assert_eq!((status, json["error"]["code"].as_str()), (500, Some("misconfigured")), "{json}");
    assert!(json["error"]["message"].as_str().unwrap().contains("SUPPRESSION_LIST"), "{json}");
    *env.suppression_list_down.borrow_mut() = true;
    env.unbound.borrow_mut().clear();
    let (status, json) = api(&env, "GET", "/v1/suppressions", None);
    assert_eq!((status, json["error"]["code"].as_str()), (503, Some("storage_unavailable")), "a bound list that fails");
}
