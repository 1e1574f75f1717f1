//! Who is asking: the API key (`Authorization: Bearer <key>`, checked against `API_KEYS` in
//! constant time), and whether the request is the local demo's (see [`is_local`]), which alone
//! may see debug answers without a key.

use std::net::IpAddr;

use super::body::{self, BodySource};
use super::input::QueryBody;
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

/// [`authorized_body`] with a limit of the route's own: a small body (a query, an address).
pub(crate) async fn authorized_small_body<'a, N: Network>(
    net: &N,
    config: Result<&'a Config, &ApiError>,
    head: &RequestHead,
    source: &mut impl BodySource,
    limit: usize,
) -> Result<(&'a Config, Vec<u8>), HttpResponse> {
    let config = authorized(config, head)?;
    let body = body::read(net, head, source, limit, config.request_body_timeout_ms)
        .await
        .map_err(|e| HttpResponse::error(&e))?;
    Ok((config, body))
}

/// A [`QueryBody`] of `members`, read within `limit` once the key is checked.
pub(crate) async fn authorized_query<'a, N: Network>(
    net: &N,
    config: Result<&'a Config, &ApiError>,
    head: &RequestHead,
    source: &mut impl BodySource,
    limit: usize,
    members: &[&str],
) -> Result<(&'a Config, QueryBody), HttpResponse> {
    let (config, body) = authorized_small_body(net, config, head, source, limit).await?;
    Ok((config, QueryBody::read(&body, members)?))
}

/// The configuration, for a request with a valid API key; else the answer to give.
pub fn authorized<'a>(config: Result<&'a Config, &ApiError>, head: &RequestHead) -> Result<&'a Config, HttpResponse> {
    let config = config.map_err(HttpResponse::error)?;
    authorize(config, head).map_err(|e| HttpResponse::error(&e))?;
    Ok(config)
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

/// Whether the request comes from this machine to a Worker set up for the local demo:
/// `DEMO_INBOX_URL` is set (only `scripts/dev` and the tests set it) *and* the client's
/// address, `CF-Connecting-IP`, is a loopback address. In production Cloudflare writes that
/// header itself (the client's own is replaced), and it is never loopback. Under `wrangler
/// dev` (verified with wrangler 4.86) the header is the socket's peer, `127.0.0.1`, unless the
/// client sent one, which is kept: there a client that can reach the port can say anything,
/// which is why `scripts/dev` listens on 127.0.0.1 only. No header, or an unparsable one, is
/// not local.
pub fn is_local(config: &Config, head: &RequestHead) -> bool {
    let client = head.header("cf-connecting-ip").and_then(|ip| ip.trim().parse::<IpAddr>().ok());
    config.demo_inbox_url.is_some() && client.is_some_and(is_loopback)
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Whether a debug answer (the SMTP transcript, round trips, the session, `wasm_memory_bytes`)
/// may go to this request: one with a valid API key, or the local demo's ([`is_local`]).
pub fn may_debug(config: &Config, head: &RequestHead) -> bool {
    is_local(config, head) || authorize(config, head).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_of_both_families() {
        for (ip, expected) in [
            ("127.0.0.1", true),
            ("127.3.2.1", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("10.0.0.1", false),
            ("203.0.113.9", false),
            ("::ffff:203.0.113.9", false),
            ("2001:db8::1", false),
            ("0.0.0.0", false),
        ] {
            assert_eq!(is_loopback(ip.parse().unwrap()), expected, "{ip}");
        }
    }
}
