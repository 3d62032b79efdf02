//! The `Name: value` field blocks that delivery status notifications
//! (RFC 3464 section 2) and feedback reports (RFC 5965 section 3) are made
//! of. MIME is mail-parser's job; this is the plain-text format inside one
//! part: groups separated by blank lines, lines folded by leading white
//! space, names compared without regard to case.

/// One group of fields, in the order written.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Group(Vec<(String, String)>);

impl Group {
    /// The first value of `name`, trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The groups of `text`. Lines that are neither a field nor a continuation
/// (some MTAs write prose into the report) are passed over.
pub fn groups(text: &str) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut current = Group::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !current.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.0.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(char::is_whitespace) {
                current.0.push((name.to_string(), value.trim().to_string()));
            }
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// The address in a typed address field (`rfc822; <ann@example.com>`),
/// without its type and brackets.
pub fn typed_address(value: &str) -> &str {
    let address = match value.split_once(';') {
        Some((_, address)) => address,
        None => value,
    };
    let address = address.trim();
    address
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(address)
        .trim()
}

/// An enhanced status code (RFC 3463): `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl StatusCode {
    /// The first code in `text`, e.g. `5.1.1` in `5.1.1 (user unknown)` or
    /// in `550 5.1.1 <ann@example.com>: Recipient address rejected`.
    pub fn find(text: &str) -> Option<Self> {
        text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .find_map(Self::parse)
    }

    fn parse(token: &str) -> Option<Self> {
        let mut parts = token.split('.');
        let class = parts.next()?.parse::<u8>().ok()?;
        let subject = parts.next()?.parse::<u16>().ok()?;
        let detail = parts.next()?.parse::<u16>().ok()?;
        (parts.next().is_none() && matches!(class, 2 | 4 | 5) && subject < 1000 && detail < 1000)
            .then_some(Self {
                class,
                subject,
                detail,
            })
    }
}

impl std::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// The SMTP reply code at the start of a diagnostic (`550 5.1.1 …`, or
/// `550-5.1.1 …` from a multi-line reply).
pub fn smtp_code(diagnostic: &str) -> Option<u16> {
    let digits: String = diagnostic.trim_start().chars().take(3).collect();
    let rest = diagnostic.trim_start().chars().nth(3);
    let code = digits.parse::<u16>().ok()?;
    ((200..600).contains(&code) && rest.is_none_or(|c| c == ' ' || c == '-')).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_split_by_blank_lines_and_unfolded() {
        let g = groups(
            "Reporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; a@b.example\r\n\
             Diagnostic-Code: smtp; 550 no\r\n  such user\r\n   \r\nfinal-recipient: rfc822;c@d\n",
        );
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].get("reporting-mta"), Some("dns; mx.example"));
        assert_eq!(g[1].get("Diagnostic-Code"), Some("smtp; 550 no such user"));
        assert_eq!(typed_address(g[2].get("Final-Recipient").unwrap()), "c@d");
    }

    #[test]
    fn status_codes_are_found_in_prose() {
        let code = |s| StatusCode::find(s).map(|c| c.to_string());
        assert_eq!(code("5.0.0 (permanent failure)").as_deref(), Some("5.0.0"));
        assert_eq!(code("550 5.1.1 <a@b>: rejected").as_deref(), Some("5.1.1"));
        assert_eq!(code("4.4.7").as_deref(), Some("4.4.7"));
        assert_eq!(code("at 192.0.2.1 5.7.1").as_deref(), Some("5.7.1"));
        assert_eq!(code("version 1.2.3"), None);
        assert_eq!(smtp_code("550-5.1.1 The email account"), Some(550));
        assert_eq!(smtp_code(" 421 try later"), Some(421));
        assert_eq!(smtp_code("5501 nope"), None);
        assert_eq!(smtp_code("delivery temporarily suspended"), None);
    }
}
