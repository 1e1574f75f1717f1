//! `POST /v1/relay/check` natively: every step of opening a session with its reply, the
//! capabilities offered over TLS, a QUIT and no mail; a refused AUTH ends the list there.

use serde_json::Value;

use crate::support::{call, chunking_opening, relay_vars, Req, ScriptedEnv, ScriptedRelay, Step::*, AUTH_DEV_SECRET};

fn check(env: &ScriptedEnv) -> (u16, Value) {
    let (response, json) =
        call(env, Req::new("POST", "/v1/relay/check", Vec::new()).header("authorization", "Bearer key-one"));
    (response.status, json)
}

fn names(answer: &Value) -> Vec<(String, bool)> {
    let steps = answer["steps"].as_array().unwrap();
    steps.iter().map(|s| (s["step"].as_str().unwrap().to_string(), s["ok"].as_bool().unwrap())).collect()
}

#[test]
fn every_step_is_reported_and_the_session_quits_without_mail() {
    let mut script = chunking_opening(AUTH_DEV_SECRET);
    script.extend([Expect("QUIT\r\n"), Say("221 Bye\r\n")]);
    let env = ScriptedEnv::new(ScriptedRelay::new(script), &relay_vars(&[]));
    let (status, answer) = check(&env);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ok"], true);
    let expected = ["connect", "greeting", "ehlo", "starttls", "tls", "ehlo_tls", "auth"];
    assert_eq!(names(&answer), expected.map(|n| (n.to_string(), true)));
    assert_eq!(answer["steps"][1]["reply"], "220 relay.test ESMTP");
    assert_eq!(answer["steps"][6]["reply"], "235 2.7.0 ***");
    assert_eq!(answer["capabilities"], serde_json::json!(["PIPELINING", "CHUNKING", "AUTH PLAIN"]));
    assert_eq!(env.relay.seen.borrow().messages, 0, "no mail");
    assert!(env.relay.wire().ends_with("QUIT\r\n"), "the session QUITs: {}", env.relay.wire());
    assert_eq!(env.relay.seen.borrow().mismatch, None);
    assert!(!answer.to_string().contains("AGRldgBzZWNyZXQ"), "the credentials never show");
}

#[test]
fn a_refused_login_ends_the_list_at_auth_with_its_code() {
    let mut script = chunking_opening(AUTH_DEV_SECRET);
    script.pop();
    script.push(Say("535 5.7.8 Authentication credentials invalid\r\n"));
    let env = ScriptedEnv::new(ScriptedRelay::new(script), &relay_vars(&[]));
    let (status, answer) = check(&env);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ok"], false);
    let last = answer["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["step"].as_str(), last["ok"].as_bool()), (Some("auth"), Some(false)), "{answer}");
    assert_eq!(last["code"], "relay_auth_failed");
    assert_eq!(last["reply"], "535 5.7.8 ***");
}

#[test]
fn the_check_needs_the_api_key() {
    let env = ScriptedEnv::new(ScriptedRelay::new(vec![]), &relay_vars(&[]));
    let (response, json) = call(&env, Req::new("POST", "/v1/relay/check", Vec::new()));
    assert_eq!((response.status, json["error"]["code"].as_str()), (401, Some("unauthorized")));
    assert_eq!(env.relay.seen.borrow().connects, 0);
}
