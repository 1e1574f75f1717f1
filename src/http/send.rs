//! `POST /v1/send`: the API key, then the JSON body → a validated [`Submission`] → the relay.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::authorized_body;
use super::body::BodySource;
use super::input::{from_body, BodyError, Capped, Object};
use super::request::{Platform, RequestHead};
use super::response::{add_debug, Handled, HttpResponse};
use crate::address::Mailbox;
use crate::config::Config;
use crate::delivery::idempotency::{self, Lookup};
use crate::delivery::queue::{self, Record, Tag};
use crate::delivery::submit::{submit, Submitted};
use crate::delivery::transaction::{Sent, Submission};
use crate::error::{ApiError, Details, ErrorCode};
use crate::header;
use crate::message::{implied_charset, Attachment, Content};
use crate::smtp::envelope::{Dsn, Notify};
use crate::time;

/// Most envelope recipients (to + cc + bcc) one request may name.
pub const MAX_RECIPIENTS: usize = 50;
/// Most attachments (inline images included) and extra headers per message.
pub const MAX_ATTACHMENTS: usize = 20;
pub const MAX_EXTRA_HEADERS: usize = 20;
/// Most `reply_to` addresses.
pub const MAX_REPLY_TO: usize = 10;

/// Queued delivery: asked for with `Prefer: respond-async` (RFC 7240), or the deployment's
/// default (`DELIVERY_MODE=queue`).
pub fn wants_queue(head: &RequestHead, config: &Config) -> bool {
    let prefer = head.header("prefer").unwrap_or_default();
    config.queue_by_default || prefer.split(',').any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

/// `202 Accepted` for a stored message: where to follow it, and its id and Message-ID.
pub fn queued_answer(record: &Record) -> HttpResponse {
    let body = json!({"id": record.id, "status": record.status, "message_id": record.message_id});
    let mut response = HttpResponse::json(202, &body);
    response.headers.push(("location".into(), format!("/v1/messages/{}", record.id)));
    response.headers.push(("preference-applied".into(), "respond-async".into()));
    response
}

/// What a send the relay accepted answers: `{"ok": true, "id", "message_id", "accepted",
/// "rejected", "smtp"}` (`id` names its record: `GET /v1/messages/{id}`).
pub fn sent_answer(id: &str, sent: &Sent) -> Value {
    json!({"ok": true, "id": id, "message_id": sent.message_id, "accepted": sent.accepted, "rejected": sent.rejected,
    "smtp": sent.smtp})
}

/// `POST /v1/send`. The key is checked before a byte of the body is read.
pub async fn handle<P: Platform>(
    env: P,
    config: Result<&Config, &ApiError>,
    head: &RequestHead,
    mut source: impl BodySource,
) -> Handled<P> {
    let debug = head.debug();
    let (config, api_key, body) = match authorized_body(&env, config, head, &mut source).await {
        Ok(ready) => ready,
        Err(response) => return response.into(),
    };
    let submission = match parse(&body, config) {
        Ok(submission) => submission,
        Err(error) => return HttpResponse::error(&error).into(),
    };
    let queued = wants_queue(head, config);
    let claim = match head.header("idempotency-key") {
        None => None,
        Some(key) => {
            let recipients = submission.content.envelope_recipients().len();
            let ttl = idempotency::pending_ttl_seconds(&config.relay, recipients);
            // The delivery mode is part of the request: the same key and body asked another
            // way (Prefer: respond-async, or under another DELIVERY_MODE) is a conflict, never
            // a replay of an answer of the other kind.
            let scope = if queued { "/v1/send respond-async" } else { "/v1/send" };
            match idempotency::begin(&env, api_key, key, scope, &body, ttl).await {
                Ok(Lookup::Claimed(claim)) => Some(claim),
                Ok(Lookup::Replay { status, body }) => return HttpResponse::replayed(status, body).into(),
                Err(error) => return HttpResponse::error(&error).into(),
            }
        }
    };
    drop(body);
    if queued {
        let (response, accepted) = match queue::accept(&env, config, &submission, queue::Extras::default()).await {
            Ok(record) => (queued_answer(&record), true),
            Err(error) => (HttpResponse::error(&error), false),
        };
        if let Some(claim) = claim {
            idempotency::finish(&env, claim, response.status, &response.body, accepted).await;
        }
        return response.into();
    }
    let Submitted { outcome, after, record } = submit(&env, config, &submission).await;
    let response = match (&outcome.result, &record) {
        (Ok(sent), Some(record)) => {
            let mut answer = sent_answer(&record.id, sent);
            if debug {
                add_debug(&mut answer, &outcome);
            }
            HttpResponse::json(200, &answer)
        }
        (Err(error), _) => HttpResponse::send_failed(error, &outcome, debug),
        (Ok(_), None) => unreachable!("a sent message has its record"),
    };
    if let Some(claim) = claim {
        idempotency::finish(&env, claim, response.status, &response.body, outcome.may_have_left()).await;
    }
    Handled { response, after, records: record.into_iter().collect() }
}

/// `{"filename", "content_type"?, "content", "content_id"?}`. `path` (a URL to fetch, in
/// Resend's API) is read only to be refused by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentInput<'a> {
    filename: String,
    content_type: Option<String>,
    #[serde(borrow)]
    content: Option<ContentInput<'a>>,
    content_id: Option<String>,
    path: Option<String>,
}

/// An attachment's content: base64, borrowed from the request body (JSON strings of base64
/// have no escapes, so it is never copied before it is decoded); or bytes, as older Resend
/// SDKs send a Node `Buffer` (`{"type": "Buffer", "data": [37, 80, …]}`) or a plain array.
#[derive(Debug)]
enum ContentInput<'a> {
    Base64(Cow<'a, str>),
    Bytes(Vec<u8>),
}

impl<'de: 'a, 'a> Deserialize<'de> for ContentInput<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for ContentVisitor<'a> {
            type Value = ContentInput<'a>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("base64, or bytes ({\"type\": \"Buffer\", \"data\": [...]} or [...])")
            }

            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(ContentInput::Base64(Cow::Borrowed(text)))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(ContentInput::Base64(Cow::Owned(text.to_string())))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(ContentInput::Bytes)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Buffer<'a> {
                    #[serde(rename = "type", borrow)]
                    kind: Option<Cow<'a, str>>,
                    data: Vec<u8>,
                }
                let buffer = Buffer::deserialize(MapAccessDeserializer::new(map))?;
                if buffer.kind.is_some_and(|kind| kind != "Buffer") {
                    return Err(de::Error::custom("an object content must be a Buffer"));
                }
                Ok(ContentInput::Bytes(buffer.data))
            }
        }

        deserializer.deserialize_any(ContentVisitor(PhantomData))
    }
}

/// `"a@b.c"`, `"Name <a@b.c>"` or `{"name": …, "email": …}`.
#[derive(Debug)]
enum AddressInput {
    Text(String),
    Object { name: Option<String>, email: String },
}

/// One address or a list of them; of a list, at most `N` are read (see [`Capped`]).
#[derive(Debug)]
enum AddressField<const N: usize> {
    One(AddressInput),
    Many(Capped<AddressInput, N>),
}

const ADDRESS: &str = "an address: \"a@b.c\", \"Name <a@b.c>\" or {\"name\", \"email\"}";

impl AddressInput {
    /// `{"name"?, "email"}`
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Object {
            name: Option<String>,
            email: String,
        }
        let Object { name, email } = Object::deserialize(MapAccessDeserializer::new(map))?;
        Ok(AddressInput::Object { name, email })
    }
}

impl<'de> Deserialize<'de> for AddressInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AddressVisitor;

        impl<'de> Visitor<'de> for AddressVisitor {
            type Value = AddressInput;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(ADDRESS)
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(AddressInput::Text(text.to_string()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                AddressInput::from_map(map)
            }
        }

        deserializer.deserialize_any(AddressVisitor)
    }
}

impl<'de, const N: usize> Deserialize<'de> for AddressField<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor<const N: usize>;

        impl<'de, const N: usize> Visitor<'de> for FieldVisitor<N> {
            type Value = AddressField<N>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{ADDRESS}, or a list of them")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(AddressField::One(AddressInput::Text(text.to_string())))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                AddressInput::from_map(map).map(AddressField::One)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Capped::deserialize(SeqAccessDeserializer::new(seq)).map(AddressField::Many)
            }
        }

        deserializer.deserialize_any(FieldVisitor)
    }
}

/// `"headers": {"X-Name": "value", …}` in the order given (a name given twice keeps its last
/// value). A value that is not a string is kept as `None`, to be reported with the others.
/// Past [`MAX_EXTRA_HEADERS`] names, the rest is read past: `too_many` says so.
#[derive(Debug, Default)]
struct HeadersInput {
    headers: Vec<(String, Option<String>)>,
    too_many: bool,
}

impl<'de> Deserialize<'de> for HeadersInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;

        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = HeadersInput;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of header names and values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut input = HeadersInput::default();
                while !input.too_many {
                    let Some(name) = map.next_key::<String>()? else { return Ok(input) };
                    let HeaderValue(value) = map.next_value()?;
                    input.headers.retain(|(known, _)| *known != name);
                    input.headers.push((name, value));
                    input.too_many = input.headers.len() > MAX_EXTRA_HEADERS;
                }
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(input)
            }
        }

        deserializer.deserialize_map(HeadersVisitor)
    }
}

/// A header's value: a string, or `None` for any other JSON value (read past, not built).
struct HeaderValue(Option<String>);

impl<'de> Deserialize<'de> for HeaderValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;

        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = HeaderValue;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a header value")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(HeaderValue(Some(text.to_string())))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(HeaderValue(None))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(HeaderValue(None))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(HeaderValue(None))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(HeaderValue(None))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(HeaderValue(None))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                IgnoredAny.visit_seq(seq).map(|_| HeaderValue(None))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                IgnoredAny.visit_map(map).map(|_| HeaderValue(None))
            }
        }

        deserializer.deserialize_any(ValueVisitor)
    }
}

/// `"dsn": {"notify": ["failure", "delay"], "return": "headers", "envelope_id": "…"}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DsnInput {
    notify: Option<Capped<String, MAX_NOTIFY>>,
    #[serde(rename = "return")]
    ret: Option<String>,
    envelope_id: Option<String>,
}

/// Most words in `dsn.notify` (there are four, and a word may be repeated).
const MAX_NOTIFY: usize = 8;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody<'a> {
    dsn: Option<Object<DsnInput>>,
    from: Option<AddressInput>,
    to: Option<AddressField<MAX_RECIPIENTS>>,
    cc: Option<AddressField<MAX_RECIPIENTS>>,
    bcc: Option<AddressField<MAX_RECIPIENTS>>,
    reply_to: Option<AddressField<MAX_REPLY_TO>>,
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    #[serde(borrow)]
    attachments: Option<Capped<Object<AttachmentInput<'a>>, MAX_ATTACHMENTS>>,
    headers: Option<HeadersInput>,
    /// Resend-compatible API only (`/emails`): refused on `/v1/send`.
    tags: Option<Capped<Object<Tag>, MAX_TAGS>>,
    scheduled_at: Option<String>,
}

/// Which API a body came to: `/v1/send`, or Resend's `/emails` (which also takes `tags` and
/// `scheduled_at`, relative to `now_ms`).
#[derive(Clone, Copy)]
pub enum Api {
    V1,
    Resend { now_ms: u64 },
}

/// A validated request: the message, and what a queued one carries besides.
pub struct Parsed {
    pub submission: Submission,
    pub tags: Vec<Tag>,
    pub send_at: Option<u64>,
}

/// Collects every problem before answering, so a caller fixes them all at once: the first
/// [`MAX_DETAILS`](crate::error::MAX_DETAILS) in full, the rest counted.
#[derive(Default)]
struct Problems(Details);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.add(field, message);
    }

    /// How many problems were found so far, listed or counted.
    fn count(&self) -> usize {
        self.0.kept.len() + self.0.omitted
    }

    fn mailbox(&mut self, field: String, input: &AddressInput) -> Option<Mailbox> {
        let parsed = match input {
            AddressInput::Text(text) => Mailbox::parse(text),
            AddressInput::Object { name, email } => Mailbox::new(name.as_deref(), email),
        };
        parsed.map_err(|why| self.add(field, why.to_string())).ok()
    }

    fn mailboxes<const N: usize>(&mut self, field: &str, input: Option<&AddressField<N>>) -> Vec<Mailbox> {
        match input {
            None => Vec::new(),
            Some(AddressField::One(one)) => self.mailbox(field.to_string(), one).into_iter().collect(),
            Some(AddressField::Many(many)) => {
                many.items.iter().enumerate().filter_map(|(i, a)| self.mailbox(format!("{field}[{i}]"), a)).collect()
            }
        }
    }
}

fn dsn(problems: &mut Problems, input: &DsnInput) -> Dsn {
    let mut dsn = Dsn::default();
    if let Some(notify) = &input.notify {
        if notify.is_over() {
            problems.add("dsn.notify", format!("at most {MAX_NOTIFY} words are allowed"));
        }
        let words: Vec<String> = notify.items.iter().map(|w| w.to_ascii_lowercase()).collect();
        if words.is_empty() || (words.iter().any(|w| w == "never") && words.len() > 1) {
            problems.add("dsn.notify", "must be never alone, or some of success, failure and delay");
        }
        let mut chosen = Vec::new();
        for word in &words {
            let value = match word.as_str() {
                "success" => Notify::Success,
                "failure" => Notify::Failure,
                "delay" => Notify::Delay,
                "never" => continue,
                _ => {
                    problems.add("dsn.notify", format!("\"{word}\" is not success, failure, delay or never"));
                    continue;
                }
            };
            if !chosen.contains(&value) {
                chosen.push(value);
            }
        }
        dsn.notify = Some(chosen);
    }
    dsn.return_headers_only = match input.ret.as_deref() {
        None => None,
        Some("headers") => Some(true),
        Some("full") => Some(false),
        Some(_) => {
            problems.add("dsn.return", "must be headers or full");
            None
        }
    };
    if let Some(id) = &input.envelope_id {
        if id.is_empty()
            || id.len() > 100
            || !id.bytes().all(|b| (b' '..=b'~').contains(&b))
            || header::problem(id).is_some()
        {
            problems.add("dsn.envelope_id", "must be 1 to 100 printable ASCII characters");
        }
        dsn.envelope_id = Some(id.clone());
    }
    dsn
}

fn is_token(t: &str) -> bool {
    !t.is_empty() && t.len() <= 127 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

/// `type/subtype` of token characters (RFC 2045 §5.1), optionally `; charset=token`;
/// lower-cased. Other parameters are refused: the builder writes the ones it needs. So are
/// `multipart/*` and `message/*`: an attachment that declares itself a container would be
/// read as more parts of the message.
pub(crate) fn media_type(value: &str) -> Option<(String, Option<String>)> {
    let mut pieces = value.split(';');
    let (kind, subtype) = pieces.next()?.trim().split_once('/')?;
    let charset = match pieces.next() {
        None => None,
        Some(param) => {
            let (name, charset) = param.trim().split_once('=')?;
            let charset = charset.trim().trim_matches('"');
            if !name.trim().eq_ignore_ascii_case("charset") || !is_token(charset) {
                return None;
            }
            Some(charset.to_ascii_lowercase())
        }
    };
    if pieces.next().is_some() || !is_token(kind) || !is_token(subtype) {
        return None;
    }
    if kind.eq_ignore_ascii_case("multipart") || kind.eq_ignore_ascii_case("message") {
        return None;
    }
    Some((format!("{kind}/{subtype}").to_ascii_lowercase(), charset))
}

fn attachment(problems: &mut Problems, index: usize, input: AttachmentInput<'_>) -> Option<Attachment> {
    let field = |name: &str| format!("attachments[{index}].{name}");
    let before = problems.count();
    let filename = input.filename.trim();
    if filename.is_empty() || filename.chars().count() > 255 {
        problems.add(field("filename"), "must have 1 to 255 characters");
    } else if let Some(why) = header::problem(filename) {
        problems.add(field("filename"), why);
    } else if filename.contains(['/', '\\']) {
        problems.add(field("filename"), "must be a file name, not a path");
    }
    let content_type = match input.content_type.as_deref() {
        None => Some(("application/octet-stream".to_string(), None)),
        Some(raw) => {
            let parsed = media_type(raw);
            if parsed.is_none() {
                problems.add(field("content_type"), "must be a MIME type such as application/pdf");
            }
            parsed
        }
    };
    if let Some(id) = &input.content_id {
        if id.is_empty() || id.len() > 100 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@$".contains(&b)) {
            problems.add(field("content_id"), "must be 1 to 100 letters, digits or ._-@$");
        }
    }
    let data = match (input.content, &input.path) {
        (_, Some(_)) => {
            problems.add(field("path"), "remote attachments are not supported: send the file as content");
            None
        }
        (None, None) => {
            problems.add(field("content"), "is required");
            None
        }
        (Some(ContentInput::Bytes(bytes)), None) => Some(bytes),
        (Some(ContentInput::Base64(encoded)), None) => {
            // MIME-style base64 wraps at 76 columns: line breaks and spaces are not part of it.
            let content = encoded.as_bytes();
            let unwrapped: Vec<u8>;
            let content = if content.iter().any(u8::is_ascii_whitespace) {
                unwrapped = content.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
                &unwrapped[..]
            } else {
                content
            };
            let decoded = BASE64.decode(content).ok();
            if decoded.is_none() {
                problems.add(field("content"), "is not valid base64");
            }
            decoded
        }
    };
    if problems.count() > before {
        return None;
    }
    let (content_type, charset) = content_type.unwrap_or_default();
    let data = data.unwrap_or_default();
    let charset = charset.or_else(|| implied_charset(&content_type, &data));
    Some(Attachment { filename: filename.to_string(), content_type, charset, data, content_id: input.content_id })
}

fn extra_headers(problems: &mut Problems, input: &HeadersInput) -> Vec<(String, String)> {
    if input.too_many {
        problems.add("headers", format!("at most {MAX_EXTRA_HEADERS} extra headers are allowed"));
        return Vec::new();
    }
    let mut headers = Vec::new();
    for (name, value) in &input.headers {
        let field = format!("headers.{name}");
        if !header::is_extension_name(name) {
            problems.add(field, "only X- headers of letters, digits and hyphens may be added");
            continue;
        }
        let Some(value) = value else {
            problems.add(field, "must be a string");
            continue;
        };
        if let Some(why) = header::problem(value) {
            problems.add(field, why);
        } else if value.chars().count() > 900 {
            problems.add(field, "is longer than 900 characters");
        } else {
            headers.push((name.clone(), value.clone()));
        }
    }
    headers
}

/// Parses and validates a send request. Policy (allowed senders and recipients) is checked
/// here too, so nothing unvalidated leaves this function. Strings are read in one pass straight
/// into their fields, attachment contents borrowed from `body`.
pub fn parse(body: &[u8], config: &Config) -> Result<Submission, ApiError> {
    parse_for(Api::V1, body, config).map(|parsed| parsed.submission)
}

/// [`parse`], for either API (and for each message of a batch, read on its own).
pub fn parse_for(api: Api, body: &[u8], config: &Config) -> Result<Parsed, ApiError> {
    let input = from_body::<SendBody>(body, b'{').map_err(|e| match e {
        BodyError::Syntax(e) => ApiError::new(ErrorCode::InvalidRequest, format!("the body is not valid JSON: {e}")),
        BodyError::NotA => ApiError::new(ErrorCode::InvalidRequest, "the body must be a JSON object"),
        BodyError::Shape(why) => {
            ApiError::new(ErrorCode::ValidationFailed, format!("the body does not match the API: {why}"))
        }
    })?;
    submission(api, input, config)
}

fn submission(api: Api, mut body: SendBody<'_>, config: &Config) -> Result<Parsed, ApiError> {
    let mut problems = Problems::default();
    let (tags, send_at) = match api {
        Api::V1 => {
            for (field, given) in [("tags", body.tags.is_some()), ("scheduled_at", body.scheduled_at.is_some())] {
                if given {
                    problems.add(field, "is taken by POST /emails (the Resend-compatible API), not /v1/send");
                }
            }
            (Vec::new(), None)
        }
        Api::Resend { now_ms } => {
            let tags = body.tags.take().unwrap_or_default();
            check_tags(&mut problems, &tags);
            let tags = tags.items.into_iter().map(|Object(tag)| tag).collect();
            (tags, body.scheduled_at.as_deref().and_then(|at| scheduled(&mut problems, at, now_ms)))
        }
    };
    let from = match &body.from {
        None => Some(config.mail_from.clone()),
        Some(input) => problems.mailbox("from".into(), input),
    };
    let to = problems.mailboxes("to", body.to.as_ref());
    let cc = problems.mailboxes("cc", body.cc.as_ref());
    let bcc = problems.mailboxes("bcc", body.bcc.as_ref());
    let reply_to = problems.mailboxes("reply_to", body.reply_to.as_ref());
    if body.reply_to.as_ref().is_some_and(|r| matches!(r, AddressField::Many(many) if many.is_over())) {
        problems.add("reply_to", format!("at most {MAX_REPLY_TO} addresses are allowed"));
    }

    let dsn = body.dsn.as_ref().map(|Object(input)| dsn(&mut problems, input));
    let subject = body.subject.unwrap_or_default();
    if subject.trim().is_empty() {
        problems.add("subject", "is required");
    } else if let Some(why) = header::problem(&subject) {
        problems.add("subject", why);
    } else if subject.chars().count() > 998 {
        problems.add("subject", "is longer than 998 characters");
    }
    if body.text.is_none() && body.html.is_none() {
        problems.add("text", "text or html is required");
    }
    for (field, part) in [("text", &body.text), ("html", &body.html)] {
        if part.as_deref().is_some_and(|p| p.contains('\0')) {
            problems.add(field, "contains a NUL character");
        }
    }
    let given = body.attachments.take().unwrap_or_default();
    if given.is_over() {
        problems.add("attachments", format!("at most {MAX_ATTACHMENTS} attachments are allowed"));
    }
    let attachments: Vec<Attachment> =
        (given.items.into_iter()).enumerate().filter_map(|(i, Object(a))| attachment(&mut problems, i, a)).collect();
    if body.html.is_none() && attachments.iter().any(|a| a.content_id.is_some()) {
        problems.add("html", "inline attachments (content_id) need an html body");
    }
    let headers = extra_headers(&mut problems, &body.headers.take().unwrap_or_default());
    // Addresses past a list's limit were counted, not read: then every address given counts.
    let (named, unread) = [&body.to, &body.cc, &body.bcc]
        .into_iter()
        .map(|f| match f {
            None => (0, 0),
            Some(AddressField::One(_)) => (1, 0),
            Some(AddressField::Many(many)) => (many.len, many.len - many.items.len()),
        })
        .fold((0, 0), |(named, unread), (n, u)| (named + n, unread + u));
    let count = if unread > 0 { named } else { to.len() + cc.len() + bcc.len() };
    if named == 0 {
        problems.add("to", "at least one recipient is required");
    }
    if count > MAX_RECIPIENTS {
        // First: of a thousand bad addresses, this one says why the rest were not read.
        problems.0.add_first("to", format!("{count} recipients; at most {MAX_RECIPIENTS} are allowed"));
    }
    if !problems.0.is_empty() {
        return Err(problems.0.into_error());
    }
    let from = from.unwrap_or_else(|| config.mail_from.clone());

    if !config.sender_allowed(&from.email) {
        return Err(ApiError::new(ErrorCode::SenderNotAllowed, format!("{} is not an allowed sender", from.email)));
    }
    if let Some(refused) = to.iter().chain(&cc).chain(&bcc).find(|m| !config.recipient_allowed(&m.email)) {
        return Err(ApiError::new(
            ErrorCode::RecipientNotAllowed,
            format!("{} is not an allowed recipient", refused.email),
        ));
    }
    let content =
        Content { from, to, cc, bcc, reply_to, subject, text: body.text, html: body.html, attachments, headers };
    Ok(Parsed { submission: Submission { content, dsn }, tags, send_at })
}

/// Most tags a message may carry.
const MAX_TAGS: usize = 20;

/// Tags as Resend takes them: a name and a value of ASCII letters, digits, `_` and `-`, at
/// most 256 characters each.
fn check_tags(problems: &mut Problems, tags: &Capped<Object<Tag>, MAX_TAGS>) {
    if tags.is_over() {
        problems.add("tags", format!("at most {MAX_TAGS} tags are allowed"));
    }
    let valid = |s: &str| {
        (1..=256).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    for (i, Object(tag)) in tags.items.iter().enumerate() {
        if !valid(&tag.name) || !valid(&tag.value) {
            problems.add(format!("tags[{i}]"), "name and value must be 1 to 256 ASCII letters, digits, _ or -");
        }
    }
}

/// `scheduled_at`: an ISO 8601 time at most 12 hours ahead (the queue's longest delay); a
/// time already past sends now.
fn scheduled(problems: &mut Problems, at: &str, now_ms: u64) -> Option<u64> {
    let Some(at_ms) = time::parse_rfc3339(at) else {
        problems.add("scheduled_at", "must be an ISO 8601 time with its offset, such as 2026-11-25T18:30:00Z");
        return None;
    };
    if at_ms > now_ms + queue::MAX_DELAY_SECONDS * 1000 {
        problems.add("scheduled_at", "must be at most 12 hours ahead");
        return None;
    }
    Some(at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_lookup(|name| match name {
            "SMTP_HOST" => Some("smtp.example.com".into()),
            "MAIL_FROM" => Some("Site <noreply@example.com>".into()),
            "ALLOWED_FROM" => Some("*@example.com".into()),
            _ => None,
        })
        .unwrap()
    }

    fn parse_json(json: serde_json::Value) -> Result<Content, ApiError> {
        parse(json.to_string().as_bytes(), &config()).map(|s| s.content)
    }

    #[test]
    fn attachment_media_types() {
        assert_eq!(media_type("Application/PDF"), Some(("application/pdf".into(), None)));
        assert_eq!(
            media_type("text/plain; charset=ISO-8859-1"),
            Some(("text/plain".into(), Some("iso-8859-1".into())))
        );
        assert_eq!(media_type("text/plain; charset=\"utf-8\""), Some(("text/plain".into(), Some("utf-8".into()))));
        for bad in [
            "pdf",
            "multipart/mixed",
            "Message/RFC822",
            "text/",
            "/plain",
            "text/plain; name=x",
            "text/plain; charset=a b",
            "a/b; charset=x; y=z",
            "te xt/plain",
        ] {
            assert_eq!(media_type(bad), None, "{bad}");
        }
    }

    #[test]
    fn attachments_and_headers_are_validated_field_by_field() {
        let body = serde_json::json!({"to": "a@example.org", "subject": "x", "text": "y",
            "attachments": [
                {"filename": "ok.txt", "content_type": "text/plain", "content": "R3LDvMOfZQ=="},
                {"filename": "../etc/passwd", "content": "aGk="},
                {"filename": "x.bin", "content_type": "nonsense", "content": "not base64!"},
                {"filename": "logo.png", "content": "aGk=", "content_id": "<bad id>"}],
            "headers": {"X-Ok": "fine", "Bcc": "x@evil.example", "X-Num": 5}});
        let error = parse(body.to_string().as_bytes(), &config()).unwrap_err();
        let fields: Vec<&str> = error.details.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "attachments[1].filename",
                "attachments[2].content_type",
                "attachments[2].content",
                "attachments[3].content_id",
                "headers.Bcc",
                "headers.X-Num"
            ]
        );
        let ok = serde_json::json!({"to": "a@example.org", "subject": "x", "text": "y",
            "attachments": [{"filename": "ok.txt", "content_type": "text/plain", "content": "R3LDvMOfZQ=="}],
            "headers": {"X-Ok": "fine"}});
        let content = parse(ok.to_string().as_bytes(), &config()).unwrap().content;
        assert_eq!(content.attachments[0].data, "Grüße".as_bytes());
        assert_eq!(content.attachments[0].charset.as_deref(), Some("utf-8"));
        assert_eq!(content.headers, vec![("X-Ok".to_string(), "fine".to_string())]);
    }

    #[test]
    fn headers_keep_the_last_value_of_a_name_and_stop_past_the_limit() {
        let headers: HeadersInput = serde_json::from_str(r#"{"X-A": "1", "X-B": 2, "X-A": "3"}"#).unwrap();
        assert_eq!(headers.headers, [("X-B".to_string(), None), ("X-A".to_string(), Some("3".to_string()))]);
        assert!(!headers.too_many);
        // The same name a thousand times is one header.
        let repeated = format!("{{{}}}", vec![r#""X-A": "v""#; 1000].join(","));
        let headers: HeadersInput = serde_json::from_str(&repeated).unwrap();
        assert_eq!((headers.headers.len(), headers.too_many), (1, false));
        let many: Vec<String> = (0..1000).map(|i| format!(r#""X-{i}": {{"nested": [1]}}"#)).collect();
        let headers: HeadersInput = serde_json::from_str(&format!("{{{}}}", many.join(","))).unwrap();
        assert_eq!((headers.headers.len(), headers.too_many), (MAX_EXTRA_HEADERS + 1, true));
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named_with_its_path() {
        let error = parse_json(serde_json::json!({"to": [{"email": 5}], "subject": "x", "text": "y"})).unwrap_err();
        assert_eq!(error.code, ErrorCode::ValidationFailed);
        assert!(
            error.message.starts_with("the body does not match the API: `to[0].email`: invalid type"),
            "{}",
            error.message
        );
        let error = parse(br#"{"to": "a@example.org", "to": "b@example.org"}"#, &config()).unwrap_err();
        assert!(error.message.contains("duplicate field `to`"), "{}", error.message);
        let error = parse(b"{\n  \"to\": \"x\",\n  \"subject\": tru", &config()).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        assert!(error.message.ends_with("at line 3 column 16"), "{}", error.message);
    }

    #[test]
    fn base64_content_is_borrowed_from_the_body_and_bytes_are_read_as_bytes() {
        let body = br#"{"attachments": [{"filename": "a", "content": "aGk="},
            {"filename": "b", "content": {"type": "Buffer", "data": [0, 255]}}, {"filename": "c", "content": [1]}]}"#;
        let input: SendBody = serde_json::from_slice(body).unwrap();
        let items: Vec<_> = input.attachments.unwrap().items.into_iter().map(|Object(a)| a).collect();
        assert!(matches!(&items[0].content, Some(ContentInput::Base64(Cow::Borrowed("aGk=")))));
        assert!(matches!(&items[1].content, Some(ContentInput::Bytes(b)) if b == &[0, 255]));
        assert!(matches!(&items[2].content, Some(ContentInput::Bytes(b)) if b == &[1]));
        let not_a_buffer = br#"{"attachments": [{"filename": "a", "content": {"type": "Blob", "data": []}}]}"#;
        let error = serde_json::from_slice::<SendBody>(not_a_buffer).unwrap_err();
        assert!(error.to_string().starts_with("an object content must be a Buffer"), "{error}");
    }

    #[test]
    fn members_that_are_objects_are_not_read_from_lists() {
        for (field, value) in [
            ("dsn", serde_json::json!([null, "headers"])),
            ("attachments", serde_json::json!([["a.txt", null, "aGk="]])),
            ("tags", serde_json::json!([["k", "v"]])),
        ] {
            let mut body = serde_json::json!({"to": "a@example.org", "subject": "x", "text": "y"});
            body[field] = value;
            let error = parse_for(Api::Resend { now_ms: 0 }, body.to_string().as_bytes(), &config()).err().unwrap();
            assert_eq!(error.code, ErrorCode::ValidationFailed, "{field}");
            assert!(error.message.contains("expected an object"), "{field}: {}", error.message);
        }
    }

    #[test]
    fn line_wrapped_base64_is_accepted() {
        let data: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        let encoded = BASE64.encode(&data);
        let wrapped: Vec<String> = encoded.as_bytes().chunks(76).map(|l| String::from_utf8_lossy(l).into()).collect();
        for separator in ["\r\n", "\n", " "] {
            let body = serde_json::json!({"to": "a@example.org", "subject": "x", "text": "y",
                "attachments": [{"filename": "a.bin", "content": wrapped.join(separator)}]});
            let content = parse_json(body).unwrap();
            assert_eq!(content.attachments[0].data, data);
        }
    }

    #[test]
    fn reply_to_is_limited_and_containers_are_not_attachments() {
        let many: Vec<String> = (0..11).map(|i| format!("r{i}@example.org")).collect();
        let body = serde_json::json!({"to": "a@example.org", "subject": "x", "text": "y", "reply_to": many,
            "attachments": [{"filename": "a.eml", "content_type": "message/rfc822", "content": "aGk="},
                            {"filename": "b", "content_type": "multipart/mixed; charset=x", "content": "aGk="}]});
        let error = parse_json(body).unwrap_err();
        let fields: Vec<&str> = error.details.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, vec!["reply_to", "attachments[0].content_type", "attachments[1].content_type"]);
    }

    #[test]
    fn dsn_options() {
        let body = serde_json::json!({"to": "a@example.org", "subject": "x", "text": "y",
            "dsn": {"notify": ["failure", "delay"], "return": "headers", "envelope_id": "order-17"}});
        let dsn = parse(body.to_string().as_bytes(), &config()).unwrap().dsn.unwrap();
        assert_eq!(dsn.notify, Some(vec![Notify::Failure, Notify::Delay]));
        assert_eq!((dsn.return_headers_only, dsn.envelope_id.as_deref()), (Some(true), Some("order-17")));
        let bad = serde_json::json!({"to": "a@example.org", "subject": "x", "text": "y",
            "dsn": {"notify": ["never", "success"], "return": "all", "envelope_id": "a\r\nb"}});
        let error = parse(bad.to_string().as_bytes(), &config()).unwrap_err();
        let fields: Vec<&str> = error.details.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, vec!["dsn.notify", "dsn.return", "dsn.envelope_id"]);
    }

    #[test]
    fn accepts_every_address_form() {
        let content = parse_json(serde_json::json!({
            "to": ["a@example.org", "Bee <b@example.org>", {"name": "Cee", "email": "c@example.org"}],
            "cc": "d@example.org",
            "bcc": {"email": "e@example.org"},
            "subject": "Hi", "text": "Hello"
        }))
        .unwrap();
        assert_eq!(content.to.len(), 3);
        assert_eq!(content.to[2].name.as_deref(), Some("Cee"));
        assert_eq!(content.cc[0].email.as_str(), "d@example.org");
        assert_eq!(content.bcc[0].email.as_str(), "e@example.org");
        assert_eq!(content.from.email.as_str(), "noreply@example.com");
    }

    #[test]
    fn not_json_is_invalid_request() {
        assert_eq!(parse(b"{nope", &config()).unwrap_err().code, ErrorCode::InvalidRequest);
        assert_eq!(parse(b"[1]", &config()).unwrap_err().code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn header_injection_in_addresses_and_subject_is_422_with_every_field_listed() {
        let error = parse_json(serde_json::json!({
            "to": ["ok@example.org", "x@example.org\r\nBcc: victim@example.net"],
            "reply_to": "Eve\nBcc: y@evil.example <eve@example.org>",
            "subject": "Hi\r\nBcc: z@evil.example",
            "text": "body"
        }))
        .unwrap_err();
        assert_eq!(error.code, ErrorCode::ValidationFailed);
        let fields: Vec<&str> = error.details.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, vec!["to[1]", "reply_to", "subject"]);
    }

    #[test]
    fn missing_body_and_recipients_and_unknown_fields() {
        let error = parse_json(serde_json::json!({"subject": "x"})).unwrap_err();
        let fields: Vec<&str> = error.details.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, vec!["text", "to"]);
        let error =
            parse_json(serde_json::json!({"to": "a@example.org", "subject": "x", "text": "y", "template": "welcome"}))
                .unwrap_err();
        assert_eq!(error.code, ErrorCode::ValidationFailed);
        assert!(error.message.contains("template"), "{}", error.message);
    }

    #[test]
    fn dsn_without_notify_leaves_notify_to_the_relay_and_repeats_collapse() {
        let body =
            serde_json::json!({"to": "a@example.org", "subject": "x", "text": "y", "dsn": {"envelope_id": "e1"}});
        assert_eq!(parse(body.to_string().as_bytes(), &config()).unwrap().dsn.unwrap().notify, None);
        let body = serde_json::json!({"to": "a@example.org", "subject": "x", "text": "y", "dsn": {"notify": ["failure", "FAILURE"]}});
        assert_eq!(
            parse(body.to_string().as_bytes(), &config()).unwrap().dsn.unwrap().notify,
            Some(vec![Notify::Failure])
        );
    }

    #[test]
    fn empty_recipient_lists_are_422() {
        for body in [
            serde_json::json!({"to": [], "subject": "x", "text": "y"}),
            serde_json::json!({"to": [], "cc": [], "bcc": [], "subject": "x", "text": "y"}),
        ] {
            let error = parse_json(body).unwrap_err();
            assert_eq!(error.code, ErrorCode::ValidationFailed);
            assert!(error.details.iter().any(|(f, _)| f == "to"));
        }
    }

    #[test]
    fn too_many_recipients() {
        let to: Vec<String> = (0..=MAX_RECIPIENTS).map(|i| format!("r{i}@example.org")).collect();
        let error = parse_json(serde_json::json!({"to": to, "subject": "x", "text": "y"})).unwrap_err();
        assert_eq!(error.code, ErrorCode::ValidationFailed);
    }

    #[test]
    fn sender_policy() {
        let ok = parse_json(
            serde_json::json!({"from": "Team <team@example.com>", "to": "a@example.org", "subject": "x", "text": "y"}),
        );
        assert_eq!(ok.unwrap().from.name.as_deref(), Some("Team"));
        let error = parse_json(
            serde_json::json!({"from": "ceo@bank.example", "to": "a@example.org", "subject": "x", "text": "y"}),
        )
        .unwrap_err();
        assert_eq!(error.code, ErrorCode::SenderNotAllowed);
    }
}
