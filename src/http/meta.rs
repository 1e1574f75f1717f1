//! `GET /v1/health` and `GET /v1/errors`: answers that need no configuration.

use super::response::HttpResponse;
use crate::delivery::record::Status;
use crate::error;

/// `{"ok":true,"version":…}`; never a configuration value.
pub fn health() -> HttpResponse {
    HttpResponse::json(200, &serde_json::json!({"ok": true, "version": env!("CARGO_PKG_VERSION")}))
}

/// The error table, the send flow's steps and the statuses of queued messages, for the
/// `www/` page and for callers.
pub fn errors() -> HttpResponse {
    let mut table = error::table_json();
    let statuses: Vec<_> = Status::ALL
        .iter()
        .map(|s| serde_json::json!({"status": s.as_str(), "final": s.is_final(), "meaning": s.meaning()}))
        .collect();
    table["statuses"] = serde_json::json!(statuses);
    HttpResponse::json(200, &table)
}
