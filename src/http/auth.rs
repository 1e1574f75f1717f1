//! The API key: `Authorization: Bearer <key>`, checked against `API_KEYS` in constant time.

use super::body::{self, BodySource};
use super::request::RequestHead;
use super::response::HttpResponse;
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::smtp::client::Network;

/// What an API route needs before it can work: the configuration, a valid key, then the body
/// read within its limits — in that order, so nothing is read for a caller without a key.
/// On failure, the answer to give.
pub async fn authorized_body<'a, N: Network>(
    net: &N,
    config: Result<&'a Config, &ApiError>,
    head: &'a RequestHead,
    source: &mut impl BodySource,
) -> Result<(&'a Config, &'a str, Vec<u8>), HttpResponse> {
    let config = config.map_err(HttpResponse::error)?;
    let api_key = authorize(config, head).map_err(|e| HttpResponse::error(&e))?;
    let body = body::read(net, head, source, config.max_request_bytes, config.request_body_timeout_ms)
        .await
        .map_err(|e| HttpResponse::error(&e))?;
    Ok((config, api_key, body))
}

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
