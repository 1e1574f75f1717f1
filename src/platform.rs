//! The only code that touches the Workers runtime: the fetch event, the environment, TCP
//! sockets and timers. Everything it calls is runtime-independent and tested natively.

use std::io;
use std::time::Duration;

use worker::{event, Context, Delay, Env, Request, Response, SecureTransport, Socket};

use crate::api::http::{self, Environment, HttpRequest, HttpResponse, StoreUnavailable};
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::smtp::client::{Network, Transport};

/// The KV namespace binding that keeps Idempotency-Key answers.
const IDEMPOTENCY_KV: &str = "IDEMPOTENCY";

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

    async fn kv_get(&self, key: &str) -> Result<Option<String>, StoreUnavailable> {
        let kv = self.env.kv(IDEMPOTENCY_KV).map_err(|_| StoreUnavailable)?;
        kv.get(key).text().await.map_err(|_| StoreUnavailable)
    }

    async fn kv_put(&self, key: &str, value: &str, ttl_seconds: u64) -> Result<(), StoreUnavailable> {
        let kv = self.env.kv(IDEMPOTENCY_KV).map_err(|_| StoreUnavailable)?;
        let put = kv.put(key, value).map_err(|_| StoreUnavailable)?;
        put.expiration_ttl(ttl_seconds).execute().await.map_err(|_| StoreUnavailable)
    }

    async fn kv_delete(&self, key: &str) -> Result<(), StoreUnavailable> {
        let kv = self.env.kv(IDEMPOTENCY_KV).map_err(|_| StoreUnavailable)?;
        kv.delete(key).await.map_err(|_| StoreUnavailable)
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
    let body =
        request.bytes().await.map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "the body could not be read"))?;
    if body.len() > limit {
        return Err(too_large());
    }
    let url = request.url().map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "the URL could not be parsed"))?;
    let (path, query) = (url.path().to_string(), url.query().unwrap_or_default().to_string());
    Ok(HttpRequest { method: request.method().to_string(), path, query, headers, body })
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
