//! `POST /v1/send/batch`: up to 100 messages, `{"messages": [ /v1/send bodies ]}`. Sync: all
//! over one SMTP session, `200` with one result per message in order. Queued (as for
//! `/v1/send`): `202` with one id per message. A message that is invalid fails alone.

use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::auth::authorized_body;
use super::body::BodySource;
use super::input::{from_body, BodyError, Capped};
use super::request::{Platform, RequestHead};
use super::response::{Handled, HttpResponse};
use super::send::{parse_for, sent_answer, wants_queue, Api};
use crate::config::Config;
use crate::delivery::queue;
use crate::delivery::record::Record;
use crate::delivery::submit::{left_out, new_id, quota_now, render_screened, suppressed_keys};
use crate::delivery::transaction::api_error;
use crate::error::{ApiError, ErrorCode};
use crate::smtp::client::Session;

/// Most messages one batch may carry.
pub const MAX_BATCH: usize = 100;

/// `{"messages": [ … ]}`: each message kept as its text, to be read on its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody<'a> {
    #[serde(borrow)]
    messages: Capped<&'a RawValue, MAX_BATCH>,
}

pub async fn handle<P: Platform>(
    env: P,
    config: Result<&Config, &ApiError>,
    head: &RequestHead,
    mut source: impl BodySource,
) -> Handled<P> {
    let (config, _, body) = match authorized_body(&env, config, head, &mut source).await {
        Ok(ready) => ready,
        Err(response) => return response.into(),
    };
    if head.header("idempotency-key").is_some() {
        // Not kept for batches yet: refuse it rather than let a retried batch send twice.
        let mut error = ApiError::new(ErrorCode::ValidationFailed, "Idempotency-Key is not supported on batches");
        error.details = vec![("Idempotency-Key".into(), "is not supported on /v1/send/batch".into())];
        return HttpResponse::error(&error).into();
    }
    // Each message is read on its own, so one that is invalid fails alone with the same
    // answer /v1/send would give.
    let messages = match from_body::<BatchBody>(&body, b'{') {
        Ok(batch) => batch.messages,
        Err(BodyError::Syntax(e)) => return invalid(&format!("the body is not valid JSON: {e}")).into(),
        Err(BodyError::NotA | BodyError::Shape(_)) => return invalid("the body must be {\"messages\": [ … ]}").into(),
    };
    if messages.len == 0 || messages.is_over() {
        let mut error = ApiError::new(ErrorCode::ValidationFailed, format!("send 1 to {MAX_BATCH} messages"));
        error.details = vec![("messages".into(), format!("must hold 1 to {MAX_BATCH} messages"))];
        return HttpResponse::error(&error).into();
    }
    let submissions: Vec<_> = (messages.items.iter())
        .map(|m| parse_for(Api::V1, m.get().as_bytes(), config).map(|parsed| parsed.submission))
        .collect();
    drop(messages);
    drop(body);
    // The suppression list is asked once for every recipient of the batch: a message at a
    // time would be up to a hundred calls.
    let recipients = submissions.iter().flatten().flat_map(|s| s.content.envelope_recipients());
    let found = match suppressed_keys(&env, recipients).await {
        Ok(found) => found,
        Err(error) => return HttpResponse::error(&error).into(),
    };

    if wants_queue(head, config) {
        let mut results = Vec::with_capacity(submissions.len());
        for submission in &submissions {
            let extras = queue::Extras { screened: Some(&found), ..Default::default() };
            results.push(match submission {
                Ok(submission) => match queue::accept(&env, config, submission, extras).await {
                    Ok(record) => {
                        json!({"id": record.id, "status": record.status, "message_id": record.message_id})
                    }
                    Err(error) => error.answer(),
                },
                Err(error) => error.answer(),
            });
        }
        let mut response = HttpResponse::json(202, &json!({ "data": results }));
        response.headers.push(("preference-applied".into(), "respond-async".into()));
        return response.into();
    }

    // Sync: one session for the whole batch, opened by the first valid message.
    let mut session: Option<Session<P>> = None;
    // A relay that could not be reached once is not tried again for every message.
    let mut unreachable: Option<ApiError> = None;
    let mut results = Vec::with_capacity(submissions.len());
    let mut records = Vec::new();
    for submission in &submissions {
        let rendered = match submission {
            Err(error) => Err(error.clone()),
            Ok(submission) => match (new_id(config), left_out(&submission.content, &found)) {
                (Ok(id), Ok(suppressed)) => {
                    render_screened(&env, config, submission, &id, suppressed).await.map(|t| (id, submission, t))
                }
                (Err(error), _) | (_, Err(error)) => Err(error),
            },
        };
        let result = match rendered {
            Err(error) => Err(error),
            Ok((id, submission, transaction)) => {
                if let Some(error) = &unreachable {
                    results.push(error.answer());
                    continue;
                }
                // One token of the relay's quota per message: those past it are refused
                // alone, each with its own Retry-After.
                if let Err(error) = quota_now(&env, config).await {
                    results.push(error.answer());
                    continue;
                }
                if session.as_ref().is_none_or(|s| !s.is_usable()) {
                    session = match Session::open(env.clone(), &config.relay).await {
                        Ok(opened) => Some(opened),
                        Err((error, _)) => {
                            let error = api_error(&error, &transaction.message_id);
                            results.push(error.answer());
                            unreachable = Some(error);
                            continue;
                        }
                    };
                }
                let open = session.as_mut().expect("opened just above");
                let started = env.now_millis();
                let result = transaction.run(open).await.map_err(|e| api_error(&e, &transaction.message_id));
                let mut record = Record::accepted(id, &transaction, &submission.content, started);
                record.attempts = 1;
                record.note_attempt(result.clone(), started, env.now_millis(), None);
                let id = record.id.clone();
                records.push(record);
                result.map(|sent| (id, sent))
            }
        };
        results.push(match result {
            Ok((id, sent)) => sent_answer(&id, &sent),
            Err(error) => error.answer(),
        });
    }
    Handled { response: HttpResponse::json(200, &json!({ "data": results })), after: session, records }
}

fn invalid(why: &str) -> HttpResponse {
    HttpResponse::error(&ApiError::new(ErrorCode::InvalidRequest, why))
}
