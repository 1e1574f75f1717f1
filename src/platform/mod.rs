//! The only code that touches the Workers runtime: the fetch event, the environment, TCP
//! sockets and timers. Everything it calls is runtime-independent and tested natively.

// The Worker's `env` (its variables, secrets and bindings) is a plain object here.
use js_sys::Object as Env;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker_sys::{DurableObjectState, SqlStorage};

/// The Worker's allocator: talc, 2.8 KB gzip smaller than the default (dlmalloc). It takes
/// memory from the wasm memory as it needs it, and that memory never shrinks, as before.
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

mod crypto;
mod runtime;
mod socket;
mod stream;
use runtime::{log, Timer};
use socket::Conn;
use stream::ChunkReader;

use crate::config::Config;
use crate::delivery::env::{Environment, Unavailable, WarmUnavailable};
use crate::delivery::idempotency::{self, KeyAnswer, KeyCall, KeyRecord};
use crate::delivery::queue::{self, Claimed, Record, Status, Verdict};
use crate::delivery::ratelimit::{Decision, Window};
use crate::delivery::transaction::{Outcome, Transaction};
use crate::delivery::warm::WarmSession;
use crate::error::ApiError;
use crate::http::{self, BodySource, Field, FieldValue, HttpResponse, Platform, RequestHead};
use crate::smtp::client::Network;
use crate::smtp::settings::Security;

/// The Durable Object namespace binding of [`IdempotencyKey`]: one object per key.
const IDEMPOTENCY_KEYS: &str = "IDEMPOTENCY_KEYS";
/// The Durable Object namespace binding of [`RateLimiter`].
const RATE_LIMITER: &str = "RATE_LIMITER";
/// The Durable Object namespace binding of [`SmtpSession`].
const SMTP_SESSION_POOL: &str = "SMTP_SESSION_POOL";
/// Queued delivery: the queue (produced and consumed here), its dead-letter queue, the R2
/// bucket of message bodies, and the ledger of their status (one [`DeliveryLedger`]).
const DELIVERY_QUEUE: &str = "DELIVERY_QUEUE";
const DELIVERY_DLQ: &str = "DELIVERY_DLQ";
const MESSAGE_BODIES: &str = "MESSAGE_BODIES";
const DELIVERY_LEDGER: &str = "DELIVERY_LEDGER";

#[derive(Clone)]
struct Workers {
    env: Env,
}

/// The port took a TCP connection but not an implicit-TLS one ([`Network::connect`]'s contract).
fn tls_refused() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, stream::Failure("the implicit-TLS handshake failed".into()))
}

/// The time in milliseconds: `Date.now()`, one call (`worker::Date::now()` makes a `Date`
/// object and asks it, two calls and an allocation, several times per send).
fn now_millis() -> u64 {
    js_sys::Date::now() as u64
}

impl Network for Workers {
    type Conn = Conn;

    async fn connect(&self, host: &str, port: u16, security: Security) -> io::Result<Conn> {
        let secure = match security {
            Security::ImplicitTls => "on",
            Security::StartTls => "starttls",
            Security::None => "off",
        };
        let socket = Conn::connect(host, port, secure)?;
        match socket.opened().await {
            Ok(()) => Ok(socket),
            // workerd says "cannot connect" alike for a closed port and a failed implicit-TLS
            // handshake (seen under wrangler dev); a plain connection tells them apart.
            Err(error) if security == Security::ImplicitTls => {
                let port_is_open = match Conn::connect(host, port, "off") {
                    Ok(plain) => {
                        let open = plain.opened().await.is_ok();
                        plain.close().await;
                        open
                    }
                    Err(_) => false,
                };
                Err(if port_is_open { tls_refused() } else { error })
            }
            Err(error) => Err(error),
        }
    }

    /// No wait for the upgraded socket's `opened`: workerd resolves it before the handshake
    /// (a certificate that does not verify fails the first read over TLS, not `opened`; the
    /// e2e suite's untrusted-certificate tests see it there), so waiting cost a promise round
    /// trip and proved nothing.
    async fn start_tls(&self, conn: Conn) -> io::Result<Conn> {
        conn.start_tls()
    }

    type Timer = Timer;

    fn sleep(&self, millis: u64) -> Timer {
        Timer::new(millis)
    }

    fn now_millis(&self) -> u64 {
        now_millis()
    }
}

/// A request built with the runtime's own `Request`: the `worker` crate's wrapper converts
/// every request it makes (method, path, headers, `cf`), which cost the bundle more than all
/// the calls that use this.
fn js_request(
    url: &str,
    method: &str,
    content_type: Option<&str>,
    body: Option<&JsValue>,
) -> Result<web_sys::Request, JsValue> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    if let Some(content_type) = content_type {
        let headers = web_sys::Headers::new()?;
        headers.set("content-type", content_type)?;
        init.set_headers(&headers);
    }
    if let Some(body) = body {
        init.set_body(body);
    }
    web_sys::Request::new_with_str_and_init(url, &init)
}

/// `fetch(request)` to the network: the status and the body as text.
async fn fetch_text(request: &web_sys::Request) -> Result<(u16, String), JsValue> {
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let response: web_sys::Response = JsFuture::from(global.fetch_with_request(request)).await?.dyn_into()?;
    let text = JsFuture::from(response.text()?).await?.as_string().unwrap_or_default();
    Ok((response.status(), text))
}

/// POSTs `body` to a Durable Object and answers its status and body.
async fn fetch_object(
    object: worker_sys::DurableObject,
    url: &str,
    body: Option<&JsValue>,
) -> Result<(u16, Vec<u8>), JsValue> {
    let request = js_request(url, "POST", None, body)?;
    let response: web_sys::Response = JsFuture::from(object.fetch_with_request(&request)?).await?.dyn_into()?;
    let bytes = JsFuture::from(response.array_buffer()?).await?;
    Ok((response.status(), js_sys::Uint8Array::new(&bytes).to_vec()))
}

/// `{name: value, …}`, for the runtime's option objects.
fn js_object(members: &[(&str, JsValue)]) -> js_sys::Object {
    let object = js_sys::Object::new();
    for (name, value) in members {
        let _ = js_sys::Reflect::set(&object, &JsValue::from_str(name), value);
    }
    object
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
        js_sys::Reflect::get(&self.env, &JsValue::from_str(name)).ok()?.as_string()
    }

    /// A binding by name (a Durable Object namespace, a queue, a bucket) as workerd's own
    /// object. The `worker` crate's getters check its class and wrap it, and their errors are
    /// formatted strings; here a missing binding is `Unavailable`, and one of another kind
    /// fails at its first call, which is caught.
    fn binding<T: JsCast>(&self, name: &str) -> Result<T, Unavailable> {
        let value = js_sys::Reflect::get(&self.env, &JsValue::from_str(name)).map_err(|_| Unavailable)?;
        if value.is_undefined() || value.is_null() {
            return Err(Unavailable);
        }
        Ok(value.unchecked_into())
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
}

impl Environment for Workers {
    async fn dkim_sign(&self, key: &crate::dkim::DkimKey, data: &[u8]) -> Result<Vec<u8>, Unavailable> {
        crypto::sign(key, data).await.map_err(|_| Unavailable)
    }

    async fn idempotency(&self, store_key: &str, call: KeyCall) -> Result<KeyAnswer, Unavailable> {
        self.call_object(IDEMPOTENCY_KEYS, store_key, &call).await
    }

    async fn rate_limit(&self, key: &str, limit: u32, window_seconds: u32) -> Result<Decision, Unavailable> {
        let stub = self.stub(RATE_LIMITER, key)?;
        let url = format!("https://rate-limiter/hit?limit={limit}&window={window_seconds}");
        let (_, answer) = fetch_object(stub, &url, None).await.map_err(|_| Unavailable)?;
        serde_json::from_slice(&answer).map_err(|_| Unavailable)
    }

    async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Result<(u16, String), Unavailable> {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let request =
            js_request(url, "POST", Some("application/x-www-form-urlencoded"), Some(&JsValue::from_str(&body)))
                .map_err(|_| Unavailable)?;
        fetch_text(&request).await.map_err(|_| Unavailable)
    }

    async fn put_body(&self, id: &str, bytes: &[u8]) -> Result<(), Unavailable> {
        let bucket: worker_sys::R2Bucket = self.binding(MESSAGE_BODIES)?;
        let bytes: JsValue = js_sys::Uint8Array::from(bytes).into();
        let put = bucket.put(id.to_string(), bytes, JsValue::UNDEFINED).map_err(|_| Unavailable)?;
        JsFuture::from(put).await.map(drop).map_err(|_| Unavailable)
    }

    async fn get_body(&self, id: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        let bucket: worker_sys::R2Bucket = self.binding(MESSAGE_BODIES)?;
        let get = bucket.get(id.to_string(), JsValue::UNDEFINED).map_err(|_| Unavailable)?;
        let object = JsFuture::from(get).await.map_err(|_| Unavailable)?;
        if object.is_null() || object.is_undefined() {
            return Ok(None);
        }
        let object: worker_sys::R2ObjectBody = object.unchecked_into();
        let buffer = object.array_buffer().map_err(|_| Unavailable)?;
        array_buffer_bytes(buffer).await.map(Some).map_err(|_| Unavailable)
    }

    async fn enqueue(&self, id: &str, delay_seconds: u32) -> Result<(), Unavailable> {
        self.send_to(DELIVERY_QUEUE, id, delay_seconds).await
    }

    async fn dead_letter(&self, id: &str) -> Result<(), Unavailable> {
        self.send_to(DELIVERY_DLQ, id, 0).await
    }

    async fn save_record(&self, record: &Record) -> Result<(), Unavailable> {
        self.ledger::<bool>("save", &[], Some(to_json(record))).await.map(drop)
    }

    async fn load_record(&self, id: &str) -> Result<Option<Record>, Unavailable> {
        self.ledger("load", &[("id", id)], None).await
    }

    async fn list_records(&self, status: Option<Status>, limit: u32) -> Result<Vec<Record>, Unavailable> {
        let limit = limit.to_string();
        match status {
            Some(status) => self.ledger("list", &[("status", status.as_str()), ("limit", &limit)], None).await,
            None => self.ledger("list", &[("limit", &limit)], None).await,
        }
    }

    async fn claim_attempt(&self, id: &str, now_ms: u64, lease_ms: u64) -> Result<Claimed, Unavailable> {
        let (now_ms, lease_ms) = (now_ms.to_string(), lease_ms.to_string());
        self.ledger("claim", &[("id", id), ("now_ms", &now_ms), ("lease_ms", &lease_ms)], None).await
    }

    /// The transaction goes to one of the session objects, picked at random: its JSON, a
    /// line feed, then the message's bytes.
    async fn send_warm(&self, transaction: &Transaction, sessions: u32) -> Result<Outcome, WarmUnavailable> {
        let before = WarmUnavailable { handed_over: false };
        let mut pick = [0u8; 4];
        getrandom::fill(&mut pick).map_err(|_| WarmUnavailable { handed_over: false })?;
        let stub = self.session_object(u32::from_le_bytes(pick) % sessions.max(1)).map_err(|_| before)?;
        let body = transaction.to_bytes();
        let body: JsValue = js_sys::Uint8Array::from(body.as_slice()).into();
        // From here on the object may have the message.
        let after = || WarmUnavailable { handed_over: true };
        let (_, answer) = fetch_object(stub, "https://smtp-session/send", Some(&body)).await.map_err(|_| after())?;
        serde_json::from_slice(&answer).map_err(|_| after())
    }

    async fn get_text(&self, url: &str) -> Result<(u16, String), Unavailable> {
        let request = js_request(url, "GET", None, None).map_err(|_| Unavailable)?;
        fetch_text(&request).await.map_err(|_| Unavailable)
    }
}

impl Workers {
    /// Asks the ledger `https://ledger/<operation>?<query>` (a record to save as the body): the
    /// operation in the path and its small arguments in the query, so neither side needs a
    /// JSON type for the call (an enum of calls cost 13 KB of deserializer).
    async fn ledger<T: DeserializeOwned>(
        &self,
        operation: &str,
        query: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<T, Unavailable> {
        let stub = self.stub(DELIVERY_LEDGER, "ledger")?;
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(query).finish();
        let body = body.map(|body| JsValue::from_str(&body));
        let url = format!("https://ledger/{operation}?{query}");
        match fetch_object(stub, &url, body.as_ref()).await {
            Ok((200, answer)) => serde_json::from_slice(&answer).map_err(|_| Unavailable),
            _ => Err(Unavailable),
        }
    }

    /// POSTs `call` as JSON to the Durable Object `name` of `binding`; its JSON answer.
    async fn call_object<T: DeserializeOwned>(
        &self,
        binding: &str,
        name: &str,
        call: &impl Serialize,
    ) -> Result<T, Unavailable> {
        let stub = self.stub(binding, name)?;
        let body = JsValue::from_str(&to_json(call));
        match fetch_object(stub, "https://object/", Some(&body)).await {
            Ok((200, answer)) => serde_json::from_slice(&answer).map_err(|_| Unavailable),
            _ => Err(Unavailable),
        }
    }

    /// The Durable Object `name` of `binding`.
    fn stub(&self, binding: &str, name: &str) -> Result<worker_sys::DurableObject, Unavailable> {
        let namespace: worker_sys::DurableObjectNamespace = self.binding(binding)?;
        let id = namespace.id_from_name(name).map_err(|_| Unavailable)?;
        namespace.get(&id).map_err(|_| Unavailable)
    }

    async fn send_to(&self, queue: &str, id: &str, delay_seconds: u32) -> Result<(), Unavailable> {
        let queue: worker_sys::Queue = self.binding(queue)?;
        // The message is the stored message's id, as a string.
        let options =
            js_object(&[("contentType", "json".into()), ("delaySeconds", JsValue::from_f64(f64::from(delay_seconds)))]);
        let sent = queue.send(JsValue::from_str(id), options.into()).map_err(|_| Unavailable)?;
        JsFuture::from(sent).await.map(drop).map_err(|_| Unavailable)
    }

    /// The one that keeps warm session number `index`.
    fn session_object(&self, index: u32) -> Result<worker_sys::DurableObject, Unavailable> {
        self.stub(SMTP_SESSION_POOL, &format!("smtp-session-{index}"))
    }
}

impl Platform for Workers {
    /// workerd's own multipart parser, on a body already read within its limit.
    async fn parse_multipart(&self, content_type: &str, body: Vec<u8>) -> Result<Vec<Field>, Unavailable> {
        let bytes: JsValue = js_sys::Uint8Array::from(body.as_slice()).into();
        drop(body);
        let request =
            js_request("https://form.invalid/", "POST", Some(content_type), Some(&bytes)).map_err(|_| Unavailable)?;
        form_fields(&request).await
    }
}

/// Every entry of a form body, in order, repeated names kept.
async fn form_fields(request: &web_sys::Request) -> Result<Vec<Field>, Unavailable> {
    let form = JsFuture::from(request.form_data().map_err(|_| Unavailable)?).await.map_err(|_| Unavailable)?;
    let entries = js_sys::try_iter(&form).map_err(|_| Unavailable)?.ok_or(Unavailable)?;
    let mut fields = Vec::new();
    for entry in entries {
        let pair: js_sys::Array = entry.map_err(|_| Unavailable)?.unchecked_into();
        let name = pair.get(0).as_string().ok_or(Unavailable)?;
        let value = pair.get(1);
        let value = if let Some(text) = value.as_string() {
            FieldValue::Text(text)
        } else {
            let file: web_sys::File = value.unchecked_into();
            let data = array_buffer_bytes(file.array_buffer()).await.map_err(|_| Unavailable)?;
            FieldValue::File { filename: file.name(), content_type: file.type_(), data }
        };
        fields.push(Field { name, value });
    }
    Ok(fields)
}

/// The request body as workerd streams it, opened only when a handler reads it: a body
/// nobody asked for is left to workerd untouched (taking its stream and dropping it makes
/// workerd reset the connection before the client has read the answer).
enum Body {
    Unread(web_sys::Request),
    Reading(ChunkReader),
    Empty,
}

impl BodySource for Body {
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ()> {
        if let Body::Unread(request) = self {
            *self = match request.body() {
                Some(stream) => Body::Reading(ChunkReader::new(&stream)),
                None => Body::Empty, // a request without a body
            };
        }
        match self {
            Body::Reading(reader) => {
                let chunk = std::future::poll_fn(|cx| reader.poll_chunk(cx)).await.map_err(drop)?;
                Ok(chunk.map(|bytes| bytes.to_vec()))
            }
            _ => Ok(None),
        }
    }
}

/// workerd's response object, built directly (worker::Response would build it through a body
/// enum, a builder and a second headers object).
fn to_response(response: HttpResponse) -> Answer {
    let headers = web_sys::Headers::new()?;
    for (name, value) in &response.headers {
        headers.set(name, value)?;
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(response.status);
    init.set_headers(&headers);
    let body = (!response.body.is_empty()).then(|| js_sys::Uint8Array::from(&response.body[..]));
    web_sys::Response::new_with_opt_buffer_source_and_init(body.as_ref().map(|b| b.as_ref()), &init)
}

/// A short id for the request log: Cloudflare's ray id, else a random one.
fn request_id(ray: Option<&str>) -> String {
    if let Some(ray) = ray {
        return ray.chars().filter(char::is_ascii_alphanumeric).take(32).collect();
    }
    let mut random = [0u8; 6];
    let _ = getrandom::fill(&mut random);
    crate::hex(&random)
}

/// The fetch event, exported as `#[event(fetch)]` would export it. It takes workerd's own
/// request object: `worker::Request` would read its `cf` properties, which costs every request
/// CPU (about a tenth of a health check's) for data nothing here uses; and it answers with
/// workerd's `Response` or throws, without the macro's glue (`worker::Error`, its `Display`
/// and `Debug` and every error type it wraps).
#[wasm_bindgen]
pub async fn fetch(request: web_sys::Request, env: Env, ctx: worker_sys::Context) -> Answer {
    let workers = Workers { env };
    let started = now_millis();
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
    let body = Body::Unread(request);
    let handled = http::boxed(http::serve(workers, config.as_ref().as_ref(), head, body)).await;
    // One line per request, never a body: the answers of failed sends carry addresses.
    let response = &handled.response;
    let code = response.error.map(|c| c.as_str()).unwrap_or("-");
    let took = now_millis().saturating_sub(started);
    // Failures always; successes when LOG_REQUESTS=all (or the settings are broken).
    let log_all = config.as_ref().as_ref().map_or(true, |c| c.log_all_requests);
    if response.status >= 400 || log_all {
        let id = request_id(ray.as_deref());
        log(&format!("{id} {method} {path} {} {code} {took}ms", response.status));
    }
    if let Some(quit) = http::after_response(handled.after) {
        let quit = wasm_bindgen_futures::future_to_promise(async {
            quit.await;
            Ok(JsValue::UNDEFINED)
        });
        ctx.wait_until(&quit)?;
    }
    to_response(handled.response)
}

// ---- Durable Objects ----------------------------------------------------------------------
//
// Each is a wasm-bindgen class as `#[durable_object]` would make it (a constructor of state
// and env, `fetch`, `alarm`), written out so that `fetch` takes and answers workerd's own
// `Request` and `Response` and storage is called directly: the `worker` crate's wrappers
// (its `Request`, `Response`, SQL cursor and error type) cost the bundle more than these
// objects' own code. A failed call throws: the Worker's `fetch` to the object fails, which
// its callers take as the object being unavailable.

type Answer = Result<web_sys::Response, JsValue>;

/// A JavaScript `Error` with this message (what the Worker's call to the object sees).
fn failure(why: &str) -> JsValue {
    js_sys::Error::new(why).into()
}

/// A Durable Object's answer to the Worker: `status` and this text.
fn text_response(status: u16, body: &str) -> Answer {
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    web_sys::Response::new_with_opt_str_and_init(Some(body), &init)
}

/// A Durable Object's JSON answer to the Worker.
/// Our own records and calls as JSON (derived, string keys: writing them cannot fail).
fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("records are plain data")
}

fn json_response(value: &impl Serialize) -> Answer {
    text_response(200, &to_json(value))
}

/// The bytes an `arrayBuffer()` call resolves to (a request, a file, an R2 body).
async fn array_buffer_bytes(buffer: js_sys::Promise) -> Result<Vec<u8>, JsValue> {
    let bytes = JsFuture::from(buffer).await?;
    Ok(js_sys::Uint8Array::new(&bytes).to_vec())
}

/// The body the Worker sent one of its Durable Objects.
async fn request_bytes(request: &web_sys::Request) -> Result<Vec<u8>, JsValue> {
    array_buffer_bytes(request.array_buffer()?).await
}

/// A JSON body the Worker sent one of its Durable Objects.
async fn json_request<T: DeserializeOwned>(request: &web_sys::Request) -> Result<T, JsValue> {
    let bytes = request_bytes(request).await?;
    serde_json::from_slice(&bytes).map_err(|e| failure(&e.to_string()))
}

fn read_stored<T: DeserializeOwned>(text: &str) -> Result<T, JsValue> {
    serde_json::from_str(text).map_err(|e| failure(&format!("a stored record does not parse: {e}")))
}

/// The object's storage, and its SQLite. workerd gives every Durable Object one; an error here
/// is thrown to the caller (a constructor throws), never a panic.
fn storage(state: &DurableObjectState) -> Result<worker_sys::DurableObjectStorage, JsValue> {
    state.storage()
}

/// Runs one statement with its bindings; the first column of each row it gives, as text (the
/// records' JSON).
fn sql(db: &SqlStorage, statement: &str, bindings: &[JsValue]) -> Result<Vec<String>, JsValue> {
    let cursor = db.exec(statement, bindings.iter().collect())?;
    let mut texts = Vec::new();
    for row in cursor.raw() {
        let row: js_sys::Array = row?.unchecked_into();
        texts.push(row.get(0).as_string().ok_or_else(|| failure("a stored record that is not text"))?);
    }
    Ok(texts)
}

/// Sets the object's alarm to `at_ms` (milliseconds since the epoch).
async fn set_alarm(state: &DurableObjectState, at_ms: u64) -> Result<(), JsValue> {
    let at = js_sys::Date::new(&JsValue::from_f64(at_ms as f64));
    JsFuture::from(storage(state)?.set_alarm(at, js_sys::Object::new())?).await.map(drop)
}

/// One per form and client (`idFromName`): a sliding window of that client's posts. It lives
/// in memory; if the object is evicted the window starts afresh, which errs toward allowing.
#[wasm_bindgen]
pub struct RateLimiter {
    window: RefCell<Window>,
}

#[wasm_bindgen]
impl RateLimiter {
    #[wasm_bindgen(constructor)]
    pub fn new(_state: DurableObjectState, _env: Env) -> RateLimiter {
        RateLimiter { window: RefCell::new(Window::default()) }
    }

    pub async fn fetch(&self, request: web_sys::Request) -> Answer {
        // The query as workerd serialised it: split, not re-parsed (the url crate would be the
        // only reason for its IDNA tables in the bundle).
        let url = request.url();
        let (_, query) = http::request::path_and_query(&url);
        let param = |name: &str| {
            form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).and_then(|(_, v)| v.parse::<u32>().ok())
        };
        let (limit, window) = (param("limit").unwrap_or(1), param("window").unwrap_or(60));
        let decision = self.window.borrow_mut().hit(now_millis(), limit, u64::from(window) * 1000);
        json_response(&decision)
    }
}

/// One warm SMTP session (`SMTP_SESSIONS` of these, by name): sends from every request of
/// the Worker run on it one at a time, and it closes with QUIT after `SMTP_IDLE_SECONDS`
/// unused (an alarm). workerd lets a Durable Object keep a socket between requests; an
/// evicted object loses it, and the next send simply opens a new one.
#[wasm_bindgen]
pub struct SmtpSession {
    state: DurableObjectState,
    workers: Workers,
    warm: WarmSession<Workers>,
}

impl SmtpSession {
    async fn arm_idle_alarm(&self, after_ms: u64) {
        let _ = set_alarm(&self.state, now_millis() + after_ms).await;
    }
}

#[wasm_bindgen]
impl SmtpSession {
    #[wasm_bindgen(constructor)]
    pub fn new(state: DurableObjectState, env: Env) -> SmtpSession {
        SmtpSession { state, workers: Workers { env }, warm: WarmSession::default() }
    }

    pub async fn fetch(&self, request: web_sys::Request) -> Answer {
        let bytes = request_bytes(&request).await?;
        let transaction = Transaction::from_bytes(&bytes).ok_or_else(|| failure("not a transaction"))?;
        drop(bytes);
        let outcome = match self.workers.config().as_ref() {
            Err(error) => Outcome::failed(error.clone()),
            Ok(config) => {
                let outcome = self.warm.send(&self.workers, &config.relay, &transaction).await;
                self.arm_idle_alarm(config.smtp_idle_seconds * 1000).await;
                outcome
            }
        };
        json_response(&outcome)
    }

    pub async fn alarm(&self) -> Result<JsValue, JsValue> {
        let idle_ms = self.workers.config().as_ref().as_ref().map(|c| c.smtp_idle_seconds).unwrap_or(30) * 1000;
        if let Some(left) = self.warm.close_if_idle(self.workers.now_millis(), idle_ms).await {
            self.arm_idle_alarm(left).await;
        }
        Ok(JsValue::UNDEFINED)
    }
}

/// The delivery ledger: every queued message's record, in this object's SQLite. One object
/// for the whole deployment, so reads and writes are strongly consistent and a claim (read,
/// check, write) happens in one step: nothing else runs in the object between them.
#[wasm_bindgen]
pub struct DeliveryLedger {
    db: SqlStorage,
}

impl DeliveryLedger {
    fn load(&self, id: &str) -> Result<Option<Record>, JsValue> {
        let rows = sql(&self.db, "SELECT record FROM records WHERE id = ?", &[id.into()])?;
        // A record that does not parse is an error (the consumer retries), never "no record"
        // (which would drop the message).
        rows.first().map(|row| read_stored(row)).transpose()
    }

    fn save(&self, record: &Record) -> Result<(), JsValue> {
        let json = to_json(&record);
        sql(
            &self.db,
            "INSERT INTO records (id, status, created_at, record) VALUES (?, ?, ?, ?) \
             ON CONFLICT(id) DO UPDATE SET status = excluded.status, record = excluded.record",
            &[
                record.id.as_str().into(),
                record.status.as_str().into(),
                JsValue::from_f64(record.created_at as f64),
                json.into(),
            ],
        )
        .map(drop)
    }

    async fn call(&self, request: &web_sys::Request) -> Answer {
        let url = request.url();
        let (path, query) = http::request::path_and_query(&url);
        let arg =
            |name: &str| form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        let number = |name: &str| arg(name).and_then(|v| v.parse::<u64>().ok());
        let missing = || failure("a ledger call without its arguments");
        match path {
            "/save" => {
                let record: Record = json_request(request).await?;
                self.save(&record)?;
                json_response(&true)
            }
            "/load" => json_response(&self.load(&arg("id").ok_or_else(missing)?)?),
            "/list" => {
                let limit = JsValue::from_f64(number("limit").ok_or_else(missing)? as f64);
                let rows = match arg("status").as_deref().and_then(Status::parse) {
                    Some(status) => sql(
                        &self.db,
                        "SELECT record FROM records WHERE status = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
                        &[status.as_str().into(), limit],
                    )?,
                    None => sql(
                        &self.db,
                        "SELECT record FROM records ORDER BY created_at DESC, rowid DESC LIMIT ?",
                        &[limit],
                    )?,
                };
                let records: Vec<Record> = rows.iter().filter_map(|row| read_stored(row).ok()).collect();
                json_response(&records)
            }
            "/claim" => {
                let (id, now_ms, lease_ms) = (arg("id"), number("now_ms"), number("lease_ms"));
                let (Some(id), Some(now_ms), Some(lease_ms)) = (id, now_ms, lease_ms) else { return Err(missing()) };
                let Some(mut record) = self.load(&id)? else { return json_response(&Claimed::Done) };
                let claimed = queue::claim(&mut record, now_ms, lease_ms);
                if matches!(claimed, Claimed::Granted(_)) {
                    self.save(&record)?;
                }
                json_response(&claimed)
            }
            _ => text_response(404, "no such ledger call"),
        }
    }
}

#[wasm_bindgen]
impl DeliveryLedger {
    #[wasm_bindgen(constructor)]
    pub fn new(state: DurableObjectState, _env: Env) -> Result<DeliveryLedger, JsValue> {
        let db = storage(&state)?.sql();
        // Created on first use: no migration step, under wrangler dev or deployed.
        let _ = sql(
            &db,
            "CREATE TABLE IF NOT EXISTS records (id TEXT PRIMARY KEY, status TEXT NOT NULL, \
             created_at INTEGER NOT NULL, record TEXT NOT NULL)",
            &[],
        );
        let _ = sql(&db, "CREATE INDEX IF NOT EXISTS records_by_status ON records (status, created_at)", &[]);
        Ok(DeliveryLedger { db })
    }

    pub async fn fetch(&self, request: web_sys::Request) -> Answer {
        self.call(&request).await
    }
}

/// The delivery queue's consumer: one SMTP session per batch; each message acknowledged, or
/// retried after the delay its attempt asked for. Exported as `#[event(queue)]` would export
/// it, with workerd's own batch: the `worker` crate's reads each message through serde.
#[wasm_bindgen]
pub async fn queue(batch: worker_sys::MessageBatch, env: Env, _ctx: worker_sys::Context) -> Result<JsValue, JsValue> {
    let workers = Workers { env };
    let name = batch.queue().map(String::from).unwrap_or_default();
    let config = workers.config();
    let config = match config.as_ref() {
        Ok(config) => config,
        Err(error) => {
            log(&format!("queue {name}: {error}"));
            batch.retry_all(JsValue::UNDEFINED)?;
            return Ok(JsValue::UNDEFINED);
        }
    };
    let messages: Vec<worker_sys::Message> = crate::map_vec(batch.messages()?.iter(), JsCast::unchecked_into);
    // The id as a string; `{"id": …}` is how earlier versions sent it.
    let id_of =
        |body: JsValue| body.as_string().or_else(|| js_sys::Reflect::get(&body, &"id".into()).ok()?.as_string());
    let ids: Vec<String> = crate::map_vec(&messages, |m| m.body().ok().and_then(id_of).unwrap_or_default());
    let verdicts = queue::deliver_batch(&workers, config, &ids).await;
    for (message, verdict) in messages.iter().zip(verdicts) {
        match verdict {
            Verdict::Ack => message.ack()?,
            Verdict::Retry(delay) => {
                message.retry(js_object(&[("delaySeconds", JsValue::from_f64(f64::from(delay)))]).into())?
            }
        }
    }
    log(&format!("queue {name}: {} message(s)", ids.len()));
    Ok(JsValue::UNDEFINED)
}

/// One Idempotency-Key (named by a hash of API key and key): its record in this object's
/// SQLite, changed by [`idempotency::apply`] in one step, since the SQL calls are synchronous
/// and nothing else runs in the object meanwhile. An alarm deletes the record when it expires.
#[wasm_bindgen]
pub struct IdempotencyKey {
    state: DurableObjectState,
    db: SqlStorage,
}

impl IdempotencyKey {
    fn load(&self) -> Result<Option<KeyRecord>, JsValue> {
        let rows = sql(&self.db, "SELECT record FROM key WHERE id = 1", &[])?;
        Ok(rows.first().and_then(|row| read_stored(row).ok()))
    }

    async fn call(&self, request: &web_sys::Request) -> Answer {
        let call: KeyCall = json_request(request).await?;
        let mut record = self.load()?;
        let answer = idempotency::apply(&mut record, call);
        match &record {
            Some(record) => {
                let json = to_json(&record);
                sql(&self.db, "INSERT OR REPLACE INTO key (id, record) VALUES (1, ?)", &[json.into()])?;
                let _ = set_alarm(&self.state, record.expires_at_ms).await;
            }
            None => {
                sql(&self.db, "DELETE FROM key", &[])?;
            }
        }
        json_response(&answer)
    }
}

#[wasm_bindgen]
impl IdempotencyKey {
    #[wasm_bindgen(constructor)]
    pub fn new(state: DurableObjectState, _env: Env) -> Result<IdempotencyKey, JsValue> {
        let db = storage(&state)?.sql();
        let _ = sql(&db, "CREATE TABLE IF NOT EXISTS key (id INTEGER PRIMARY KEY, record TEXT NOT NULL)", &[]);
        Ok(IdempotencyKey { state, db })
    }

    pub async fn fetch(&self, request: web_sys::Request) -> Answer {
        self.call(&request).await
    }

    pub async fn alarm(&self) -> Result<JsValue, JsValue> {
        let now = now_millis();
        if self.load()?.is_some_and(|record| record.expires_at_ms <= now) {
            sql(&self.db, "DELETE FROM key", &[])?;
        }
        Ok(JsValue::UNDEFINED)
    }
}
