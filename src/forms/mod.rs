//! `POST /v1/forms/{form}`: a web form (urlencoded, multipart or JSON) becomes a message to
//! the recipients the owner configured. Recipients, subject, redirects and limits come from
//! `FORMS`; the submitter's fields only fill the body, the subject template and Reply-To.

pub mod demo;
pub mod page;
pub mod ratelimit;
pub mod settings;

use crate::address::{EmailAddress, Mailbox};
use crate::api::http::{error_response, submit, Environment, Handled, HttpRequest, HttpResponse};
use crate::api::send::Submission;
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::message::{Attachment, Content};
use settings::FormSettings;

/// The field Cloudflare Turnstile's widget adds to the form.
pub const TURNSTILE_FIELD: &str = "cf-turnstile-response";
/// Cloudflare's verification endpoint; `TURNSTILE_VERIFY_URL` overrides it (tests use a fake).
pub const TURNSTILE_VERIFY_URL: &str = "https://challenges.cloudflare.com/turnstile/v0/siteverify";
/// Most fields one submission may have.
pub const MAX_FIELDS: usize = 100;

/// One submitted field, in the order the submitter sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub value: FieldValue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    Text(String),
    File { filename: String, content_type: String, data: Vec<u8> },
}

/// How the caller wants its answer: JSON for fetch/XHR, pages and redirects for a browser
/// that posted a plain HTML form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Json,
    Browser,
}

fn is_json(request: &HttpRequest) -> bool {
    request.header("content-type").unwrap_or_default().to_ascii_lowercase().starts_with("application/json")
}

/// The client a rate limit counts: its IPv4 address, or its IPv6 /64 (one host can rotate
/// through a whole /64).
fn rate_limit_client(ip: &str) -> String {
    if !ip.contains(':') {
        return ip.to_string();
    }
    let groups = |part: &str| -> Vec<u16> {
        part.split(':').filter(|g| !g.is_empty()).map(|g| u16::from_str_radix(g, 16).unwrap_or(0)).collect()
    };
    let (head, tail) = match ip.split_once("::") {
        Some((head, tail)) => (groups(head), groups(tail)),
        None => (groups(ip), Vec::new()),
    };
    let zeros = 8usize.saturating_sub(head.len() + tail.len());
    let all: Vec<u16> = head.into_iter().chain(std::iter::repeat_n(0, zeros)).chain(tail).collect();
    let prefix: Vec<String> = all.iter().take(4).map(|g| format!("{g:x}")).collect();
    format!("{}/64", prefix.join(":"))
}

/// The origin a request comes from: `Origin`, else the origin part of `Referer`.
fn request_origin(request: &HttpRequest) -> Option<String> {
    if let Some(origin) = request.header("origin").filter(|o| *o != "null") {
        return Some(origin.to_string());
    }
    let referer = request.header("referer")?;
    let (scheme, rest) = referer.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    Some(format!("{scheme}://{authority}"))
}

/// CORS headers for an allowed origin; nothing for any other.
fn cors_headers(form: &FormSettings, origin: Option<&str>) -> Vec<(String, String)> {
    match origin {
        Some(origin) if form.allowed_origins.iter().any(|o| o == origin) => {
            vec![("access-control-allow-origin".into(), origin.to_string()), ("vary".into(), "Origin".into())]
        }
        _ => Vec::new(),
    }
}

/// `OPTIONS /v1/forms/{form}`: a CORS preflight, answered only for allowed origins.
pub fn preflight<E: Environment>(env: &E, name: &str, request: &HttpRequest) -> HttpResponse {
    let Ok(config) = Config::from_lookup(|n| env.var(n)) else {
        return HttpResponse { status: 403, headers: Vec::new(), body: Vec::new() };
    };
    let origin = request_origin(request);
    let headers = config.forms.get(name).map(|form| cors_headers(form, origin.as_deref())).unwrap_or_default();
    if headers.is_empty() {
        return HttpResponse { status: 403, headers, body: Vec::new() };
    }
    let mut headers = headers;
    headers.push(("access-control-allow-methods".into(), "POST, OPTIONS".into()));
    headers.push(("access-control-allow-headers".into(), "content-type, accept".into()));
    headers.push(("access-control-max-age".into(), "600".into()));
    HttpResponse { status: 204, headers, body: Vec::new() }
}

/// `POST /v1/forms/{form}`.
pub async fn handle<E: Environment>(env: E, name: &str, request: &HttpRequest) -> Handled<E> {
    let accept = request.header("accept").unwrap_or_default();
    let is_json_body = is_json(request);
    let answer = if accept.contains("application/json") || is_json_body { Answer::Json } else { Answer::Browser };
    let origin = request_origin(request);

    let config = match Config::from_lookup(|n| env.var(n)) {
        Ok(config) => config,
        Err(error) => return error_answer(answer, None, &[], &error, false).into(),
    };
    let Some(form) = config.forms.get(name) else {
        let error = ApiError::new(ErrorCode::NotFound, format!("there is no form named {name}"));
        return error_answer(answer, None, &[], &error, false).into();
    };
    let cors = cors_headers(form, origin.as_deref());
    let debug = form.debug && request.debug();
    let fail = |error: ApiError| -> Handled<E> { error_answer(answer, Some(form), &cors, &error, debug).into() };

    if !form.allowed_origins.is_empty() && cors.is_empty() {
        return fail(ApiError::new(ErrorCode::ForbiddenOrigin, "this form does not accept posts from that origin"));
    }
    let client = request.header("cf-connecting-ip").unwrap_or("unknown");
    match env.rate_limit(&format!("{name}|{}", rate_limit_client(client)), form.rate_limit_per_minute, 60).await {
        Ok(decision) if !decision.allowed => {
            let mut error = ApiError::new(ErrorCode::RateLimited, "too many submissions; try again later");
            error.retry_after = Some(decision.retry_after);
            return fail(error);
        }
        Ok(_) => {}
        Err(_) => {
            return fail(ApiError::new(
                ErrorCode::Misconfigured,
                "RATE_LIMITER (the Durable Object binding) is not usable",
            ))
        }
    }
    if request.body.len() > config.max_request_bytes {
        return fail(crate::api::http::too_large(config.max_request_bytes));
    }
    let fields = match fields(request) {
        Ok(fields) => fields,
        Err(error) => return fail(error),
    };
    if let Some(honeypot) = &form.honeypot {
        if fields.iter().any(|f| f.name == *honeypot && !matches!(&f.value, FieldValue::Text(t) if t.is_empty())) {
            // A bot filled the hidden field: it gets what a person would get, and nothing is sent.
            return success_answer(answer, form, &cors, None).into();
        }
    }
    if form.turnstile {
        if let Err(error) = verify_turnstile(&env, &config, &fields, client).await {
            return fail(error);
        }
    }
    let submission = match submission(&config, name, form, &fields) {
        Ok(submission) => submission,
        Err(error) => return fail(error),
    };
    let submitted = submit(&env, &config, &submission).await;
    let may_have_left = submitted.may_have_left();
    let response = match &submitted.result {
        Ok(sent) => success_answer(answer, form, &cors, debug.then_some(sent)),
        Err(error) => error_answer(answer, Some(form), &cors, error, debug),
    };
    Handled { response, after: submitted.session, may_have_left }
}

/// The submitted fields: parsed by the platform for urlencoded and multipart bodies, from the
/// JSON object (strings, numbers, booleans, or lists of them) otherwise.
fn fields(request: &HttpRequest) -> Result<Vec<Field>, ApiError> {
    let fields = match &request.form {
        Some(fields) => fields.clone(),
        None => {
            if !is_json(request) {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "send application/x-www-form-urlencoded, multipart/form-data or application/json",
                ));
            }
            let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&request.body)
                .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "the body is not a JSON object"))?;
            let mut fields = Vec::new();
            for (name, value) in object {
                let values = match value {
                    serde_json::Value::Array(items) => items,
                    other => vec![other],
                };
                for value in values {
                    let text = match value {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Number(n) => n.to_string(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        serde_json::Value::Null => String::new(),
                        _ => return Err(ApiError::new(ErrorCode::ValidationFailed, format!("{name} must be text"))),
                    };
                    fields.push(Field { name: name.clone(), value: FieldValue::Text(text) });
                }
            }
            fields
        }
    };
    if fields.len() > MAX_FIELDS {
        return Err(ApiError::new(ErrorCode::ValidationFailed, format!("at most {MAX_FIELDS} fields are accepted")));
    }
    Ok(fields)
}

async fn verify_turnstile<E: Environment>(
    env: &E,
    config: &Config,
    fields: &[Field],
    client: &str,
) -> Result<(), ApiError> {
    let secret = config.turnstile_secret.as_ref().map(|s| s.expose()).ok_or_else(|| {
        ApiError::new(ErrorCode::Misconfigured, "TURNSTILE_SECRET is not set but the form requires Turnstile")
    })?;
    let token = fields.iter().find_map(|f| match &f.value {
        FieldValue::Text(t) if f.name == TURNSTILE_FIELD && !t.is_empty() => Some(t.as_str()),
        _ => None,
    });
    let captcha_failed = |why: &str| ApiError::new(ErrorCode::CaptchaFailed, why.to_string());
    let token = token.ok_or_else(|| captcha_failed("the Turnstile token is missing"))?;
    let mut form = vec![("secret", secret), ("response", token)];
    if client != "unknown" {
        form.push(("remoteip", client));
    }
    let (status, body) = env
        .post_form(&config.turnstile_verify_url, &form)
        .await
        .map_err(|_| ApiError::new(ErrorCode::CaptchaFailed, "the Turnstile check could not be made"))?;
    let verdict: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if status == 200 && verdict["success"] == true {
        Ok(())
    } else {
        Err(captcha_failed("the Turnstile token is invalid or expired"))
    }
}

/// Fields that steer the form rather than carry the submitter's message.
fn is_control_field(form: &FormSettings, name: &str) -> bool {
    name == TURNSTILE_FIELD || form.honeypot.as_deref() == Some(name)
}

/// Text for a header from a submitter's value: control characters become spaces, and the
/// sequences the header rule refuses are taken apart.
fn header_safe(value: &str) -> String {
    let mut text: String = value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    for (bad, good) in
        [("=?", "= ?"), ("?=", "? ="), ("%0d", "%0 d"), ("%0D", "%0 D"), ("%0a", "%0 a"), ("%0A", "%0 A")]
    {
        text = text.replace(bad, good);
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    text.chars().take(200).collect()
}

/// `{{field}}` in the owner's template → the field's first value, made header-safe.
fn subject(template: &str, fields: &[&Field]) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let name = rest[start + 2..start + end].trim();
        let value = fields.iter().find_map(|f| match &f.value {
            FieldValue::Text(t) if f.name == name => Some(header_safe(t)),
            _ => None,
        });
        out.push_str(&value.unwrap_or_default());
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    let subject = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if subject.is_empty() {
        "New form submission".into()
    } else {
        subject
    }
}

fn submission(config: &Config, name: &str, form: &FormSettings, fields: &[Field]) -> Result<Submission, ApiError> {
    let listed: Vec<&Field> = fields.iter().filter(|f| !is_control_field(form, &f.name)).collect();
    let mut attachments = Vec::new();
    for field in &listed {
        if let FieldValue::File { filename, content_type, data } = &field.value {
            if filename.is_empty() && data.is_empty() {
                continue; // an empty file input
            }
            if attachments.len() == form.max_files {
                let why = if form.max_files == 0 {
                    "this form does not accept files".to_string()
                } else {
                    format!("at most {} files are accepted", form.max_files)
                };
                return Err(ApiError::new(ErrorCode::ValidationFailed, why));
            }
            if data.len() > form.max_file_bytes {
                return Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "{} is over the {} bytes this form accepts per file",
                        header_safe(filename),
                        form.max_file_bytes
                    ),
                ));
            }
            // The browser's type for the file when it is well formed; octet-stream otherwise.
            let (kind, charset) = crate::api::send::media_type(content_type)
                .unwrap_or_else(|| ("application/octet-stream".to_string(), None));
            if !form.file_type_allowed(&kind) {
                return Err(ApiError::new(
                    ErrorCode::ValidationFailed,
                    format!("files of type {} are not accepted", header_safe(&kind)),
                ));
            }
            let charset = charset.or_else(|| crate::message::implied_charset(&kind, data));
            let filename = header_safe(filename.rsplit(['/', '\\']).next().unwrap_or_default());
            attachments.push(Attachment {
                filename: if filename.is_empty() { "attachment".into() } else { filename },
                content_type: kind,
                charset,
                data: data.clone(),
                content_id: None,
            });
        }
    }
    let reply_to = listed.iter().find_map(|f| match &f.value {
        FieldValue::Text(t) if f.name == form.email_field => EmailAddress::parse(t.trim()).ok(),
        _ => None,
    });
    let (text, html) = page::render_fields(name, &listed);
    let content = Content {
        from: config.mail_from.clone(),
        to: form.to.clone(),
        cc: Vec::new(),
        bcc: Vec::new(),
        reply_to: reply_to.into_iter().map(|email| Mailbox { name: None, email }).collect(),
        subject: subject(&form.subject, &listed),
        text: Some(text),
        html: Some(html),
        attachments,
        headers: vec![("X-Edge-Mailer-Form".into(), name.to_string())],
    };
    Ok(Submission { content, dsn: None })
}

fn with_headers(mut response: HttpResponse, headers: &[(String, String)]) -> HttpResponse {
    response.headers.extend(headers.iter().cloned());
    response
}

fn see_other(location: String, headers: &[(String, String)]) -> HttpResponse {
    let mut response = HttpResponse { status: 303, headers: vec![("location".into(), location)], body: Vec::new() };
    response.headers.extend(headers.iter().cloned());
    response
}

fn success_answer(
    answer: Answer,
    form: &FormSettings,
    cors: &[(String, String)],
    debug: Option<&crate::api::http::Sent>,
) -> HttpResponse {
    match answer {
        Answer::Json => {
            let mut body = serde_json::json!({"ok": true});
            if let Some(sent) = debug {
                body["message_id"] = serde_json::json!(sent.message_id);
                body["smtp"] = serde_json::json!(sent.delivery.reply);
                body["transcript"] = serde_json::json!(sent.transcript);
                body["round_trips"] = serde_json::json!(sent.round_trips);
            }
            with_headers(HttpResponse::json(200, &body), cors)
        }
        Answer::Browser => match &form.redirect {
            Some(url) => see_other(url.clone(), cors),
            None => with_headers(page::thanks(), cors),
        },
    }
}

fn error_answer(
    answer: Answer,
    form: Option<&FormSettings>,
    cors: &[(String, String)],
    error: &ApiError,
    debug: bool,
) -> HttpResponse {
    let mut response = match answer {
        Answer::Json => error_response(error, debug),
        Answer::Browser => match form.and_then(|f| f.error_redirect.as_ref()) {
            Some(url) => {
                let separator = if url.contains('?') { '&' } else { '?' };
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("error", error.code.as_str())
                    .append_pair("message", &error.message)
                    .finish();
                see_other(format!("{url}{separator}{query}"), &[])
            }
            None => page::error(error),
        },
    };
    if let Some(seconds) = error.retry_after {
        if !response.headers.iter().any(|(n, _)| n == "retry-after") {
            response.headers.push(("retry-after".into(), seconds.to_string()));
        }
    }
    with_headers(response, cors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(name: &str, value: &str) -> Field {
        Field { name: name.into(), value: FieldValue::Text(value.into()) }
    }

    #[test]
    fn subject_template_uses_sanitised_first_values() {
        let owned =
            [text("name", "Ada\r\nBcc: x@evil.example"), text("name", "second"), text("topic", "=?utf-8?q?x?=")];
        let fields: Vec<&Field> = owned.iter().collect();
        assert_eq!(subject("New message from {{name}}", &fields), "New message from Ada Bcc: x@evil.example");
        assert_eq!(subject("{{ topic }} / {{missing}}!", &fields), "= ?utf-8?q?x? = / !");
        assert!(crate::header::problem(&subject("{{topic}}", &fields)).is_none());
        assert_eq!(subject("{{missing}}", &fields), "New form submission");
        assert_eq!(subject("unclosed {{name", &fields), "unclosed {{name");
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(rate_limit_client("198.51.100.7"), "198.51.100.7");
        assert_eq!(rate_limit_client("2001:db8:1:2:3:4:5:6"), rate_limit_client("2001:0DB8:1:2:ffff::1"));
        assert_eq!(rate_limit_client("2001:db8::1"), "2001:db8:0:0/64");
        assert_ne!(rate_limit_client("2001:db8:1:2::1"), rate_limit_client("2001:db8:1:3::1"));
    }

    #[test]
    fn origin_from_origin_or_referer() {
        let request = |headers: &[(&str, &str)]| HttpRequest {
            method: "POST".into(),
            path: "/v1/forms/contact".into(),
            query: String::new(),
            headers: headers.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            body: Vec::new(),
            form: None,
        };
        assert_eq!(request_origin(&request(&[("Origin", "https://a.example")])).as_deref(), Some("https://a.example"));
        assert_eq!(
            request_origin(&request(&[("Referer", "https://b.example:8443/contact?x=1")])).as_deref(),
            Some("https://b.example:8443")
        );
        assert_eq!(request_origin(&request(&[])), None);
    }
}
