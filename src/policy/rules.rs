//! The rules: their ids, what each checks and why it exists
//! (`followupd lint --explain RULE`).

use std::fmt;

/// The rules a profile can apply, the word lint included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleId {
    ForbiddenWord,
    Incentive,
    Link,
    Image,
    Attachment,
    Contact,
    Emoji,
    OrderId,
    StageTiming,
}

impl RuleId {
    /// The id diagnostics print and config names (`order-id`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ForbiddenWord => "forbidden-word",
            Self::Incentive => "incentive",
            Self::Link => "link",
            Self::Image => "image",
            Self::Attachment => "attachment",
            Self::Contact => "contact",
            Self::Emoji => "emoji",
            Self::OrderId => "order-id",
            Self::StageTiming => "stage-timing",
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's identity and the reason it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub id: RuleId,
    pub summary: &'static str,
    pub why: &'static str,
}

/// Every rule a profile can apply, the word lint included.
pub const RULES: &[Rule] = &[
    Rule {
        id: RuleId::ForbiddenWord,
        summary: "A word from the forbidden list (review, update, change, modify and their forms, in the buyer's language).",
        why: "Marketplaces read these words as pressure to post or alter a review and penalise the seller's account.",
    },
    Rule {
        id: RuleId::Incentive,
        summary: "Asking for positive ratings or offering anything in return for feedback (\"5 stars\", \"positive feedback\", \"free … in exchange\", \"refund … for your feedback\").",
        why: "Amazon forbids asking for positive reviews and offering compensation, refunds, discounts or gifts for feedback; one such message can suspend a seller.",
    },
    Rule {
        id: RuleId::Link,
        summary: "A link to a domain other than those the order needs (its own order, tracking and feedback links, plus configured allowed domains).",
        why: "Amazon allows only links needed to complete the order or required by law; marketing links are prohibited.",
    },
    Rule {
        id: RuleId::Image,
        summary: "An image in the HTML body, including 1x1 tracking pixels.",
        why: "Amazon forbids images other than the seller's logo and forbids tracking pixels in buyer messages.",
    },
    Rule {
        id: RuleId::Attachment,
        summary: "A MIME attachment.",
        why: "Amazon allows attachments only for things like invoices or manuals the buyer asked for; automated sequences must not attach files.",
    },
    Rule {
        id: RuleId::Contact,
        summary: "An email address or phone number in the message text.",
        why: "Amazon forbids directing buyers to contact the seller outside its messaging service.",
    },
    Rule {
        id: RuleId::Emoji,
        summary: "An emoji or pictographic character.",
        why: "Amazon's buyer-messaging guidelines prohibit emoji.",
    },
    Rule {
        id: RuleId::OrderId,
        summary: "The message does not mention the order id.",
        why: "Amazon requires every proactive message to be tied to a specific order, and the buyer needs the id to find it.",
    },
    Rule {
        id: RuleId::StageTiming,
        summary: "A shipment or follow-up stage, or a feedback request outside 5-30 days after delivery (checked when config loads).",
        why: "Amazon forbids proactive order/shipping confirmations and thank-you-only messages, and allows one feedback request per order between 5 and 30 days after delivery.",
    },
];

/// Looks a rule up by id.
pub fn explain(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id.as_str() == id)
}
