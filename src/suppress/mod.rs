//! The suppression list: addresses that get no further message.
//!
//! An address lands here when its owner unsubscribes, when mail to it bounces
//! for good (or keeps bouncing), when its owner marks a message as spam, or
//! when a person adds it. From then on every stage of every order for that
//! address ends `skipped` with the reason, except stages a seller marked
//! `transactional` (a shipment notice the buyer needs).
//!
//! Everything here is pure: the store keeps the list and the engine passes
//! the entry for an order's buyer into [`stops`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Why an address is on the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The buyer asked to hear no more (the one-click link or the page).
    Unsubscribed,
    /// Mail to the address failed for good, or temporarily too often.
    Bounced,
    /// The buyer marked a message as spam (a feedback report).
    Complained,
    /// A person put it there (`followupd suppress add`, or an import).
    Manual,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Self::Unsubscribed,
        Self::Bounced,
        Self::Complained,
        Self::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsubscribed => "unsubscribed",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
            Self::Manual => "manual",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown reason '{s}' (expected unsubscribed, bounced, complained or manual)"
                )
            })
    }
}

/// An address in the form the list is keyed by: the domain in lower case
/// (and an internationalised domain in its ASCII form), the local part as
/// written, because RFC 5321 lets the receiving server tell `Ann` from `ann`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Address(String);

/// An address that cannot be put on the list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not an email address: {reason}")]
pub struct AddressError {
    pub value: String,
    pub reason: String,
}

impl Address {
    /// Normalises `value`: surrounding space and angle brackets (as in a
    /// DSN's `rfc822; <ann@example.com>`) are dropped, the local part is
    /// brought to the form the importer stores, the domain is lower-cased.
    pub fn parse(value: &str) -> Result<Self, AddressError> {
        let bare = value.trim();
        let bare = bare
            .strip_prefix('<')
            .and_then(|b| b.strip_suffix('>'))
            .unwrap_or(bare)
            .trim();
        let error = |reason: String| AddressError {
            value: value.to_string(),
            reason,
        };
        let canonical = crate::order::BuyerEmail::parse(bare).map_err(|e| error(e.to_string()))?;
        let canonical = canonical.as_str();
        let at = canonical.rfind('@').ok_or_else(|| error("no '@'".into()))?;
        let (local, domain) = (&canonical[..at], &canonical[at + 1..]);
        let domain = if domain.starts_with('[') {
            domain.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii(domain).map_err(|e| error(format!("domain: {e}")))?
        };
        Ok(Self(format!("{local}@{domain}")))
    }

    /// An address read back from the store, trusted to be normal already.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suppression {
    pub address: Address,
    pub reason: Reason,
    /// What put it there, for people: the bounce's status and diagnostic,
    /// the order whose link was used, a note.
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

/// Whether a stage may not go to a buyer with this entry: the reason it
/// stops, or `None` when there is no entry or the stage is transactional.
pub fn stops(entry: Option<&Suppression>, transactional: bool) -> Option<Reason> {
    entry.filter(|_| !transactional).map(|e| e.reason)
}

/// How many temporary failures within how long put an address on the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftBounceLimit {
    pub count: u32,
    pub within: chrono::Duration,
}

impl Default for SoftBounceLimit {
    fn default() -> Self {
        Self {
            count: 3,
            within: chrono::Duration::days(7),
        }
    }
}

impl SoftBounceLimit {
    /// Whether `seen` temporary failures (the newest one included) within
    /// the period are enough.
    pub fn reached(&self, seen: u64) -> bool {
        seen >= u64::from(self.count.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(s: &str) -> String {
        Address::parse(s).unwrap().as_str().to_string()
    }

    #[test]
    fn the_domain_is_folded_the_local_part_is_not() {
        assert_eq!(normal("Ann.Lee@Example.COM"), "Ann.Lee@example.com");
        assert_eq!(normal("  <ann@EXAMPLE.com> "), "ann@example.com");
        assert_ne!(normal("Ann@example.com"), normal("ann@example.com"));
        assert_eq!(normal("anna@Bücher.example"), "anna@xn--bcher-kva.example");
        assert_eq!(
            normal("anna@xn--bcher-kva.example"),
            normal("anna@bücher.example")
        );
        assert_eq!(normal("\"ann\"@example.com"), "ann@example.com");
        assert_eq!(
            normal("\"john doe\"@Example.com"),
            "\"john doe\"@example.com"
        );
        assert_eq!(normal("user@[IPv6:2001:DB8::1]"), "user@[ipv6:2001:db8::1]");
    }

    #[test]
    fn what_is_not_an_address_is_refused_with_a_reason() {
        for bad in [
            "",
            "ann",
            "ann@",
            "Ann <ann@example.com>",
            "ann@exa\nmple.com",
        ] {
            let e = Address::parse(bad).unwrap_err();
            assert!(!e.reason.is_empty(), "{bad}");
        }
    }

    #[test]
    fn a_transactional_stage_is_not_stopped() {
        let entry = Suppression {
            address: Address::parse("ann@example.com").unwrap(),
            reason: Reason::Complained,
            detail: None,
            at: Utc::now(),
        };
        assert_eq!(stops(Some(&entry), false), Some(Reason::Complained));
        assert_eq!(stops(Some(&entry), true), None);
        assert_eq!(stops(None, false), None);
    }

    #[test]
    fn reasons_read_back() {
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>(), Ok(r));
        }
        assert!("spam".parse::<Reason>().is_err());
    }
}
