//! `GET /v1/health`, and the document `GET /v1/errors` serves: answers that need no configuration.

use super::response::HttpResponse;
use crate::delivery::record::Status;
use crate::error;
use serde_json::{json, Value};

/// `{"ok":true,"version":…}`; never a configuration value.
pub fn health() -> HttpResponse {
    HttpResponse::json(200, &json!({"ok": true, "version": env!("CARGO_PKG_VERSION")}))
}

/// `GET /v1/errors`: the error table, the send flow's steps and the statuses of queued
/// messages, for the `www/` page and for callers. A static file, `www/v1/errors`, that the
/// tests write from this (`tests/www.rs`) and hold to it: the Worker answers with the table's
/// codes and statuses, and the prose only people read stays out of its bundle.
pub fn errors_table() -> Value {
    let mut table = error::table_json();
    let statuses: Vec<Value> =
        Status::ALL.iter().map(|s| json!({"status": s, "final": s.is_final(), "meaning": s.meaning()})).collect();
    table["statuses"] = statuses.into();
    table
}
