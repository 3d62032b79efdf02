//! `[sender]`, `[marketplaces.NAME]` and `[policies.PROFILE]`: who a message
//! is from, and the marketplace policy it must follow.

use std::collections::{BTreeMap, BTreeSet};

use lettre::message::Mailbox;
use serde::Deserialize;

use super::build::Builder;
use super::ConfigError;
use crate::policy::{Policy, Profile, StageConflict};
use crate::schedule::StageSpec;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSender {
    pub(super) from: Option<String>,
    pub(super) reply_to: Option<String>,
    pub(super) shop_name: Option<String>,
    pub(super) policy: Option<Profile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPolicy {
    /// Rule ids to switch off.
    pub(super) disable: Vec<String>,
    /// Incentive phrases added to the profile's own.
    pub(super) phrases: Vec<String>,
    pub(super) allowed_domains: Vec<String>,
    pub(super) on_stage_conflict: StageConflict,
}

/// Who a message is from, for one marketplace.
#[derive(Debug, Clone, PartialEq)]
pub struct Sender {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub shop_name: String,
    /// The marketplace's policy profile, with the seller's adjustments.
    pub policy: Policy,
    /// Stages the policy rules out for this marketplace (when configured to
    /// disable rather than refuse).
    pub disabled_stages: BTreeSet<String>,
}

impl Builder<'_> {
    /// `[sender]` and every `[marketplaces.NAME]` (which inherit from it),
    /// each with its policy profile applied.
    pub(super) fn senders(
        &self,
        raw_sender: &RawSender,
        raw_marketplaces: &BTreeMap<String, RawSender>,
        policies: &BTreeMap<String, RawPolicy>,
        stages: &[StageSpec],
        warnings: &mut Vec<String>,
    ) -> Result<(Sender, BTreeMap<String, Sender>), ConfigError> {
        let mut sender = self.sender("sender", raw_sender, None)?;
        if let Some(profile) = raw_sender.policy {
            let adjustments = policies.get(profile.as_str());
            self.apply_policy(
                "sender",
                profile,
                adjustments,
                stages,
                &mut sender,
                warnings,
            )?;
        }
        let mut marketplaces = BTreeMap::new();
        for (name, m) in raw_marketplaces {
            let key = format!("marketplaces.{name}");
            let mut market = self.sender(&key, m, Some(&sender))?;
            if let Some(profile) = m.policy {
                let adjustments = policies.get(profile.as_str());
                self.apply_policy(&key, profile, adjustments, stages, &mut market, warnings)?;
            }
            marketplaces.insert(name.clone(), market);
        }
        for name in policies.keys() {
            if !["amazon", "none"].contains(&name.as_str()) {
                return Err(self.invalid(
                    format!("policies.{name}"),
                    "unknown profile (amazon or none)",
                ));
            }
        }
        Ok((sender, marketplaces))
    }

    fn sender(
        &self,
        key: &str,
        raw: &RawSender,
        fallback: Option<&Sender>,
    ) -> Result<Sender, ConfigError> {
        let from = match (&raw.from, fallback) {
            (Some(f), _) => self.mailbox(&format!("{key}.from"), f)?,
            (None, Some(fb)) => fb.from.clone(),
            (None, None) => return Err(self.invalid(format!("{key}.from"), "is required")),
        };
        let reply_to = match &raw.reply_to {
            Some(r) => Some(self.mailbox(&format!("{key}.reply_to"), r)?),
            None => fallback.and_then(|fb| fb.reply_to.clone()),
        };
        let shop_name = raw
            .shop_name
            .clone()
            .or_else(|| fallback.map(|fb| fb.shop_name.clone()))
            .or_else(|| from.name.clone())
            .unwrap_or_else(|| from.email.domain().to_string());
        Ok(Sender {
            from,
            reply_to,
            shop_name,
            policy: fallback
                .map(|fb| fb.policy.clone())
                .unwrap_or_else(|| Policy::new(Profile::None)),
            disabled_stages: fallback
                .map(|fb| fb.disabled_stages.clone())
                .unwrap_or_default(),
        })
    }

    /// Applies `[policies.PROFILE]` and checks the stages against the
    /// profile: a forbidden stage refuses the config, or is disabled for the
    /// marketplace with a warning when the profile says so.
    fn apply_policy(
        &self,
        key: &str,
        profile: Profile,
        raw: Option<&RawPolicy>,
        stages: &[StageSpec],
        sender: &mut Sender,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let mut policy = Policy::new(profile);
        if let Some(raw) = raw {
            for rule in &raw.disable {
                let Some(known) = crate::policy::explain(rule) else {
                    return Err(self.invalid(
                        format!("policies.{}.disable", profile.as_str()),
                        format!("unknown rule '{rule}' (see followupd lint --explain)"),
                    ));
                };
                policy.disabled.insert(known.id);
            }
            policy.phrases.extend(raw.phrases.iter().cloned());
            policy.allowed_domains = raw.allowed_domains.clone();
            policy.on_stage_conflict = raw.on_stage_conflict;
        }
        for (stage, problem) in policy.stage_problems(stages) {
            match policy.on_stage_conflict {
                StageConflict::Refuse => {
                    return Err(self.invalid(
                        format!("{key}.policy"),
                        format!(
                            "stage '{stage}': {problem} (remove the stage, or set on_stage_conflict = \"disable\" under [policies.{}])",
                            profile.as_str()
                        ),
                    ))
                }
                StageConflict::Disable => {
                    warnings.push(format!(
                        "{}: {key}: stage '{stage}' is disabled for this marketplace: {problem}",
                        self.path.display()
                    ));
                    sender.disabled_stages.insert(stage);
                }
            }
        }
        sender.policy = policy;
        Ok(())
    }
}
