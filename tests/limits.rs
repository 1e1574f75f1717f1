//! Bodies built to cost the most per byte (issue 28 point 8, issue 29 point 1): each is
//! refused with the usual code, and the parser stops building at the limit. Measured with the
//! counting allocator (tests/support/alloc.rs), not with a clock: the peak of bytes held during
//! the request, and how many allocations it made.

use crate::support::alloc::measure;
use crate::support::{call, relay_vars, Req, ScriptedEnv, ScriptedRelay};

/// A million tiny items: `0,0,0,…` (2 MB), or `"","",…` (3 MB).
const ITEMS: usize = 1_000_000;

fn zeros() -> String {
    let mut list = "0,".repeat(ITEMS);
    list.pop();
    list
}

fn empty_strings() -> String {
    let mut list = r#"""#.repeat(2).to_string() + ",";
    list = list.repeat(ITEMS);
    list.pop();
    list
}

fn form_env() -> ScriptedEnv {
    let vars = [
        ("SMTP_HOST", "relay.test"),
        ("SMTP_SESSIONS", "0"),
        ("MAIL_FROM", "Site <noreply@example.com>"),
        ("FORMS", r#"{"f": {"to": "o@example.com"}}"#),
    ];
    ScriptedEnv::new(ScriptedRelay::new(vec![]), &vars)
}

fn api_env() -> ScriptedEnv {
    ScriptedEnv::new(ScriptedRelay::new(vec![]), &relay_vars(&[("ALLOWED_FROM", "*@example.com")]))
}

/// Serves `req`: its status, its error message, the peak of bytes held beyond the body, and the
/// number of allocations.
fn serve(env: &ScriptedEnv, req: Req) -> (u16, String, usize, usize) {
    let ((response, json), peak, count) = measure(|| call(env, req));
    // Ours say `{"error": {"message"}}`, the Resend-compatible routes `{"message"}`.
    let message = json["error"]["message"].as_str().or(json["message"].as_str()).unwrap_or_default();
    (response.status, message.to_string(), peak, count)
}

fn api_post(path: &str, body: String) -> Req {
    Req::new("POST", path, body)
        .header("content-type", "application/json")
        .header("authorization", "Bearer key-one")
        .header("accept", "application/json")
}

#[test]
fn a_form_of_a_million_tiny_json_fields_is_refused_without_building_them() {
    let env = form_env();
    let body = format!(r#"{{"a": [{}]}}"#, zeros());
    let size = body.len();
    let req = Req::new("POST", "/v1/forms/f", body).header("content-type", "application/json");
    let (status, message, peak, count) = serve(&env, req);
    assert_eq!((status, message.as_str()), (422, "at most 100 fields are accepted"));
    // The body is read once (a copy); a field each would be far over this.
    assert!(peak <= 4 * size, "{peak} bytes held for a body of {size}");
    assert!(count < 10_000, "{count} allocations for {ITEMS} fields");
}

#[test]
fn a_form_of_a_million_urlencoded_fields_is_refused_without_building_them() {
    let env = form_env();
    let mut body = "a&".repeat(ITEMS);
    body.pop();
    let size = body.len();
    let req = Req::new("POST", "/v1/forms/f", body)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json");
    let (status, message, peak, count) = serve(&env, req);
    assert_eq!((status, message.as_str()), (422, "at most 100 fields are accepted"));
    assert!(peak <= 4 * size, "{peak} bytes held for a body of {size}");
    assert!(count < 10_000, "{count} allocations for {ITEMS} fields");
}

#[test]
fn a_hundred_thousand_headers_are_refused_after_the_limit_not_compared_with_each_other() {
    let env = api_env();
    let headers: Vec<String> = (0..100_000).map(|i| format!(r#""X-H{i}": "v""#)).collect();
    for path in ["/v1/send", "/emails"] {
        let body = format!(
            r#"{{"from": "a@example.com", "to": "b@example.org", "subject": "s", "text": "t", "headers": {{{}}}}}"#,
            headers.join(",")
        );
        let (status, message, _, count) = serve(&env, api_post(path, body));
        assert_eq!(status, 422, "{path}: {message}");
        assert!(message.contains("at most 20 extra headers are allowed"), "{path}: {message}");
        // Names past the limit are read past: no string, no comparison with the ones kept.
        assert!(count < 10_000, "{path}: {count} allocations for 100,000 headers");
    }
}

#[test]
fn a_million_recipients_or_messages_are_counted_not_built() {
    let env = api_env();
    let cases = [
        ("/v1/send", format!(r#"{{"to": [{}], "subject": "s", "text": "t"}}"#, empty_strings()), "1000000 recipients"),
        (
            "/v1/send",
            format!(r#"{{"to": "b@example.org", "cc": [{}], "subject": "s", "text": "t"}}"#, empty_strings()),
            "1000001 recipients",
        ),
        ("/v1/send", format!(r#"{{"to": [{}], "subject": "s", "text": "t"}}"#, zeros()), "`to[0]`"),
        ("/v1/send/batch", format!(r#"{{"messages": [{}]}}"#, zeros()), "send 1 to 100 messages"),
        ("/emails/batch", format!("[{}]", zeros()), "send 1 to 100 emails"),
    ];
    for (path, body, says) in cases {
        let size = body.len();
        let (status, message, peak, count) = serve(&env, api_post(path, body));
        assert_eq!(status, 422, "{path}: {message}");
        assert!(message.contains(says), "{path}: {message}");
        assert!(peak <= 4 * size, "{path}: {peak} bytes held for a body of {size}");
        assert!(count < 10_000, "{path}: {count} allocations for {ITEMS} items");
    }
}

#[test]
fn a_10_mb_attachment_is_decoded_from_the_body_not_copied_first() {
    use base64::{engine::general_purpose::STANDARD, Engine};
    use edge_mailer::config::Config;
    let config = Config::from_lookup(|name| match name {
        "SMTP_HOST" => Some("relay.test".into()),
        "MAIL_FROM" => Some("Site <noreply@example.com>".into()),
        _ => None,
    })
    .unwrap();
    let data = vec![7u8; 10_000_000];
    let body = serde_json::json!({"to": "a@example.org", "subject": "s", "text": "t",
        "attachments": [{"filename": "a.bin", "content": STANDARD.encode(&data)}]})
    .to_string();
    let (parsed, peak, _) = measure(|| edge_mailer::http::send::parse(body.as_bytes(), &config));
    assert_eq!(parsed.unwrap().content.attachments[0].data, data);
    // The decoded bytes, and not the 13.3 MB of base64 once more.
    assert!(peak < data.len() + 1024 * 1024, "{peak} bytes held for {} of base64", body.len());
}
