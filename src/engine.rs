//! The work itself: import files, plan stages, and send what is due.
//!
//! An [`Engine`] ties the pure parts (schedule, lint) to the stateful ones
//! (store, templates, transport). Every entry point takes "now" as an
//! argument: the command line passes `--now` or the wall clock, the daemon
//! passes the wall clock, and tests pass whatever day they need.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::import::{self, Format, ImportError, OrderRecord, Rejection};
use crate::lint::Finding;
use crate::message::{self, Outgoing};
use crate::order::{Order, OrderKey};
use crate::render::{self, Rendered, Templates};
use crate::schedule::{self, Decision, StageSpec, StageState, Window};
use crate::store::{NewLogEntry, StageRow, StageUpdate, Store, StoreError};
use crate::transport::{SendError, Transport};

/// Rows written per import transaction: large enough to amortise the commit,
/// small enough that a reader never waits long.
const IMPORT_BATCH: usize = 1_000;

/// Orders looked at per scheduling query.
const CHECK_BATCH: i64 = 500;

/// Sends that fail transiently are retried at most this many times in all.
pub const MAX_ATTEMPTS: i64 = 8;

/// An error that stops a whole command (as opposed to one order).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error("no order '{0}'")]
    NoOrder(String),
    #[error("order '{0}' exists on several marketplaces ({1}); pass --marketplace")]
    AmbiguousOrder(String, String),
    #[error("no stage '{0}' in config")]
    NoStage(String),
}

/// Totals of one import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub imported: u64,
    pub updated: u64,
    pub rejected: Vec<Rejection>,
}

/// Totals of one scheduling pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TickSummary {
    pub sent: u64,
    pub retrying: u64,
    pub failed: u64,
    pub blocked: u64,
    pub skipped: u64,
    pub expired: u64,
    /// Orders that could not be processed at all (reported, not fatal).
    pub errors: u64,
}

impl TickSummary {
    fn count(&mut self, state: StageState) {
        match state {
            StageState::Sent => self.sent += 1,
            StageState::Retrying => self.retrying += 1,
            StageState::Failed => self.failed += 1,
            StageState::Blocked => self.blocked += 1,
            StageState::Skipped => self.skipped += 1,
            StageState::Expired => self.expired += 1,
            _ => {}
        }
    }

    fn add(&mut self, other: &TickSummary) {
        self.sent += other.sent;
        self.retrying += other.retrying;
        self.failed += other.failed;
        self.blocked += other.blocked;
        self.skipped += other.skipped;
        self.expired += other.expired;
        self.errors += other.errors;
    }
}

impl std::fmt::Display for TickSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {}, retrying {}, failed {}, blocked {}, skipped {}, expired {}, errors {}",
            self.sent,
            self.retrying,
            self.failed,
            self.blocked,
            self.skipped,
            self.expired,
            self.errors
        )
    }
}

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
}

/// A message as `preview` shows it.
#[derive(Debug, Clone)]
pub struct Preview {
    pub outgoing: Outgoing,
    pub rendered: Rendered,
    pub findings: Vec<Finding>,
}

/// Configuration, templates, store and transport, ready to work.
pub struct Engine {
    pub config: Arc<Config>,
    pub templates: Arc<Templates>,
    pub store: Store,
    pub transport: Transport,
}

impl Engine {
    /// Loads templates, opens the store and builds the transport.
    pub async fn open(config: Config) -> Result<Self, EngineError> {
        let templates = Templates::load(&config.templates_dir, &config.stages, &config.forbidden)?;
        let store = Store::open(&config.database_url).await?;
        store.ensure_stage_rows(&stage_names(&config)).await?;
        let transport = Transport::new(&config.transport);
        Ok(Self {
            config: Arc::new(config),
            templates: Arc::new(templates),
            store,
            transport,
        })
    }

    /// Imports one file. Bad rows are collected, good rows are written in
    /// batches; only an unreadable file is an error.
    pub async fn import_file(
        &self,
        path: &Path,
        format: Option<Format>,
        mapping: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ImportSummary, EngineError> {
        let rows = import::read_orders(path, format, mapping, &self.config)?;
        let stages = stage_names(&self.config);
        let mut summary = ImportSummary::default();
        let mut batch: Vec<OrderRecord> = Vec::with_capacity(IMPORT_BATCH);
        for row in rows {
            match row? {
                Ok(record) => batch.push(record),
                Err(rejection) => summary.rejected.push(rejection),
            }
            if batch.len() == IMPORT_BATCH {
                let (i, u) = self.store.upsert_orders(&batch, &stages, now).await?;
                summary.imported += i;
                summary.updated += u;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            let (i, u) = self.store.upsert_orders(&batch, &stages, now).await?;
            summary.imported += i;
            summary.updated += u;
        }
        Ok(summary)
    }

    /// Sends everything due at `now` and records every decision.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickSummary, EngineError> {
        let mut summary = TickSummary::default();
        let mut seen: HashSet<OrderKey> = HashSet::new();
        loop {
            let keys = self.store.orders_to_check(now, CHECK_BATCH).await?;
            let fresh: Vec<OrderKey> = keys
                .into_iter()
                .filter(|k| seen.insert(k.clone()))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for key in fresh {
                match self.process_order(&key, now).await {
                    Ok(s) => summary.add(&s),
                    Err(e) => {
                        // One bad order must not stop the others.
                        tracing::error!(order = %key, error = %e, "order could not be processed");
                        summary.errors += 1;
                    }
                }
            }
        }
        Ok(summary)
    }

    /// Evaluates and acts on every open stage of one order.
    pub async fn process_order(
        &self,
        key: &OrderKey,
        now: DateTime<Utc>,
    ) -> Result<TickSummary, EngineError> {
        let mut summary = TickSummary::default();
        let Some((order, rows)) = self.store.load_order(key).await? else {
            return Ok(summary);
        };
        let mut states: HashMap<String, StageState> =
            rows.iter().map(|r| (r.stage.clone(), r.state)).collect();
        for spec in &self.config.stages {
            let Some(row) = rows.iter().find(|r| r.stage == spec.name) else {
                continue;
            };
            if !matches!(row.state, StageState::Scheduled | StageState::Retrying) {
                continue;
            }
            let prerequisite = spec.after.as_ref().and_then(|a| states.get(a).copied());
            let evaluation = schedule::evaluate(
                &order,
                spec,
                prerequisite,
                row.retry_at,
                &self.config.rules,
                now,
            );
            let state = match evaluation.decision {
                Decision::Due => self.deliver(&order, spec, row, now).await?,
                Decision::Wait { until, reason } => {
                    self.set_state(&order.key, row, row.state, until, reason.to_string(), now)
                        .await?
                }
                Decision::Skip(reason) => {
                    self.set_state(
                        &order.key,
                        row,
                        StageState::Skipped,
                        None,
                        reason.to_string(),
                        now,
                    )
                    .await?
                }
                Decision::Expire => {
                    let closed = evaluation
                        .window
                        .map(|w| format!("window closed at {}", w.closes.to_rfc3339()))
                        .unwrap_or_else(|| "window closed".into());
                    self.set_state(&order.key, row, StageState::Expired, None, closed, now)
                        .await?
                }
            };
            if state != row.state {
                tracing::info!(order = %order.key, stage = %spec.name, outcome = %state, "stage updated");
            }
            summary.count(state);
            states.insert(spec.name.clone(), state);
        }
        Ok(summary)
    }

    async fn set_state(
        &self,
        key: &OrderKey,
        row: &StageRow,
        state: StageState,
        next_check_at: Option<DateTime<Utc>>,
        reason: String,
        now: DateTime<Utc>,
    ) -> Result<StageState, EngineError> {
        let update = StageUpdate {
            stage: &row.stage,
            expected: row.state,
            state,
            next_check_at,
            retry_at: row.retry_at,
            attempts: row.attempts,
            reason: Some(reason),
            message_id: None,
        };
        Ok(if self.store.update_stage(key, &update, now).await? {
            state
        } else {
            row.state
        })
    }

    /// Renders, lints and builds one stage's message.
    pub fn compose(
        &self,
        order: &Order,
        stage: &str,
        now: DateTime<Utc>,
    ) -> Result<Preview, ComposeError> {
        let sender = self.config.sender_for(order.key.marketplace.as_str());
        let zone = schedule::buyer_zone(order, &self.config.rules);
        let context = render::context(order, sender, stage, zone);
        let rendered = self.templates.render(stage, &context)?;
        let fields = order.text_fields();
        let findings = self
            .templates
            .lint(stage, &rendered, &self.config.forbidden, &fields)?;
        let outgoing = message::build(order, sender, stage, &rendered, now)?;
        Ok(Preview {
            outgoing,
            rendered,
            findings,
        })
    }

    async fn deliver(
        &self,
        order: &Order,
        spec: &StageSpec,
        row: &StageRow,
        now: DateTime<Utc>,
    ) -> Result<StageState, EngineError> {
        let key = &order.key;
        let attempt = row.attempts + 1;
        let to = order.buyer_email.as_str();
        let log = |status: &'static str| NewLogEntry {
            at: now,
            key,
            stage: &spec.name,
            to,
            message_id: None,
            attempt,
            status,
            smtp_code: None,
            smtp_text: None,
            detail: None,
            duration_ms: None,
            subject: None,
            message_ref: None,
        };
        let preview = match self.compose(order, &spec.name, now) {
            Ok(p) => p,
            Err(e) => {
                // A template or recipient problem: sending again cannot fix
                // it, and nothing was sent.
                let state = match e {
                    ComposeError::Message(_) => StageState::Failed,
                    ComposeError::Render(_) => StageState::Blocked,
                };
                let detail = e.to_string();
                self.store
                    .log(&NewLogEntry {
                        detail: Some(&detail),
                        ..log(state.as_str())
                    })
                    .await?;
                return self.set_state(key, row, state, None, detail, now).await;
            }
        };
        let out = &preview.outgoing;
        let message_ref = self.store.store_message(key, &spec.name, out, now).await?;
        let sent_log = |status: &'static str| NewLogEntry {
            message_id: Some(&out.message_id),
            subject: Some(&out.subject),
            message_ref: Some(message_ref),
            ..log(status)
        };
        if !preview.findings.is_empty() {
            let detail = preview
                .findings
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            tracing::warn!(order = %key, stage = %spec.name, findings = %detail, "message blocked by the lint");
            self.store
                .log(&NewLogEntry {
                    detail: Some(&detail),
                    ..sent_log("blocked")
                })
                .await?;
            return self
                .set_state(key, row, StageState::Blocked, None, detail, now)
                .await;
        }

        // Mark the stage in flight before talking to the transport: if the
        // process dies during the send, the next start sees `sending` and
        // knows the outcome is in doubt.
        let sending = StageUpdate {
            stage: &spec.name,
            expected: row.state,
            state: StageState::Sending,
            next_check_at: None,
            retry_at: row.retry_at,
            attempts: attempt,
            reason: Some("handed to the transport".into()),
            message_id: Some(out.message_id.clone()),
        };
        if !self.store.update_stage(key, &sending, now).await? {
            return Ok(row.state);
        }
        let started = Instant::now();
        let result = self.transport.send(out).await;
        let duration_ms = Some(started.elapsed().as_millis() as i64);
        let finish =
            |state: StageState, retry_at: Option<DateTime<Utc>>, reason: String| StageUpdate {
                stage: &spec.name,
                expected: StageState::Sending,
                state,
                next_check_at: retry_at,
                retry_at,
                attempts: attempt,
                reason: Some(reason),
                message_id: None,
            };
        let (update, entry) = match &result {
            Ok(receipt) => (
                finish(
                    StageState::Sent,
                    None,
                    format!("sent at {}", now.to_rfc3339()),
                ),
                NewLogEntry {
                    smtp_code: receipt.code,
                    smtp_text: Some(&receipt.text),
                    duration_ms,
                    ..sent_log("sent")
                },
            ),
            Err(SendError::Transient { code, text }) if attempt < MAX_ATTEMPTS => {
                let retry_at = now + backoff(attempt);
                (
                    finish(
                        StageState::Retrying,
                        Some(retry_at),
                        format!("attempt {attempt} failed: {text}"),
                    ),
                    NewLogEntry {
                        smtp_code: *code,
                        smtp_text: Some(text),
                        duration_ms,
                        ..sent_log("retrying")
                    },
                )
            }
            Err(e) => (
                finish(StageState::Failed, None, e.to_string()),
                NewLogEntry {
                    smtp_code: e.code(),
                    smtp_text: Some(e.text()),
                    duration_ms,
                    ..sent_log("failed")
                },
            ),
        };
        self.store.log(&entry).await?;
        self.store.update_stage(key, &update, now).await?;
        Ok(update.state)
    }

    /// What every stage of every order would do at `now`, in key order.
    pub async fn plan(
        &self,
        now: DateTime<Utc>,
        only_order: Option<&str>,
        mut emit: impl FnMut(PlanLine),
    ) -> Result<(), EngineError> {
        let config = Arc::clone(&self.config);
        self.store
            .for_each_order(|order, rows| {
                if only_order.is_some_and(|id| id != order.key.order_id.as_str()) {
                    return;
                }
                for line in plan_order(&config, &order, &rows, now) {
                    emit(line);
                }
            })
            .await?;
        Ok(())
    }

    /// Finds an order by id, asking for the marketplace only when needed.
    pub async fn find_order(
        &self,
        order_id: &str,
        marketplace: Option<&str>,
    ) -> Result<(Order, Vec<StageRow>), EngineError> {
        let keys = self.store.find_order_keys(order_id).await?;
        let keys: Vec<OrderKey> = keys
            .into_iter()
            .filter(|k| marketplace.is_none_or(|m| k.marketplace.as_str() == m))
            .collect();
        let key = match keys.as_slice() {
            [] => return Err(EngineError::NoOrder(order_id.to_string())),
            [key] => key,
            many => {
                let names: Vec<&str> = many.iter().map(|k| k.marketplace.as_str()).collect();
                return Err(EngineError::AmbiguousOrder(
                    order_id.to_string(),
                    names.join(", "),
                ));
            }
        };
        self.store
            .load_order(key)
            .await?
            .ok_or_else(|| EngineError::NoOrder(order_id.to_string()))
    }
}

/// Why a message could not be composed.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error(transparent)]
    Message(#[from] message::MessageError),
}

/// Waiting time before attempt `attempt + 1`: doubling from one minute up to
/// six hours, with up to 20% random jitter so that retries after an outage
/// do not arrive at the server all at once.
pub fn backoff(attempt: i64) -> Duration {
    let exponent = (attempt - 1).clamp(0, 20) as u32;
    let base = Duration::minutes(1) * 2i32.saturating_pow(exponent);
    let capped = base.min(Duration::hours(6));
    let jitter_ms = (capped.num_milliseconds() as f64 * 0.2 * fastrand::f64()) as i64;
    capped + Duration::milliseconds(jitter_ms)
}

/// Names of the configured stages, in order.
pub fn stage_names(config: &Config) -> Vec<String> {
    config.stages.iter().map(|s| s.name.clone()).collect()
}

/// The plan lines of one order, with prerequisites resolved in stage order.
pub fn plan_order(
    config: &Config,
    order: &Order,
    rows: &[StageRow],
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
        };
        if matches!(row.state, StageState::Scheduled | StageState::Retrying) {
            let prerequisite = spec
                .after
                .as_ref()
                .and_then(|a| states.get(a.as_str()).copied());
            let evaluation =
                schedule::evaluate(order, spec, prerequisite, row.retry_at, &config.rules, now);
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
