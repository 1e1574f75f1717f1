//! Reading what comes back after the relay: delivery status notifications (RFC 3464, and
//! RFC 6533's `message/global-delivery-status`) and feedback reports (RFC 5965), parsed with
//! mail-parser. No I/O: the platform hands over the raw message and the address it came to.
//!
//! Real MTAs write these differently (Postfix, Exim, Gmail and Microsoft 365 all put a
//! human-readable part first, some as `multipart/alternative`; Gmail folds long diagnostics;
//! Microsoft writes five-character details like `5.1.10`), so the reader looks for the
//! machine-readable part wherever it is and reads its fields leniently: a field it cannot
//! read is left out, never guessed.

use mail_parser::{MessageParser, MimeHeaders};

/// What a report says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A delivery status notification, one entry per recipient it reports on.
    Delivery(Vec<RecipientReport>),
    /// A feedback report: someone marked the message as spam (or otherwise complained). The
    /// recipients it names (`Original-Rcpt-To`), often none: providers redact them.
    Complaint { feedback_type: String, recipients: Vec<String> },
    /// Anything else (an auto-reply, a bounce that is not a report): why it was not read.
    Other(&'static str),
}

/// One recipient's entry of a delivery status notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientReport {
    /// `Final-Recipient`, the address only.
    pub recipient: String,
    /// `Original-Recipient` (the address as the message's envelope had it), when given.
    pub original: Option<String>,
    pub action: Action,
    /// The enhanced status code (RFC 3463), `5.1.1`.
    pub status: String,
    /// `Diagnostic-Code`, without its type (`smtp;`), unfolded.
    pub diagnostic: Option<String>,
}

impl RecipientReport {
    /// The message reached the recipient (or a system past which no report comes).
    pub fn is_success(&self) -> bool {
        matches!(self.action, Action::Delivered | Action::Relayed | Action::Expanded) && self.status.starts_with('2')
    }

    /// A permanent failure: the address should get no more mail.
    pub fn is_hard_bounce(&self) -> bool {
        self.action == Action::Failed && self.status.starts_with('5')
    }
}

/// RFC 3464 §2.3.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
}

impl Action {
    fn parse(value: &str) -> Option<Action> {
        // Some MTAs add a comment after the word.
        let word = value.split(|c: char| c.is_whitespace() || c == '(').next()?.to_ascii_lowercase();
        Some(match word.as_str() {
            "failed" => Action::Failed,
            "delayed" => Action::Delayed,
            "delivered" => Action::Delivered,
            "relayed" => Action::Relayed,
            "expanded" => Action::Expanded,
            _ => return None,
        })
    }
}

/// A report read from a raw message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// `Original-Envelope-Id` (the ENVID the message was sent with), when the report has one.
    pub envelope_id: Option<String>,
    pub kind: Kind,
}

/// Most recipients one report's entries are read for (a message has at most 50).
const MAX_RECIPIENTS: usize = 100;
/// Most characters of a diagnostic kept.
const MAX_DIAGNOSTIC: usize = 1_000;

/// Reads the report in `raw` (the whole message as it arrived).
pub fn read(raw: &[u8]) -> Report {
    let other = |why| Report { envelope_id: None, kind: Kind::Other(why) };
    let Some(message) = MessageParser::default().parse(raw) else { return other("not a message") };
    let report_type = message
        .content_type()
        .filter(|ct| {
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
        })
        .and_then(|ct| ct.attribute("report-type"))
        .map(str::to_ascii_lowercase);
    let Some(report_type) = report_type else { return other("not a multipart/report") };
    let part_of = |subtypes: &[&str]| {
        message.parts.iter().find(|part| {
            part.content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("message")
                    && ct.subtype().is_some_and(|s| subtypes.iter().any(|want| s.eq_ignore_ascii_case(want)))
            })
        })
    };
    match report_type.as_str() {
        "delivery-status" => {
            let Some(part) = part_of(&["delivery-status", "global-delivery-status"]) else {
                return other("a delivery report without its delivery-status part");
            };
            let groups = field_groups(part.contents());
            let envelope_id = groups.first().and_then(|g| field(g, "original-envelope-id")).map(unbracket);
            let recipients: Vec<RecipientReport> =
                groups.iter().skip(1).filter_map(|g| recipient_report(g)).take(MAX_RECIPIENTS).collect();
            match recipients.is_empty() {
                true => Report { envelope_id, kind: Kind::Other("a delivery report that names no recipient") },
                false => Report { envelope_id, kind: Kind::Delivery(recipients) },
            }
        }
        "feedback-report" => {
            let Some(part) = part_of(&["feedback-report"]) else {
                return other("a feedback report without its feedback-report part");
            };
            let groups = field_groups(part.contents());
            let fields: Vec<&(String, String)> = groups.iter().flatten().collect();
            let feedback_type = (fields.iter())
                .find(|(name, _)| name == "feedback-type")
                .map(|(_, value)| value.to_ascii_lowercase())
                .unwrap_or_else(|| "abuse".to_string());
            let recipients = (fields.iter())
                .filter(|(name, _)| name == "original-rcpt-to")
                .filter_map(|(_, value)| address_of(value))
                .take(MAX_RECIPIENTS)
                .collect();
            Report { envelope_id: None, kind: Kind::Complaint { feedback_type, recipients } }
        }
        _ => other("a report of another type"),
    }
}

/// The message id in a VERP address, `bounce+{id}@{bounce_domain}` (the domain compared
/// case-insensitively); `None` for any other address.
pub fn id_in_address<'a>(address: &'a str, bounce_domain: &str) -> Option<&'a str> {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, domain) = address.rsplit_once('@')?;
    let id = local.strip_prefix("bounce+")?;
    (domain.eq_ignore_ascii_case(bounce_domain) && !id.is_empty()).then_some(id)
}

/// The blocks of `name: value` fields of a `message/delivery-status` body (RFC 3464 §2.1: the
/// per-message block, then one per recipient), names in lower case, folded lines joined.
fn field_groups(body: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = String::from_utf8_lossy(body);
    let mut groups: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if groups.last().is_some_and(|g| !g.is_empty()) {
                groups.push(Vec::new());
            }
            continue;
        }
        let group = groups.last_mut().expect("one group at least");
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = group.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            group.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    groups.retain(|g| !g.is_empty());
    groups
}

fn field<'a>(group: &'a [(String, String)], name: &str) -> Option<&'a str> {
    group.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn unbracket(value: &str) -> String {
    value.trim().trim_start_matches('<').trim_end_matches('>').trim().to_string()
}

/// The address of `rfc822; jane@example.org` (or `<jane@example.org>`, or a bare address).
fn address_of(value: &str) -> Option<String> {
    let address = match value.split_once(';') {
        Some((_, address)) => address,
        None => value,
    };
    let address = unbracket(address);
    (address.contains('@') && !address.contains(char::is_whitespace)).then_some(address)
}

/// One recipient's block; `None` when it lacks what every entry must have.
fn recipient_report(group: &[(String, String)]) -> Option<RecipientReport> {
    let recipient = address_of(field(group, "final-recipient")?)?;
    let action = Action::parse(field(group, "action")?)?;
    let status = field(group, "status")?.split(|c: char| c.is_whitespace() || c == '(').next()?.to_string();
    if !is_status_code(&status) {
        return None;
    }
    let diagnostic = field(group, "diagnostic-code").map(|value| {
        let text = match value.split_once(';') {
            Some((_, text)) => text.trim(),
            None => value.trim(),
        };
        text.chars().take(MAX_DIAGNOSTIC).collect()
    });
    let original = field(group, "original-recipient").and_then(address_of);
    Some(RecipientReport { recipient, original, action, status, diagnostic })
}

/// `class.subject.detail` of RFC 3463: a class of 2, 4 or 5, then 1 to 3 digits twice.
fn is_status_code(status: &str) -> bool {
    let parts: Vec<&str> = status.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..].iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verp_address_names_its_message() {
        let id = "0a012345-6789-4bcd-8f01-23456789abcd";
        assert_eq!(id_in_address(&format!("bounce+{id}@Bounces.Example.com"), "bounces.example.com"), Some(id));
        assert_eq!(id_in_address(&format!("<bounce+{id}@bounces.example.com>"), "bounces.example.com"), Some(id));
        assert_eq!(id_in_address(&format!("bounce+{id}@other.example.com"), "bounces.example.com"), None);
        assert_eq!(id_in_address("postmaster@bounces.example.com", "bounces.example.com"), None);
        assert_eq!(id_in_address("bounce+@bounces.example.com", "bounces.example.com"), None);
    }

    #[test]
    fn status_codes_are_those_of_rfc_3463() {
        for good in ["5.1.1", "2.0.0", "4.4.7", "5.1.10", "5.7.509"] {
            assert!(is_status_code(good), "{good}");
        }
        for bad in ["", "5.1", "6.1.1", "5.1.1.1", "5.x.1", "5.1.1000", "550"] {
            assert!(!is_status_code(bad), "{bad}");
        }
    }

    #[test]
    fn fields_unfold_and_group_by_blank_lines() {
        let groups = field_groups(
            b"Reporting-MTA: dns; mx.example\r\nOriginal-Envelope-Id: abc\r\n\r\nFinal-Recipient: rfc822; a@b.c\r\n\
              Action: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 The email account\r\n    does not exist.\r\n\r\n\r\n",
        );
        assert_eq!(groups.len(), 2);
        assert_eq!(field(&groups[0], "original-envelope-id"), Some("abc"));
        let entry = recipient_report(&groups[1]).unwrap();
        assert_eq!(entry.diagnostic.as_deref(), Some("550 5.1.1 The email account does not exist."));
        assert!(entry.is_hard_bounce() && !entry.is_success());
    }
}
