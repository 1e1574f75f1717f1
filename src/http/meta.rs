//! `GET /v1/health` and `GET /v1/errors`: answers that need no configuration.

use super::response::HttpResponse;
use crate::delivery::record::Status;
use crate::error;
use crate::json::{object, Value};

/// `{"ok":true,"version":…}`; never a configuration value.
pub fn health() -> HttpResponse {
    HttpResponse::json(200, &object! {"ok": true, "version": env!("CARGO_PKG_VERSION")})
}

/// The error table, the send flow's steps and the statuses of queued messages, for the
/// `www/` page and for callers.
pub fn errors() -> HttpResponse {
    let mut table = error::table_json();
    let statuses = Status::ALL
        .iter()
        .map(|s| object! {"status": s.as_str(), "final": s.is_final(), "meaning": s.meaning()})
        .collect();
    table.set("statuses", Value::Array(statuses));
    HttpResponse::json(200, &table)
}
