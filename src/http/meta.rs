//! `GET /v1/health` and `GET /v1/errors`: answers that need no configuration.

use super::response::HttpResponse;
use crate::error;

/// `{"ok":true,"version":…}`; never a configuration value.
pub fn health() -> HttpResponse {
    HttpResponse::json(200, &serde_json::json!({"ok": true, "version": env!("CARGO_PKG_VERSION")}))
}

/// The error table and the send flow's steps, for the `www/` page and for callers.
pub fn errors() -> HttpResponse {
    HttpResponse::json(200, &error::table_json())
}
