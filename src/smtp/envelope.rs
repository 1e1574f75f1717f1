//! The envelope of one transaction and the ESMTP parameters it needs (RFC 1870 SIZE,
//! RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 3461 DSN), decided before anything is sent.

use super::capabilities::Capabilities;
use super::error::{Error, ErrorKind, Extension};
use super::outcome::Phase;
use crate::address::EmailAddress;
use serde::{Deserialize, Serialize};

/// When the relay should report on delivery (RFC 3461 §4.1 NOTIFY). Written by its name:
/// `"Success"`, `"Failure"`, `"Delay"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notify {
    Success,
    Failure,
    Delay,
}

/// Delivery status notifications the caller asked for:
/// `{"notify": null | ["Success", "Failure", "Delay"], "return_headers_only", "envelope_id"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dsn {
    /// `None`: no NOTIFY (the relay's default); `Some(empty)`: NOTIFY=NEVER.
    pub notify: Option<Vec<Notify>>,
    /// RET=HDRS when true, RET=FULL when false and set.
    pub return_headers_only: Option<bool>,
    /// ENVID, printable ASCII only (validated by the API).
    pub envelope_id: Option<String>,
}

/// Sender and recipients of one transaction.
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a> {
    pub sender: &'a EmailAddress,
    pub recipients: &'a [&'a EmailAddress],
    pub dsn: Option<&'a Dsn>,
    /// An address in the message's headers (From, To, Cc, Reply-To) has a non-ASCII local
    /// part: the message needs SMTPUTF8 like such an envelope address does.
    pub utf8_headers: bool,
}

/// The parameters to append to `MAIL FROM` and to each `RCPT TO`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parameters {
    pub mail: Vec<String>,
    pub rcpt: Vec<String>,
}

fn missing(extension: Extension) -> Error {
    Error::new(Phase::Mail, ErrorKind::Missing(extension))
}

/// Decides the parameters, or refuses before a byte is sent when the relay cannot take the
/// message as it is.
pub fn parameters(capabilities: &Capabilities, envelope: &Envelope<'_>, message: &[u8]) -> Result<Parameters, Error> {
    let mut params = Parameters::default();
    if let Some(limit) = capabilities.size {
        if limit > 0 && message.len() as u64 > limit {
            return Err(Error::new(Phase::Mail, ErrorKind::TooLarge { size: message.len(), limit }));
        }
        params.mail.push(format!("SIZE={}", message.len()));
    }
    let utf8_address = envelope.utf8_headers
        || envelope.sender.needs_smtputf8()
        || envelope.recipients.iter().any(|r| r.needs_smtputf8());
    if !message.is_ascii() {
        if !capabilities.eight_bit_mime {
            return Err(missing(Extension::EightBitMime));
        }
        params.mail.push("BODY=8BITMIME".into());
    }
    if utf8_address {
        if !capabilities.smtp_utf8 {
            return Err(missing(Extension::SmtpUtf8));
        }
        params.mail.push("SMTPUTF8".into());
    }
    if let Some(dsn) = envelope.dsn.filter(|_| capabilities.dsn) {
        if let Some(headers_only) = dsn.return_headers_only {
            params.mail.push(if headers_only { "RET=HDRS" } else { "RET=FULL" }.into());
        }
        if let Some(id) = &dsn.envelope_id {
            params.mail.push(format!("ENVID={}", xtext(id)));
        }
        if let Some(notify) = &dsn.notify {
            let words: Vec<&str> = notify
                .iter()
                .map(|n| match n {
                    Notify::Success => "SUCCESS",
                    Notify::Failure => "FAILURE",
                    Notify::Delay => "DELAY",
                })
                .collect();
            params
                .rcpt
                .push(format!("NOTIFY={}", if words.is_empty() { "NEVER".to_string() } else { words.join(",") }));
        }
    }
    Ok(params)
}

/// RFC 3461 §4: `+`, `=` and anything outside printable ASCII as `+XX`.
pub fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (b'!'..=b'~').contains(&byte) && byte != b'+' && byte != b'=' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("+{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(f: impl FnOnce(&mut Capabilities)) -> Capabilities {
        let mut c = Capabilities::default();
        f(&mut c);
        c
    }

    fn with<'a>(sender: &'a EmailAddress, recipients: &'a [&'a EmailAddress], dsn: Option<&'a Dsn>) -> Envelope<'a> {
        Envelope { sender, recipients, dsn, utf8_headers: false }
    }

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    #[test]
    fn size_is_declared_and_enforced() {
        let (from, to) = (addr("a@example.com"), addr("b@example.com"));
        let recipients = [&to];
        let envelope = with(&from, &recipients, None);
        let relay = caps(|c| c.size = Some(10));
        assert_eq!(parameters(&relay, &envelope, b"0123456789").unwrap().mail, vec!["SIZE=10"]);
        assert_eq!(
            parameters(&relay, &envelope, b"0123456789a").unwrap_err().kind,
            ErrorKind::TooLarge { size: 11, limit: 10 }
        );
        assert!(parameters(&Capabilities::default(), &envelope, b"x").unwrap().mail.is_empty());
    }

    #[test]
    fn smtputf8_only_when_an_address_needs_it_and_refused_without_it() {
        let (from, to) = (addr("a@example.com"), addr("jörg@example.com"));
        let recipients = [&to];
        let envelope = with(&from, &recipients, None);
        let message = "To: jörg@example.com\r\n\r\nhi\r\n".as_bytes();
        let relay = caps(|c| {
            c.smtp_utf8 = true;
            c.eight_bit_mime = true
        });
        assert_eq!(parameters(&relay, &envelope, message).unwrap().mail, vec!["BODY=8BITMIME", "SMTPUTF8"]);
        let error = parameters(&caps(|c| c.eight_bit_mime = true), &envelope, message).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Missing(Extension::SmtpUtf8));
        let ascii = [&from];
        assert!(parameters(&relay, &with(&from, &ascii, None), b"hi\r\n").unwrap().mail.is_empty());
        // A non-ASCII Reply-To needs SMTPUTF8 as much as a recipient does.
        let reply_to = Envelope { utf8_headers: true, ..with(&from, &ascii, None) };
        assert_eq!(parameters(&relay, &reply_to, b"hi\r\n").unwrap().mail, vec!["SMTPUTF8"]);
        let error = parameters(&caps(|c| c.eight_bit_mime = true), &reply_to, b"hi\r\n").unwrap_err();
        assert_eq!(error.kind, ErrorKind::Missing(Extension::SmtpUtf8));
    }

    #[test]
    fn eight_bit_body_needs_8bitmime() {
        let from = addr("a@example.com");
        let recipients = [&from];
        let error = parameters(&Capabilities::default(), &with(&from, &recipients, None), "é".as_bytes()).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Missing(Extension::EightBitMime));
    }

    #[test]
    fn dsn_parameters_only_when_advertised() {
        let from = addr("a@example.com");
        let recipients = [&from];
        let dsn = Dsn {
            notify: Some(vec![Notify::Failure, Notify::Delay]),
            return_headers_only: Some(true),
            envelope_id: Some("id+1=x".into()),
        };
        let envelope = with(&from, &recipients, Some(&dsn));
        let params = parameters(&caps(|c| c.dsn = true), &envelope, b"x").unwrap();
        assert_eq!(params.mail, vec!["RET=HDRS", "ENVID=id+2B1+3Dx"]);
        assert_eq!(params.rcpt, vec!["NOTIFY=FAILURE,DELAY"]);
        assert_eq!(parameters(&Capabilities::default(), &envelope, b"x").unwrap(), Parameters::default());
        let never = Dsn { notify: Some(vec![]), ..Dsn::default() };
        let params = parameters(&caps(|c| c.dsn = true), &with(&from, &recipients, Some(&never)), b"x").unwrap();
        assert_eq!(params.rcpt, vec!["NOTIFY=NEVER"]);
        let unset = Dsn { envelope_id: Some("e".into()), ..Dsn::default() };
        let params = parameters(&caps(|c| c.dsn = true), &with(&from, &recipients, Some(&unset)), b"x").unwrap();
        assert!(params.rcpt.is_empty(), "no NOTIFY unless asked for");
    }
}
