//! Marketplace policy profiles: what a marketplace forbids beyond words.
//!
//! A marketplace can name a profile (`policy = "amazon"`). The `amazon`
//! profile follows Amazon's published rules for messages sent through its
//! buyer-messaging service: no asking for positive ratings or paying for
//! them, no links except those the order needs, no images or tracking
//! pixels, no attachments, no email addresses or phone numbers, no emoji,
//! the order id in every message, no proactive shipping or thank-you
//! messages, and one feedback request per order between 5 and 30 days after
//! delivery. The `none` profile, for a seller's own shop, adds nothing to the
//! word list. Every rule has an id that diagnostics name, that config can
//! switch off, and that `followupd lint --explain RULE` describes.
//!
//! Like the word lint this is pure text inspection: no I/O.

use std::collections::BTreeSet;
use std::fmt;

use chrono::Duration;

use crate::lint::Part;
use crate::schedule::{Anchor, StageSpec};

/// A rule's identity and the reason it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub id: &'static str,
    pub summary: &'static str,
    pub why: &'static str,
}

/// Every rule a profile can apply, the word lint included.
pub const RULES: &[Rule] = &[
    Rule {
        id: "forbidden-word",
        summary: "A word from the forbidden list (review, update, change, modify and their forms, in the buyer's language).",
        why: "Marketplaces read these words as pressure to post or alter a review and penalise the seller's account.",
    },
    Rule {
        id: "incentive",
        summary: "Asking for positive ratings or offering anything in return for feedback (\"5 stars\", \"positive feedback\", \"free … in exchange\", \"refund … for your feedback\").",
        why: "Amazon forbids asking for positive reviews and offering compensation, refunds, discounts or gifts for feedback; one such message can suspend a seller.",
    },
    Rule {
        id: "link",
        summary: "A link to a domain other than those the order needs (its own order, tracking and feedback links, plus configured allowed domains).",
        why: "Amazon allows only links needed to complete the order or required by law; marketing links are prohibited.",
    },
    Rule {
        id: "image",
        summary: "An image in the HTML body, including 1x1 tracking pixels.",
        why: "Amazon forbids images other than the seller's logo and forbids tracking pixels in buyer messages.",
    },
    Rule {
        id: "attachment",
        summary: "A MIME attachment.",
        why: "Amazon allows attachments only for things like invoices or manuals the buyer asked for; automated sequences must not attach files.",
    },
    Rule {
        id: "contact",
        summary: "An email address or phone number in the message text.",
        why: "Amazon forbids directing buyers to contact the seller outside its messaging service.",
    },
    Rule {
        id: "emoji",
        summary: "An emoji or pictographic character.",
        why: "Amazon's buyer-messaging guidelines prohibit emoji.",
    },
    Rule {
        id: "order-id",
        summary: "The message does not mention the order id.",
        why: "Amazon requires every proactive message to be tied to a specific order, and the buyer needs the id to find it.",
    },
    Rule {
        id: "stage-timing",
        summary: "A shipment or follow-up stage, or a feedback request outside 5-30 days after delivery (checked when config loads).",
        why: "Amazon forbids proactive order/shipping confirmations and thank-you-only messages, and allows one feedback request per order between 5 and 30 days after delivery.",
    },
];

/// Looks a rule up by id.
pub fn explain(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// A named set of rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Words only: a seller's own shop.
    None,
    Amazon,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Amazon => "amazon",
        }
    }

    /// The rules this profile applies, besides forbidden words.
    pub fn rules(self) -> &'static [&'static str] {
        match self {
            Self::None => &[],
            Self::Amazon => &[
                "incentive",
                "link",
                "image",
                "attachment",
                "contact",
                "emoji",
                "order-id",
                "stage-timing",
            ],
        }
    }
}

/// The default incentive phrases. `...` stands for up to 80 characters of
/// anything, so `free ... in exchange` catches "a free sample in exchange".
pub const DEFAULT_INCENTIVE_PHRASES: &[&str] = &[
    "5 stars",
    "5-star",
    "five stars",
    "five-star",
    "positive feedback",
    "positive rating",
    "good rating",
    "good feedback",
    "excellent feedback",
    "free ... in exchange",
    "in exchange for your feedback",
    "in exchange for your honest",
    "refund ... for your feedback",
    "discount ... for your feedback",
    "gift card",
    "coupon ... feedback",
];

/// What to do with a stage a profile forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageConflict {
    /// Refuse to load the configuration.
    #[default]
    Refuse,
    /// Skip the stage for that marketplace's orders, with a warning.
    Disable,
}

/// A profile with the seller's adjustments.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub profile: Profile,
    /// Rules switched off in config.
    pub disabled: BTreeSet<String>,
    pub phrases: Vec<String>,
    /// Domains links may point to (subdomains included), besides the
    /// order's own links.
    pub allowed_domains: Vec<String>,
    pub on_stage_conflict: StageConflict,
}

impl Policy {
    /// The profile's defaults, no adjustments.
    pub fn new(profile: Profile) -> Self {
        Self {
            profile,
            disabled: BTreeSet::new(),
            phrases: DEFAULT_INCENTIVE_PHRASES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            allowed_domains: Vec::new(),
            on_stage_conflict: StageConflict::Refuse,
        }
    }

    pub fn applies(&self, rule: &str) -> bool {
        self.profile.rules().contains(&rule) && !self.disabled.contains(rule)
    }

    /// Stages this profile does not allow, with the reason. A stage named
    /// shipment or follow_up is proactive confirmation or thank-you mail; any
    /// stage waiting for another, or named review_request, is a feedback
    /// request and must sit 5-30 days after delivery.
    pub fn stage_problems(&self, stages: &[StageSpec]) -> Vec<(String, String)> {
        if !self.applies("stage-timing") {
            return Vec::new();
        }
        let mut problems = Vec::new();
        for stage in stages {
            if stage.name == "shipment" || stage.name == "follow_up" {
                problems.push((
                    stage.name.clone(),
                    "the amazon policy forbids proactive shipping confirmations and thank-you or check-in messages".to_string(),
                ));
            } else if stage.after.is_some() || stage.name == "review_request" {
                let inside = stage.anchor == Anchor::DeliveredAt
                    && stage.opens_after >= Duration::days(5)
                    && stage.closes_after <= Duration::days(30);
                if !inside {
                    problems.push((
                        stage.name.clone(),
                        "the amazon policy allows a feedback request only 5 to 30 days after delivery (anchor delivered_at, opens_after >= 5d, closes_after <= 30d)".to_string(),
                    ));
                }
            }
        }
        problems
    }
}

/// One policy problem in a rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub part: Part,
    pub line: usize,
    pub column: usize,
    /// What was found, as written.
    pub found: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.rule {
            "incentive" => format!("asks for ratings or rewards feedback: '{}'", self.found),
            "link" => format!("link to a domain the order does not need: {}", self.found),
            "image" => format!("image: {}", self.found),
            "attachment" => "the message has an attachment".to_string(),
            "contact" => format!("contact details: '{}'", self.found),
            "emoji" => format!("emoji '{}'", self.found),
            "order-id" => format!("the order id {} is missing", self.found),
            _ => self.found.clone(),
        };
        write!(
            f,
            "{}:{}:{}: {}: {what}",
            self.part.as_str(),
            self.line,
            self.column,
            self.rule
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
    if policy.applies("incentive") {
        for (part, text) in &prose {
            incentives(policy, *part, text, &mut found);
        }
    }
    if policy.applies("contact") {
        for (part, text) in &prose {
            contacts(*part, text, message.order_id, &mut found);
        }
    }
    if policy.applies("emoji") {
        for (part, text) in &prose {
            for (line, column, c) in positions(text).filter(|(_, _, c)| is_emoji(*c)) {
                found.push(violation("emoji", *part, line, column, c.to_string()));
            }
        }
    }
    if policy.applies("link") {
        let allowed: Vec<String> = message
            .order_links
            .iter()
            .filter_map(|l| domain(l))
            .chain(policy.allowed_domains.iter().filter_map(|d| domain(d)))
            .collect();
        for (part, text) in [(Part::Subject, message.subject), (Part::Text, message.text)] {
            for (line, column, url) in urls(text) {
                if !domain(&url).is_some_and(|d| is_allowed(&d, &allowed)) {
                    found.push(violation("link", part, line, column, url));
                }
            }
        }
        if let Some(html) = message.html {
            for (line, column, url) in attribute_values(html, "href") {
                let linked = url.starts_with("http") || url.starts_with("//");
                if linked && !domain(&url).is_some_and(|d| is_allowed(&d, &allowed)) {
                    found.push(violation("link", Part::Html, line, column, url));
                }
            }
        }
    }
    if policy.applies("image") {
        if let Some(html) = message.html {
            for (line, column, tag) in tags(html, "img") {
                found.push(violation("image", Part::Html, line, column, tag));
            }
        }
    }
    if policy.applies("attachment") {
        let raw = String::from_utf8_lossy(message.raw).to_ascii_lowercase();
        if raw.contains("content-disposition: attachment") {
            found.push(violation("attachment", Part::Text, 1, 1, String::new()));
        }
    }
    if policy.applies("order-id")
        && !message.subject.contains(message.order_id)
        && !message.text.contains(message.order_id)
    {
        found.push(violation(
            "order-id",
            Part::Text,
            1,
            1,
            message.order_id.to_string(),
        ));
    }
    found
}

fn violation(
    rule: &'static str,
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

fn incentives(policy: &Policy, part: Part, text: &str, found: &mut Vec<Violation>) {
    // Lower-casing keeps byte offsets for ASCII phrases; other text is
    // matched on its own lower-cased form and located approximately.
    let lower = text.to_lowercase();
    let same_offsets = lower.len() == text.len();
    for phrase in &policy.phrases {
        let pieces: Vec<String> = phrase
            .to_lowercase()
            .split("...")
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        let Some(first) = pieces.first() else {
            continue;
        };
        let mut from = 0;
        while let Some(start) = lower[from..].find(first.as_str()).map(|i| i + from) {
            let mut end = start + first.len();
            let mut matched = true;
            for piece in &pieces[1..] {
                let window_end = (end + 80 + piece.len()).min(lower.len());
                let window_end = (window_end..=lower.len())
                    .find(|i| lower.is_char_boundary(*i))
                    .unwrap_or(lower.len());
                match lower[end..window_end].find(piece.as_str()) {
                    Some(i) => end = end + i + piece.len(),
                    None => {
                        matched = false;
                        break;
                    }
                }
            }
            if matched {
                let (line, column) = if same_offsets {
                    locate(text, start)
                } else {
                    locate(&lower, start)
                };
                let shown = if same_offsets {
                    &text[start..end]
                } else {
                    &lower[start..end]
                };
                found.push(violation(
                    "incentive",
                    part,
                    line,
                    column,
                    shown.to_string(),
                ));
                break;
            }
            from = start + first.len();
        }
    }
}

/// URLs written in text, with positions.
fn urls(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    for (l, line) in text.lines().enumerate() {
        let mut column = 0;
        for word in line.split(' ') {
            let trimmed = word.trim_start_matches(['(', '<', '[', '"', '\'']);
            let lower = trimmed.to_ascii_lowercase();
            if lower.starts_with("http://")
                || lower.starts_with("https://")
                || lower.starts_with("www.")
            {
                let url =
                    trimmed.trim_end_matches([')', '>', ']', '"', '\'', '.', ',', ';', '!', '?']);
                let offset = word.len() - trimmed.len();
                out.push((l + 1, column + offset + 1, url.to_string()));
            }
            column += word.chars().count() + 1;
        }
    }
    out
}

/// The lower-cased host of a URL, without a leading `www.`.
fn domain(url: &str) -> Option<String> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .or_else(|| url.strip_prefix("//"))
        .unwrap_or(url);
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit('@').next()?.split(':').next()?;
    let host = host.to_ascii_lowercase();
    // www.example.com and example.com are the same site.
    let host = host.strip_prefix("www.").unwrap_or(&host).to_string();
    (!host.is_empty()).then_some(host)
}

fn is_allowed(host: &str, allowed: &[String]) -> bool {
    allowed
        .iter()
        .any(|a| host == a || host.ends_with(&format!(".{a}")))
}

/// Values of an attribute in HTML source, entity-decoded enough for URLs.
fn attribute_values(html: &str, attribute: &str) -> Vec<(usize, usize, String)> {
    let lower = html.to_ascii_lowercase();
    let needle = format!("{attribute}=");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find(&needle).map(|i| i + from) {
        let value_start = i + needle.len();
        let rest = &html[value_start..];
        let (value, _) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let inner = &rest[1..];
                let end = inner.find(q).unwrap_or(inner.len());
                (&inner[..end], end + 2)
            }
            _ => {
                let end = rest.find([' ', '>']).unwrap_or(rest.len());
                (&rest[..end], end)
            }
        };
        let decoded = value
            .replace("&#x2F;", "/")
            .replace("&#47;", "/")
            .replace("&amp;", "&")
            .replace("&#x3A;", ":");
        let (line, column) = locate(html, i);
        out.push((line, column, decoded));
        from = value_start;
    }
    out
}

/// Opening tags named `name`, with positions.
fn tags(html: &str, name: &str) -> Vec<(usize, usize, String)> {
    let lower = html.to_ascii_lowercase();
    let needle = format!("<{name}");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find(&needle).map(|i| i + from) {
        let after = lower[i + needle.len()..].chars().next();
        if after.is_none_or(|c| c.is_whitespace() || c == '>' || c == '/') {
            let end = html[i..].find('>').map(|e| i + e + 1).unwrap_or(html.len());
            let (line, column) = locate(html, i);
            out.push((line, column, html[i..end].to_string()));
        }
        from = i + needle.len();
    }
    out
}

fn contacts(part: Part, text: &str, order_id: &str, found: &mut Vec<Violation>) {
    for (l, line) in text.lines().enumerate() {
        let mut column = 0;
        for word in line.split(' ') {
            let token = word.trim_matches(|c: char| !c.is_alphanumeric() && c != '@' && c != '+');
            let lower = token.to_ascii_lowercase();
            let is_url =
                lower.starts_with("http") || lower.starts_with("www.") || lower.contains("://");
            if !is_url && email_like(token) {
                let offset = word.find(token).unwrap_or(0);
                found.push(violation(
                    "contact",
                    part,
                    l + 1,
                    column + offset + 1,
                    token.to_string(),
                ));
            }
            column += word.chars().count() + 1;
        }
        for (start, number) in phone_numbers(line) {
            if !order_id.contains(number.trim()) && !number.contains(order_id) {
                let col = line[..start].chars().count() + 1;
                found.push(violation("contact", part, l + 1, col, number));
            }
        }
    }
}

fn email_like(token: &str) -> bool {
    let Some((local, host)) = token.split_once('@') else {
        return false;
    };
    !local.is_empty() && host.contains('.') && !host.starts_with('.') && !host.ends_with('.')
}

/// Runs that look like phone numbers: digits with spaces, dashes, dots or
/// parentheses between them, nine digits or more (or a leading + and
/// eight), and not a date.
fn phone_numbers(line: &str) -> Vec<(usize, String)> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = bytes[i].is_ascii_digit()
            || (bytes[i] == b'+' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
            || bytes[i] == b'(';
        let after_word = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'/'
                || bytes[i - 1] == b'-');
        if !(starts && after_word) {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut digits = 0;
        while j < bytes.len() && (bytes[j].is_ascii_digit() || b" -.()+".contains(&bytes[j])) {
            if bytes[j].is_ascii_digit() {
                digits += 1;
            }
            j += 1;
        }
        let run = line[i..j].trim_end_matches([' ', '-', '.', '(']);
        let plus = run.starts_with('+');
        let is_date = run.len() == 10 && run.as_bytes()[4] == b'-' && run.as_bytes()[7] == b'-';
        let glued = j < bytes.len() && bytes[j].is_ascii_alphabetic();
        if (digits >= 9 || (plus && digits >= 8)) && !is_date && !glued {
            out.push((i, run.to_string()));
        }
        i = j.max(i + 1);
    }
    out
}

/// Pictographs and emoji (not ordinary symbols like © or ™).
fn is_emoji(c: char) -> bool {
    matches!(
        c as u32,
        // Pictographs, emoticons, transport, supplemental symbols; the
        // miscellaneous symbols and dingbats blocks; star and circle; the
        // emoji presentation selector.
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B50 | 0x2B55 | 0xFE0F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amazon() -> Policy {
        Policy::new(Profile::Amazon)
    }

    fn message<'a>(text: &'a str, html: Option<&'a str>, links: &'a [&'a str]) -> MessageParts<'a> {
        MessageParts {
            subject: "Order 111-222 is on its way",
            text,
            html,
            html_text: None,
            raw: b"",
            order_id: "111-222",
            order_links: links,
        }
    }

    fn rules(found: &[Violation]) -> Vec<&'static str> {
        found.iter().map(|v| v.rule).collect()
    }

    #[test]
    fn incentives_are_caught_with_gaps() {
        let p = amazon();
        for text in [
            "Please leave us 5 stars!",
            "A FREE sample cup in exchange for a few words",
            "We will refund part of the price for your feedback",
            "Positive feedback helps us",
        ] {
            assert_eq!(
                rules(&check(&p, &message(text, None, &[]))),
                ["incentive"],
                "{text}"
            );
        }
        assert!(check(&p, &message("Free shipping on order 111-222.", None, &[])).is_empty());
    }

    #[test]
    fn links_must_belong_to_the_order_or_the_allow_list() {
        let mut p = amazon();
        let links = ["https://www.amazon.com/gp/your-orders/111-222"];
        let text =
            "See https://amazon.com/x and https://track.example/1 and https://spam.example/deal.";
        let found = check(&p, &message(text, None, &links));
        assert_eq!(rules(&found), ["link", "link"]);
        assert_eq!(found[1].found, "https://spam.example/deal");
        p.allowed_domains.push("track.example".into());
        assert_eq!(rules(&check(&p, &message(text, None, &links))), ["link"]);
        let html = r#"<a href="https:&#x2F;&#x2F;spam.example&#x2F;x">deal</a><img src="https://px.example/p.gif">"#;
        assert_eq!(
            rules(&check(&p, &message("order 111-222", Some(html), &links))),
            ["link", "image"]
        );
    }

    #[test]
    fn contact_details_emoji_and_order_id() {
        let p = amazon();
        let found = check(
            &p,
            &message(
                "Write to care@shop.example or call +49 30 1234567 😀",
                None,
                &[],
            ),
        );
        assert_eq!(rules(&found), ["contact", "contact", "emoji"]);
        // Dates, the order id and prices are not phone numbers.
        assert!(check(
            &p,
            &message("Shipped 2026-12-03, order 111-222, 1,299.00 EUR", None, &[])
        )
        .is_empty());
        let mut no_id = message("Hello", None, &[]);
        no_id.subject = "Hello";
        assert_eq!(rules(&check(&p, &no_id)), ["order-id"]);
    }

    #[test]
    fn rules_can_be_switched_off_and_none_checks_nothing() {
        let mut p = amazon();
        p.disabled.insert("emoji".into());
        assert!(check(&p, &message("Thanks 😀 for order 111-222", None, &[])).is_empty());
        let none = Policy::new(Profile::None);
        assert!(check(&none, &message("5 stars 😀 care@x.example", None, &[])).is_empty());
    }

    #[test]
    fn amazon_stage_rules() {
        let stage = |name: &str, after: Option<&str>, opens: i64, closes: i64| StageSpec {
            name: name.into(),
            anchor: Anchor::DeliveredAt,
            opens_after: Duration::days(opens),
            closes_after: Duration::days(closes),
            after: after.map(String::from),
            skip_when: vec![],
            on_unknown: Default::default(),
            transactional: false,
        };
        let p = amazon();
        let problems = p.stage_problems(&[
            stage("shipment", None, 0, 2),
            stage("follow_up", None, 2, 5),
            stage("review_request", Some("follow_up"), 7, 14),
        ]);
        let names: Vec<&str> = problems.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["shipment", "follow_up"]);
        assert_eq!(
            p.stage_problems(&[stage("review_request", None, 3, 14)])
                .len(),
            1
        );
        assert_eq!(
            p.stage_problems(&[stage("review_request", None, 5, 31)])
                .len(),
            1
        );
        assert!(explain("stage-timing").is_some());
    }
}
