//! Routing and the HTTP answers, with no Workers types: the platform layer converts its
//! request into an [`HttpRequest`], calls [`handle`], and sends the [`HttpResponse`] back.

use std::future::Future;

use crate::api::idempotency::{self, Lookup};
use crate::api::send::Submission;
use crate::config::{Config, Security};
use crate::error::{self, ApiError, ErrorCode};
use crate::message::{self, Stamp};
use crate::smtp::client::{Network, RelaySettings, SecurityMode, Session};
use crate::smtp::envelope::Envelope;

/// Largest request body accepted unless `MAX_REQUEST_BYTES` says otherwise: 10 MiB, room for
/// about 7 MiB of attachments once base64-encoded in JSON.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// The query string without `?`.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Fields of an urlencoded or multipart body, parsed by the platform.
    pub form: Option<Vec<crate::forms::Field>>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// `?debug=1` (or `true`): answer with the SMTP transcript.
    pub fn debug(&self) -> bool {
        self.query.split('&').any(|pair| pair == "debug=1" || pair == "debug=true")
    }
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json; charset=utf-8".into())],
            body: value.to_string().into_bytes(),
        }
    }

    pub fn error(error: &ApiError) -> Self {
        let mut response = HttpResponse::json(error.code.status(), &error.to_json());
        if let Some(seconds) = error.retry_after {
            response.headers.push(("retry-after".into(), seconds.to_string()));
        }
        response
    }
}

/// What the Worker's runtime offers the handler, beyond the network.
pub trait Environment: Network + Clone {
    /// A configuration variable or secret by name.
    fn var(&self, name: &str) -> Option<String>;
    /// Wall-clock milliseconds since the Unix epoch, for the Date header.
    fn unix_millis(&self) -> i64;
    /// The key-value store for idempotency records (`Err` when it is not bound).
    fn kv_get(&self, key: &str) -> impl Future<Output = Result<Option<String>, Unavailable>>;
    fn kv_put(&self, key: &str, value: &str, ttl_seconds: u64) -> impl Future<Output = Result<(), Unavailable>>;
    fn kv_delete(&self, key: &str) -> impl Future<Output = Result<(), Unavailable>>;
    /// Counts a hit for `key`: at most `limit` in any `window_seconds`.
    fn rate_limit(
        &self,
        key: &str,
        limit: u32,
        window_seconds: u32,
    ) -> impl Future<Output = Result<crate::forms::ratelimit::Decision, Unavailable>>;
    /// POSTs `fields` urlencoded to `url`; answers status and body.
    fn post_form(&self, url: &str, fields: &[(&str, &str)])
        -> impl Future<Output = Result<(u16, String), Unavailable>>;
    /// GETs `url`; answers status and body.
    fn get_text(&self, url: &str) -> impl Future<Output = Result<(u16, String), Unavailable>>;
}

/// A platform service (KV, the rate limiter, an outbound fetch) is missing or failed.
#[derive(Debug)]
pub struct Unavailable;

/// An answer, and the open SMTP session to close once the answer has gone out.
pub struct Handled<E: Network> {
    pub response: HttpResponse,
    pub after: Option<Session<E>>,
    /// The relay accepted the message, or may have (`delivery_unknown`): never send it again.
    pub may_have_left: bool,
}

impl<E: Network> From<HttpResponse> for Handled<E> {
    fn from(response: HttpResponse) -> Self {
        Handled { response, after: None, may_have_left: false }
    }
}

pub async fn handle<E: Environment>(env: E, request: HttpRequest) -> Handled<E> {
    let method = request.method.as_str();
    match request.path.as_str() {
        "/v1/health" => only(method, "GET", health).into(),
        "/v1/errors" => only(method, "GET", || HttpResponse::json(200, &error::table_json())).into(),
        "/v1/demo" if method == "GET" => crate::forms::demo::describe(&env).into(),
        "/v1/demo/message" if method == "GET" => crate::forms::demo::received(&env, &request).await.into(),
        "/v1/send" if method == "POST" => match send(env, &request).await {
            Ok(handled) => handled,
            Err(error) => error_response(&error, request.debug()).into(),
        },
        "/v1/send" => HttpResponse::error(&method_not_allowed("POST")).into(),
        path if path.starts_with("/v1/forms/") => {
            let name = &path["/v1/forms/".len()..];
            match method {
                "POST" => crate::forms::handle(env, name, &request).await,
                "OPTIONS" => crate::forms::preflight(&env, name, &request).into(),
                _ => HttpResponse::error(&method_not_allowed("POST")).into(),
            }
        }
        path => HttpResponse::error(&ApiError::new(ErrorCode::NotFound, format!("no route {path}"))).into(),
    }
}

fn only(method: &str, allowed: &str, respond: impl FnOnce() -> HttpResponse) -> HttpResponse {
    if method == allowed {
        respond()
    } else {
        HttpResponse::error(&method_not_allowed(allowed))
    }
}

fn method_not_allowed(allowed: &str) -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, format!("use {allowed}"))
}

fn health() -> HttpResponse {
    HttpResponse::json(200, &serde_json::json!({"ok": true, "version": env!("CARGO_PKG_VERSION")}))
}

/// Checks the bearer key; returns it when valid.
fn authorize<'r>(config: &Config, request: &'r HttpRequest) -> Result<&'r str, ApiError> {
    if config.api_keys.is_empty() {
        return Err(ApiError::new(ErrorCode::Misconfigured, "API_KEYS is not set"));
    }
    let presented = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    // Check every key, so timing does not reveal which one matched.
    match presented {
        Some(key) if config.api_keys.iter().fold(false, |hit, k| k.matches(key) | hit) => Ok(key),
        _ => Err(ApiError::new(ErrorCode::Unauthorized, "a valid API key is required: Authorization: Bearer <key>")),
    }
}

pub fn relay_settings(config: &Config) -> RelaySettings {
    RelaySettings {
        host: config.smtp_host.clone(),
        port: config.smtp_port,
        security: match config.security {
            Security::StartTls => SecurityMode::StartTls,
            Security::Tls => SecurityMode::ImplicitTls,
            Security::None => SecurityMode::None,
        },
        ehlo_name: config.ehlo_name.clone(),
        credentials: config.credentials.clone(),
        timeouts: config.timeouts,
    }
}

/// The error answer; in debug mode with the SMTP transcript up to the failure.
pub fn error_response(error: &ApiError, debug: bool) -> HttpResponse {
    let mut response = HttpResponse::error(error);
    if let (true, Some(transcript)) = (debug, &error.transcript) {
        let mut body = error.to_json();
        body["transcript"] = serde_json::json!(transcript);
        response.body = body.to_string().into_bytes();
    }
    response
}

async fn send<E: Environment>(env: E, request: &HttpRequest) -> Result<Handled<E>, ApiError> {
    let config = Config::from_lookup(|name| env.var(name))?;
    let api_key = authorize(&config, request)?;
    if request.body.len() > config.max_request_bytes {
        return Err(too_large(config.max_request_bytes));
    }
    let submission = crate::api::send::parse(&request.body, &config)?;
    let claim = match request.header("idempotency-key") {
        None => None,
        Some(key) => match idempotency::begin(
            &env,
            api_key,
            key,
            &request.body,
            idempotency::pending_ttl_seconds(&config.timeouts),
        )
        .await?
        {
            Lookup::Replay(response) => return Ok(response.into()),
            Lookup::Claimed(claim) => Some(claim),
        },
    };
    let handled = deliver(env.clone(), request, &config, submission).await;
    if let Some(claim) = claim {
        idempotency::finish(&env, claim, &handled.response, handled.may_have_left).await;
    }
    Ok(handled)
}

/// `payload_too_large` for a body over `limit` bytes.
pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(ErrorCode::PayloadTooLarge, format!("the body is over {limit} bytes"))
}

/// What a submission came to: the relay's acceptance, or why not, with the conversation.
pub struct Submitted<E: Network> {
    pub result: Result<Sent, ApiError>,
    /// The open session to QUIT after the answer (none when it never opened).
    pub session: Option<Session<E>>,
}

/// A message the relay accepted.
pub struct Sent {
    pub message_id: String,
    pub delivery: crate::smtp::outcome::Delivery,
    pub transcript: crate::smtp::transcript::Transcript,
    pub round_trips: u32,
}

impl<E: Network> Submitted<E> {
    /// The relay accepted the message, or may have (`delivery_unknown`): never send it again.
    pub fn may_have_left(&self) -> bool {
        match &self.result {
            Ok(_) => true,
            Err(error) => error.code == ErrorCode::DeliveryUnknown,
        }
    }
}

/// Builds the message and submits it to the relay. Errors carry the transcript (shown only
/// in debug mode) and, for `delivery_unknown`, the Message-ID.
pub async fn submit<E: Environment>(env: &E, config: &Config, submission: &Submission) -> Submitted<E> {
    let content = &submission.content;
    let mut random = [0u8; 16];
    if getrandom::fill(&mut random).is_err() {
        let error = ApiError::new(ErrorCode::Misconfigured, "no source of randomness for the Message-ID");
        return Submitted { result: Err(error), session: None };
    }
    let stamp = Stamp::new(random, &config.message_id_domain, env.unix_millis().div_euclid(1000));
    let bytes = message::render(content, &stamp);
    let recipients = content.envelope_recipients();
    let envelope = Envelope { sender: &content.from.email, recipients: &recipients, dsn: submission.dsn.as_ref() };

    let mut session = match Session::open(env.clone(), &relay_settings(config)).await {
        Ok(session) => session,
        Err(error) => return Submitted { result: Err(error), session: None },
    };
    let result = match session.send(&envelope, &bytes).await {
        Ok(delivery) => Ok(Sent {
            message_id: stamp.header_message_id(),
            delivery,
            transcript: session.transcript().clone(),
            round_trips: session.round_trips(),
        }),
        Err(mut error) => {
            if error.code == ErrorCode::DeliveryUnknown {
                // So the caller can recognise the message if it did arrive.
                error.message_id = Some(stamp.header_message_id());
            }
            error.transcript = Some(session.transcript().clone());
            Err(error)
        }
    };
    Submitted { result, session: Some(session) }
}

/// `POST /v1/send`'s answer for a submission.
async fn deliver<E: Environment>(env: E, request: &HttpRequest, config: &Config, submission: Submission) -> Handled<E> {
    let submitted = submit(&env, config, &submission).await;
    let may_have_left = submitted.may_have_left();
    let response = match &submitted.result {
        Ok(sent) => {
            let mut body = serde_json::json!({
                "ok": true,
                "message_id": sent.message_id,
                "accepted": sent.delivery.accepted,
                "rejected": sent.delivery.rejected,
                "smtp": sent.delivery.reply,
            });
            if request.debug() {
                body["transcript"] = serde_json::json!(sent.transcript);
                body["round_trips"] = serde_json::json!(sent.round_trips);
            }
            HttpResponse::json(200, &body)
        }
        Err(error) => error_response(error, request.debug()),
    };
    Handled { response, after: submitted.session, may_have_left }
}

/// Work that must not delay the answer: the polite end of the SMTP session.
pub fn after_response<E: Network>(after: Option<Session<E>>) -> Option<impl Future<Output = ()>> {
    after.map(Session::quit)
}
