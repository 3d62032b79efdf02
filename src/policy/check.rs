//! A rendered message checked against a policy: the violations found, and
//! where.

use std::fmt;

use super::contact::{contacts, is_emoji};
use super::incentive::incentives;
use super::links::{attribute_values, domain, is_allowed, tags, urls};
use super::{Policy, RuleId};
use crate::lint::Part;

/// One policy problem in a rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: RuleId,
    pub part: Part,
    pub line: usize,
    pub column: usize,
    /// What was found, as written.
    pub found: String,
}

impl Violation {
    /// The rule and what was found, without the position: `contact: contact
    /// details: '…'`.
    pub fn message(&self) -> String {
        let what = match self.rule {
            RuleId::Incentive => format!("asks for ratings or rewards feedback: '{}'", self.found),
            RuleId::Link => format!("link to a domain the order does not need: {}", self.found),
            RuleId::Image => format!("image: {}", self.found),
            RuleId::Attachment => "the message has an attachment".to_string(),
            RuleId::Contact => format!("contact details: '{}'", self.found),
            RuleId::Emoji => format!("emoji '{}'", self.found),
            RuleId::OrderId => format!("the order id {} is missing", self.found),
            RuleId::ForbiddenWord | RuleId::StageTiming => self.found.clone(),
        };
        format!("{}: {what}", self.rule)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.part.as_str(),
            self.line,
            self.column,
            self.message()
        )
    }
}

/// The parts of a message a policy looks at.
#[derive(Debug, Clone, Copy)]
pub struct MessageParts<'a> {
    pub subject: &'a str,
    pub text: &'a str,
    /// The HTML source, for links and images.
    pub html: Option<&'a str>,
    /// The HTML body's visible text.
    pub html_text: Option<&'a str>,
    /// The complete MIME message, for attachments.
    pub raw: &'a [u8],
    pub order_id: &'a str,
    /// The order's own links, always allowed.
    pub order_links: &'a [&'a str],
}

/// Checks a rendered message against the policy.
pub fn check(policy: &Policy, message: &MessageParts<'_>) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut prose: Vec<(Part, &str)> =
        vec![(Part::Subject, message.subject), (Part::Text, message.text)];
    if let Some(visible) = message.html_text {
        prose.push((Part::Html, visible));
    }
    if policy.applies(RuleId::Incentive) {
        for (part, text) in &prose {
            incentives(policy, *part, text, &mut found);
        }
    }
    if policy.applies(RuleId::Contact) {
        for (part, text) in &prose {
            contacts(*part, text, message.order_id, &mut found);
        }
    }
    if policy.applies(RuleId::Emoji) {
        for (part, text) in &prose {
            for (line, column, c) in positions(text).filter(|(_, _, c)| is_emoji(*c)) {
                found.push(violation(RuleId::Emoji, *part, line, column, c.to_string()));
            }
        }
    }
    if policy.applies(RuleId::Link) {
        let allowed: Vec<String> = message
            .order_links
            .iter()
            .filter_map(|l| domain(l))
            .chain(policy.allowed_domains.iter().filter_map(|d| domain(d)))
            .collect();
        for (part, text) in [(Part::Subject, message.subject), (Part::Text, message.text)] {
            for (line, column, url) in urls(text) {
                if !domain(&url).is_some_and(|d| is_allowed(&d, &allowed)) {
                    found.push(violation(RuleId::Link, part, line, column, url));
                }
            }
        }
        if let Some(html) = message.html {
            for (line, column, url) in attribute_values(html, "href") {
                let linked = url.starts_with("http") || url.starts_with("//");
                if linked && !domain(&url).is_some_and(|d| is_allowed(&d, &allowed)) {
                    found.push(violation(RuleId::Link, Part::Html, line, column, url));
                }
            }
        }
    }
    if policy.applies(RuleId::Image) {
        if let Some(html) = message.html {
            for (line, column, tag) in tags(html, "img") {
                found.push(violation(RuleId::Image, Part::Html, line, column, tag));
            }
        }
    }
    if policy.applies(RuleId::Attachment) {
        let raw = String::from_utf8_lossy(message.raw).to_ascii_lowercase();
        if raw.contains("content-disposition: attachment") {
            found.push(violation(
                RuleId::Attachment,
                Part::Text,
                1,
                1,
                String::new(),
            ));
        }
    }
    if policy.applies(RuleId::OrderId)
        && !message.subject.contains(message.order_id)
        && !message.text.contains(message.order_id)
    {
        found.push(violation(
            RuleId::OrderId,
            Part::Text,
            1,
            1,
            message.order_id.to_string(),
        ));
    }
    found
}

pub(super) fn violation(
    rule: RuleId,
    part: Part,
    line: usize,
    column: usize,
    found: String,
) -> Violation {
    Violation {
        rule,
        part,
        line,
        column,
        found,
    }
}

/// Every character with its 1-based line and column.
fn positions(text: &str) -> impl Iterator<Item = (usize, usize, char)> + '_ {
    text.lines().enumerate().flat_map(|(l, line)| {
        line.chars()
            .enumerate()
            .map(move |(c, ch)| (l + 1, c + 1, ch))
    })
}

/// Line and column (1-based, in characters) of a byte offset.
pub(crate) fn locate(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}
