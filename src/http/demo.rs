//! The live demo of the `www/` page: present only where the deployment configures a form
//! named `demo` (and, to show a refusal, `demo-refused`), both with `"debug": true`. Their
//! answers carry the SMTP transcript only to a request with an API key, or to the local
//! demo's ([`is_local`]: `DEMO_INBOX_URL` set, the request from loopback). Only there do the
//! routes under `/v1/demo/` answer: the message as the bundled relay received it (one the demo
//! sent from this isolate, never any other), and the relay check without an API key.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::json;

use super::auth::is_local;
use super::relay_check;
use super::request::{Platform, RequestHead};
use super::response::{Handled, HttpResponse};
use crate::config::Config;
use crate::delivery::env::Environment;
use crate::error::{ApiError, ErrorCode};

pub const DEMO_FORM: &str = "demo";
pub const REFUSAL_FORM: &str = "demo-refused";

/// How many of the demo's Message-IDs this isolate remembers (the newest).
const SENT_KEPT: usize = 64;

/// The Message-IDs of messages the demo forms sent from this isolate, oldest first: the only
/// ones `GET /v1/demo/message` returns.
static SENT: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

/// Remembers a message a form sent, when the form is one of the demo's and the request the
/// local demo's: `GET /v1/demo/message` may then return it.
pub fn sent(config: &Config, form: &str, head: &RequestHead, message_id: &str) {
    if (form == DEMO_FORM || form == REFUSAL_FORM) && is_local(config, head) {
        let mut sent = SENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if sent.len() == SENT_KEPT {
            sent.pop_front();
        }
        sent.push_back(message_id.to_string());
    }
}

fn sent_here(message_id: &str) -> bool {
    SENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().any(|id| id == message_id)
}

fn not_configured() -> HttpResponse {
    HttpResponse::error(&ApiError::new(ErrorCode::NotFound, "this deployment has no demo form"))
}

/// `GET /v1/demo`: which demo forms exist (names only, never their settings), and whether this
/// request may use the local demo's routes.
pub fn describe(config: Result<&Config, &ApiError>, head: &RequestHead) -> HttpResponse {
    let Ok(config) = config else { return not_configured() };
    if !config.forms.get(DEMO_FORM).is_some_and(|f| f.debug) {
        return not_configured();
    }
    let refusal = config.forms.get(REFUSAL_FORM).is_some_and(|f| f.debug).then_some(REFUSAL_FORM);
    let local = is_local(config, head);
    HttpResponse::json(200, &json!({"form": DEMO_FORM, "refusal_form": refusal, "inbox": local, "relay_check": local}))
}

/// `GET /v1/demo/message?id=<Message-ID>`: the message as the local relay received it, for the
/// local demo only, and only a message the demo sent from this isolate.
pub async fn received<E: Environment>(env: &E, config: Result<&Config, &ApiError>, head: &RequestHead) -> HttpResponse {
    let Ok(config) = config else { return not_configured() };
    let Some(inbox) = config.demo_inbox_url.as_deref().filter(|_| is_local(config, head)) else {
        return not_configured();
    };
    let id = head.query.split('&').find_map(|pair| pair.strip_prefix("id=")).unwrap_or_default();
    let id: String =
        form_urlencoded::parse(format!("id={id}").as_bytes()).map(|(_, v)| v.into_owned()).next().unwrap_or_default();
    let plausible =
        id.len() <= 300 && id.starts_with('<') && id.ends_with('>') && id.bytes().all(|b| b.is_ascii_graphic());
    if !plausible {
        return HttpResponse::error(&ApiError::new(
            ErrorCode::ValidationFailed,
            "id must be a Message-ID such as <…@…>",
        ));
    }
    if !sent_here(&id) {
        return HttpResponse::error(&ApiError::new(ErrorCode::NotFound, "the demo sent no message with this id"));
    }
    let url = format!("{inbox}?{}", form_urlencoded::Serializer::new(String::new()).append_pair("id", &id).finish());
    match env.get_text(&url).await {
        Ok((200, text)) => {
            HttpResponse::new(200, vec![("content-type".into(), "text/plain; charset=utf-8".into())], text.into_bytes())
        }
        _ => HttpResponse::error(&ApiError::new(ErrorCode::NotFound, "the relay has no such message (yet)")),
    }
}

/// `POST /v1/demo/relay-check`: the relay check of `POST /v1/relay/check`, without a key, for
/// the local demo only ([`is_local`]), set up against the bundled relay.
pub async fn relay_check<P: Platform>(env: P, config: Result<&Config, &ApiError>, head: &RequestHead) -> Handled<P> {
    match config {
        Ok(config) if is_local(config, head) && config.forms.get(DEMO_FORM).is_some_and(|f| f.debug) => {
            relay_check::run(env, config).await
        }
        _ => not_configured().into(),
    }
}
