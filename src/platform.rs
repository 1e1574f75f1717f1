//! The only code that touches the Workers runtime: the fetch event, the environment, TCP
//! sockets and timers. Everything it calls is runtime-independent and tested natively.

use std::io;
use std::time::Duration;

use std::cell::RefCell;

use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{
    durable_object, event, js_sys, web_sys, Context, Delay, DurableObject, Env, Fetch, Headers, Method, Request,
    RequestInit, Response, SecureTransport, Socket, State,
};

use crate::api::http::{self, Environment, HttpRequest, HttpResponse, Unavailable};
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::forms::ratelimit::{Decision, Window};
use crate::forms::{Field, FieldValue};
use crate::smtp::client::{Network, Transport};

/// The KV namespace binding that keeps Idempotency-Key answers.
const IDEMPOTENCY_KV: &str = "IDEMPOTENCY";
/// The Durable Object namespace binding of [`RateLimiter`].
const RATE_LIMITER: &str = "RATE_LIMITER";

#[derive(Clone)]
struct Workers {
    env: Env,
}

fn io_error(error: worker::Error) -> io::Error {
    io::Error::other(error.to_string())
}

impl Network for Workers {
    type Conn = Socket;

    async fn connect(&self, host: &str, port: u16, transport: Transport) -> io::Result<Socket> {
        let secure = match transport {
            Transport::Tls => SecureTransport::On,
            Transport::Plain { upgradable: true } => SecureTransport::StartTls,
            Transport::Plain { upgradable: false } => SecureTransport::Off,
        };
        let socket = Socket::builder().secure_transport(secure).connect(host, port).map_err(io_error)?;
        socket.opened().await.map_err(io_error)?;
        Ok(socket)
    }

    async fn start_tls(&self, conn: Socket) -> io::Result<Socket> {
        let upgraded = conn.start_tls();
        upgraded.opened().await.map_err(io_error)?;
        Ok(upgraded)
    }

    async fn sleep(&self, millis: u64) {
        Delay::from(Duration::from_millis(millis)).await
    }

    fn now_millis(&self) -> u64 {
        worker::Date::now().as_millis()
    }
}

impl Environment for Workers {
    fn var(&self, name: &str) -> Option<String> {
        // Plain vars and secrets are both strings here; either may hold a setting.
        self.env.var(name).ok().map(|v| v.to_string()).or_else(|| self.env.secret(name).ok().map(|v| v.to_string()))
    }

    fn unix_millis(&self) -> i64 {
        worker::Date::now().as_millis() as i64
    }

    async fn kv_get(&self, key: &str) -> Result<Option<String>, Unavailable> {
        let kv = self.env.kv(IDEMPOTENCY_KV).map_err(|_| Unavailable)?;
        kv.get(key).text().await.map_err(|_| Unavailable)
    }

    async fn kv_put(&self, key: &str, value: &str, ttl_seconds: u64) -> Result<(), Unavailable> {
        let kv = self.env.kv(IDEMPOTENCY_KV).map_err(|_| Unavailable)?;
        let put = kv.put(key, value).map_err(|_| Unavailable)?;
        put.expiration_ttl(ttl_seconds).execute().await.map_err(|_| Unavailable)
    }

    async fn kv_delete(&self, key: &str) -> Result<(), Unavailable> {
        let kv = self.env.kv(IDEMPOTENCY_KV).map_err(|_| Unavailable)?;
        kv.delete(key).await.map_err(|_| Unavailable)
    }

    async fn rate_limit(&self, key: &str, limit: u32, window_seconds: u32) -> Result<Decision, Unavailable> {
        let namespace = self.env.durable_object(RATE_LIMITER).map_err(|_| Unavailable)?;
        let stub = namespace.id_from_name(key).and_then(|id| id.get_stub()).map_err(|_| Unavailable)?;
        let url = format!("https://rate-limiter/hit?limit={limit}&window={window_seconds}");
        let mut response = stub.fetch_with_str(&url).await.map_err(|_| Unavailable)?;
        response.json().await.map_err(|_| Unavailable)
    }

    async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Result<(u16, String), Unavailable> {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let headers = Headers::new();
        headers.set("content-type", "application/x-www-form-urlencoded").map_err(|_| Unavailable)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_headers(headers).with_body(Some(JsValue::from_str(&body)));
        let request = Request::new_with_init(url, &init).map_err(|_| Unavailable)?;
        let mut response = Fetch::Request(request).send().await.map_err(|_| Unavailable)?;
        let text = response.text().await.map_err(|_| Unavailable)?;
        Ok((response.status_code(), text))
    }

    async fn get_text(&self, url: &str) -> Result<(u16, String), Unavailable> {
        let url = worker::Url::parse(url).map_err(|_| Unavailable)?;
        let mut response = Fetch::Url(url).send().await.map_err(|_| Unavailable)?;
        let text = response.text().await.map_err(|_| Unavailable)?;
        Ok((response.status_code(), text))
    }
}

fn to_response(response: HttpResponse) -> worker::Result<Response> {
    let mut out = Response::from_bytes(response.body)?.with_status(response.status);
    for (name, value) in &response.headers {
        out.headers_mut().set(name, value)?;
    }
    Ok(out)
}

async fn to_request(mut request: Request, env: &Workers) -> Result<HttpRequest, ApiError> {
    // The configured limit, checked on Content-Length before the body is read; a broken
    // configuration is reported by the handler, so fall back to the default here.
    let limit = Config::from_lookup(|name| env.var(name))
        .map(|c| c.max_request_bytes)
        .unwrap_or(http::DEFAULT_MAX_REQUEST_BYTES);
    let too_large = || http::too_large(limit);
    let headers: Vec<(String, String)> = request.headers().entries().collect();
    let declared = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let url = request.url().map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "the URL could not be parsed"))?;
    let (path, query) = (url.path().to_string(), url.query().unwrap_or_default().to_string());
    let method = request.method().to_string();
    let content_type = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    let is_form = content_type.starts_with("multipart/form-data")
        || content_type.starts_with("application/x-www-form-urlencoded");
    if method == "POST" && path.starts_with("/v1/forms/") && is_form {
        // workerd's own parser reads urlencoded and multipart bodies.
        let form = form_fields(&mut request).await?;
        let size: usize = form.iter().map(|f| f.name.len() + field_size(&f.value)).sum();
        if size > limit {
            return Err(too_large());
        }
        return Ok(HttpRequest { method, path, query, headers, body: Vec::new(), form: Some(form) });
    }
    let body =
        request.bytes().await.map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "the body could not be read"))?;
    if body.len() > limit {
        return Err(too_large());
    }
    Ok(HttpRequest { method, path, query, headers, body, form: None })
}

fn field_size(value: &FieldValue) -> usize {
    match value {
        FieldValue::Text(text) => text.len(),
        FieldValue::File { data, .. } => data.len(),
    }
}

/// Every entry of the form body, in order, repeated names kept.
async fn form_fields(request: &mut Request) -> Result<Vec<Field>, ApiError> {
    let unreadable = || ApiError::new(ErrorCode::InvalidRequest, "the form body could not be parsed");
    let form: JsValue = request.form_data().await.map_err(|_| unreadable())?.into();
    let entries = js_sys::try_iter(&form).map_err(|_| unreadable())?.ok_or_else(unreadable)?;
    let mut fields = Vec::new();
    for entry in entries {
        let pair: js_sys::Array = entry.map_err(|_| unreadable())?.unchecked_into();
        let name = pair.get(0).as_string().ok_or_else(unreadable)?;
        let value = pair.get(1);
        let value = if let Some(text) = value.as_string() {
            FieldValue::Text(text)
        } else {
            let file = worker::File::from(value.unchecked_into::<web_sys::File>());
            let data = file.bytes().await.map_err(|_| unreadable())?;
            FieldValue::File { filename: file.name(), content_type: file.type_(), data }
        };
        fields.push(Field { name, value });
    }
    Ok(fields)
}

#[event(fetch)]
async fn fetch(request: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let workers = Workers { env };
    let request = match to_request(request, &workers).await {
        Ok(request) => request,
        Err(error) => return to_response(HttpResponse::error(&error)),
    };
    let (method, path) = (request.method.clone(), request.path.clone());
    let handled = http::handle(workers, request).await;
    if handled.response.status >= 400 {
        // Error bodies never carry secrets (see error.rs and smtp/outcome.rs).
        let body = String::from_utf8_lossy(&handled.response.body);
        worker::console_log!("{method} {path} -> {} {body}", handled.response.status);
    }
    if let Some(quit) = http::after_response(handled.after) {
        ctx.wait_until(quit);
    }
    to_response(handled.response)
}

/// One per form and client (`idFromName`): a sliding window of that client's posts. It lives
/// in memory; if the object is evicted the window starts afresh, which errs toward allowing.
#[durable_object(fetch)]
pub struct RateLimiter {
    window: RefCell<Window>,
}

impl DurableObject for RateLimiter {
    fn new(_state: State, _env: Env) -> Self {
        RateLimiter { window: RefCell::new(Window::default()) }
    }

    async fn fetch(&self, request: Request) -> worker::Result<Response> {
        let url = request.url()?;
        let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).and_then(|(_, v)| v.parse::<u32>().ok());
        let (limit, window) = (param("limit").unwrap_or(1), param("window").unwrap_or(60));
        let decision = self.window.borrow_mut().hit(worker::Date::now().as_millis(), limit, u64::from(window) * 1000);
        Response::from_json(&decision)
    }
}
