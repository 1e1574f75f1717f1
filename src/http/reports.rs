//! `GET /v1/reports`: how many messages that arrived at the bounce domain changed nothing (not
//! a report, a report for no message of ours, or about none of its recipients). API key
//! required. What reports did change is in each message's events.

use serde_json::{json, Map, Value};

use super::auth::authorized;
use super::messages::ledger_failed;
use super::request::RequestHead;
use super::response::HttpResponse;
use crate::config::Config;
use crate::delivery::env::Environment;
use crate::error::ApiError;

/// The names counted, each answered even at 0.
const COUNTED: [&str; 4] = ["not_a_report", "unknown_message", "unknown_recipient", "not_ours"];

pub async fn counts<E: Environment>(env: &E, config: Result<&Config, &ApiError>, head: &RequestHead) -> HttpResponse {
    let config = match authorized(config, head) {
        Ok(config) => config,
        Err(response) => return response,
    };
    match env.report_counts().await {
        Ok(counts) => {
            let mut ignored: Map<String, Value> = COUNTED.iter().map(|name| (name.to_string(), json!(0))).collect();
            for (name, count) in counts {
                ignored.insert(name, json!(count));
            }
            let bounce_domain = config.bounce_domain.as_deref();
            HttpResponse::json(200, &json!({"bounce_domain": bounce_domain, "ignored": ignored}))
        }
        Err(_) => ledger_failed(env),
    }
}
