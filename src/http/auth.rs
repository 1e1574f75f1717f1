//! The API key: `Authorization: Bearer <key>`, checked against `API_KEYS` in constant time.

use super::request::RequestHead;
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};

/// Checks the bearer key; returns it when valid.
pub fn authorize<'h>(config: &Config, head: &'h RequestHead) -> Result<&'h str, ApiError> {
    if config.api_keys.is_empty() {
        return Err(ApiError::new(ErrorCode::Misconfigured, "API_KEYS is not set"));
    }
    let presented = head
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    // Check every key, so timing does not reveal which one matched.
    match presented {
        Some(key) if config.api_keys.iter().fold(false, |hit, k| k.matches(key) | hit) => Ok(key),
        _ => Err(ApiError::new(ErrorCode::Unauthorized, "a valid API key is required: Authorization: Bearer <key>")),
    }
}
