//! The buyer's address: RFC 5322 syntax, something a mail server can take,
//! and one normal form for the same mailbox.

use std::str::FromStr;

use serde::Serialize;

use super::{single_line, strip_invisible, FieldError};

/// A buyer's address, checked against RFC 5322 (IDN domains and quoted local
/// parts included) by the `email_address` crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct BuyerEmail(pub(super) String);

impl BuyerEmail {
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let value = strip_invisible(value);
        let value = value.trim();
        if value.is_empty() {
            return Err(FieldError::Missing("buyer_email"));
        }
        single_line("buyer_email", value)?;
        let parsed =
            email_address::EmailAddress::from_str(value).map_err(|e| FieldError::Email {
                value: value.to_string(),
                reason: e.to_string(),
            })?;
        // A display name ("Ann <ann@x>") is not an address: names travel in
        // buyer_name. A `<` inside a quoted local part is not a display name.
        if parsed.as_str() != value || !parsed.display_part().is_empty() {
            return Err(FieldError::Email {
                value: value.to_string(),
                reason: "expected a bare address without a display name".into(),
            });
        }
        // The normal form of the same address; the address as given in the
        // (never expected) case that the normal form would not read back.
        let canonical = canonical_local_part(value);
        if email_address::EmailAddress::from_str(&canonical).is_ok() {
            Ok(Self(canonical))
        } else {
            Ok(Self(value.to_string()))
        }
    }

    /// Checks that mail can actually be sent to this address, beyond its
    /// syntax: the import refuses what the transport cannot carry, so that
    /// an accepted order never fails later for its address alone.
    ///
    /// A domain literal must be an IP address (`user@[192.0.2.1]`,
    /// `user@[IPv6:2001:db8::1]`, RFC 5321 4.1.3); `user@[anything]` is
    /// valid RFC 5322 syntax that no SMTP server accepts.
    pub fn check_deliverable(&self) -> Result<(), FieldError> {
        let refuse = |reason: String| FieldError::Email {
            value: self.0.clone(),
            reason,
        };
        let domain = self.0.rsplit_once('@').map_or("", |(_, d)| d);
        if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let ip_ok = match literal.strip_prefix("IPv6:") {
                Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
                None => literal.parse::<std::net::Ipv4Addr>().is_ok(),
            };
            if !ip_ok {
                return Err(refuse(format!(
                    "the domain literal '{domain}' is not an IP address \
                     (expected a domain name, [192.0.2.1] or [IPv6:2001:db8::1])"
                )));
            }
        }
        lettre::Address::from_str(&self.0)
            .map(|_| ())
            .map_err(|e| refuse(format!("mail cannot be sent to it ({e})")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Writes a quoted local part in its normal form (RFC 5321 4.1.2): without
/// quotes when it does not need them (`"ann"@x` is `ann@x`), otherwise quoted
/// with only `"` and `\` escaped. Both spellings name the same mailbox; the
/// normal form is what a server reports, so the send log and the server agree.
fn canonical_local_part(address: &str) -> String {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return address.to_string();
    };
    let Some(inner) = local
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .filter(|_| local.len() >= 2)
    else {
        return address.to_string();
    };
    let mut text = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.extend(chars.next()),
            c => text.push(c),
        }
    }
    let atext =
        |c: char| c.is_ascii_alphanumeric() || !c.is_ascii() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom = !text.is_empty()
        && text
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext));
    if dot_atom {
        return format!("{text}@{domain}");
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    format!("{quoted}@{domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_accepts_idn_and_quoted_local_parts() {
        assert!(BuyerEmail::parse("anna@bücher.example").is_ok());
        assert!(BuyerEmail::parse("\"anna maria\"@example.com").is_ok());
        assert!(BuyerEmail::parse("not-an-address").is_err());
        assert!(BuyerEmail::parse("Ann <ann@example.com>").is_err());
        assert!(matches!(
            BuyerEmail::parse("a@example.com\r\nBcc: x@y.z"),
            Err(FieldError::LineBreak { .. })
        ));
    }

    #[test]
    fn quoted_local_parts_and_ip_literals_are_deliverable() {
        for address in [
            "\"john doe\"@example.com",
            "\"a@b\"@example.com",
            "\"very.(),:;<>[]\\\".unusual\"@example.com",
            "user@[127.0.0.1]",
            "user@[IPv6:2001:db8::1]",
            "用户@例子.广告",
        ] {
            let email = BuyerEmail::parse(address).unwrap_or_else(|e| panic!("{address}: {e}"));
            email
                .check_deliverable()
                .unwrap_or_else(|e| panic!("{address}: {e}"));
        }
    }

    #[test]
    fn a_quoted_local_part_is_kept_in_its_normal_form() {
        let parse = |a: &str| BuyerEmail::parse(a).unwrap().as_str().to_string();
        assert_eq!(parse("\"quoted\"@example.com"), "quoted@example.com");
        assert_eq!(parse("\"a.b+c\"@example.com"), "a.b+c@example.com");
        assert_eq!(parse("\"\\a\"@example.com"), "a@example.com");
        assert_eq!(
            parse("\"john doe\"@example.com"),
            "\"john doe\"@example.com"
        );
        assert_eq!(parse("\"a@b\"@example.com"), "\"a@b\"@example.com");
        assert_eq!(parse("\"a..b\"@example.com"), "\"a..b\"@example.com");
        assert_eq!(
            parse("\"very.(),:;<>[]\\\".unusual\"@example.com"),
            "\"very.(),:;<>[]\\\".unusual\"@example.com"
        );
        // Read back from the database, the normal form stays as it is.
        let once = parse("\"x\\\\y\"@example.com");
        assert_eq!(once, "\"x\\\\y\"@example.com");
        assert_eq!(parse(&once), once);
    }

    #[test]
    fn a_domain_literal_must_be_an_ip_address() {
        for address in ["user@[mail.example]", "user@[999.1.1.1]", "user@[::1]"] {
            let email = BuyerEmail::parse(address).unwrap_or_else(|e| panic!("{address}: {e}"));
            let err = email.check_deliverable().unwrap_err();
            assert!(
                err.to_string().contains("is not an IP address"),
                "{address}: {err}"
            );
        }
    }

    #[test]
    fn a_display_name_is_refused_even_around_a_quoted_local_part() {
        assert!(BuyerEmail::parse("Ann <\"a b\"@example.com>").is_err());
        assert!(BuyerEmail::parse("<ann@example.com>").is_err());
    }
}
