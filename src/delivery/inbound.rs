//! The bounce domain's mail, as the Worker's `email` handler receives it: read as a report
//! ([`crate::report`]), matched to one of our messages by its VERP address (else its ENVID),
//! applied to that message's record ([`super::reports`]), then to the suppression list; and
//! what changed nothing, counted (`GET /v1/reports`).

use super::env::{Environment, Unavailable};
use super::reports::findings;
use super::shard;
use crate::config::Config;
use crate::report;

/// What came of one message that arrived at the bounce domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// It was a report about one of our messages; this many findings were new.
    Applied { matched: usize, added: usize },
    /// A report, but for no message of ours (an unknown id, or one retention removed).
    UnknownMessage,
    /// A report about a message of ours, but about none of its recipients.
    UnknownRecipient,
    /// Not a report (an auto-reply, a bounce without its machine-readable part).
    NotAReport,
    /// `BOUNCE_DOMAIN` is not set, or the address is not one of its VERP addresses and the
    /// report has no id of ours.
    NotOurs,
}

impl Received {
    /// The name it is counted under (`GET /v1/reports`), or `None` for an applied report.
    pub fn ignored_as(self) -> Option<&'static str> {
        match self {
            Received::Applied { .. } => None,
            Received::UnknownRecipient => Some("unknown_recipient"),
            Received::UnknownMessage => Some("unknown_message"),
            Received::NotAReport => Some("not_a_report"),
            Received::NotOurs => Some("not_ours"),
        }
    }
}

/// One message that arrived for `to` at the bounce domain, `raw` as it arrived: read it,
/// apply it to the record it names, suppress whom it says to, and count what it was not. An
/// error when the ledger or the suppression list could not be reached (the report should come
/// again).
pub async fn receive<E: Environment>(env: &E, config: &Config, to: &str, raw: &[u8]) -> Result<Received, Unavailable> {
    let received = apply(env, config, to, raw).await?;
    if let Some(name) = received.ignored_as() {
        env.count_report(name).await?;
    }
    Ok(received)
}

async fn apply<E: Environment>(env: &E, config: &Config, to: &str, raw: &[u8]) -> Result<Received, Unavailable> {
    let Some(domain) = &config.bounce_domain else { return Ok(Received::NotOurs) };
    let report = report::read(raw);
    let ours = |id: &str| shard::shard_of(id).is_some();
    let id = report::id_in_address(to, domain).filter(|id| ours(id)).map(str::to_string);
    let id = id.or(report.envelope_id.clone().filter(|id| ours(id)));
    let found = findings(&report.kind);
    let Some(id) = id else {
        return Ok(if found.is_empty() { Received::NotAReport } else { Received::NotOurs });
    };
    if found.is_empty() {
        return Ok(Received::NotAReport);
    }
    let Some(applied) = env.apply_report(&id, &found, env.now_millis()).await? else {
        return Ok(Received::UnknownMessage);
    };
    for entry in &applied.suppress {
        env.suppress(entry).await?;
    }
    Ok(match applied.matched {
        0 => Received::UnknownRecipient,
        matched => Received::Applied { matched, added: applied.added },
    })
}
