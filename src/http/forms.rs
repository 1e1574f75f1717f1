//! `POST /v1/forms/{form}`: a web form (urlencoded, multipart or JSON) becomes a message to
//! the recipients the owner configured. Recipients, subject, redirects and limits come from
//! `FORMS`; the submitter's fields only fill the body, the subject template and Reply-To.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::json;

use super::auth::may_debug;
use super::body::{self, BodySource};
use super::request::{Field, FieldValue, Platform, RequestHead};
use super::response::{add_debug, Handled, HttpResponse};
use super::send::media_type;
use super::{demo, pages};
use crate::address::{EmailAddress, Mailbox};
pub use crate::config::forms::MAX_FIELDS;
use crate::config::forms::{is_redirect, origin_of, FormSettings, FORM_TEXT_BYTES};
use crate::config::Config;
use crate::delivery::env::Environment;
use crate::delivery::queue::{self, Record};
use crate::delivery::ratelimit::client_key;
use crate::delivery::submit::{new_id, submit, Submitted};
use crate::delivery::transaction::{Outcome, Sent, Submission};
use crate::error::{ApiError, Details, ErrorCode};
use crate::header;
use crate::message::{implied_charset, Attachment, Content};

/// The field Cloudflare Turnstile's widget adds to the form.
pub const TURNSTILE_FIELD: &str = "cf-turnstile-response";
/// Longest subject a template may make, in characters.
const MAX_SUBJECT_CHARS: usize = 200;

/// How the caller wants its answer: JSON for fetch/XHR, pages and redirects for a browser
/// that posted a plain HTML form (`back`: the page it came from, for the built-in pages' link).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer<'h> {
    Json,
    Browser { back: Option<&'h str> },
}

/// The origin a request comes from: `Origin` when the browser sent one (`null` included: an
/// opaque origin is a foreign one, never replaced by the Referer), else the Referer's origin.
fn request_origin(head: &RequestHead) -> Option<String> {
    match head.header("origin") {
        Some(origin) => Some(origin.trim().to_string()),
        None => origin_of(head.header("referer")?),
    }
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
pub fn preflight(config: Result<&Config, &ApiError>, name: &str, head: &RequestHead) -> HttpResponse {
    let origin = request_origin(head);
    let form = config.ok().and_then(|config| config.forms.get(name));
    let mut headers = form.map(|form| cors_headers(form, origin.as_deref())).unwrap_or_default();
    if headers.is_empty() {
        return HttpResponse::new(403, headers, Vec::new());
    }
    headers.push(("access-control-allow-methods".into(), "POST, OPTIONS".into()));
    headers.push(("access-control-allow-headers".into(), "content-type, accept".into()));
    headers.push(("access-control-max-age".into(), "600".into()));
    HttpResponse::new(204, headers, Vec::new())
}

/// `POST /v1/forms/{form}`. The form, the origin and the rate limit are settled from the
/// head; only then is the body read, within the limit.
pub async fn handle<P: Platform>(
    env: P,
    config: Result<&Config, &ApiError>,
    name: &str,
    head: &RequestHead,
    mut source: impl BodySource,
) -> Handled<P> {
    let accept = head.header("accept").unwrap_or_default();
    let is_json_body = head.media_type() == "application/json";
    let answer = if accept.contains("application/json") || is_json_body {
        Answer::Json
    } else {
        Answer::Browser { back: head.header("referer").filter(|r| is_redirect(r)) }
    };
    let config = match config {
        Ok(config) => config,
        Err(error) => return error_answer(answer, None, &[], error, None).into(),
    };
    let Some(form) = config.forms.get(name) else {
        let error = ApiError::new(ErrorCode::NotFound, format!("there is no form named {name}"));
        return error_answer(answer, None, &[], &error, None).into();
    };
    let origin = request_origin(head);
    let cors = cors_headers(form, origin.as_deref());
    let debug = form.debug && head.debug() && may_debug(config, head);
    let fail = |error: ApiError| -> Handled<P> { error_answer(answer, Some(form), &cors, &error, None).into() };

    if !form.allowed_origins.is_empty() && cors.is_empty() {
        let from = match &origin {
            Some(origin) => format!("from {origin}"),
            None => "without an Origin or Referer header".to_string(),
        };
        let message = format!("this form accepts posts only from its allowed origins; this one came {from}");
        return fail(ApiError::new(ErrorCode::ForbiddenOrigin, message));
    }
    let client = head.header("cf-connecting-ip").unwrap_or("unknown");
    match env.rate_limit(&format!("{name}|{}", client_key(client)), form.rate_limit_per_minute, 60).await {
        Ok(decision) if !decision.allowed => {
            let mut error = ApiError::new(ErrorCode::RateLimited, "too many submissions; try again later");
            error.retry_after = Some(decision.retry_after);
            return fail(error);
        }
        Ok(_) => {}
        Err(_) => {
            let error =
                ApiError::new(ErrorCode::Misconfigured, "RATE_LIMITER (the Durable Object binding) is not usable");
            return fail(error);
        }
    }
    let fields = match read_fields(&env, config, form, head, &mut source).await {
        Ok(fields) => fields,
        Err(error) => return fail(error),
    };
    if let Some(honeypot) = &form.honeypot {
        if fields.iter().any(|f| f.name == *honeypot && !matches!(&f.value, FieldValue::Text(t) if t.is_empty())) {
            // A bot filled the hidden field: it gets what a person would get (an id of the same
            // form, of no record), and nothing is sent.
            let id = new_id(config).ok();
            return success_answer(answer, form, &cors, id.as_deref(), None).into();
        }
    }
    if form.turnstile {
        if let Err(error) = verify_turnstile(&env, config, &fields, client).await {
            return fail(error);
        }
    }
    let submission = match submission(config, name, form, fields) {
        Ok(submission) => submission,
        Err(error) => return fail(error),
    };
    if form.queued {
        // Stored means the owner gets it: a relay outage only delays it.
        return match queue::accept(&env, config, &submission, queue::Extras { form: Some(name), ..Default::default() })
            .await
        {
            Ok(record) => accepted_answer(answer, form, &cors, &record).into(),
            Err(error) => fail(error),
        };
    }
    let Submitted { outcome, after, mut record } = submit(&env, config, &submission).await;
    if let Some(record) = record.as_mut() {
        record.form = Some(name.to_string());
    }
    if let Ok(sent) = &outcome.result {
        demo::sent(config, name, head, &sent.message_id);
    }
    let response = match &outcome.result {
        Ok(sent) => {
            let id = record.as_ref().map(|record| record.id.as_str());
            success_answer(answer, form, &cors, id, debug.then_some((sent, &outcome)))
        }
        Err(error) => error_answer(answer, Some(form), &cors, error, debug.then_some(&outcome)),
    };
    Handled { response, after, records: record.into_iter().collect() }
}

/// The submitted fields, from a body read within the form's own limit
/// ([`FormSettings::body_limit`]): urlencoded (parsed here), multipart (its parts counted here,
/// then parsed by the platform), or a JSON object of strings, numbers, booleans, or lists of
/// them.
async fn read_fields<P: Platform>(
    env: &P,
    config: &Config,
    form: &FormSettings,
    head: &RequestHead,
    source: &mut impl BodySource,
) -> Result<Vec<Field>, ApiError> {
    let kind = head.media_type();
    if !matches!(kind.as_str(), "application/x-www-form-urlencoded" | "multipart/form-data" | "application/json") {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "send application/x-www-form-urlencoded, multipart/form-data or application/json",
        ));
    }
    let limit = form.body_limit(config.max_request_bytes);
    let body = body::read(env, head, source, limit, config.request_body_timeout_ms).await?;
    let fields = match kind.as_str() {
        "application/x-www-form-urlencoded" => urlencoded_fields(&body),
        "multipart/form-data" => {
            let content_type = head.header("content-type").unwrap_or_default().to_string();
            // workerd's formData() builds every part before we see one: count them first.
            if let Some(boundary) = boundary(&content_type) {
                let parts = multipart_parts(&body, boundary.as_bytes(), form.max_files);
                if parts.parts > MAX_FIELDS {
                    return Err(too_many_fields());
                }
                if let Some(name) = parts.extra_file {
                    let mut error = too_many_files(form.max_files);
                    error.details = vec![(name, "one file too many".into())];
                    return Err(error);
                }
            }
            env.parse_multipart(&content_type, body)
                .await
                .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "the form body could not be parsed"))?
        }
        _ => json_fields(&body)?,
    };
    if fields.len() > MAX_FIELDS {
        return Err(too_many_fields());
    }
    Ok(fields)
}

fn too_many_fields() -> ApiError {
    ApiError::new(ErrorCode::ValidationFailed, format!("at most {MAX_FIELDS} fields are accepted"))
}

fn too_many_files(max_files: usize) -> ApiError {
    let why = match max_files {
        0 => "this form does not accept files".to_string(),
        1 => "at most 1 file is accepted".to_string(),
        n => format!("at most {n} files are accepted"),
    };
    ApiError::new(ErrorCode::ValidationFailed, why)
}

/// The `name` a part's headers give it (`name="…"`, not `filename`), as text.
fn part_name(headers: &[u8]) -> String {
    let name = memchr::memmem::find_iter(headers, b"name=\"")
        .find(|&at| at == 0 || matches!(headers[at - 1], b' ' | b';' | b'\t'))
        .map(|at| &headers[at + 6..])
        .and_then(|rest| rest.iter().position(|&b| b == b'"').map(|end| &rest[..end]))
        .unwrap_or_default();
    String::from_utf8_lossy(name).into_owned()
}

/// The `boundary` parameter of a multipart `Content-Type`, unquoted.
fn boundary(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        (!value.is_empty()).then_some(value)
    })
}

/// How many parts a multipart body has, how many of them are files with a name, and the field
/// name of the first file past the form's `max_files`.
#[derive(Debug, PartialEq, Eq)]
struct Parts {
    parts: usize,
    files: usize,
    extra_file: Option<String>,
}

/// Counts a multipart body's parts by its delimiters (`--boundary` at the start of a line, up to
/// the closing `--boundary--`), and the files among them (a part whose headers name a
/// non-empty `filename`): one pass over the bytes, nothing built, stopped at the part past
/// [`MAX_FIELDS`] (so at most 101 headers searched, 8 KiB each). It never counts more than
/// workerd's parser builds, so a refusal here is one the parsed fields would get too.
fn multipart_parts(body: &[u8], boundary: &[u8], max_files: usize) -> Parts {
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    let mut counted = Parts { parts: 0, files: 0, extra_file: None };
    for at in memchr::memmem::find_iter(body, &delimiter) {
        if at != 0 && body[at - 1] != b'\n' {
            continue; // not at the start of a line: inside a part
        }
        let rest = &body[at + delimiter.len()..];
        if rest.starts_with(b"--") {
            break; // the closing delimiter
        }
        counted.parts += 1;
        if counted.parts > MAX_FIELDS {
            break; // one too many is all the caller needs to know: the rest is not looked at
        }
        // A part's headers are short: the search for their end stops at 8 KiB, so a body of
        // delimiters without headers costs one pass, not one pass per delimiter.
        let rest = &rest[..rest.len().min(8192)];
        let headers = match memchr::memmem::find(rest, b"\r\n\r\n") {
            Some(end) => &rest[..end],
            None => rest,
        };
        if let Some(name) = memchr::memmem::find(headers, b"filename=") {
            let value = &headers[name + b"filename=".len()..];
            if !value.is_empty() && !value.starts_with(b"\"\"") && !value.starts_with(b"\r") && !value.starts_with(b";")
            {
                counted.files += 1;
                if counted.files == max_files + 1 {
                    counted.extra_file = Some(part_name(headers));
                }
            }
        }
    }
    counted
}

/// The fields of an `application/x-www-form-urlencoded` body, in order: at most one more
/// than [`MAX_FIELDS`], so that a body of millions of `a&a&…` is refused without them.
pub fn urlencoded_fields(body: &[u8]) -> Vec<Field> {
    (form_urlencoded::parse(body).take(MAX_FIELDS + 1))
        .map(|(name, value)| Field { name: name.into_owned(), value: FieldValue::Text(value.into_owned()) })
        .collect()
}

/// A JSON object of fields: strings, numbers, booleans, null, or lists of them (one field per
/// item), in the order sent. Reading stops at the field past [`MAX_FIELDS`].
fn json_fields(body: &[u8]) -> Result<Vec<Field>, ApiError> {
    let not_json =
        |e: serde_json::Error| ApiError::new(ErrorCode::InvalidRequest, format!("the body is not valid JSON: {e}"));
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<IgnoredAny>(body) {
            Err(e) => not_json(e),
            Ok(_) => ApiError::new(ErrorCode::InvalidRequest, "the body must be a JSON object of fields"),
        });
    }
    let mut fields = Vec::new();
    let mut refusal = None;
    let mut reader = serde_json::Deserializer::from_slice(body);
    let read = FieldsSeed { fields: &mut fields, refusal: &mut refusal }.deserialize(&mut reader);
    match read.and_then(|()| reader.end()) {
        Ok(()) => Ok(fields),
        // A syntax error anywhere wins over a refused field, as for the API's bodies.
        Err(e) => Err(match (refusal, serde_json::from_slice::<IgnoredAny>(body)) {
            (_, Err(syntax)) => not_json(syntax),
            (Some(refusal), Ok(_)) => refusal,
            (None, Ok(_)) => not_json(e),
        }),
    }
}

/// Reads a JSON object of fields into `fields`; a field that cannot be one, or one too many,
/// stops the reading with its answer in `refusal`.
struct FieldsSeed<'f> {
    fields: &'f mut Vec<Field>,
    refusal: &'f mut Option<ApiError>,
}

/// Stops the reading: `error` is the answer, kept in `refusal` (serde's error only unwinds).
fn refuse<E: de::Error>(refusal: &mut Option<ApiError>, error: ApiError) -> E {
    let unwind = E::custom(&error.message);
    *refusal = Some(error);
    unwind
}

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<String>()? {
            let value =
                FieldValues { name: &name, fields: &mut *self.fields, refusal: &mut *self.refusal, in_list: false };
            map.next_value_seed(value)?;
        }
        Ok(())
    }
}

/// One member's value: a field, or (a list) one field per item.
struct FieldValues<'f> {
    name: &'f str,
    fields: &'f mut Vec<Field>,
    refusal: &'f mut Option<ApiError>,
    in_list: bool,
}

impl FieldValues<'_> {
    fn push<E: de::Error>(self, text: String) -> Result<(), E> {
        if self.fields.len() == MAX_FIELDS {
            return Err(refuse(self.refusal, too_many_fields()));
        }
        self.fields.push(Field { name: self.name.to_string(), value: FieldValue::Text(text) });
        Ok(())
    }

    fn not_text<E: de::Error>(self) -> E {
        let error = ApiError::new(ErrorCode::ValidationFailed, format!("{} must be text", self.name));
        refuse(self.refusal, error)
    }
}

impl<'de> DeserializeSeed<'de> for FieldValues<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldValues<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("text, a number, a boolean, null, or a list of them")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        self.push(text.to_string())
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<(), E> {
        self.push(text)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        self.push(b.to_string())
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        self.push(n.to_string())
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        self.push(n.to_string())
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<(), E> {
        self.push(n.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.push(String::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.in_list {
            return Err(self.not_text());
        }
        let FieldValues { name, fields, refusal, .. } = self;
        while seq
            .next_element_seed(FieldValues { name, fields: &mut *fields, refusal: &mut *refusal, in_list: true })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.not_text())
    }
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
    /// Siteverify's answer; only `success` counts here.
    #[derive(serde::Deserialize)]
    struct Verdict {
        success: bool,
    }
    let verdict = serde_json::from_str::<Verdict>(&body).ok();
    if status == 200 && verdict.is_some_and(|v| v.success) {
        Ok(())
    } else {
        Err(captcha_failed("the Turnstile token is invalid or expired"))
    }
}

/// Fields that steer the form rather than carry the submitter's message.
fn is_control_field(form: &FormSettings, name: &str) -> bool {
    name == TURNSTILE_FIELD || form.honeypot.as_deref() == Some(name)
}

/// `{{field}}` in the owner's template → the field's first value; then the whole subject is
/// repaired by the header rule, so values cannot join into an encoded word across
/// placeholders.
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
            FieldValue::Text(t) if f.name == name => Some(header::repair(t, MAX_SUBJECT_CHARS)),
            _ => None,
        });
        out.push_str(&value.unwrap_or_default());
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    let subject = header::repair(&out, MAX_SUBJECT_CHARS);
    if subject.is_empty() {
        "New form submission".into()
    } else {
        subject
    }
}

/// The message a submission of form `name` makes: its fields listed in the body, its files
/// attached (moved out of `fields`, not copied), within the form's limits. A submission must
/// fill in the form's `required` fields, and at least one field in any case.
pub fn submission(
    config: &Config,
    name: &str,
    form: &FormSettings,
    mut fields: Vec<Field>,
) -> Result<Submission, ApiError> {
    let filled = |field: &Field| match &field.value {
        FieldValue::Text(text) => !text.trim().is_empty(),
        FieldValue::File { data, .. } => !data.is_empty(),
    };
    let positions: Vec<usize> = (0..fields.len()).filter(|&i| !is_control_field(form, &fields[i].name)).collect();
    let missing: Vec<&String> = form
        .required
        .iter()
        .filter(|required| !positions.iter().any(|&i| fields[i].name == **required && filled(&fields[i])))
        .collect();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|m| m.as_str()).collect();
        let verb = if names.len() == 1 { "is" } else { "are" };
        let mut details = Details::default();
        names.iter().for_each(|n| details.add(*n, "is required"));
        let mut error = details.into_error();
        error.message = format!("{} {verb} required", names.join(", "));
        return Err(error);
    }
    if !positions.iter().any(|&i| filled(&fields[i])) {
        let mut error = ApiError::new(ErrorCode::ValidationFailed, "the submission has no field filled in");
        error.details = vec![("fields".into(), "fill in at least one field".into())];
        return Err(error);
    }
    // Files are checked here and their bytes moved into the message below, once the text that
    // lists them (with their sizes) is written.
    let mut attachments = Vec::new();
    for &i in &positions {
        if let FieldValue::File { filename, content_type, data } = &fields[i].value {
            if filename.is_empty() && data.is_empty() {
                continue; // an empty file input
            }
            if attachments.len() == form.max_files {
                let mut error = too_many_files(form.max_files);
                error.details = vec![(fields[i].name.clone(), "one file too many".into())];
                return Err(error);
            }
            if data.len() > form.max_file_bytes {
                return Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "{} is over the {} bytes this form accepts per file",
                        header::repair(filename, 200),
                        form.max_file_bytes
                    ),
                ));
            }
            // The browser's type for the file when it is well formed (and not a container);
            // octet-stream otherwise.
            let (kind, charset) =
                media_type(content_type).unwrap_or_else(|| ("application/octet-stream".to_string(), None));
            if !form.file_type_allowed(&kind) {
                return Err(ApiError::new(
                    ErrorCode::ValidationFailed,
                    format!("files of type {} are not accepted", header::repair(&kind, 200)),
                ));
            }
            let charset = charset.or_else(|| implied_charset(&kind, data));
            let filename = header::repair(filename.rsplit(['/', '\\']).next().unwrap_or_default(), 200);
            let attachment = Attachment {
                filename: if filename.is_empty() { "attachment".into() } else { filename },
                content_type: kind,
                charset,
                data: Vec::new(),
                content_id: None,
            };
            attachments.push((i, attachment));
        }
    }
    let listed: Vec<&Field> = positions.iter().map(|&i| &fields[i]).collect();
    let reply_to = listed.iter().find_map(|f| match &f.value {
        FieldValue::Text(t) if f.name == form.email_field => EmailAddress::parse(t.trim()).ok(),
        _ => None,
    });
    // The form's own limit, with room for its text shown twice (plain, indented, and HTML);
    // checked on a bound before the two copies are built, and on their real size after.
    let limit =
        form.body_limit(config.max_request_bytes).saturating_add(2 * FORM_TEXT_BYTES).min(config.max_request_bytes);
    let over = || {
        ApiError::new(ErrorCode::PayloadTooLarge, format!("the message this submission makes is over {limit} bytes"))
    };
    let files: usize = (attachments.iter())
        .map(|(i, _)| match &fields[*i].value {
            FieldValue::File { data, .. } => data.len(),
            FieldValue::Text(_) => 0,
        })
        .sum();
    if pages::rendered_len_bound(name, &listed).saturating_add(files) > limit {
        return Err(over());
    }
    let (text, html) = pages::render_fields(name, &listed);
    let subject = subject(&form.subject, &listed);
    let attachments: Vec<Attachment> = (attachments.into_iter())
        .map(|(i, mut attachment)| {
            if let FieldValue::File { data, .. } = &mut fields[i].value {
                attachment.data = std::mem::take(data);
            }
            attachment
        })
        .collect();
    let rendered = text.len() + html.len() + attachments.iter().map(|a| a.data.len()).sum::<usize>();
    if rendered > limit {
        return Err(over());
    }
    let content = Content {
        from: config.mail_from.clone(),
        to: form.to.clone(),
        cc: Vec::new(),
        bcc: Vec::new(),
        reply_to: reply_to.into_iter().map(|email| Mailbox { name: None, email }).collect(),
        subject,
        text: Some(text),
        html: Some(html),
        attachments,
        headers: vec![("X-Edge-Mailer-Form".into(), name.to_string())],
    };
    Ok(Submission { content, dsn: None })
}

fn see_other(location: String, headers: &[(String, String)]) -> HttpResponse {
    HttpResponse::new(303, vec![("location".into(), location)], Vec::new()).with_headers(headers)
}

fn success_answer(
    answer: Answer,
    form: &FormSettings,
    cors: &[(String, String)],
    id: Option<&str>,
    debug: Option<(&Sent, &Outcome)>,
) -> HttpResponse {
    match answer {
        Answer::Json => {
            let mut body = json!({"ok": true});
            if let Some(id) = id {
                body["id"] = json!(id);
            }
            if let Some((sent, outcome)) = debug {
                body["message_id"] = json!(sent.message_id);
                body["smtp"] = json!(sent.smtp);
                add_debug(&mut body, outcome);
            }
            HttpResponse::json(200, &body).with_headers(cors)
        }
        Answer::Browser { back } => match &form.redirect {
            Some(url) => see_other(url.clone(), cors),
            None => pages::thanks(back).with_headers(cors),
        },
    }
}

/// A submission stored for queued delivery: JSON `{"ok":true,"id":…}`, or what a browser gets
/// for a sent one.
fn accepted_answer(answer: Answer, form: &FormSettings, cors: &[(String, String)], record: &Record) -> HttpResponse {
    match answer {
        Answer::Json => HttpResponse::json(200, &json!({"ok": true, "id": record.id})).with_headers(cors),
        Answer::Browser { .. } => success_answer(answer, form, cors, None, None),
    }
}

fn error_answer(
    answer: Answer,
    form: Option<&FormSettings>,
    cors: &[(String, String)],
    error: &ApiError,
    debug: Option<&Outcome>,
) -> HttpResponse {
    let mut response = match answer {
        Answer::Json => match debug {
            Some(outcome) => HttpResponse::send_failed(error, outcome, true),
            None => HttpResponse::error(error),
        },
        Answer::Browser { back } => match form.and_then(|f| f.error_redirect.as_ref()) {
            Some(url) => {
                // The query goes before any fragment, where the page can read it.
                let (url, fragment) = url.split_once('#').map_or((url.as_str(), ""), |(u, f)| (u, f));
                let separator = if url.contains('?') { '&' } else { '?' };
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("error", error.code.as_str())
                    .append_pair("message", &error.message)
                    .finish();
                let fragment = if fragment.is_empty() { String::new() } else { format!("#{fragment}") };
                see_other(format!("{url}{separator}{query}{fragment}"), &[])
            }
            None => pages::error(error, back),
        },
    };
    response.error = Some(error.code);
    if let Some(seconds) = error.retry_after {
        if !response.headers.iter().any(|(n, _)| n == "retry-after") {
            response.headers.push(("retry-after".into(), seconds.to_string()));
        }
    }
    response.with_headers(cors)
}
#[cfg(test)]
mod tests {
    use super::*;

    fn text(name: &str, value: &str) -> Field {
        Field { name: name.into(), value: FieldValue::Text(value.into()) }
    }

    fn texts(fields: &[Field]) -> Vec<(&str, &str)> {
        (fields.iter())
            .map(|f| match &f.value {
                FieldValue::Text(t) => (f.name.as_str(), t.as_str()),
                FieldValue::File { .. } => (f.name.as_str(), "<file>"),
            })
            .collect()
    }

    #[test]
    fn json_fields_are_read_in_order_one_per_list_item() {
        let body = br#"{"name": "Ada", "n": 5, "x": -1.5, "ok": true, "none": null, "tags": ["a", 2], "name": "B"}"#;
        let fields = json_fields(body).unwrap();
        assert_eq!(
            texts(&fields),
            [
                ("name", "Ada"),
                ("n", "5"),
                ("x", "-1.5"),
                ("ok", "true"),
                ("none", ""),
                ("tags", "a"),
                ("tags", "2"),
                ("name", "B")
            ]
        );
        for nested in [&br#"{"a": {"b": 1}}"#[..], br#"{"a": [[1]]}"#, br#"{"a": [{}]}"#] {
            let error = json_fields(nested).unwrap_err();
            assert_eq!((error.code, error.message.as_str()), (ErrorCode::ValidationFailed, "a must be text"));
        }
        let error = json_fields(br#"{"a": {"b": 1}, "c": "#).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidRequest, "the syntax error wins: {}", error.message);
    }

    #[test]
    fn json_fields_stop_at_the_limit_without_reading_on() {
        let body = format!(r#"{{"a": [{}0], "b": "never read"}}"#, "0,".repeat(1_000_000));
        let (mut fields, mut refusal) = (Vec::new(), None);
        let mut reader = serde_json::Deserializer::from_slice(body.as_bytes());
        let read = FieldsSeed { fields: &mut fields, refusal: &mut refusal }.deserialize(&mut reader);
        assert!(read.is_err());
        assert_eq!(fields.len(), MAX_FIELDS, "no field past the limit was built");
        let refusal = refusal.unwrap();
        assert_eq!(
            (refusal.code, refusal.message.as_str()),
            (ErrorCode::ValidationFailed, "at most 100 fields are accepted")
        );
        // A hundred fields are fine.
        let body = format!(r#"{{"a": [{}0]}}"#, "0,".repeat(MAX_FIELDS - 1));
        assert_eq!(json_fields(body.as_bytes()).unwrap().len(), MAX_FIELDS);
    }

    #[test]
    fn urlencoded_fields_stop_one_past_the_limit() {
        let body = "a&".repeat(1_000_000);
        assert_eq!(urlencoded_fields(body.as_bytes()).len(), MAX_FIELDS + 1);
        assert_eq!(texts(&urlencoded_fields(b"a=1+2&b=%C3%A9&c")), [("a", "1 2"), ("b", "é"), ("c", "")]);
    }

    #[test]
    fn multipart_parts_are_counted_from_the_delimiters() {
        assert_eq!(boundary("multipart/form-data; boundary=abc"), Some("abc"));
        assert_eq!(boundary(r#"multipart/form-data; charset=x; BOUNDARY="a b""#), Some("a b"));
        assert_eq!(boundary("multipart/form-data"), None);
        let part = |headers: &str| format!("--xyz\r\n{headers}\r\n\r\nvalue\r\n");
        let body = [
            part(r#"Content-Disposition: form-data; name="a""#),
            part(r#"Content-Disposition: form-data; name="f"; filename="a.txt""#),
            part(r#"Content-Disposition: form-data; name="g"; filename="""#),
            "data with --xyz inside a line\r\n--xyz--\r\n".to_string(),
            part(r#"Content-Disposition: form-data; name="after"; filename="epilogue""#),
        ]
        .concat();
        assert_eq!(
            multipart_parts(body.as_bytes(), b"xyz", 0),
            Parts { parts: 3, files: 1, extra_file: Some("f".into()) }
        );
        assert_eq!(multipart_parts(body.as_bytes(), b"xyz", 1).extra_file, None);
        // 170,000 one-byte files: counted up to the one past the field limit, nothing built.
        let many = part(r#"Content-Disposition: form-data; name="f"; filename="a""#).repeat(170_000);
        let counted = multipart_parts(many.as_bytes(), b"xyz", 3);
        assert_eq!((counted.parts, counted.files), (MAX_FIELDS + 1, MAX_FIELDS));
        assert_eq!(counted.extra_file.as_deref(), Some("f"));
        // Delimiters with no headers' end: 101 searches for it, 8 KiB each, not a million.
        let bare = "--xyz\n".repeat(1_000_000);
        assert_eq!(multipart_parts(bare.as_bytes(), b"xyz", 0).parts, MAX_FIELDS + 1);
    }

    #[test]
    fn subject_template_uses_repaired_first_values() {
        let owned =
            [text("name", "Ada\r\nBcc: x@evil.example"), text("name", "second"), text("topic", "=?utf-8?q?x?=")];
        let fields: Vec<&Field> = owned.iter().collect();
        assert_eq!(subject("New message from {{name}}", &fields), "New message from Ada Bcc: x@evil.example");
        assert_eq!(subject("{{ topic }} / {{missing}}!", &fields), "= ?utf-8?q?x? = / !");
        assert!(header::problem(&subject("{{topic}}", &fields)).is_none());
        assert_eq!(subject("{{missing}}", &fields), "New form submission");
        assert_eq!(subject("unclosed {{name", &fields), "unclosed {{name");
    }

    #[test]
    fn values_cannot_join_into_an_encoded_word_across_placeholders() {
        let owned = [text("a", "=?utf-8?b?"), text("b", "QmNjOiB4QGV2aWwuZXhhbXBsZQ==?=")];
        let fields: Vec<&Field> = owned.iter().collect();
        for template in ["{{a}}{{b}}", "{{a}}{{b}} tail", "x{{a}}{{b}}"] {
            let made = subject(template, &fields);
            assert_eq!(header::problem(&made), None, "{template} made {made:?}");
        }
        // Each half alone passes the rule; the join must not.
        let halves = [text("a", "="), text("b", "?utf-8?q?x?"), text("c", "=")];
        let fields: Vec<&Field> = halves.iter().collect();
        assert_eq!(header::problem(&subject("{{a}}{{b}}{{c}}", &fields)), None);
    }

    #[test]
    fn origin_from_origin_or_referer_and_null_is_never_replaced() {
        let head = |headers: &[(&str, &str)]| RequestHead {
            method: "POST".into(),
            path: "/v1/forms/contact".into(),
            headers: headers.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            ..RequestHead::default()
        };
        assert_eq!(request_origin(&head(&[("Origin", "https://a.example")])).as_deref(), Some("https://a.example"));
        assert_eq!(
            request_origin(&head(&[("Referer", "https://b.example:8443/contact?x=1")])).as_deref(),
            Some("https://b.example:8443")
        );
        assert_eq!(request_origin(&head(&[])), None);
        let null = head(&[("Origin", "null"), ("Referer", "https://a.example/page")]);
        assert_eq!(request_origin(&null).as_deref(), Some("null"));
        let form = FormSettings {
            allowed_origins: vec!["https://a.example".into()],
            ..crate::config::forms::parse(r#"{"f": {"to": "o@example.com"}}"#).unwrap().get("f").unwrap().clone()
        };
        assert!(cors_headers(&form, request_origin(&null).as_deref()).is_empty());
        let spoof = head(&[("Referer", "http://127.0.0.1:80@evil.example/")]);
        assert_eq!(request_origin(&spoof), None, "not loopback, and not an origin at all");
    }

    #[test]
    fn the_error_redirect_gets_its_query_before_any_fragment() {
        let form = crate::config::forms::parse(
            r#"{"f": {"to": "o@example.com", "error_redirect": "https://a.example/oops?x=1#top"}}"#,
        )
        .unwrap();
        let form = form.get("f").unwrap();
        let error = ApiError::new(ErrorCode::RateLimited, "slow down");
        let response = error_answer(Answer::Browser { back: None }, Some(form), &[], &error, None);
        let location = response.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("location")).unwrap();
        assert_eq!(location.1, "https://a.example/oops?x=1&error=rate_limited&message=slow+down#top");
    }
}
