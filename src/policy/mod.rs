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

mod check;
mod contact;
mod incentive;
mod links;
mod rules;

pub(crate) use check::locate;
pub use check::{check, MessageParts, Violation};
pub use incentive::DEFAULT_INCENTIVE_PHRASES;
pub use rules::{explain, Rule, RuleId, RULES};

use std::collections::BTreeSet;

use chrono::Duration;

use crate::schedule::{Anchor, StageSpec};

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
    pub fn rules(self) -> &'static [RuleId] {
        match self {
            Self::None => &[],
            Self::Amazon => &[
                RuleId::Incentive,
                RuleId::Link,
                RuleId::Image,
                RuleId::Attachment,
                RuleId::Contact,
                RuleId::Emoji,
                RuleId::OrderId,
                RuleId::StageTiming,
            ],
        }
    }
}

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
    pub disabled: BTreeSet<RuleId>,
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

    pub fn applies(&self, rule: RuleId) -> bool {
        self.profile.rules().contains(&rule) && !self.disabled.contains(&rule)
    }

    /// Stages this profile does not allow, with the reason. A stage named
    /// shipment or follow_up is proactive confirmation or thank-you mail; any
    /// stage waiting for another, or named review_request, is a feedback
    /// request and must sit 5-30 days after delivery.
    pub fn stage_problems(&self, stages: &[StageSpec]) -> Vec<(String, String)> {
        if !self.applies(RuleId::StageTiming) {
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
        found.iter().map(|v| v.rule.as_str()).collect()
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
    fn images_and_links_are_read_as_a_mail_client_reads_the_markup() {
        let p = amazon();
        for html in [
            r#"<table background="https://px.example/bg.png"><tr><td>order 111-222</td></tr></table>"#,
            r#"<div style="background-image: url('https://px.example/p.gif')">order 111-222</div>"#,
            r#"<style>p { background: URL(https://px.example/p.gif) }</style><p>order 111-222</p>"#,
            r#"<svg><image href="https://px.example/p.png"/></svg><p>order 111-222</p>"#,
            r#"<input type="IMAGE" src="https://px.example/b.png"><p>order 111-222</p>"#,
        ] {
            assert_eq!(
                rules(&check(&p, &message("order 111-222", Some(html), &[]))),
                ["image"],
                "{html}"
            );
        }
        for html in [
            r#"<a href = "https://spam.example/x">deal</a>"#,
            r#"<a href="spam.example/deal">deal</a>"#,
            r#"<a href="//spam.example/deal">deal</a>"#,
        ] {
            assert_eq!(
                rules(&check(&p, &message("order 111-222", Some(html), &[]))),
                ["link"],
                "{html}"
            );
        }
        let mailto = r#"<a href="mailto:care@shop.example?subject=Hi">write</a>"#;
        let found = check(&p, &message("order 111-222", Some(mailto), &[]));
        assert_eq!(rules(&found), ["contact"]);
        assert_eq!(found[0].found, "care@shop.example");
        // Relative links and in-page anchors lead nowhere else.
        let local = r##"<a href="/orders/111-222">order</a> <a href="#top">top</a>"##;
        assert!(check(&p, &message("order 111-222", Some(local), &[])).is_empty());
    }

    #[test]
    fn links_without_a_scheme_after_a_tab_or_in_guillemets() {
        let p = amazon();
        for text in [
            "Order 111-222: shop.example/deal",
            "Order 111-222:\thttps://spam.example/deal",
            "Order 111-222 «https://spam.example/deal»",
            "Order 111-222 (www.spam.example)",
        ] {
            let found = check(&p, &message(text, None, &[]));
            assert_eq!(rules(&found), ["link"], "{text}");
            assert!(found[0].found.contains("example"), "{:?}", found[0]);
        }
        for text in [
            "Order 111-222, sizes S/M/L, e.g. 1.5/2",
            "Order 111-222 and/or later",
        ] {
            assert!(check(&p, &message(text, None, &[])).is_empty(), "{text}");
        }
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
        p.disabled.insert(RuleId::Emoji);
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
