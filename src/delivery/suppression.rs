//! The suppression list: addresses no send goes to any more (a hard bounce, a complaint, or
//! the owner's word). Every send is screened against it before it is rendered
//! ([`super::submit::screen`]).
//!
//! The list lives in [`SHARDS`] objects, an address in the one its hash names. An address has
//! no id to carry its shard, so that count is fixed: changing it would lose every entry.
//! Addresses compare as mail does: the local part exactly, the domain case-insensitively.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::shard::Listed;
use crate::address::EmailAddress;
use crate::error::{ApiError, ErrorCode};

/// The objects the list is spread over (never changed: see the module's note).
pub const SHARDS: u8 = 16;

/// Why an address is on the list: `"bounce"`, `"complaint"` or `"manual"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// A report said the address does not exist or refuses mail for good (`5.x.x`, failed).
    Bounce,
    /// The recipient marked a message as spam (a feedback report).
    Complaint,
    /// The owner put it there (`POST /v1/suppressions`).
    Manual,
}

impl Reason {
    pub fn parse(name: &str) -> Option<Reason> {
        [Reason::Bounce, Reason::Complaint, Reason::Manual].into_iter().find(|r| r.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Bounce => "bounce",
            Reason::Complaint => "complaint",
            Reason::Manual => "manual",
        }
    }
}

/// One address on the list: `{"address", "reason", "detail"?, "message_id"?, "created_at"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suppression {
    /// As [`key`] writes it.
    pub address: String,
    pub reason: Reason,
    /// What the report said (its status and diagnostic), or the owner's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The id of the message whose report put it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

impl Listed for Suppression {
    fn created_at(&self) -> u64 {
        self.created_at
    }
    fn key(&self) -> &str {
        &self.address
    }
}

/// Most characters of a suppression's `detail` kept (a diagnostic can be long).
pub const MAX_DETAIL: usize = 500;

/// An address as the list keys it: the local part as written, the domain in lower case (and
/// in punycode, as [`EmailAddress`] keeps it); `None` when it is no address.
pub fn key(address: &str) -> Option<String> {
    let address = EmailAddress::parse(address.trim()).ok()?;
    Some(key_of(&address))
}

pub fn key_of(address: &EmailAddress) -> String {
    let text = address.as_str();
    let at = text.len() - address.domain().len();
    format!("{}{}", &text[..at], address.domain().to_ascii_lowercase())
}

/// The object that keeps `key`: the first byte of its SHA-256, modulo [`SHARDS`].
pub fn shard_of(key: &str) -> u8 {
    Sha256::digest(key.as_bytes())[0] % SHARDS
}

/// The name of shard `shard`'s object.
pub fn object_name(shard: u8) -> String {
    format!("suppressions-{shard:x}")
}

/// `detail` cut to [`MAX_DETAIL`] characters.
pub fn short_detail(detail: &str) -> String {
    detail.chars().take(MAX_DETAIL).collect()
}

/// The list could not be asked.
pub fn unavailable() -> ApiError {
    let mut error = ApiError::new(
        ErrorCode::StorageUnavailable,
        "the suppression list (the SUPPRESSION_LIST binding) could not be reached; nothing was sent",
    );
    error.retry_after = Some(5);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_compares_case_insensitively_and_the_local_part_exactly() {
        assert_eq!(key("Jane.Doe@Example.ORG").as_deref(), Some("Jane.Doe@example.org"));
        assert_eq!(key(" jane@EXAMPLE.org ").as_deref(), Some("jane@example.org"));
        assert_ne!(key("Jane@example.org"), key("jane@example.org"));
        assert_eq!(key("not an address"), None);
        assert_eq!(key("a@b@c"), None);
    }

    #[test]
    fn an_address_always_lives_in_the_same_object() {
        let key = key("someone@Example.org").unwrap();
        assert_eq!(shard_of(&key), shard_of("someone@example.org"));
        assert!(shard_of(&key) < SHARDS);
        let mut seen = [false; SHARDS as usize];
        for n in 0..1000 {
            seen[shard_of(&format!("user{n}@example.org")) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "1,000 addresses reach every object");
        assert_eq!(object_name(10), "suppressions-a");
    }

    #[test]
    fn reasons_read_back() {
        for reason in [Reason::Bounce, Reason::Complaint, Reason::Manual] {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::parse("Bounce"), None);
        assert_eq!(short_detail(&"é".repeat(600)).chars().count(), MAX_DETAIL);
    }
}
