//! `POST /v1/relay/check` (API key): opens a session to the configured relay exactly as a send
//! would — TCP, greeting, EHLO, STARTTLS, TLS with the certificate verified, EHLO again, AUTH
//! — reports each step with its time and the relay's reply, then QUITs without sending mail.
//! For owners setting a relay up: which step fails, before any mail depends on it. AUTH
//! payloads and the relay's AUTH replies are never shown (the transcript hides them).

use serde_json::{json, Value};

use super::auth::authorize;
use super::request::{Platform, RequestHead};
use super::response::{Handled, HttpResponse};
use crate::config::Config;
use crate::delivery::transaction::api_error;
use crate::error::ApiError;
use crate::smtp::check;
use crate::smtp::client::Session;

/// `200 {"ok", "steps": [{"step", "ok", "ms", "reply"?, "code"?, "message"?}], "capabilities"}`:
/// the steps in order, ending at the first that failed (with its error code).
pub async fn handle<P: Platform>(env: P, config: Result<&Config, &ApiError>, head: &RequestHead) -> Handled<P> {
    let config = match config {
        Ok(config) => config,
        Err(error) => return HttpResponse::error(error).into(),
    };
    if let Err(error) = authorize(config, head) {
        return HttpResponse::error(&error).into();
    }
    run(env, config).await
}

/// The check itself, for a caller already allowed it (an API key, or the local demo).
pub async fn run<P: Platform>(env: P, config: &Config) -> Handled<P> {
    let started = env.now_millis();
    let (transcript, failure, session) = match Session::open(env.clone(), &config.relay).await {
        Ok(mut session) => (session.take_transcript(), None, Some(session)),
        Err((error, transcript)) => (transcript, Some(error), None),
    };
    let end_ms = env.now_millis().saturating_sub(started);
    let tls = transcript.entries().iter().any(|e| e.line == "<TLS established>");
    let failed = failure.as_ref().map(|error| check::failed_step(error, tls));
    let mut steps: Vec<Value> = (check::steps(&transcript, failed, end_ms).into_iter())
        .map(|step| {
            let mut json = json!({"step": step.name, "ok": step.ok, "ms": step.ms});
            if let Some(reply) = step.reply {
                json["reply"] = json!(reply);
            }
            json
        })
        .collect();
    let error = failure.as_ref().map(|error| api_error(error, ""));
    if let (Some(error), Some(last)) = (&error, steps.last_mut()) {
        last["code"] = json!(error.code);
        last["message"] = json!(error.message);
    }
    let capabilities = check::capabilities(&transcript);
    let answer = json!({"ok": failure.is_none(), "steps": steps, "capabilities": capabilities});
    // The session QUITs after the answer has gone out.
    Handled { response: HttpResponse::json(200, &answer), after: session, records: Vec::new() }
}
