//! What `followupd plan` shows: every stage of every order, its window,
//! and what the scheduler would do with it now.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Engine, EngineError};
use crate::config::Config;
use crate::order::Order;
use crate::render::Templates;
use crate::schedule::{self, Decision, StageSpec, StageState, Window};
use crate::store::StageRow;
use crate::suppress::{Address, Suppression};

/// One line of `followupd plan`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanLine {
    pub order_id: String,
    pub marketplace: String,
    pub stage: String,
    /// The stored state, or what the scheduler would do now: `due`,
    /// `will_skip`, `will_expire`.
    pub state: String,
    pub window: Option<Window>,
    pub next_send: Option<DateTime<Utc>>,
    pub reason: String,
    /// The language whose templates the stage uses.
    pub locale: String,
    /// The buyer's zone the window and sending hours are reckoned in.
    pub time_zone: String,
    /// Where it came from: the order, its shipping address, or `[defaults]`.
    pub time_zone_source: crate::order::ZoneSource,
}

impl Engine {
    /// What every stage of every order would do at `now`, in key order,
    /// until `emit` returns false.
    pub async fn plan(
        &self,
        now: DateTime<Utc>,
        only_order: Option<&str>,
        mut emit: impl FnMut(PlanLine) -> bool,
    ) -> Result<(), EngineError> {
        let config = Arc::clone(&self.config);
        let templates = Arc::clone(&self.templates);
        // The whole list at once: one read, not one for each order.
        let suppressed: HashMap<Address, Suppression> = self
            .store
            .suppressions()
            .await?
            .into_iter()
            .map(|s| (s.address.clone(), s))
            .collect();
        self.store
            .for_each_order(|order, rows| {
                if only_order.is_some_and(|id| id != order.key.order_id.as_str()) {
                    return true;
                }
                let suppression = Address::parse(order.buyer_email.as_str())
                    .ok()
                    .and_then(|a| suppressed.get(&a));
                plan_order(&config, &templates, &order, &rows, suppression, now)
                    .into_iter()
                    .all(&mut emit)
            })
            .await?;
        Ok(())
    }
}

/// The plan lines of one order, with prerequisites resolved in stage order.
pub fn plan_order(
    config: &Config,
    templates: &Templates,
    order: &Order,
    rows: &[StageRow],
    suppression: Option<&Suppression>,
    now: DateTime<Utc>,
) -> Vec<PlanLine> {
    let mut lines = Vec::new();
    let mut states: HashMap<&str, StageState> = HashMap::new();
    for spec in &config.stages {
        let Some(row) = rows.iter().find(|r| r.stage == spec.name) else {
            continue;
        };
        states.insert(&spec.name, row.state);
        let window = schedule::window(order, spec, &config.rules);
        let mut line = PlanLine {
            order_id: order.key.order_id.to_string(),
            marketplace: order.key.marketplace.to_string(),
            stage: spec.name.clone(),
            state: row.state.to_string(),
            window,
            next_send: None,
            reason: row.reason.clone().unwrap_or_default(),
            locale: templates
                .select(&spec.name, order.locale.as_ref().map(|l| l.as_str()))
                .map(|(_, locale)| locale)
                .unwrap_or_default(),
            time_zone: order.zone_or(config.rules.default_zone).name().to_string(),
            time_zone_source: order.time_zone_source,
        };
        if matches!(row.state, StageState::Scheduled | StageState::Retrying) {
            let evaluation = evaluate_stage(
                config,
                order,
                spec,
                row,
                |a| states.get(a).copied(),
                suppression,
                now,
            );
            match evaluation.decision {
                Decision::Due => {
                    line.state = "due".into();
                    line.next_send = Some(now);
                    line.reason = "due now".into();
                }
                Decision::Wait { until, reason } => {
                    line.next_send = match reason {
                        schedule::WaitReason::NotOpenYet
                        | schedule::WaitReason::OutsideSendingHours
                        | schedule::WaitReason::Retry => until,
                        _ => None,
                    };
                    line.reason = reason.to_string();
                }
                Decision::Skip(reason) => {
                    line.state = "will_skip".into();
                    line.reason = reason.to_string();
                }
                Decision::Expire => {
                    line.state = "will_expire".into();
                    line.reason = "window closed".into();
                }
            }
        }
        if window.is_some_and(|w| w.anchor == schedule::AnchorUsed::EstimatedDelivery) {
            line.reason
                .push_str(" (delivery date estimated from shipped_at)");
        }
        lines.push(line);
    }
    lines
}

/// The scheduler's decision for one open stage, with the marketplace's
/// policy applied: a stage the policy disables is skipped, and a
/// prerequisite it disables does not hold a stage back (under the amazon
/// profile the feedback request goes without a follow-up).
pub(super) fn evaluate_stage(
    config: &Config,
    order: &Order,
    spec: &StageSpec,
    row: &StageRow,
    state_of: impl Fn(&str) -> Option<StageState>,
    suppression: Option<&Suppression>,
    now: DateTime<Utc>,
) -> schedule::Evaluation {
    let sender = config.sender_for(order.key.marketplace.as_str());
    let prerequisite = spec
        .after
        .as_deref()
        .filter(|after| !sender.disabled_stages.contains(*after))
        .and_then(state_of);
    let mut evaluation =
        schedule::evaluate(order, spec, prerequisite, row.retry_at, &config.rules, now);
    if sender.disabled_stages.contains(&spec.name) {
        evaluation.decision = Decision::Skip(schedule::SkipReason::Policy(
            sender.policy.profile.as_str().to_string(),
        ));
    }
    // Said even where another rule would skip the stage too: it is what
    // the seller needs to know about this buyer.
    if let Some(reason) = crate::suppress::stops(suppression, spec.transactional) {
        evaluation.decision = Decision::Skip(schedule::SkipReason::Suppressed(reason));
    }
    evaluation
}
