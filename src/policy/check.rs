//! A rendered message checked against a policy: the violations found, and
//! where.

use std::fmt;

use super::contact::{contacts, is_emoji};
use super::incentive::incentives;
use super::links::{domain, is_allowed, markup, urls};
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

/// Checks a rendered message against the policy. Time is linear in the
/// message: every scanner is one pass, and positions are found walking
/// forward.
pub fn check(policy: &Policy, message: &MessageParts<'_>) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut prose: Vec<(Part, &str)> =
        vec![(Part::Subject, message.subject), (Part::Text, message.text)];
    if let Some(visible) = message.html_text {
        prose.push((Part::Html, visible));
    }
    let markup = message.html.map(markup);
    if policy.applies(RuleId::Incentive) {
        for (part, text) in &prose {
            place(
                &mut found,
                RuleId::Incentive,
                *part,
                text,
                incentives(policy, text),
            );
        }
    }
    if policy.applies(RuleId::Contact) {
        for (part, text) in &prose {
            place(
                &mut found,
                RuleId::Contact,
                *part,
                text,
                contacts(text, message.order_id),
            );
        }
        if let (Some(html), Some(markup)) = (message.html, &markup) {
            place(
                &mut found,
                RuleId::Contact,
                Part::Html,
                html,
                markup.mail_addresses.clone(),
            );
        }
    }
    if policy.applies(RuleId::Emoji) {
        for (part, text) in &prose {
            let emoji = text
                .char_indices()
                .filter(|(_, c)| is_emoji(*c))
                .map(|(at, c)| (at, c.to_string()))
                .collect();
            place(&mut found, RuleId::Emoji, *part, text, emoji);
        }
    }
    if policy.applies(RuleId::Link) {
        let allowed: Vec<String> = message
            .order_links
            .iter()
            .filter_map(|l| domain(l))
            .chain(policy.allowed_domains.iter().filter_map(|d| domain(d)))
            .collect();
        let foreign = |links: Vec<(usize, String)>| -> Vec<(usize, String)> {
            links
                .into_iter()
                .filter(|(_, url)| !domain(url).is_some_and(|d| is_allowed(&d, &allowed)))
                .collect()
        };
        for (part, text) in [(Part::Subject, message.subject), (Part::Text, message.text)] {
            place(&mut found, RuleId::Link, part, text, foreign(urls(text)));
        }
        if let (Some(html), Some(markup)) = (message.html, &markup) {
            place(
                &mut found,
                RuleId::Link,
                Part::Html,
                html,
                foreign(markup.links.clone()),
            );
        }
    }
    if policy.applies(RuleId::Image) {
        if let (Some(html), Some(markup)) = (message.html, &markup) {
            place(
                &mut found,
                RuleId::Image,
                Part::Html,
                html,
                markup.images.clone(),
            );
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

/// Adds one violation of `rule` for each (byte offset, text found) in `text`.
fn place(
    found: &mut Vec<Violation>,
    rule: RuleId,
    part: Part,
    text: &str,
    items: Vec<(usize, String)>,
) {
    let mut locator = Locator::new(text);
    for (at, what) in items {
        let (line, column) = locator.at(at);
        found.push(violation(rule, part, line, column, what));
    }
}

/// Line and column of byte offsets, walking forward from the last one asked
/// (back to the start only when asked for an earlier one), so offsets asked
/// in order cost time linear in the text.
struct Locator<'t> {
    text: &'t str,
    byte: usize,
    line: usize,
    column: usize,
}

impl<'t> Locator<'t> {
    fn new(text: &'t str) -> Self {
        Self {
            text,
            byte: 0,
            line: 1,
            column: 1,
        }
    }

    fn at(&mut self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        if offset < self.byte {
            (self.byte, self.line, self.column) = (0, 1, 1);
        }
        for c in self.text[self.byte..offset].chars() {
            if c == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
        self.byte = offset;
        (self.line, self.column)
    }
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

/// Line and column (1-based, in characters) of a byte offset.
pub(crate) fn locate(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}
