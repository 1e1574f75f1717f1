//! The forms handler natively: what reaches the relay, and what never does.

use edge_mailer::http::{Field, FieldValue};
use serde_json::Value;

use crate::support::{call, Req, ScriptedEnv, ScriptedRelay};

fn vars(forms: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SMTP_HOST", "relay.test".into()),
        ("SMTP_SESSIONS", "0".into()),
        ("MAIL_FROM", "Site <noreply@example.com>".into()),
        ("FORMS", forms.into()),
        ("TURNSTILE_SECRET", "s3cret".into()),
        ("TURNSTILE_VERIFY_URL", "https://verify.test/siteverify".into()),
    ]
}

fn scripted(forms: &str) -> ScriptedEnv {
    let owned = vars(forms);
    let pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ScriptedEnv::new(ScriptedRelay::new(vec![]), &pairs)
}

fn post(form: &str, fields: Vec<Field>) -> Req {
    Req::new("POST", &format!("/v1/forms/{form}"), Vec::new()).header("accept", "application/json").multipart(&fields)
}

fn text(name: &str, value: &str) -> Field {
    Field { name: name.into(), value: FieldValue::Text(value.into()) }
}

fn file(name: &str, filename: &str, content_type: &str, size: usize) -> Field {
    Field {
        name: name.into(),
        value: FieldValue::File {
            filename: filename.into(),
            content_type: content_type.into(),
            data: vec![b'x'; size],
        },
    }
}

fn answer(env: &ScriptedEnv, request: Req) -> (u16, Value) {
    let (response, json) = call(env, request);
    (response.status, json)
}

#[test]
fn files_beyond_the_forms_limits_are_refused_before_connecting() {
    let forms =
        r#"{"f": {"to": "o@example.com", "max_files": 1, "max_file_bytes": 100, "allowed_file_types": ["image/*"]}}"#;
    let cases = [
        (vec![file("a", "a.png", "image/png", 10), file("b", "b.png", "image/png", 10)], 422),
        (vec![file("a", "a.png", "image/png", 101)], 413),
        (vec![file("a", "a.zip", "application/zip", 10)], 422),
    ];
    for (fields, status) in cases {
        let env = scripted(forms);
        let (got, json) = answer(&env, post("f", fields));
        assert_eq!(got, status, "{json}");
        assert_eq!(env.relay.seen.borrow().connects, 0);
    }
    let env = scripted(r#"{"f": {"to": "o@example.com"}}"#);
    let (status, json) = answer(&env, post("f", vec![file("a", "a.png", "image/png", 10)]));
    assert_eq!(status, 422, "files are off by default: {json}");
}

#[test]
fn honeypot_and_failed_turnstile_never_connect() {
    let env = scripted(r#"{"f": {"to": "o@example.com", "honeypot": "_gotcha"}}"#);
    let (status, json) = answer(&env, post("f", vec![text("name", "bot"), text("_gotcha", "filled")]));
    // What a person gets, an id included (of no record: nothing was sent).
    assert_eq!(
        (status, json["ok"].as_bool(), json["id"].as_str().map(str::len)),
        (200, Some(true), Some(36)),
        "{json}"
    );
    assert_eq!(env.relay.seen.borrow().connects, 0);
    assert!(env.ledger.borrow().is_empty());

    let env = scripted(r#"{"f": {"to": "o@example.com", "turnstile": true}}"#);
    *env.post_answer.borrow_mut() = (200, r#"{"success": false}"#.into());
    let (status, json) = answer(&env, post("f", vec![text("cf-turnstile-response", "tok")]));
    assert_eq!((status, json["error"]["code"].as_str()), (403, Some("captcha_failed")));
    let posted = env.posted.borrow();
    assert_eq!(posted[0].0, "https://verify.test/siteverify");
    assert!(
        posted[0].1.contains(&("secret".into(), "s3cret".into()))
            && posted[0].1.contains(&("response".into(), "tok".into()))
    );
    assert_eq!(env.relay.seen.borrow().connects, 0);
}

#[test]
fn broken_forms_configuration_is_misconfigured_without_values() {
    let env = scripted(r#"{"f": {"to": "o@example.com", "redirect": "javascript:alert(1)"}}"#);
    let (status, json) = answer(&env, post("f", vec![text("a", "b")]));
    assert_eq!(status, 500);
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("FORMS") && !message.contains("javascript"), "{message}");
}

#[test]
fn the_message_a_submission_makes_counts_against_the_limit() {
    // Escaping makes the HTML copy of `"` six times longer: 3 KB of quotes under a 20 KB limit
    // becomes 3 KB of text plus 18 KB of HTML.
    let owned = vars(r#"{"f": {"to": "o@example.com"}}"#);
    let mut pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    pairs.push(("MAX_REQUEST_BYTES", "20000"));
    let env = ScriptedEnv::new(ScriptedRelay::new(vec![]), &pairs);
    let (status, json) = answer(&env, post("f", vec![text("message", &"\"".repeat(3_000))]));
    assert_eq!((status, json["error"]["code"].as_str()), (413, Some("payload_too_large")), "{json}");
    assert_eq!(env.relay.seen.borrow().connects, 0);
}

#[test]
fn a_form_body_over_the_limit_is_never_parsed() {
    let owned = vars(r#"{"f": {"to": "o@example.com", "max_files": 1, "max_file_bytes": 100000}}"#);
    let mut pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    pairs.push(("MAX_REQUEST_BYTES", "4096"));
    let env = ScriptedEnv::new(ScriptedRelay::new(vec![]), &pairs);
    let (status, json) = answer(&env, post("f", vec![file("a", "a.bin", "application/octet-stream", 5_000)]));
    assert_eq!((status, json["error"]["code"].as_str()), (413, Some("payload_too_large")), "{json}");
    // An unknown form is answered before the body is read at all.
    let (status, _) = answer(&env, post("nope", vec![file("a", "a.bin", "application/octet-stream", 5_000)]));
    assert_eq!(status, 404);
}

#[test]
fn origin_null_is_refused_and_never_replaced_by_the_referer() {
    let env = scripted(r#"{"f": {"to": "o@example.com", "allowed_origins": ["https://site.example"]}}"#);
    let request = post("f", vec![text("a", "b")]).header("origin", "null").header("referer", "https://site.example/");
    let (status, json) = answer(&env, request);
    assert_eq!((status, json["error"]["code"].as_str()), (403, Some("forbidden_origin")), "{json}");
    let (status, _) = answer(&env, post("f", vec![text("a", "b")]).header("origin", "https://site.example"));
    assert_ne!(status, 403);
}

#[test]
fn required_fields_are_checked_and_each_missing_one_named() {
    let forms = r#"{"f": {"to": "o@example.com", "required": ["email", "message"], "honeypot": "_gotcha"}}"#;
    let cases = [
        (vec![text("name", "Ada")], vec!["email", "message"]),
        (vec![text("email", "ada@example.com"), text("message", "   ")], vec!["message"]),
        // The honeypot is not a field of the message: filling it in does not count.
        (vec![text("_gotcha", ""), text("email", "a@example.com")], vec!["message"]),
    ];
    for (fields, missing) in cases {
        let env = scripted(forms);
        let (status, json) = answer(&env, post("f", fields));
        assert_eq!(status, 422, "{json}");
        assert_eq!(json["error"]["code"], "validation_failed");
        let named: Vec<&str> =
            json["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert_eq!(named, missing, "{json}");
        assert!(json["error"]["details"].as_array().unwrap().iter().all(|d| d["message"] == "is required"));
        assert_eq!(env.relay.seen.borrow().connects, 0);
    }
    let env = scripted(r#"{"f": {"to": "o@example.com", "required": ["bad\nname"]}}"#);
    let (status, json) = answer(&env, post("f", vec![text("a", "b")]));
    assert_eq!((status, json["error"]["code"].as_str()), (500, Some("misconfigured")), "{json}");
}

#[test]
fn a_browser_missing_a_required_field_gets_the_error_redirect_or_the_built_in_page() {
    let browser_post = || Req::new("POST", "/v1/forms/f", Vec::new()).multipart(&[text("name", "Ada")]);
    let env = scripted(
        r#"{"f": {"to": "o@example.com", "required": ["email", "message"], "error_redirect": "https://a.example/oops"}}"#,
    );
    let (response, _) = call(&env, browser_post());
    assert_eq!(response.status, 303);
    let location = response.headers.iter().find(|(n, _)| n == "location").map(|(_, v)| v.as_str());
    assert_eq!(location, Some("https://a.example/oops?error=validation_failed&message=email%2C+message+are+required"));
    let env = scripted(r#"{"f": {"to": "o@example.com", "required": ["email", "message"]}}"#);
    let (response, _) = call(&env, browser_post());
    assert_eq!(response.status, 422);
    let page = String::from_utf8(response.body).unwrap();
    assert!(page.contains("email, message are required") && page.contains("validation_failed"), "{page}");
    assert_eq!(env.relay.seen.borrow().connects, 0);
}

#[test]
fn a_submission_with_nothing_filled_in_is_refused_without_required() {
    let forms = r#"{"f": {"to": "o@example.com", "max_files": 1}}"#;
    for fields in [
        vec![],
        vec![text("name", ""), text("message", " \r\n ")],
        vec![text("name", ""), file("upload", "", "application/octet-stream", 0)],
    ] {
        let env = scripted(forms);
        let (status, json) = answer(&env, post("f", fields));
        assert_eq!(status, 422, "{json}");
        assert_eq!(json["error"]["details"][0]["field"], "fields", "{json}");
        assert_eq!(env.relay.seen.borrow().connects, 0);
    }
}

#[test]
fn one_file_too_many_names_its_field() {
    let forms = r#"{"f": {"to": "o@example.com", "max_files": 1}}"#;
    let env = scripted(forms);
    let fields = vec![file("first", "a.txt", "text/plain", 3), file("second", "b.txt", "text/plain", 3)];
    let (status, json) = answer(&env, post("f", fields));
    assert_eq!(status, 422, "{json}");
    assert_eq!(json["error"]["message"], "at most 1 file is accepted");
    assert_eq!(json["error"]["details"][0]["field"], "second", "{json}");
}

#[test]
fn a_json_body_that_is_not_json_says_where_and_one_that_is_not_an_object_says_so() {
    let env = scripted(r#"{"f": {"to": "o@example.com"}}"#);
    let json_post = |body: &str| {
        Req::new("POST", "/v1/forms/f", body.as_bytes().to_vec()).header("content-type", "application/json")
    };
    let (status, json) = answer(&env, json_post(r#"{"name": "Ada", "message": "#));
    assert_eq!(status, 400, "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("the body is not valid JSON") && message.contains("line 1 column"), "{message}");
    let (status, json) = answer(&env, json_post(r#"["Ada"]"#));
    assert_eq!((status, json["error"]["message"].as_str()), (400, Some("the body must be a JSON object of fields")));
}
