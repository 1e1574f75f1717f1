//! The HTTP edge, with no Workers types: the platform turns its request into a
//! [`RequestHead`] and a [`BodySource`], calls [`serve`] with the configuration it parsed,
//! and sends the [`HttpResponse`] back.
//!
//! Every handler decides what it can from the head before it reads a byte of the body (the
//! route, the API key, the form and its origin, the rate limit); then the body is read with a
//! running count that stops at the limit, and a deadline.

pub mod auth;
pub mod batch;
pub mod body;
pub mod demo;
pub mod forms;
mod input;
pub mod messages;
pub mod meta;
pub mod pages;
pub mod relay_check;
pub mod reports;
pub mod request;
pub mod resend;
pub mod response;
pub mod send;
pub mod stats;
pub mod suppressions;

pub use body::BodySource;
pub use request::{Field, FieldValue, Platform, RequestHead};
use response::method_not_allowed;
pub use response::{after_response, Handled, HttpResponse};

use std::future::Future;
use std::pin::Pin;

use crate::config::Config;
use crate::error::{ApiError, ErrorCode};

/// A handler's future behind a pointer, polled through its vtable: a request's future is as
/// large as its largest route's state (a batch holds a whole SMTP session), and boxed, that
/// state lives on the heap for the routes that need it instead of in every request's future.
pub fn boxed<'a, T>(future: impl Future<Output = T> + 'a) -> Pin<Box<dyn Future<Output = T> + 'a>> {
    Box::pin(future)
}

/// Every route [`serve`] answers, as method and path template: with [`STATIC_ROUTES`], what
/// `www/v1/openapi.json` documents (a test holds them together, and checks each route is served).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/health"),
    ("GET", "/v1/demo"),
    ("GET", "/v1/demo/message"),
    ("POST", "/v1/demo/relay-check"),
    ("POST", "/v1/send"),
    ("POST", "/v1/send/batch"),
    ("GET", "/v1/messages"),
    ("POST", "/v1/messages/search"),
    ("GET", "/v1/messages/{id}"),
    ("POST", "/v1/relay/check"),
    ("GET", "/v1/reports"),
    ("GET", "/v1/stats"),
    ("GET", "/v1/suppressions"),
    ("POST", "/v1/suppressions"),
    ("GET", "/v1/suppressions/{address}"),
    ("DELETE", "/v1/suppressions/{address}"),
    ("POST", "/v1/suppressions/list"),
    ("POST", "/v1/suppressions/delete"),
    ("POST", "/v1/forms/{form}"),
    ("OPTIONS", "/v1/forms/{form}"),
    ("POST", "/emails"),
    ("GET", "/emails"),
    ("POST", "/emails/batch"),
    ("GET", "/emails/{id}"),
];

/// Routes the deployment's static assets answer (`www/`, in front of the Worker), each a file
/// of that path: the error table, written from [`meta::errors_table`].
pub const STATIC_ROUTES: &[(&str, &str)] = &[("GET", "/v1/errors")];

/// The route table. `config` is the configuration the platform parsed for this request (or
/// why it is broken, which routes that need it report as `misconfigured`).
pub async fn serve<P: Platform>(
    env: P,
    config: Result<&Config, &ApiError>,
    head: RequestHead,
    body: impl BodySource,
) -> Handled<P> {
    let method = head.method.as_str();
    match head.path.as_str() {
        "/v1/health" => only(method, "GET", meta::health).into(),
        "/v1/demo" if method == "GET" => demo::describe(config, &head).into(),
        "/v1/demo/message" if method == "GET" => boxed(demo::received(&env, config, &head)).await.into(),
        "/v1/demo/relay-check" if method == "POST" => boxed(demo::relay_check(env, config, &head)).await,
        "/v1/send" if method == "POST" => boxed(send::handle(env, config, &head, body)).await,
        "/v1/send" => HttpResponse::error(&method_not_allowed("POST")).into(),
        "/v1/send/batch" if method == "POST" => boxed(batch::handle(env, config, &head, body)).await,
        "/v1/send/batch" => HttpResponse::error(&method_not_allowed("POST")).into(),
        "/v1/relay/check" if method == "POST" => boxed(relay_check::handle(env, config, &head)).await,
        "/v1/relay/check" => HttpResponse::error(&method_not_allowed("POST")).into(),
        "/v1/messages/search" if method == "POST" => boxed(messages::search(&env, config, &head, body)).await.into(),
        "/v1/messages/search" => HttpResponse::error(&method_not_allowed("POST")).into(),
        "/v1/messages" if method == "GET" => boxed(messages::list(&env, config, &head)).await.into(),
        path if path.starts_with("/v1/messages/") && method == "GET" => {
            boxed(messages::get(&env, config, &head, &path["/v1/messages/".len()..])).await.into()
        }
        path if path.starts_with("/v1/messages") => HttpResponse::error(&method_not_allowed("GET")).into(),
        "/v1/reports" if method == "GET" => boxed(reports::counts(&env, config, &head)).await.into(),
        "/v1/reports" => HttpResponse::error(&method_not_allowed("GET")).into(),
        "/v1/stats" if method == "GET" => boxed(stats::get(&env, config, &head)).await.into(),
        "/v1/stats" => HttpResponse::error(&method_not_allowed("GET")).into(),
        path if path == "/v1/suppressions" || path.starts_with("/v1/suppressions/") => {
            let rest = &path["/v1/suppressions".len()..];
            boxed(suppressions::serve(&env, config, &head, rest, body)).await.into()
        }
        path if path.starts_with("/v1/forms/") => {
            let name = &path["/v1/forms/".len()..];
            match method {
                "POST" => boxed(forms::handle(env, config, name, &head, body)).await,
                "OPTIONS" => forms::preflight(config, name, &head).into(),
                _ => HttpResponse::error(&method_not_allowed("POST")).into(),
            }
        }
        path if path.starts_with("/v1/") => {
            HttpResponse::error(&ApiError::new(ErrorCode::NotFound, format!("no route {path}"))).into()
        }
        // Outside /v1/: the Resend-compatible API (`/emails`), and 404s in its error shape.
        _ => boxed(resend::serve(env, config, &head, body)).await.into(),
    }
}

fn only(method: &str, allowed: &str, respond: impl FnOnce() -> HttpResponse) -> HttpResponse {
    if method == allowed {
        respond()
    } else {
        HttpResponse::error(&method_not_allowed(allowed))
    }
}
