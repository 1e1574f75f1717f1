//! The live demo of the `www/` page: present only where the deployment configures a form
//! named `demo` (and, to show a refusal, `demo-refused`), both with `"debug": true` so their
//! answers carry the SMTP transcript. Under the local setup, `DEMO_INBOX_URL` points at the
//! bundled relay's mailbox, so the page can show the message as it arrived, and run the relay
//! check without an API key (only there: it is for the local relay).

use serde_json::json;

use super::relay_check;
use super::request::{Platform, RequestHead};
use super::response::{Handled, HttpResponse};
use crate::config::Config;
use crate::delivery::env::Environment;
use crate::error::{ApiError, ErrorCode};

pub const DEMO_FORM: &str = "demo";
pub const REFUSAL_FORM: &str = "demo-refused";

fn not_configured() -> HttpResponse {
    HttpResponse::error(&ApiError::new(ErrorCode::NotFound, "this deployment has no demo form"))
}

/// `GET /v1/demo`: which demo forms exist. Names only, never their settings.
pub fn describe(config: Result<&Config, &ApiError>) -> HttpResponse {
    let Ok(config) = config else { return not_configured() };
    if !config.forms.get(DEMO_FORM).is_some_and(|f| f.debug) {
        return not_configured();
    }
    let refusal = config.forms.get(REFUSAL_FORM).is_some_and(|f| f.debug).then_some(REFUSAL_FORM);
    HttpResponse::json(
        200,
        &json!({"form": DEMO_FORM, "refusal_form": refusal, "inbox": config.demo_inbox_url.is_some(),
        "relay_check": config.demo_inbox_url.is_some()}),
    )
}

/// `GET /v1/demo/message?id=<Message-ID>`: the message as the local relay received it.
pub async fn received<E: Environment>(env: &E, config: Result<&Config, &ApiError>, head: &RequestHead) -> HttpResponse {
    let Ok(config) = config else { return not_configured() };
    let Some(inbox) = config.demo_inbox_url.as_deref() else { return not_configured() };
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
    let url = format!("{inbox}?{}", form_urlencoded::Serializer::new(String::new()).append_pair("id", &id).finish());
    match env.get_text(&url).await {
        Ok((200, text)) => {
            HttpResponse::new(200, vec![("content-type".into(), "text/plain; charset=utf-8".into())], text.into_bytes())
        }
        _ => HttpResponse::error(&ApiError::new(ErrorCode::NotFound, "the relay has no such message (yet)")),
    }
}

/// `POST /v1/demo/relay-check`: the relay check of `POST /v1/relay/check`, without a key, where
/// the page's demo is set up against the bundled relay (`DEMO_INBOX_URL`, local setup only).
pub async fn relay_check<P: Platform>(env: P, config: Result<&Config, &ApiError>) -> Handled<P> {
    match config {
        Ok(config) if config.demo_inbox_url.is_some() && config.forms.get(DEMO_FORM).is_some_and(|f| f.debug) => {
            relay_check::run(env, config).await
        }
        _ => not_configured().into(),
    }
}
