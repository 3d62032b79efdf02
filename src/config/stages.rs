//! `[[stages]]`: the message sequence, with the default three stages.

use serde::Deserialize;

use super::build::Builder;
use super::ConfigError;
use crate::schedule::{Anchor, OnUnknown, SkipCondition, StageSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    pub(super) name: String,
    pub(super) anchor: Anchor,
    pub(super) opens_after: String,
    pub(super) closes_after: String,
    #[serde(default)]
    pub(super) after: Option<String>,
    #[serde(default)]
    pub(super) skip_when: Vec<SkipCondition>,
    #[serde(default)]
    pub(super) on_unknown: OnUnknown,
    /// Sent even to an address on the suppression list.
    #[serde(default)]
    pub(super) transactional: bool,
}

pub(super) fn default_stages() -> Vec<RawStage> {
    use SkipCondition::*;
    let unhappy = vec![Returned, Refunded, Cancelled, Complaint, OptedOut];
    // A partial refund leaves the buyer the rest of the order: the
    // follow-up still asks how it arrived, the review request does not go.
    let mut unhappy_or_refunded = unhappy.clone();
    unhappy_or_refunded.insert(2, PartiallyRefunded);
    vec![
        RawStage {
            name: "shipment".into(),
            anchor: Anchor::ShippedAt,
            opens_after: "0s".into(),
            closes_after: "2d".into(),
            after: None,
            // Tracking details help a buyer who complained, so a complaint
            // alone does not hold back the shipment notice.
            skip_when: vec![Returned, Refunded, Cancelled, OptedOut],
            on_unknown: OnUnknown::Hold,
            transactional: false,
        },
        RawStage {
            name: "follow_up".into(),
            anchor: Anchor::DeliveredAt,
            opens_after: "2d".into(),
            closes_after: "5d".into(),
            after: None,
            skip_when: unhappy.clone(),
            on_unknown: OnUnknown::Hold,
            transactional: false,
        },
        RawStage {
            name: "review_request".into(),
            anchor: Anchor::DeliveredAt,
            opens_after: "7d".into(),
            closes_after: "14d".into(),
            after: Some("follow_up".into()),
            skip_when: unhappy_or_refunded,
            on_unknown: OnUnknown::Hold,
            transactional: false,
        },
    ]
}

impl Builder<'_> {
    pub(super) fn stages(&self, raw: &[RawStage]) -> Result<Vec<StageSpec>, ConfigError> {
        let mut stages: Vec<StageSpec> = Vec::with_capacity(raw.len());
        if raw.is_empty() {
            return Err(self.invalid("stages", "at least one stage is needed"));
        }
        for (i, s) in raw.iter().enumerate() {
            let key = format!("stages[{i}] ({})", s.name);
            let valid_name = !s.name.is_empty()
                && s.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid_name {
                return Err(self.invalid(
                    format!("{key}.name"),
                    "use lower-case letters, digits and _ only (it names a template folder)",
                ));
            }
            if stages.iter().any(|prior| prior.name == s.name) {
                return Err(self.invalid(format!("{key}.name"), "appears twice"));
            }
            let opens_after = self.duration(&format!("{key}.opens_after"), &s.opens_after)?;
            let closes_after = self.duration(&format!("{key}.closes_after"), &s.closes_after)?;
            if closes_after <= opens_after {
                return Err(self.invalid(
                    format!("{key}.closes_after"),
                    format!(
                        "the window closes ({}) before it opens ({})",
                        s.closes_after, s.opens_after
                    ),
                ));
            }
            if let Some(after) = &s.after {
                if !stages.iter().any(|prior| &prior.name == after) {
                    let message = if raw.iter().any(|other| &other.name == after) {
                        format!(
                            "stage '{after}' comes later; a stage can only wait for an earlier one"
                        )
                    } else {
                        format!("there is no stage named '{after}'")
                    };
                    return Err(self.invalid(format!("{key}.after"), message));
                }
            }
            stages.push(StageSpec {
                name: s.name.clone(),
                anchor: s.anchor,
                opens_after,
                closes_after,
                after: s.after.clone(),
                skip_when: s.skip_when.clone(),
                on_unknown: s.on_unknown,
                transactional: s.transactional,
            });
        }
        Ok(stages)
    }
}
