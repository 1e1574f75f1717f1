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
        // Files allowed: its body limit (about 16 MiB, capped at 14) lets these 2 MB bodies
        // reach the parser, whose limits are under test here.
        ("FORMS", r#"{"f": {"to": "o@example.com", "max_files": 3}, "plain": {"to": "o@example.com"}}"#),
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

#[test]
fn a_forms_body_limit_is_its_own_not_the_apis() {
    let env = form_env();
    // 2 MB of one string to a form without files (its limit: about 1.1 MiB).
    let body = format!(r#"{{"message": "{}"}}"#, "x".repeat(2_000_000));
    let size = body.len();
    // Declared: refused from the head, the body never read.
    let req = Req::new("POST", "/v1/forms/plain", body.clone())
        .header("content-type", "application/json")
        .header("content-length", &size.to_string());
    let (status, message, peak, _) = serve(&env, req);
    assert_eq!(status, 413, "{message}");
    assert!(peak < 64 * 1024, "{peak} bytes held for a declared body of {size}");
    // Chunked (no length): cut off once the count passes the limit.
    let req = Req::new("POST", "/v1/forms/plain", body).header("content-type", "application/json");
    let (status, message, _, _) = serve(&env, req);
    assert_eq!((status, message.as_str()), (413, "the body is over 1152000 bytes"));
}

#[test]
fn a_body_of_quotes_is_refused_before_it_is_rendered() {
    let env = form_env();
    // 500 KB of `"` (1 MB of JSON) is 3 MB of HTML: refused on a bound worked out first.
    let body = format!(r#"{{"message": "{}"}}"#, r#"\""#.repeat(500_000));
    let req = Req::new("POST", "/v1/forms/plain", body).header("content-type", "application/json");
    let (status, message, peak, _) = serve(&env, req);
    assert_eq!(status, 413, "{message}");
    assert!(message.starts_with("the message this submission makes is over"), "{message}");
    assert!(peak <= 3 * 1_000_000, "{peak} bytes held");
}

#[test]
fn a_multipart_of_170000_files_is_counted_before_it_is_parsed() {
    let env = form_env();
    let part = "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\nx\r\n";
    let body = part.repeat(170_000) + "--b--\r\n";
    let size = body.len();
    let req = Req::new("POST", "/v1/forms/f", body)
        .header("content-type", "multipart/form-data; boundary=b")
        .header("accept", "application/json");
    let (status, message, peak, count) = serve(&env, req);
    assert_eq!((status, message.as_str()), (422, "at most 100 fields are accepted"));
    assert!(peak <= 2 * size, "{peak} bytes held for a body of {size}");
    assert!(count < 1_000, "{count} allocations: the parts were built");
    // Within the field limit, files over `max_files` are refused from the count too.
    let body = part.repeat(4) + "--b--\r\n";
    let req = Req::new("POST", "/v1/forms/f", body)
        .header("content-type", "multipart/form-data; boundary=b")
        .header("accept", "application/json");
    let (status, message, _, count) = serve(&env, req);
    assert_eq!((status, message.as_str()), (422, "at most 3 files are accepted"));
    assert!(count < 1_000, "{count} allocations");
}
