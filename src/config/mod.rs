//! Every setting and its default, read through a lookup function so tests need no Worker
//! environment. The platform parses them once per request and hands them down.
//!
//! Errors name the variable and never echo its value. Secrets are only held in types whose
//! `Debug` hides them.

pub mod forms;
pub mod rate;
pub mod urls;

use std::fmt;

use crate::address::{is_host_name, EmailAddress, Mailbox};
use crate::dkim::DkimKey;
use crate::error::{ApiError, ErrorCode};
use crate::smtp::auth::{AuthChoice, Credentials};
use crate::smtp::capabilities::AuthMechanism;
use crate::smtp::settings::{RelaySettings, Security, Timeouts};
use forms::FormTable;

/// Largest request body accepted unless `MAX_REQUEST_BYTES` says otherwise: 14 MiB
/// (14,680,064 bytes). Attachments travel as base64 in JSON, 4 characters for every 3 bytes:
/// one attachment of 11,000,000 bytes (14,666,668 characters) fits with 13,396 bytes to spare
/// for the other fields, so the 10 MB the product promises (or 10 MiB) always does.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 14 * 1024 * 1024;
/// How long a request body may take to arrive unless `REQUEST_BODY_TIMEOUT_MS` says otherwise.
pub const DEFAULT_REQUEST_BODY_TIMEOUT_MS: u64 = 30_000;
/// Warm SMTP sessions kept open (Durable Objects) unless `SMTP_SESSIONS` says otherwise.
pub const DEFAULT_SMTP_SESSIONS: u32 = 2;
/// How long a warm session may sit unused before it is closed with QUIT.
pub const DEFAULT_SMTP_IDLE_SECONDS: u64 = 30;
/// `RETENTION_DAYS` when unset: how long the ledger keeps a message that has ended.
pub const DEFAULT_RETENTION_DAYS: f64 = 30.0;
/// `LEDGER_SHARDS` when unset: how many ledger objects new messages are spread over.
pub const DEFAULT_LEDGER_SHARDS: u64 = 16;
/// The waits before the retries of a queued message, in seconds; the last one repeats.
pub const DEFAULT_RETRY_SECONDS: [u32; 5] = [30, 120, 600, 1800, 7200];
/// `WEBHOOK_RETRY_SECONDS` by default; the last step repeats for about a day.
pub const DEFAULT_WEBHOOK_RETRY_SECONDS: [u32; 6] = [10, 60, 300, 1800, 7200, 21600];
/// Attempts before a queued message is `failed`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Cloudflare's Turnstile verification endpoint; `TURNSTILE_VERIFY_URL` overrides it (tests
/// use a fake).
pub const TURNSTILE_VERIFY_URL: &str = "https://challenges.cloudflare.com/turnstile/v0/siteverify";

/// A pattern of `ALLOWED_FROM` / `ALLOWED_RECIPIENTS`: an address or `*@domain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressPattern {
    Exact(String),
    Domain(String),
}

impl AddressPattern {
    fn parse(raw: &str) -> Option<Self> {
        match raw.strip_prefix("*@") {
            Some(domain) if is_host_name(domain) => Some(AddressPattern::Domain(domain.to_ascii_lowercase())),
            Some(_) => None,
            None => EmailAddress::parse(raw).ok().map(|a| AddressPattern::Exact(a.as_str().to_ascii_lowercase())),
        }
    }

    pub fn matches(&self, address: &EmailAddress) -> bool {
        match self {
            AddressPattern::Exact(exact) => address.as_str().eq_ignore_ascii_case(exact),
            AddressPattern::Domain(domain) => address.domain().eq_ignore_ascii_case(domain),
        }
    }
}

/// An API key; compared in constant time and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Constant-time comparison: the time taken does not depend on where the first difference is.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        let mut diff = u8::from(a.len() != b.len());
        for (i, byte) in a.iter().enumerate() {
            diff |= byte ^ b.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// A secret setting; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Where webhooks go and how they are signed.
#[derive(Clone)]
pub struct WebhookSettings {
    /// https, or http to this machine only.
    pub url: String,
    /// The key of `WEBHOOK_SECRET` (`whsec_` and its base64).
    pub key: Vec<u8>,
    /// The wait before each retry; the last one repeats for about a day.
    pub retry_seconds: Vec<u32>,
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSettings({}, key ***, {:?})", self.url, self.retry_seconds)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything the Worker needs to send, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// `SMTP_HOST`, `SMTP_PORT`, `SMTP_SECURITY`, `SMTP_USERNAME`/`SMTP_PASSWORD`/`SMTP_AUTH`,
    /// `SMTP_EHLO_NAME` and the `SMTP_*_TIMEOUT_MS`.
    pub relay: RelaySettings,
    pub mail_from: Mailbox,
    pub allowed_from: Vec<AddressPattern>,
    pub allowed_recipients: Option<Vec<AddressPattern>>,
    pub api_keys: Vec<ApiKey>,
    /// `MESSAGE_ID_DOMAIN`, defaulting to the domain of `MAIL_FROM`.
    pub message_id_domain: String,
    /// `BOUNCE_DOMAIN`: when set, every message's envelope sender is `bounce+{id}@` this
    /// domain and it asks the relay for delivery reports, which come back to the Worker's
    /// `email` handler (Email Routing).
    pub bounce_domain: Option<String>,
    /// `WEBHOOK_URL`, `WEBHOOK_SECRET`, `WEBHOOK_RETRY_SECONDS`: each message's events posted,
    /// signed, to the owner's app.
    pub webhook: Option<WebhookSettings>,
    /// `MAX_REQUEST_BYTES`: the largest request body accepted.
    pub max_request_bytes: usize,
    /// `REQUEST_BODY_TIMEOUT_MS`: how long the whole body may take to arrive.
    pub request_body_timeout_ms: u64,
    /// `LOG_REQUESTS=all`: a log line for every request; by default (`errors`) only for those
    /// answered 4xx or 5xx. Cloudflare logs every invocation anyway, and a line costs about as
    /// much CPU as the rest of a small request.
    pub log_all_requests: bool,
    /// `SMTP_SESSIONS`: how many warm sessions sends share (0: a session of its own each).
    pub smtp_sessions: u32,
    /// `SMTP_RATE`: the relay's quota, every limit enforced; empty when unset (no limit).
    pub smtp_rate: Vec<rate::RateLimit>,
    /// `RETENTION_DAYS`, in milliseconds: how long the ledger keeps a message that has ended
    /// (its record and its stored body).
    pub retention_ms: u64,
    /// `LEDGER_SHARDS`: how many ledger objects new messages are spread over (1 to 256).
    pub ledger_shards: u16,
    /// `SMTP_IDLE_SECONDS`: how long a warm session may sit unused before QUIT.
    pub smtp_idle_seconds: u64,
    /// `DELIVERY_MODE=queue`: `/v1/send` queues unless asked otherwise (default: sync).
    pub queue_by_default: bool,
    /// `DELIVERY_RETRY_SECONDS`: the wait before each retry of a queued message; the last
    /// one repeats.
    pub retry_seconds: Vec<u32>,
    /// `DELIVERY_MAX_ATTEMPTS`: attempts before a queued message is `failed`.
    pub max_attempts: u32,
    /// `FORMS`: form name → settings.
    pub forms: FormTable,
    pub turnstile_secret: Option<Secret>,
    pub turnstile_verify_url: String,
    /// `DEMO_INBOX_URL`: the local relay's mailbox, for the www demo (local setup only).
    pub demo_inbox_url: Option<String>,
    /// `DKIM_PRIVATE_KEY` (secret), `DKIM_SELECTOR`, `DKIM_DOMAIN`: every message is signed.
    pub dkim: Option<DkimKey>,
}

/// An https URL, or an http one to this machine (the tests' fakes), parsed as a browser
/// would: `http://127.0.0.1:80@evil.example/` is a URL on evil.example, not on loopback.
fn is_https_or_loopback(raw: &str) -> bool {
    urls::parse(raw).is_some_and(|url| url.scheme == "https" || url.is_loopback())
}

/// The key of a `whsec_…` secret (its base64 after the prefix, as Standard Webhooks and Svix
/// write it); `None` when it is not one.
pub fn webhook_key(secret: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.decode(secret.trim().strip_prefix("whsec_")?).ok()?;
    (!key.is_empty()).then_some(key)
}

fn misconfigured(variable: &str, why: &str) -> ApiError {
    ApiError::new(ErrorCode::Misconfigured, format!("{variable} {why}"))
}

impl Config {
    /// Reads and validates every setting. `lookup` answers a variable (plain or secret) by name.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ApiError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());

        let smtp_host = get("SMTP_HOST").ok_or_else(|| misconfigured("SMTP_HOST", "is not set"))?;
        if smtp_host.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(misconfigured("SMTP_HOST", "is not a host name"));
        }
        let security = match get("SMTP_SECURITY").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("starttls") => Security::StartTls,
            Some("tls") => Security::ImplicitTls,
            Some("none") => Security::None,
            Some(_) => return Err(misconfigured("SMTP_SECURITY", "must be starttls, tls or none")),
        };
        let smtp_port = match get("SMTP_PORT") {
            None => security.default_port(),
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| misconfigured("SMTP_PORT", "is not a port number"))?,
        };
        if smtp_port == 25 {
            return Err(misconfigured(
                "SMTP_PORT",
                "is 25, which Cloudflare blocks for Workers; use 587 (starttls) or 465 (tls)",
            ));
        }
        let credentials = match get("SMTP_USERNAME") {
            None => None,
            Some(username) => {
                let password = get("SMTP_PASSWORD")
                    .ok_or_else(|| misconfigured("SMTP_PASSWORD", "is not set but SMTP_USERNAME is"))?;
                let choice = match get("SMTP_AUTH").as_deref().map(str::to_ascii_lowercase).as_deref() {
                    None | Some("auto") => AuthChoice::Auto,
                    Some("plain") => AuthChoice::Only(AuthMechanism::Plain),
                    Some("login") => AuthChoice::Only(AuthMechanism::Login),
                    Some("xoauth2") => AuthChoice::Only(AuthMechanism::XOAuth2),
                    Some(_) => return Err(misconfigured("SMTP_AUTH", "must be auto, plain, login or xoauth2")),
                };
                Some(Credentials::new(username, password).with_choice(choice))
            }
        };
        if security == Security::None && credentials.is_some() {
            return Err(misconfigured(
                "SMTP_SECURITY",
                "is none, which never sends credentials in clear; unset SMTP_USERNAME or use starttls/tls",
            ));
        }
        let mail_from = get("MAIL_FROM")
            .ok_or_else(|| misconfigured("MAIL_FROM", "is not set"))
            .and_then(|v| Mailbox::parse(&v).map_err(|_| misconfigured("MAIL_FROM", "is not a valid mailbox")))?;
        let ehlo_name = match get("SMTP_EHLO_NAME") {
            None => mail_from.email.domain().to_string(),
            Some(name) if is_host_name(&name) => name,
            Some(_) => return Err(misconfigured("SMTP_EHLO_NAME", "is not a host name")),
        };
        let message_id_domain = match get("MESSAGE_ID_DOMAIN") {
            None => mail_from.email.domain().to_string(),
            Some(domain) if is_host_name(&domain) => domain,
            Some(_) => return Err(misconfigured("MESSAGE_ID_DOMAIN", "is not a host name")),
        };
        let bounce_domain = match get("BOUNCE_DOMAIN") {
            None => None,
            Some(domain) if is_host_name(&domain) && domain.contains('.') => Some(domain.to_ascii_lowercase()),
            Some(_) => return Err(misconfigured("BOUNCE_DOMAIN", "is not a domain name")),
        };
        let webhook = match (get("WEBHOOK_URL"), get("WEBHOOK_SECRET")) {
            (None, None) => None,
            (None, Some(_)) => return Err(misconfigured("WEBHOOK_URL", "is not set (WEBHOOK_SECRET is)")),
            (Some(_), None) => return Err(misconfigured("WEBHOOK_SECRET", "is not set (WEBHOOK_URL is)")),
            (Some(url), Some(secret)) => {
                // Where the events go, to a receiver that is not this machine, only over TLS.
                if !is_https_or_loopback(&url) {
                    return Err(misconfigured("WEBHOOK_URL", "must be https (or http to 127.0.0.1/localhost)"));
                }
                let key = webhook_key(&secret)
                    .ok_or_else(|| misconfigured("WEBHOOK_SECRET", "must be whsec_ and base64, as Svix writes it"))?;
                let retry_seconds = match get("WEBHOOK_RETRY_SECONDS") {
                    None => DEFAULT_WEBHOOK_RETRY_SECONDS.to_vec(),
                    Some(list) => list
                        .split(',')
                        .map(|s| s.trim().parse::<u32>().ok().filter(|n| (1..=43_200).contains(n)))
                        .collect::<Option<Vec<u32>>>()
                        .filter(|l| !l.is_empty())
                        .ok_or_else(|| {
                            misconfigured("WEBHOOK_RETRY_SECONDS", "must be comma-separated seconds, 1 to 43200 each")
                        })?,
                };
                Some(WebhookSettings { url, key, retry_seconds })
            }
        };
        let allowed_from = patterns(&get, "ALLOWED_FROM")?.unwrap_or_default();
        let allowed_recipients = patterns(&get, "ALLOWED_RECIPIENTS")?;
        let api_keys = get("API_KEYS")
            .map(|keys| {
                keys.split(',').map(str::trim).filter(|k| !k.is_empty()).map(|k| ApiKey(k.to_string())).collect()
            })
            .unwrap_or_default();

        let defaults = Timeouts::default();
        let millis = |variable: &str, default: u64| match get(variable) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|ms| (100..=600_000).contains(ms))
                .ok_or_else(|| misconfigured(variable, "must be a number of milliseconds from 100 to 600000")),
        };
        let timeouts = Timeouts {
            connect: millis("SMTP_CONNECT_TIMEOUT_MS", defaults.connect)?,
            command: millis("SMTP_COMMAND_TIMEOUT_MS", defaults.command)?,
            data_end: millis("SMTP_DATA_TIMEOUT_MS", defaults.data_end)?,
            quit: defaults.quit,
        };

        let max_request_bytes = match get("MAX_REQUEST_BYTES") {
            None => DEFAULT_MAX_REQUEST_BYTES,
            Some(v) => v.parse::<usize>().ok().filter(|n| (1024..=100 * 1024 * 1024).contains(n)).ok_or_else(|| {
                misconfigured("MAX_REQUEST_BYTES", "must be a number of bytes from 1024 to 104857600")
            })?,
        };

        let request_body_timeout_ms = millis("REQUEST_BODY_TIMEOUT_MS", DEFAULT_REQUEST_BODY_TIMEOUT_MS)?;
        let number = |variable: &str, default: u64, range: std::ops::RangeInclusive<u64>| match get(variable) {
            None => Ok(default),
            Some(v) => v.parse::<u64>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
                misconfigured(variable, &format!("must be a whole number from {} to {}", range.start(), range.end()))
            }),
        };
        let log_all_requests = match get("LOG_REQUESTS").as_deref() {
            None | Some("errors") => false,
            Some("all") => true,
            Some(_) => return Err(misconfigured("LOG_REQUESTS", "must be errors or all")),
        };
        let smtp_sessions = number("SMTP_SESSIONS", u64::from(DEFAULT_SMTP_SESSIONS), 0..=32)? as u32;
        let smtp_idle_seconds = number("SMTP_IDLE_SECONDS", DEFAULT_SMTP_IDLE_SECONDS, 1..=3600)?;
        // A decimal is allowed (0.0001 days is 8.64 s, for tests); at most a hundred years.
        let retention_ms = match get("RETENTION_DAYS") {
            None => (DEFAULT_RETENTION_DAYS * 86_400_000.0) as u64,
            // Read as JSON reads a number: the Worker already has that parser.
            Some(days) => serde_json::from_str::<f64>(days.trim())
                .ok()
                .filter(|d| *d > 0.0 && *d <= 36_500.0)
                .map(|d| ((d * 86_400_000.0) as u64).max(1))
                .ok_or_else(|| {
                    misconfigured("RETENTION_DAYS", "must be a number of days above 0 (a decimal is allowed)")
                })?,
        };
        let ledger_shards = number("LEDGER_SHARDS", DEFAULT_LEDGER_SHARDS, 1..=256)? as u16;
        let smtp_rate = match get("SMTP_RATE") {
            None => Vec::new(),
            Some(list) => rate::RateLimit::parse_list(&list).ok_or_else(|| {
                misconfigured("SMTP_RATE", "must be limits such as 14/s, 100/m, 500/h or 2000/d, comma-separated")
            })?,
        };
        let queue_by_default = match get("DELIVERY_MODE").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("sync") => false,
            Some("queue") => true,
            Some(_) => return Err(misconfigured("DELIVERY_MODE", "must be sync or queue")),
        };
        // Queues delay a retry by at most 12 hours.
        let retry_seconds = match get("DELIVERY_RETRY_SECONDS") {
            None => DEFAULT_RETRY_SECONDS.to_vec(),
            Some(list) => list
                .split(',')
                .map(|s| s.trim().parse::<u32>().ok().filter(|n| *n <= 43_200))
                .collect::<Option<Vec<u32>>>()
                .filter(|l| !l.is_empty())
                .ok_or_else(|| {
                    misconfigured("DELIVERY_RETRY_SECONDS", "must be comma-separated seconds, each at most 43200")
                })?,
        };
        let max_attempts = number("DELIVERY_MAX_ATTEMPTS", u64::from(DEFAULT_MAX_ATTEMPTS), 1..=100)? as u32;

        let forms = match get("FORMS") {
            None => Default::default(),
            Some(json) => forms::parse(&json).map_err(|why| misconfigured("FORMS", &why))?,
        };
        let turnstile_verify_url = match get("TURNSTILE_VERIFY_URL") {
            None => TURNSTILE_VERIFY_URL.to_string(),
            // The secret goes in the body: plain http only to this machine (the tests' fake).
            Some(url) if is_https_or_loopback(&url) => url,
            Some(_) => {
                return Err(misconfigured("TURNSTILE_VERIFY_URL", "must be https (or http to 127.0.0.1/localhost)"))
            }
        };

        let demo_inbox_url = match get("DEMO_INBOX_URL") {
            None => None,
            Some(url) if is_https_or_loopback(&url) => Some(url),
            Some(_) => return Err(misconfigured("DEMO_INBOX_URL", "must be https (or http to 127.0.0.1/localhost)")),
        };

        let dkim = match get("DKIM_PRIVATE_KEY") {
            None => None,
            Some(pem) => {
                let domain = get("DKIM_DOMAIN");
                if domain.as_deref().is_some_and(|d| !is_host_name(d)) {
                    return Err(misconfigured("DKIM_DOMAIN", "is not a domain name"));
                }
                let selector = get("DKIM_SELECTOR").unwrap_or_default();
                Some(DkimKey::from_pem(&pem, &selector, domain.as_deref()).map_err(|why| {
                    match why.strip_prefix("DKIM_SELECTOR ") {
                        Some(why) => misconfigured("DKIM_SELECTOR", why),
                        None => misconfigured("DKIM_PRIVATE_KEY", &why),
                    }
                })?)
            }
        };
        Ok(Config {
            dkim,
            demo_inbox_url,
            forms,
            turnstile_secret: get("TURNSTILE_SECRET").map(Secret),
            turnstile_verify_url,
            max_request_bytes,
            request_body_timeout_ms,
            log_all_requests,
            smtp_sessions,
            smtp_rate,
            retention_ms,
            ledger_shards,
            smtp_idle_seconds,
            queue_by_default,
            retry_seconds,
            max_attempts,
            relay: RelaySettings { host: smtp_host, port: smtp_port, security, ehlo_name, credentials, timeouts },
            mail_from,
            allowed_from,
            allowed_recipients,
            api_keys,
            message_id_domain,
            bounce_domain,
            webhook,
        })
    }

    /// May a `/v1/send` caller use this `From`? `MAIL_FROM` itself always may.
    pub fn sender_allowed(&self, address: &EmailAddress) -> bool {
        address.as_str().eq_ignore_ascii_case(self.mail_from.email.as_str())
            || self.allowed_from.iter().any(|p| p.matches(address))
    }

    /// May `/v1/send` deliver to this recipient? Everyone, unless `ALLOWED_RECIPIENTS` is set.
    pub fn recipient_allowed(&self, address: &EmailAddress) -> bool {
        self.allowed_recipients.as_ref().is_none_or(|patterns| patterns.iter().any(|p| p.matches(address)))
    }
}

fn patterns(get: &impl Fn(&str) -> Option<String>, variable: &str) -> Result<Option<Vec<AddressPattern>>, ApiError> {
    let Some(raw) = get(variable) else { return Ok(None) };
    raw.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            AddressPattern::parse(p)
                .ok_or_else(|| misconfigured(variable, "has an entry that is neither an address nor *@domain"))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ApiError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    const BASE: &[(&str, &str)] = &[("SMTP_HOST", "smtp.example.com"), ("MAIL_FROM", "Site <noreply@example.com>")];

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, ApiError> {
        let mut pairs = BASE.to_vec();
        pairs.extend_from_slice(extra);
        config(&pairs)
    }

    #[test]
    fn defaults() {
        let c = with(&[]).unwrap();
        assert_eq!((c.relay.port, c.relay.security), (587, Security::StartTls));
        assert_eq!(c.relay.ehlo_name, "example.com");
        assert_eq!(c.message_id_domain, "example.com");
        assert!(c.relay.credentials.is_none() && c.api_keys.is_empty());
        assert_eq!(with(&[("SMTP_SECURITY", "tls")]).unwrap().relay.port, 465);
        assert_eq!((c.max_request_bytes, c.request_body_timeout_ms), (DEFAULT_MAX_REQUEST_BYTES, 30_000));
        assert_eq!((c.smtp_sessions, c.smtp_idle_seconds), (2, 30));
        assert!(!c.log_all_requests && with(&[("LOG_REQUESTS", "all")]).unwrap().log_all_requests);
        assert!(with(&[("LOG_REQUESTS", "some")]).is_err());
        assert_eq!(
            (c.queue_by_default, c.retry_seconds.as_slice(), c.max_attempts),
            (false, &[30, 120, 600, 1800, 7200][..], 8)
        );
        let q = with(&[("DELIVERY_MODE", "queue"), ("DELIVERY_RETRY_SECONDS", "1, 2"), ("DELIVERY_MAX_ATTEMPTS", "3")])
            .unwrap();
        assert_eq!((q.queue_by_default, q.retry_seconds.as_slice(), q.max_attempts), (true, &[1, 2][..], 3));
        for (variable, bad) in [
            ("DELIVERY_MODE", "later"),
            ("DELIVERY_RETRY_SECONDS", "1,x"),
            ("DELIVERY_RETRY_SECONDS", "50000"),
            ("DELIVERY_MAX_ATTEMPTS", "0"),
        ] {
            assert!(with(&[(variable, bad)]).unwrap_err().message.starts_with(variable), "{variable}={bad}");
        }
        assert_eq!(with(&[("SMTP_SESSIONS", "0")]).unwrap().smtp_sessions, 0);
        for (variable, bad) in [("SMTP_SESSIONS", "33"), ("SMTP_SESSIONS", "two"), ("SMTP_IDLE_SECONDS", "0")] {
            assert!(with(&[(variable, bad)]).unwrap_err().message.starts_with(variable));
        }
    }

    #[test]
    fn retention_and_the_relays_quota() {
        assert_eq!(with(&[]).unwrap().retention_ms, 30 * 86_400_000);
        assert_eq!(with(&[("RETENTION_DAYS", "0.0001")]).unwrap().retention_ms, 8_640);
        assert_eq!(with(&[]).unwrap().ledger_shards, 16);
        assert_eq!(with(&[("LEDGER_SHARDS", "1")]).unwrap().ledger_shards, 1);
        assert_eq!(with(&[("LEDGER_SHARDS", "256")]).unwrap().ledger_shards, 256);
        for bad in ["0", "257", "x"] {
            assert!(with(&[("LEDGER_SHARDS", bad)]).is_err(), "{bad}");
        }
        assert!(with(&[]).unwrap().smtp_rate.is_empty());
        assert_eq!(with(&[("SMTP_RATE", "14/s,2000/d")]).unwrap().smtp_rate.len(), 2);
        for (variable, bad) in [("RETENTION_DAYS", "0"), ("RETENTION_DAYS", "-1"), ("RETENTION_DAYS", "a month")] {
            assert!(with(&[(variable, bad)]).unwrap_err().message.starts_with(variable), "{bad}");
        }
        assert!(with(&[("SMTP_RATE", "14 a second")]).unwrap_err().message.starts_with("SMTP_RATE"));
    }

    #[test]
    fn errors_name_the_variable_never_the_value() {
        let cases: &[(&[(&str, &str)], &str)] =
            &[(&[("MAIL_FROM", "x@example.com")], "SMTP_HOST"), (&[("SMTP_HOST", "h.example.com")], "MAIL_FROM")];
        for (pairs, variable) in cases {
            let error = config(pairs).unwrap_err();
            assert_eq!(error.code, ErrorCode::Misconfigured);
            assert!(error.message.starts_with(variable), "{}", error.message);
        }
        let error = with(&[("SMTP_USERNAME", "dev")]).unwrap_err();
        assert!(error.message.starts_with("SMTP_PASSWORD"));
        let error = with(&[("SMTP_PORT", "secret-looking-value")]).unwrap_err();
        assert!(error.message.starts_with("SMTP_PORT") && !error.message.contains("secret-looking-value"));
    }

    #[test]
    fn auth_choice_and_timeouts() {
        let c = with(&[("SMTP_USERNAME", "u"), ("SMTP_PASSWORD", "p"), ("SMTP_AUTH", "XOAUTH2")]).unwrap();
        assert_eq!(c.relay.credentials.unwrap().choice, AuthChoice::Only(AuthMechanism::XOAuth2));
        assert!(with(&[("SMTP_USERNAME", "u"), ("SMTP_PASSWORD", "p"), ("SMTP_AUTH", "cram-md5")]).is_err());
        let c = with(&[("SMTP_COMMAND_TIMEOUT_MS", "2500")]).unwrap();
        assert_eq!(c.relay.timeouts.command, 2500);
        assert_eq!(c.relay.timeouts.connect, Timeouts::default().connect);
        let error = with(&[("SMTP_DATA_TIMEOUT_MS", "soon")]).unwrap_err();
        assert!(error.message.starts_with("SMTP_DATA_TIMEOUT_MS"));
    }

    #[test]
    fn ehlo_name_is_never_an_ip_literal() {
        for bad in ["127.0.0.1", "[127.0.0.1]", "localhost", "bad name.example"] {
            let error = with(&[("SMTP_EHLO_NAME", bad)]).unwrap_err();
            assert!(error.message.starts_with("SMTP_EHLO_NAME"), "{bad}");
        }
        assert_eq!(with(&[("SMTP_EHLO_NAME", "mail.example.net")]).unwrap().relay.ehlo_name, "mail.example.net");
    }

    #[test]
    fn plain_http_only_to_this_machine() {
        assert!(with(&[("TURNSTILE_VERIFY_URL", "http://127.0.0.1:9000/siteverify")]).is_ok());
        assert!(with(&[("TURNSTILE_VERIFY_URL", "https://verify.example/x")]).is_ok());
        assert!(with(&[("TURNSTILE_VERIFY_URL", "http://localhost:9000/x")]).is_ok());
        for bad in [
            "http://verify.example/x",
            "http://127.0.0.1.evil.example/x",
            "ftp://x",
            "http://127.0.0.1:80@evil.example/",
            "http://localhost@evil.example/",
            "https://user:pw@verify.example/x",
        ] {
            let error = with(&[("TURNSTILE_VERIFY_URL", bad)]).unwrap_err();
            assert!(error.message.starts_with("TURNSTILE_VERIFY_URL"), "{bad}");
        }
        assert!(with(&[("DEMO_INBOX_URL", "http://example.com/inbox")]).is_err());
    }

    #[test]
    fn port_25_is_refused_with_a_reason() {
        let error = with(&[("SMTP_PORT", "25")]).unwrap_err();
        assert!(error.message.contains("blocks"), "{}", error.message);
    }

    #[test]
    fn plaintext_mode_never_with_auth() {
        assert!(with(&[("SMTP_SECURITY", "none")]).is_ok());
        let error = with(&[("SMTP_SECURITY", "none"), ("SMTP_USERNAME", "u"), ("SMTP_PASSWORD", "p")]).unwrap_err();
        assert!(error.message.starts_with("SMTP_SECURITY"));
        assert!(with(&[("SMTP_SECURITY", "ssl")]).is_err());
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let c = with(&[("SMTP_USERNAME", "dev"), ("SMTP_PASSWORD", "pw-123456"), ("API_KEYS", "key-abcdef, key-2")])
            .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("pw-123456") && !shown.contains("key-abcdef"));
        assert_eq!(c.api_keys.len(), 2);
    }

    #[test]
    fn api_keys_match_exactly() {
        let c = with(&[("API_KEYS", "alpha,beta")]).unwrap();
        let ok = |k: &str| c.api_keys.iter().any(|key| key.matches(k));
        assert!(ok("alpha") && ok("beta"));
        assert!(!ok("alph") && !ok("alphaa") && !ok("") && !ok("ALPHA"));
    }

    #[test]
    fn sender_and_recipient_policy() {
        let c = with(&[("ALLOWED_FROM", "*@example.org, team@example.net"), ("ALLOWED_RECIPIENTS", "*@example.com")])
            .unwrap();
        let a = |s: &str| EmailAddress::parse(s).unwrap();
        assert!(c.sender_allowed(&a("noreply@example.com")));
        assert!(c.sender_allowed(&a("anyone@EXAMPLE.org")));
        assert!(c.sender_allowed(&a("team@example.net")));
        assert!(!c.sender_allowed(&a("other@example.net")));
        assert!(c.recipient_allowed(&a("x@example.com")));
        assert!(!c.recipient_allowed(&a("x@example.org")));
        assert!(with(&[("ALLOWED_FROM", "*@")]).is_err());
    }
}
