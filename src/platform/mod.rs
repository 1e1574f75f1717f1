//! The only code that touches the Workers runtime, through the `worker` crate: the fetch and
//! queue events, the Durable Objects (`objects`), and the adapters from its types to our seams
//! ([`Environment`], [`Network`], [`Platform`], [`BodySource`]). Everything they call is
//! runtime-independent and tested natively.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::js_sys;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{
    console_log, event, web_sys, ByteStream, Context, Date, Delay, Env, Fetch, File, Headers, MessageBatch,
    MessageBuilder, MessageExt, Method, QueueRetryOptionsBuilder, Request, RequestInit, RequestRedirect,
    SecureTransport, Socket, Stub,
};

/// The Worker's allocator: talc takes memory from the wasm memory as it needs it (a 10 MB
/// attachment stays within BENCHMARKS.md's memory target).
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

mod crypto;
mod objects;

use crate::config::rate::RateLimit;
use crate::config::{Config, WebhookSettings};
use crate::delivery::env::{Environment, Store, Unavailable, WarmUnavailable};
use crate::delivery::idempotency::{KeyAnswer, KeyCall};
use crate::delivery::inbound::{self, Received};
use crate::delivery::queue::{self, Claimed, Record, Verdict};
use crate::delivery::quota::Token;
use crate::delivery::ratelimit::Decision;
use crate::delivery::record::Filter;
use crate::delivery::reports::{Applied, Finding};
use crate::delivery::shard::{self, Cursor};
use crate::delivery::stats::HourCounts;
use crate::delivery::suppression::{self, Suppression};
use crate::delivery::transaction::{Outcome, Transaction};
use crate::delivery::webhook::Delivery;
use crate::delivery::webhook::{self, Webhook};
use crate::error::ApiError;
use crate::http::{self, BodySource, Field, FieldValue, HttpResponse, Platform, RequestHead};
use crate::smtp::client::Network;
use crate::smtp::settings::Security;

/// The Durable Object namespace binding of [`objects::IdempotencyKey`]: one object per key.
const IDEMPOTENCY_KEYS: &str = "IDEMPOTENCY_KEYS";
/// The Durable Object namespace binding of [`objects::RateLimiter`].
const RATE_LIMITER: &str = "RATE_LIMITER";
/// The Durable Object namespace binding of [`objects::SmtpSession`].
const SMTP_SESSION_POOL: &str = "SMTP_SESSION_POOL";
const RELAY_QUOTA: &str = "RELAY_QUOTA";
/// Queued delivery: the queue (produced and consumed here), its dead-letter queue, the R2
/// bucket of message bodies, and the ledger of their status (one [`objects::DeliveryLedger`]).
const DELIVERY_QUEUE: &str = "DELIVERY_QUEUE";
const DELIVERY_DLQ: &str = "DELIVERY_DLQ";
const MESSAGE_BODIES: &str = "MESSAGE_BODIES";
const DELIVERY_LEDGER: &str = "DELIVERY_LEDGER";
/// The suppression list: [`objects::SuppressionList`] objects, one per shard of the addresses.
const SUPPRESSION_LIST: &str = "SUPPRESSION_LIST";

// ---- JSON ---------------------------------------------------------------------------------
//
// Every value the platform reads or writes as JSON (Durable Object calls and answers, stored
// records) goes through these two.

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Our own records and calls (derived, string keys: writing them cannot fail).
fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("records are plain data")
}

/// `name=value&…`, for the ledger's query and outbound form posts.
fn form_encoded(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

// ---- The environment ----------------------------------------------------------------------

/// Our seams over the Worker's `env`: settings, bindings, sockets and timers.
#[derive(Clone)]
struct Workers {
    env: Env,
}

fn now_millis() -> u64 {
    Date::now().as_millis()
}

fn io_error(error: worker::Error) -> io::Error {
    io::Error::other(error.to_string())
}

/// The port took a TCP connection but not an implicit-TLS one ([`Network::connect`]'s contract).
fn tls_refused() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "the implicit-TLS handshake failed")
}

impl Network for Workers {
    type Conn = Socket;

    async fn connect(&self, host: &str, port: u16, security: Security) -> io::Result<Socket> {
        let secure = match security {
            Security::ImplicitTls => SecureTransport::On,
            Security::StartTls => SecureTransport::StartTls,
            Security::None => SecureTransport::Off,
        };
        let socket = Socket::builder().secure_transport(secure).connect(host, port).map_err(io_error)?;
        match socket.opened().await {
            Ok(_) => Ok(socket),
            // workerd says "cannot connect" alike for a closed port and a failed implicit-TLS
            // handshake (seen under wrangler dev); a plain connection tells them apart.
            Err(error) if security == Security::ImplicitTls => {
                let port_is_open = match Socket::builder().connect(host, port) {
                    Ok(mut plain) => {
                        let open = plain.opened().await.is_ok();
                        let _ = plain.close().await;
                        open
                    }
                    Err(_) => false,
                };
                Err(if port_is_open { tls_refused() } else { io_error(error) })
            }
            Err(error) => Err(io_error(error)),
        }
    }

    /// No wait for the upgraded socket's `opened`: workerd resolves it before the handshake (a
    /// certificate that does not verify fails the first read over TLS, which the client
    /// reports as a TLS failure).
    async fn start_tls(&self, conn: Socket) -> io::Result<Socket> {
        Ok(conn.start_tls())
    }

    type Timer = Delay;

    fn sleep(&self, millis: u64) -> Delay {
        Delay::from(Duration::from_millis(millis))
    }

    fn now_millis(&self) -> u64 {
        now_millis()
    }
}

/// A non-ASCII domain in punycode by the runtime's own URL parser (UTS 46, as for any URL's
/// host); `None` when it is not a valid name. Only a bare name is handed over: anything that
/// would end or change a URL's host is refused first.
fn domain_to_ascii(domain: &str) -> Option<String> {
    let bare = !domain.is_empty()
        && !domain.contains(['/', '?', '#', '@', ':', '\\', '[', ']', '%'])
        && !domain.chars().any(|c| c.is_whitespace() || c.is_control());
    if !bare {
        return None;
    }
    let constructor: js_sys::Function =
        js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("URL")).ok()?.dyn_into().ok()?;
    let url =
        js_sys::Reflect::construct(&constructor, &js_sys::Array::of1(&JsValue::from_str(&format!("http://{domain}/"))))
            .ok()?;
    js_sys::Reflect::get(&url, &JsValue::from_str("hostname")).ok()?.as_string()
}

impl Workers {
    /// A setting by name: plain vars and secrets are both strings here; either may hold one.
    fn var(&self, name: &str) -> Option<String> {
        self.env.var(name).ok().map(|value| value.to_string())
    }

    /// The settings, parsed at this isolate's first request and kept: a deployment's variables
    /// and secrets never change under a running isolate (new settings are a new version, in new
    /// isolates; `wrangler dev` restarts the Worker), and parsing them (FORMS, URLs, addresses)
    /// was a visible share of every request's CPU.
    fn config(&self) -> Rc<Result<Config, ApiError>> {
        thread_local! {
            static CONFIG: std::cell::OnceCell<Rc<Result<Config, ApiError>>> = const { std::cell::OnceCell::new() };
        }
        CONFIG.with(|cell| {
            cell.get_or_init(|| {
                // Before the first address is parsed (MAIL_FROM is one).
                crate::address::set_domain_to_ascii(domain_to_ascii);
                Rc::new(Config::from_lookup(|name| self.var(name)))
            })
            .clone()
        })
    }

    /// The Durable Object `name` of the namespace `binding`.
    fn stub(&self, binding: &str, name: &str) -> Result<Stub, Unavailable> {
        let namespace = self.env.durable_object(binding).map_err(|_| Unavailable)?;
        namespace.id_from_name(name).and_then(|id| id.get_stub()).map_err(|_| Unavailable)
    }

    /// POSTs `body` to `stub` at `url`; the answer's body when it is a 200.
    async fn call(&self, stub: &Stub, url: &str, body: Option<JsValue>) -> Result<Vec<u8>, Unavailable> {
        let request = post(url, body).map_err(|_| Unavailable)?;
        let mut response = stub.fetch_with_request(request).await.map_err(|_| Unavailable)?;
        if response.status_code() != 200 {
            return Err(Unavailable);
        }
        response.bytes().await.map_err(|_| Unavailable)
    }

    /// Asks the object `name` of `binding` `https://object/<operation>?<query>` (a record to
    /// save as the body): the operation in the path and its small arguments in the query. The
    /// ledger's shards and the suppression list's objects are called so.
    async fn ask<T: DeserializeOwned>(
        &self,
        (binding, name): (&str, String),
        operation: &str,
        query: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<T, Unavailable> {
        let stub = self.stub(binding, &name)?;
        let url = format!("https://object/{operation}?{}", form_encoded(query));
        let answer = self.call(&stub, &url, body.map(|body| JsValue::from_str(&body))).await?;
        from_json(&answer).map_err(|_| Unavailable)
    }

    async fn send_to(&self, queue: &str, id: &str, delay_seconds: u32) -> Result<(), Unavailable> {
        let queue = self.env.queue(queue).map_err(|_| Unavailable)?;
        // The message is the stored message's id, as a string.
        let message = MessageBuilder::new(id.to_string()).delay_seconds(delay_seconds).build();
        queue.send(message).await.map_err(|_| Unavailable)
    }
}

/// Ledger shard `shard`'s object.
fn ledger(shard: u8) -> (&'static str, String) {
    (DELIVERY_LEDGER, shard::ledger_name(shard))
}

/// The suppression list's object `shard`.
fn suppressions(shard: u8) -> (&'static str, String) {
    (SUPPRESSION_LIST, suppression::object_name(shard))
}

/// The ledger shard of a message's id. Ids come from this Worker (a route answers 404 for any
/// other form before it asks), so one that names no shard is a fault, never "no record".
fn shard_of(id: &str) -> Result<u8, Unavailable> {
    shard::shard_of(id).ok_or(Unavailable)
}

/// A `POST` request to `url` with `body`.
fn post(url: &str, body: Option<JsValue>) -> worker::Result<Request> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(body);
    Request::new_with_init(url, &init)
}

/// `fetch(request)` to the network: the status and the body as text.
async fn fetch_text(request: Request) -> Result<(u16, String), Unavailable> {
    let mut response = Fetch::Request(request).send().await.map_err(|_| Unavailable)?;
    let text = response.text().await.map_err(|_| Unavailable)?;
    Ok((response.status_code(), text))
}

/// How long a webhook's receiver has to answer.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// POSTs one webhook, signed, to `WEBHOOK_URL`: whether a `2xx` came back in time. A redirect
/// is an answer like any other that is not a `2xx`, never followed: the events go to the
/// host the owner named, or nowhere.
async fn post_webhook(settings: &WebhookSettings, hook: &Webhook) -> bool {
    let headers = Headers::new();
    for (name, value) in webhook::headers(&settings.key, hook, now_millis() / 1000) {
        if headers.set(&name, &value).is_err() {
            return false;
        }
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual)
        .with_body(Some(JsValue::from_str(&hook.body)));
    let Ok(request) = Request::new_with_init(&settings.url, &init) else { return false };
    let fetch = Fetch::Request(request);
    let sent = std::pin::pin!(fetch.send());
    match futures_util::future::select(sent, Delay::from(WEBHOOK_TIMEOUT)).await {
        futures_util::future::Either::Left((Ok(response), _)) => (200..300).contains(&response.status_code()),
        _ => false,
    }
}

fn bytes_value(bytes: &[u8]) -> JsValue {
    js_sys::Uint8Array::from(bytes).into()
}

impl Environment for Workers {
    fn binds(&self, store: Store) -> bool {
        let binding = match store {
            Store::Ledger => DELIVERY_LEDGER,
            Store::SuppressionList => SUPPRESSION_LIST,
        };
        self.env.durable_object(binding).is_ok()
    }

    async fn dkim_sign(&self, key: &crate::dkim::DkimKey, data: &[u8]) -> Result<Vec<u8>, Unavailable> {
        crypto::sign(key, data).await.map_err(|_| Unavailable)
    }

    async fn idempotency(&self, store_key: &str, call: KeyCall) -> Result<KeyAnswer, Unavailable> {
        let stub = self.stub(IDEMPOTENCY_KEYS, store_key)?;
        let answer = self.call(&stub, "https://object/", Some(JsValue::from_str(&to_json(&call)))).await?;
        from_json(&answer).map_err(|_| Unavailable)
    }

    async fn rate_limit(&self, key: &str, limit: u32, window_seconds: u32) -> Result<Decision, Unavailable> {
        let stub = self.stub(RATE_LIMITER, key)?;
        let url = format!("https://rate-limiter/hit?limit={limit}&window={window_seconds}");
        let answer = self.call(&stub, &url, None).await?;
        from_json(&answer).map_err(|_| Unavailable)
    }

    async fn take_relay_token(&self, account: &str, limits: &[RateLimit], reserve: bool) -> Result<Token, Unavailable> {
        let stub = self.stub(RELAY_QUOTA, account)?;
        let limits: Vec<String> = limits.iter().map(RateLimit::to_string).collect();
        let verb = if reserve { "reserve" } else { "take" };
        let url = format!("https://relay-quota/{verb}?limits={}", limits.join(","));
        let answer = self.call(&stub, &url, None).await?;
        from_json(&answer).map_err(|_| Unavailable)
    }

    async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Result<(u16, String), Unavailable> {
        let headers = Headers::new();
        headers.set("content-type", "application/x-www-form-urlencoded").map_err(|_| Unavailable)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_headers(headers).with_body(Some(JsValue::from_str(&form_encoded(fields))));
        fetch_text(Request::new_with_init(url, &init).map_err(|_| Unavailable)?).await
    }

    async fn get_text(&self, url: &str) -> Result<(u16, String), Unavailable> {
        fetch_text(Request::new(url, Method::Get).map_err(|_| Unavailable)?).await
    }

    async fn put_body(&self, id: &str, bytes: &[u8]) -> Result<(), Unavailable> {
        let bucket = self.env.bucket(MESSAGE_BODIES).map_err(|_| Unavailable)?;
        bucket.put(id, bytes.to_vec()).execute().await.map(drop).map_err(|_| Unavailable)
    }

    async fn get_body(&self, id: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        let bucket = self.env.bucket(MESSAGE_BODIES).map_err(|_| Unavailable)?;
        let Some(object) = bucket.get(id).execute().await.map_err(|_| Unavailable)? else { return Ok(None) };
        let body = object.body().ok_or(Unavailable)?;
        body.bytes().await.map(Some).map_err(|_| Unavailable)
    }

    async fn enqueue(&self, id: &str, delay_seconds: u32) -> Result<(), Unavailable> {
        self.send_to(DELIVERY_QUEUE, id, delay_seconds).await
    }

    async fn dead_letter(&self, id: &str) -> Result<(), Unavailable> {
        self.send_to(DELIVERY_DLQ, id, 0).await
    }

    async fn save_record(&self, record: &Record) -> Result<(), Unavailable> {
        self.save_records(shard_of(&record.id)?, std::slice::from_ref(record)).await
    }

    async fn save_records(&self, shard: u8, records: &[Record]) -> Result<(), Unavailable> {
        self.ask::<bool>(ledger(shard), "save", &[], Some(to_json(&records))).await.map(drop)
    }

    async fn load_record(&self, id: &str) -> Result<Option<Record>, Unavailable> {
        self.ask(ledger(shard_of(id)?), "load", &[("id", id)], None).await
    }

    async fn webhook_deliveries(&self, id: &str) -> Result<Vec<Delivery>, Unavailable> {
        self.ask(ledger(shard_of(id)?), "webhooks", &[("id", id)], None).await
    }

    async fn list_records(
        &self,
        shard: u8,
        filter: &Filter<'_>,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<Record>, Unavailable> {
        let limit = limit.to_string();
        let after = after.map(Cursor::to_string);
        let mut query = vec![("limit", limit.as_str())];
        query.extend(filter.status.map(|status| ("status", status.as_str())));
        query.extend(filter.search.map(|search| ("q", search)));
        query.extend(after.as_deref().map(|after| ("after", after)));
        self.ask(ledger(shard), "list", &query, None).await
    }

    async fn claim_attempt(&self, id: &str, now_ms: u64, lease_ms: u64) -> Result<Claimed, Unavailable> {
        let (now_ms, lease_ms) = (now_ms.to_string(), lease_ms.to_string());
        self.ask(ledger(shard_of(id)?), "claim", &[("id", id), ("now_ms", &now_ms), ("lease_ms", &lease_ms)], None)
            .await
    }

    async fn apply_report(&self, id: &str, findings: &[Finding], now_ms: u64) -> Result<Option<Applied>, Unavailable> {
        let now_ms = now_ms.to_string();
        let query = [("id", id), ("now_ms", now_ms.as_str())];
        self.ask(ledger(shard_of(id)?), "report", &query, Some(to_json(&findings))).await
    }

    async fn hour_stats(&self, shard: u8, since_ms: u64) -> Result<Vec<HourCounts>, Unavailable> {
        let since = since_ms.to_string();
        self.ask(ledger(shard), "stats", &[("since", since.as_str())], None).await
    }

    async fn count_report(&self, name: &str) -> Result<(), Unavailable> {
        self.ask::<bool>(ledger(0), "count", &[("name", name)], None).await.map(drop)
    }

    async fn report_counts(&self) -> Result<Vec<(String, u64)>, Unavailable> {
        self.ask(ledger(0), "counts", &[], None).await
    }

    async fn suppressed(&self, shard: u8, keys: &[String]) -> Result<Vec<Suppression>, Unavailable> {
        self.ask(suppressions(shard), "check", &[], Some(to_json(&keys))).await
    }

    async fn suppress(&self, entry: &Suppression) -> Result<bool, Unavailable> {
        self.ask(suppressions(suppression::shard_of(&entry.address)), "add", &[], Some(to_json(entry))).await
    }

    async fn unsuppress(&self, key: &str) -> Result<Option<Suppression>, Unavailable> {
        self.ask(suppressions(suppression::shard_of(key)), "remove", &[("address", key)], None).await
    }

    async fn list_suppressions(
        &self,
        shard: u8,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<Suppression>, Unavailable> {
        let limit = limit.to_string();
        let after = after.map(Cursor::to_string);
        let mut query = vec![("limit", limit.as_str())];
        query.extend(after.as_deref().map(|after| ("after", after)));
        self.ask(suppressions(shard), "list", &query, None).await
    }

    /// The transaction goes to session object number `index`: its JSON, a line feed, then the
    /// message's bytes (the object reads it whole before it can answer that it is busy).
    async fn send_warm(
        &self,
        transaction: &Transaction,
        index: u32,
        wait: bool,
    ) -> Result<Option<Outcome>, WarmUnavailable> {
        let stub = self
            .stub(SMTP_SESSION_POOL, &format!("smtp-session-{index}"))
            .map_err(|_| WarmUnavailable { handed_over: false })?;
        let body = bytes_value(&transaction.to_bytes());
        let url = if wait { "https://smtp-session/send" } else { "https://smtp-session/send?if_free=1" };
        let request = post(url, Some(body)).map_err(|_| WarmUnavailable { handed_over: false })?;
        // From here on the object may have the message.
        let after = || WarmUnavailable { handed_over: true };
        let mut response = stub.fetch_with_request(request).await.map_err(|_| after())?;
        let answer = response.bytes().await.map_err(|_| after())?;
        from_json(&answer).map_err(|_| after())
    }
}

impl Platform for Workers {
    /// workerd's own multipart parser (`formData()`), on a body already read within its limit.
    async fn parse_multipart(&self, content_type: &str, body: Vec<u8>) -> Result<Vec<Field>, Unavailable> {
        let headers = Headers::new();
        headers.set("content-type", content_type).map_err(|_| Unavailable)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_headers(headers).with_body(Some(bytes_value(&body)));
        drop(body);
        let mut request = Request::new_with_init("https://form.invalid/", &init).map_err(|_| Unavailable)?;
        let form = request.form_data().await.map_err(|_| Unavailable)?;
        // Every entry in order, repeated names kept (FormData's own iterator).
        let entries = js_sys::try_iter(&JsValue::from(form)).map_err(|_| Unavailable)?.ok_or(Unavailable)?;
        let mut fields = Vec::new();
        for entry in entries {
            let pair: js_sys::Array = entry.map_err(|_| Unavailable)?.unchecked_into();
            let name = pair.get(0).as_string().ok_or(Unavailable)?;
            let value = pair.get(1);
            let value = match value.as_string() {
                Some(text) => FieldValue::Text(text),
                None => {
                    let file = File::from(value.unchecked_into::<web_sys::File>());
                    let data = file.bytes().await.map_err(|_| Unavailable)?;
                    FieldValue::File { filename: file.name(), content_type: file.type_(), data }
                }
            };
            fields.push(Field { name, value });
        }
        Ok(fields)
    }
}

/// The request body as workerd streams it, opened only when a handler reads it: a body
/// nobody asked for is left to workerd untouched (taking its stream and dropping it makes
/// workerd reset the connection before the client has read the answer).
enum Body {
    Unread(web_sys::Request),
    Reading(ByteStream),
    Empty,
}

impl BodySource for Body {
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ()> {
        if let Body::Unread(request) = self {
            *self = match request.body() {
                Some(stream) => Body::Reading(ByteStream::from(stream)),
                None => Body::Empty, // a request without a body
            };
        }
        match self {
            Body::Reading(stream) => stream.next().await.transpose().map_err(drop),
            _ => Ok(None),
        }
    }
}

// ---- Events -------------------------------------------------------------------------------

/// workerd's `Response`, built directly from ours.
fn to_response(response: HttpResponse) -> worker::Result<web_sys::Response> {
    let headers = web_sys::Headers::new()?;
    for (name, value) in &response.headers {
        headers.set(name, value)?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(response.status);
    init.set_headers(&headers);
    // No body at all when there is none: a 204 or 304 must not have one.
    let body = (!response.body.is_empty()).then(|| js_sys::Uint8Array::from(&response.body[..]));
    Ok(web_sys::Response::new_with_opt_buffer_source_and_init(body.as_ref().map(|b| b.as_ref()), &init)?)
}

/// A short id for the request log: Cloudflare's ray id, else a random one.
fn request_id(ray: Option<&str>) -> String {
    if let Some(ray) = ray {
        return ray.chars().filter(char::is_ascii_alphanumeric).take(32).collect();
    }
    let mut random = [0u8; 6];
    let _ = getrandom::fill(&mut random);
    random.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fetch event. It takes and answers workerd's own `Request` and `Response`: the `worker`
/// crate's wrappers would copy the method, path and `cf` properties of every request (CPU on
/// each one) for data nothing here uses.
#[event(fetch)]
async fn fetch(request: web_sys::Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    let workers = Workers { env };
    let started = now_millis();
    // The URL as workerd serialised it: split, not parsed again.
    let url = request.url();
    let (path, query) = http::request::path_and_query(&url);
    let headers = request.headers();
    let head = RequestHead {
        method: request.method(),
        path: path.to_string(),
        query: query.to_string(),
        headers: http::request::HEADERS_READ
            .iter()
            .filter_map(|name| Some((name.to_string(), headers.get(name).ok()??)))
            .collect(),
    };
    // Parsed once per isolate and handed down; the body is not touched until a handler asks.
    let config = workers.config();
    let (method, path, ray) = (head.method.clone(), head.path.clone(), head.header("cf-ray").map(String::from));
    let handled =
        http::boxed(http::serve(workers.clone(), config.as_ref().as_ref(), head, Body::Unread(request))).await;
    // One line per request, never a body: the answers of failed sends carry addresses.
    let response = &handled.response;
    let code = response.error.map(|c| c.as_str()).unwrap_or("-");
    let took = now_millis().saturating_sub(started);
    // Failures always; successes when LOG_REQUESTS=all (or the settings are broken).
    let log_all = config.as_ref().as_ref().map_or(true, |c| c.log_all_requests);
    if response.status >= 400 || log_all {
        let id = request_id(ray.as_deref());
        console_log!("{id} {method} {path} {} {code} {took}ms", response.status);
    }
    // QUIT after the answer has gone out.
    if let Some(after) = http::after_response(workers, handled.after, handled.records) {
        ctx.wait_until(after);
    }
    to_response(handled.response)
}

/// The delivery queue's consumer: one SMTP session per batch; each message acknowledged, or
/// retried after the delay its attempt asked for.
#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    let workers = Workers { env };
    let config = workers.config();
    let config = match config.as_ref() {
        Ok(config) => config,
        Err(error) => {
            console_log!("queue {}: {error}", batch.queue());
            batch.retry_all();
            return Ok(());
        }
    };
    let messages: Vec<_> = batch.raw_iter().collect();
    // The id as a string; `{"id": …}` is how earlier versions sent it.
    let id_of = |body: JsValue| {
        body.as_string().or_else(|| js_sys::Reflect::get(&body, &JsValue::from_str("id")).ok()?.as_string())
    };
    let ids: Vec<String> = messages.iter().map(|m| id_of(m.body()).unwrap_or_default()).collect();
    let verdicts = queue::deliver_batch(&workers, config, &ids).await;
    for (message, verdict) in messages.iter().zip(verdicts) {
        match verdict {
            Verdict::Ack => message.ack(),
            Verdict::Retry(delay) => {
                message.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(delay).build())
            }
        }
    }
    console_log!("queue {}: {} message(s)", batch.queue(), ids.len());
    Ok(())
}

/// Most bytes of a message at the bounce domain read: a report's machine-readable part comes
/// before the returned message (`RET=HDRS` asks for its headers only), and mail-parser reads
/// a cut message as far as it goes.
const REPORT_MAX_BYTES: usize = 1024 * 1024;

/// The email event (Email Routing hands the Worker mail for `BOUNCE_DOMAIN`): delivery and
/// feedback reports. Exported by hand rather than with `#[event(email)]`, which turns an
/// error into a panic and so resets the Wasm instance under every request it serves: here an
/// error rejects the handler's promise, which Email Routing answers with a temporary failure,
/// and the reporting MTA sends the report again.
#[worker::wasm_bindgen::prelude::wasm_bindgen(
    wasm_bindgen = ::worker::wasm_bindgen,
    wasm_bindgen_futures = ::worker::wasm_bindgen_futures,
    js_sys = ::worker::js_sys
)]
pub async fn email(
    message: worker::ForwardableEmailMessage,
    env: Env,
    _ctx: worker::worker_sys::Context,
) -> Result<JsValue, JsValue> {
    let workers = Workers { env };
    let config = workers.config();
    let config = config.as_ref().as_ref().map_err(|error| JsValue::from_str(&error.to_string()))?;
    let to = message.to();
    let mut raw = Vec::new();
    let mut stream = message.raw_byte_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| JsValue::from_str("the message could not be read"))?;
        raw.extend_from_slice(&chunk[..chunk.len().min(REPORT_MAX_BYTES - raw.len())]);
        if raw.len() >= REPORT_MAX_BYTES {
            break;
        }
    }
    match inbound::receive(&workers, config, &to, &raw).await {
        Ok(received) => {
            // One line, never an address: what kind of report it was.
            let what = match received {
                Received::Applied { matched, added } => format!("applied: {matched} matched, {added} new"),
                other => other.ignored_as().unwrap_or("applied").to_string(),
            };
            console_log!("email report ({} bytes): {what}", raw.len());
            Ok(JsValue::UNDEFINED)
        }
        Err(Unavailable) => Err(JsValue::from_str("the ledger or the suppression list is unavailable; try again")),
    }
}
