//! `GET /v1/stats?hours=24`: messages per hour by status (by when they were accepted), and the
//! relay's median and 95th-percentile time to answer an attempt per hour, from every ledger
//! shard. API key required. For a dashboard's chart; the numbers stand without it.

use serde_json::{json, Map, Value};

use super::auth::authorized;
use super::messages::ledger_failed;
use super::request::RequestHead;
use super::response::HttpResponse;
use crate::config::Config;
use crate::delivery::env::Environment;
use crate::delivery::queue::Status;
use crate::delivery::stats::{self, HourCounts, HOUR_MS};
use crate::error::{ApiError, ErrorCode};
use crate::join_all;
use crate::time::format_rfc3339;

/// The longest window asked for: a week.
const MAX_HOURS: u64 = 168;

fn statuses(counts: &[(Status, u64)]) -> Value {
    let map: Map<String, Value> = Status::ALL
        .iter()
        .map(|status| {
            let n = counts.iter().filter(|(s, _)| s == status).map(|(_, n)| n).sum::<u64>();
            (status.as_str().to_string(), json!(n))
        })
        .collect();
    Value::Object(map)
}

fn answer_times(answers: &[(u16, u64)]) -> Value {
    json!({
        "p50": stats::percentile(answers, 0.5),
        "p95": stats::percentile(answers, 0.95),
        "attempts": answers.iter().map(|(_, n)| n).sum::<u64>(),
    })
}

pub async fn get<E: Environment>(env: &E, config: Result<&Config, &ApiError>, head: &RequestHead) -> HttpResponse {
    let config = match authorized(config, head) {
        Ok(config) => config,
        Err(response) => return response,
    };
    let mut hours = 24;
    for (name, value) in form_urlencoded::parse(head.query.as_bytes()) {
        if name == "hours" {
            match value.parse::<u64>().ok().filter(|n| (1..=MAX_HOURS).contains(n)) {
                Some(n) => hours = n,
                None => {
                    let mut error = ApiError::new(ErrorCode::ValidationFailed, "hours must be a number from 1 to 168");
                    error.details = vec![("hours".into(), "must be a number from 1 to 168".into())];
                    return HttpResponse::error(&error);
                }
            }
        }
    }
    // The hour now under way and the `hours - 1` whole ones before it.
    let last_hour = env.now_millis() / HOUR_MS;
    let first_hour = last_hour + 1 - hours;
    let since = first_hour * HOUR_MS;
    let asked = (0..config.ledger_shards.min(256)).map(|shard| env.hour_stats(shard as u8, since));
    let shards: Result<Vec<Vec<HourCounts>>, _> = join_all(asked).await.into_iter().collect();
    let Ok(shards) = shards else {
        return ledger_failed(env);
    };
    let per_hour = stats::merge(shards, first_hour, last_hour);
    let mut all_statuses = Vec::new();
    let mut all_answers = Vec::new();
    for hour in &per_hour {
        all_statuses.extend(hour.statuses.iter().copied());
        all_answers.extend(hour.answers.iter().copied());
    }
    let per_hour: Vec<Value> = per_hour
        .iter()
        .map(|hour| {
            json!({
                "hour": format_rfc3339(hour.hour * HOUR_MS),
                "statuses": statuses(&hour.statuses),
                "relay_answer_ms": answer_times(&hour.answers),
            })
        })
        .collect();
    HttpResponse::json(
        200,
        &json!({
            "hours": hours,
            "since": format_rfc3339(since),
            "totals": statuses(&all_statuses),
            "relay_answer_ms": answer_times(&all_answers),
            "per_hour": per_hour,
        }),
    )
}
