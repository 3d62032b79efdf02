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

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Serialize;

use crate::config::Config;
use crate::import::{self, Format, ImportError, OrderRecord, Rejection};
use crate::lint::Finding;
use crate::message::{self, Outgoing};
use crate::order::{Order, OrderKey};
use crate::render::{self, Rendered, Templates};
use crate::schedule::{self, Decision, StageSpec, StageState, Window};
use crate::store::{Claim, NewLogEntry, NewMessage, StageRow, StageUpdate, Store, StoreError};
use crate::transport::{SendError, Transport};

/// Rows written per import transaction: large enough to amortise the commit
/// and the index pages it rewrites (1,000 a batch imported a million rows in
/// 52 s, 5,000 in 34 s), small enough that the write lock is held for a
/// fraction of a second and memory stays near 60 MB.
const IMPORT_BATCH: usize = 5_000;

/// The reason (and log note) of a stage re-sent after an in-doubt attempt.
const IN_DOUBT_RESEND: &str = "re-send of an in-doubt attempt (on_unknown = resend)";

/// Due stages looked at per scheduling query (their orders are loaded
/// whole: up to this many orders, at least this many divided by the number
/// of stages).
const CHECK_BATCH: i64 = 1_000;

/// Orders worked on at once, per message the transport may have in flight.
/// Most orders in a pass only need their next check written, which costs no
/// SMTP session; enough of them in flight keep the sessions busy and give
/// the group commit (`store::writer`) full batches.
const ORDERS_PER_SEND_SLOT: usize = 16;

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
    #[error("{0} is being sent right now")]
    InFlight(String),
    #[error(transparent)]
    Smtp(#[from] crate::transport::smtp::SmtpSetupError),
}

/// Lets the daemon stop a pass early and watch it make progress.
#[derive(Default)]
pub struct TickControl {
    stop: std::sync::atomic::AtomicBool,
    heartbeat: Option<Box<dyn Fn() + Send + Sync>>,
}

impl TickControl {
    pub fn with_heartbeat(heartbeat: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            stop: Default::default(),
            heartbeat: Some(Box::new(heartbeat)),
        }
    }

    /// Asks the pass to take no new orders.
    pub fn stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn beat(&self) {
        if let Some(h) = &self.heartbeat {
            h();
        }
    }
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
    /// The language whose templates the stage uses.
    pub locale: String,
}

/// A message as `preview` shows it.
#[derive(Debug, Clone)]
pub struct Preview {
    pub outgoing: Outgoing,
    pub rendered: Rendered,
    /// Forbidden words.
    pub findings: Vec<Finding>,
    /// The marketplace policy's other rules.
    pub violations: Vec<crate::policy::Violation>,
}

impl Preview {
    /// Whether the message may go out.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.violations.is_empty()
    }

    /// Every problem, one per entry, as `PART:LINE:COL: rule: message`.
    pub fn problems(&self) -> Vec<String> {
        self.findings
            .iter()
            .map(|f| f.to_string())
            .chain(self.violations.iter().map(|v| v.to_string()))
            .collect()
    }
}

/// Configuration, templates, store and transport, ready to work.
pub struct Engine {
    pub config: Arc<Config>,
    pub templates: Arc<Templates>,
    pub store: Store,
    pub transport: Transport,
    /// This process's name on the claims it takes.
    pub owner: String,
    /// One permit per message the transport may have in flight; see
    /// [`Engine::deliver`].
    send_slots: tokio::sync::Semaphore,
    lease_keeper: tokio::task::JoinHandle<()>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.lease_keeper.abort();
    }
}

/// Renews this process's claims every third of the lease, for as long as
/// the engine lives; a process that stops (or is paused) stops renewing.
fn keep_leases(
    store: Store,
    owner: String,
    lease: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every =
            tokio::time::interval((lease / 3).max(std::time::Duration::from_millis(100)));
        loop {
            every.tick().await;
            let until =
                Utc::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
            if let Err(e) = store.renew_leases(&owner, until).await {
                tracing::warn!(error = %e, "cannot renew claims");
            }
        }
    })
}

impl Engine {
    /// Loads templates, opens the store and builds the transport.
    pub async fn open(config: Config) -> Result<Self, EngineError> {
        let templates = Templates::for_config(&config)?;
        let store = Store::open(&config.database_url).await?;
        store.ensure_stage_rows(&stage_names(&config)).await?;
        let transport = Transport::new(&config.transport)?;
        let owner = format!(
            "{}:{}:{:08x}",
            hostname(),
            std::process::id(),
            fastrand::u32(..)
        );
        let lease_keeper = keep_leases(store.clone(), owner.clone(), config.lease);
        Ok(Self {
            config: Arc::new(config),
            templates: Arc::new(templates),
            store,
            send_slots: tokio::sync::Semaphore::new(transport.concurrency()),
            transport,
            owner,
            lease_keeper,
        })
    }

    /// Switches to another transport (after a reload) and returns the old
    /// one. Called between passes: the send slots follow the new
    /// transport's capacity.
    pub fn replace_transport(&mut self, transport: Transport) -> Transport {
        self.send_slots = tokio::sync::Semaphore::new(transport.concurrency());
        std::mem::replace(&mut self.transport, transport)
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
        let options = import::ReadOptions {
            format,
            mapping,
            source: None,
        };
        self.import_file_with(path, options, now).await
    }

    /// [`Self::import_file`], read as `options` say (a source's export).
    pub async fn import_file_with(
        &self,
        path: &Path,
        options: import::ReadOptions<'_>,
        now: DateTime<Utc>,
    ) -> Result<ImportSummary, EngineError> {
        let rows = import::read_orders_with(path, options, &self.config, now)?;
        let stages = stage_names(&self.config);
        let mut summary = ImportSummary::default();
        let mut batch: Vec<OrderRecord> = Vec::with_capacity(IMPORT_BATCH);
        for row in rows {
            match row? {
                Ok(record) => batch.push(record),
                Err(rejection) => summary.rejected.push(rejection),
            }
            if batch.len() == IMPORT_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(IMPORT_BATCH));
                let (i, u) = self.store.upsert_orders(full, &stages, now).await?;
                summary.imported += i;
                summary.updated += u;
            }
        }
        if !batch.is_empty() {
            let (i, u) = self.store.upsert_orders(batch, &stages, now).await?;
            summary.imported += i;
            summary.updated += u;
        }
        Ok(summary)
    }

    /// Sends everything due at `now` and records every decision. In-doubt
    /// sends left by a dead process are settled first.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickSummary, EngineError> {
        self.recover_in_flight(now).await?;
        self.run_due(now, &TickControl::default()).await
    }

    /// Works through every order due at `now`. Stops taking new orders and
    /// starting new sends as soon as `control` says so (sends under way
    /// finish), and calls its heartbeat after each order so a watchdog sees
    /// progress.
    ///
    /// Orders are read in batches and worked on as one stream: the next
    /// batch is read while the last orders of the one before are still
    /// being sent, so the SMTP sessions never stand idle between batches.
    /// An order read again while it is still being worked on (or after)
    /// is skipped. A batch with no order not seen before ends the pass only
    /// once nothing is under way: until then the due stages of the orders
    /// in flight can fill a batch and hide orders behind them, so the batch
    /// is read again when those are done.
    pub async fn run_due(
        &self,
        now: DateTime<Utc>,
        control: &TickControl,
    ) -> Result<TickSummary, EngineError> {
        use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
        let unreadable = &AtomicU64::new(0);
        let in_flight = &AtomicUsize::new(0);
        let drained = &tokio::sync::Notify::new();
        let batches = futures_util::stream::unfold(
            Some(HashSet::<(String, String)>::new()),
            |seen| async move {
                let mut seen = seen?;
                loop {
                    if control.stopping() {
                        return None;
                    }
                    let batch = match self.store.due_orders(now, CHECK_BATCH).await {
                        Ok(batch) => batch,
                        // Stops the pass once the orders under way are done.
                        Err(e) => return Some((vec![Err(EngineError::from(e))], None)),
                    };
                    let (fresh, new) = unseen_orders(batch, &mut seen, unreadable);
                    if new > 0 {
                        in_flight.fetch_add(fresh.len(), Ordering::SeqCst);
                        return Some((fresh, Some(seen)));
                    }
                    if in_flight.load(Ordering::SeqCst) == 0 {
                        return None;
                    }
                    drained.notified().await;
                }
            },
        );
        // Orders are independent, so many are worked on at once; the send
        // slots bound how many messages are in flight.
        let results = batches
            .flat_map(futures_util::stream::iter)
            .take_while(|work| std::future::ready(work.is_err() || !control.stopping()))
            .map(|work| async move {
                let (order, rows) = match work {
                    Ok(work) => work,
                    Err(e) => return (None, Err(e)),
                };
                let result = self.process_order(&order, &rows, now, control).await;
                control.beat();
                if in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                    drained.notify_one();
                }
                (Some(order.key), result)
            })
            .buffer_unordered(self.transport.concurrency() * ORDERS_PER_SEND_SLOT);
        let mut results = std::pin::pin!(results);
        let mut summary = TickSummary::default();
        let mut failed_reading = None;
        while let Some((key, result)) = results.next().await {
            match (key, result) {
                (_, Ok(s)) => summary.add(&s),
                (Some(key), Err(e)) => {
                    // One bad order must not stop the others.
                    tracing::error!(order = %key, error = %e, "order could not be processed");
                    summary.errors += 1;
                }
                (None, Err(e)) => failed_reading = Some(e),
            }
        }
        summary.errors += unreadable.load(Ordering::Relaxed);
        match failed_reading {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    /// Evaluates and acts on every open stage of one order, as read with
    /// `rows`. Sends happen in stage order; the other changes (next checks,
    /// skips, expiries) are written together, at the end or as soon as a
    /// later stage depends on one of them: that stage is evaluated against
    /// what was actually written (another instance may have changed the
    /// stage first). Once `control` says stop, no new send starts.
    pub async fn process_order(
        &self,
        order: &Order,
        rows: &[StageRow],
        now: DateTime<Utc>,
        control: &TickControl,
    ) -> Result<TickSummary, EngineError> {
        let key = &order.key;
        let mut summary = TickSummary::default();
        let mut states: HashMap<String, StageState> =
            rows.iter().map(|r| (r.stage.clone(), r.state)).collect();
        let mut pending = PendingChanges::default();
        for spec in &self.config.stages {
            let Some(row) = rows.iter().find(|r| r.stage == spec.name) else {
                continue;
            };
            if !matches!(row.state, StageState::Scheduled | StageState::Retrying) {
                continue;
            }
            if spec.after.as_deref().is_some_and(|a| pending.moves(a)) {
                self.write_changes(key, &mut pending, &mut states, &mut summary, now)
                    .await?;
            }
            let evaluation = evaluate_stage(
                &self.config,
                order,
                spec,
                row,
                |a| states.get(a).copied(),
                now,
            );
            let (state, reason, next_check_at) = match evaluation.decision {
                Decision::Due => {
                    let after_doubt = row.attempts > 0
                        && self
                            .store
                            .last_log_status(key, &spec.name)
                            .await?
                            .as_deref()
                            == Some(StageState::Unknown.as_str());
                    let note = after_doubt.then_some(IN_DOUBT_RESEND);
                    let state = self.deliver(order, spec, row, now, note, control).await?;
                    settle(key, row, state, &mut states, &mut summary);
                    continue;
                }
                Decision::Wait { until, reason } => (row.state, reason.to_string(), until),
                Decision::Skip(reason) => (StageState::Skipped, reason.to_string(), None),
                Decision::Expire => {
                    let closed = evaluation
                        .window
                        .map(|w| format!("window closed at {}", w.closes.to_rfc3339()))
                        .unwrap_or_else(|| "window closed".into());
                    (StageState::Expired, closed, None)
                }
            };
            pending.rows.push(row);
            pending.updates.push(StageUpdate {
                stage: row.stage.clone(),
                expected: row.state,
                state,
                next_check_at,
                retry_at: row.retry_at,
                attempts: row.attempts,
                reason: Some(reason),
                message_id: None,
            });
        }
        self.write_changes(key, &mut pending, &mut states, &mut summary, now)
            .await?;
        Ok(summary)
    }

    /// Writes an order's pending stage changes in one go, and records in
    /// `states` and `summary` what each stage now is.
    async fn write_changes(
        &self,
        key: &OrderKey,
        pending: &mut PendingChanges<'_>,
        states: &mut HashMap<String, StageState>,
        summary: &mut TickSummary,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        if pending.updates.is_empty() {
            return Ok(());
        }
        let updates = std::mem::take(&mut pending.updates);
        let wanted: Vec<StageState> = updates.iter().map(|u| u.state).collect();
        let applied = self.store.update_stages(key, updates, now).await?;
        for ((row, wanted), applied) in pending.rows.drain(..).zip(wanted).zip(applied) {
            // An update that did not apply lost to another instance, which
            // reports what it did.
            let state = if applied { wanted } else { row.state };
            settle(key, row, state, states, summary);
        }
        Ok(())
    }

    /// Renders, lints and builds one stage's message.
    pub fn compose(
        &self,
        order: &Order,
        stage: &str,
        now: DateTime<Utc>,
    ) -> Result<Preview, ComposeError> {
        compose(&self.config, &self.templates, order, stage, now)
    }

    /// [`Engine::compose`] as a task of its own, which a multi-threaded
    /// runtime runs on one of its worker threads. A pass
    /// composes many messages while its SMTP sessions wait for replies;
    /// composing on the thread that drives those sessions would hold each
    /// reply back for as long as the message being composed takes.
    async fn compose_in_worker(
        &self,
        order: &Order,
        stage: &str,
        now: DateTime<Utc>,
    ) -> Result<Preview, ComposeError> {
        let (config, templates) = (Arc::clone(&self.config), Arc::clone(&self.templates));
        let (owned_order, owned_stage) = (order.clone(), stage.to_string());
        let composing =
            tokio::spawn(
                async move { compose(&config, &templates, &owned_order, &owned_stage, now) },
            );
        match composing.await {
            Ok(preview) => preview,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Cancelled: the runtime is shutting down; compose right here.
            Err(_) => self.compose(order, stage, now),
        }
    }

    /// Composes, lints, claims and sends one stage, recording every step.
    /// `note` goes into the send log (a manual or in-doubt re-send says so).
    ///
    /// Two writes per message: the claim together with the stored message
    /// (so even a send that ends in doubt leaves its exact bytes behind),
    /// then the send-log row together with the outcome. Each commits (in a
    /// transaction shared with other sends) before the next step starts.
    ///
    /// A send slot is held from before the claim until the transport is done,
    /// and the rate limits are waited for before the claim too, so no more
    /// stages are ever claimed and not yet handed over than the transport
    /// has sessions: a crash leaves in doubt only messages that were on
    /// their way, never ones waiting for a connection or for the limits.
    async fn deliver(
        &self,
        order: &Order,
        spec: &StageSpec,
        row: &StageRow,
        now: DateTime<Utc>,
        note: Option<&str>,
        control: &TickControl,
    ) -> Result<StageState, EngineError> {
        let key = &order.key;
        let attempt = row.attempts + 1;
        let composed = self.compose_in_worker(order, &spec.name, now).await;
        let message_id = match &composed {
            Ok(preview) => preview.outgoing.message_id.clone(),
            Err(_) => {
                let sender = self.config.sender_for(key.marketplace.as_str());
                message::message_id(key, &spec.name, sender.from.email.domain())
            }
        };

        // Only the claim holder sends, so two instances never both send a
        // stage. If this process dies during the send, the claim's lease
        // runs out and whoever finds it knows the outcome is in doubt.
        let lease_until = Utc::now()
            + chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::MAX);
        let claim = Claim {
            stage: spec.name.clone(),
            expected: row.state,
            owner: self.owner.clone(),
            lease_until,
            attempts: attempt,
            reason: note.unwrap_or("handed to the transport").to_string(),
            message_id: message_id.clone(),
        };
        let message = composed
            .as_ref()
            .ok()
            .map(|p| NewMessage::from(&p.outgoing));
        let slot = self
            .send_slots
            .acquire()
            .await
            .map_err(|_| EngineError::Store(StoreError::Closed))?;
        // The message to transmit: composed, and clean of forbidden words.
        let outgoing = composed
            .as_ref()
            .ok()
            .filter(|p| p.is_clean())
            .map(|p| &p.outgoing);
        if outgoing.is_some() {
            self.transport.pace().await;
        }
        if control.stopping() {
            // Asked to stop while waiting: this send never started.
            return Ok(row.state);
        }
        // The claim commits while the transport connects and sends the
        // envelope; the message itself is only released once the claim is
        // durable (and never if it was lost).
        let (release, released) = tokio::sync::oneshot::channel::<bool>();
        let claiming = async {
            let claimed = self.store.claim_and_store(key, claim, message, now).await;
            let _ = release.send(matches!(claimed, Ok(Some(_))));
            claimed
        };
        let sending = async {
            match outgoing {
                Some(out) => {
                    let go = async { released.await.unwrap_or(false) };
                    Some(self.send(out, attempt, now, go).await)
                }
                None => None,
            }
        };
        let (claimed, sent) = tokio::join!(claiming, sending);
        let Some((token, message_ref)) = claimed? else {
            return Ok(row.state);
        };

        // If the database fails from here on the claim is left to run out,
        // so the send is settled as in doubt rather than guessed.
        let outcome = match &composed {
            Err(e) => {
                // A template or recipient problem: sending again cannot fix
                // it, and nothing was sent.
                let state = match e {
                    ComposeError::Message(_) => StageState::Failed,
                    ComposeError::Render(_) => StageState::Blocked,
                };
                tracing::warn!(order = %key, stage = %spec.name, outcome = %state, error = %e, "message not composed");
                Outcome::without_reply(state, e.to_string())
            }
            Ok(preview) if !preview.is_clean() => {
                let detail = preview.problems().join("; ");
                tracing::warn!(order = %key, stage = %spec.name, outcome = "blocked", findings = %detail, "message blocked by the lint");
                Outcome::without_reply(StageState::Blocked, detail)
            }
            Ok(_) => sent.unwrap_or_else(|| {
                Outcome::without_reply(StageState::Failed, "the message was not sent".into())
            }),
        };
        drop(slot);
        // The log row keeps what happened; a stage that chose at-least-once
        // delivery is tried once more after an in-doubt attempt.
        let logged_state = outcome.state;
        let outcome = if outcome.state == StageState::Unknown
            && spec.on_unknown == schedule::OnUnknown::Resend
            && note != Some(IN_DOUBT_RESEND)
        {
            let attempt_number = u32::try_from(attempt).unwrap_or(u32::MAX);
            Outcome {
                state: StageState::Retrying,
                retry_at: Some(now + self.config.retry.delay(attempt_number, fastrand::f64())),
                reason: format!(
                    "{}; will be sent once more (on_unknown = resend)",
                    outcome
                        .reply
                        .as_deref()
                        .unwrap_or("no reply after the message")
                ),
                ..outcome
            }
        } else {
            outcome
        };
        let entry = NewLogEntry {
            at: now,
            to: order.buyer_email.as_str().to_string(),
            message_id: Some(message_id),
            attempt,
            status: logged_state,
            smtp_code: outcome.code,
            smtp_text: outcome.reply.clone(),
            detail: outcome.detail.clone().or(note.map(str::to_string)),
            duration_ms: outcome.duration_ms,
            subject: composed.ok().map(|p| p.outgoing.subject),
            message_ref,
        };
        let finished = StageUpdate {
            stage: spec.name.clone(),
            expected: StageState::Sending,
            state: outcome.state,
            next_check_at: outcome.retry_at,
            retry_at: outcome.retry_at,
            attempts: attempt,
            reason: Some(outcome.reason.clone()),
            message_id: None,
        };
        let recorded = self
            .store
            .finish_with_log(key, &self.owner, token, finished, entry, true, now)
            .await?;
        if !recorded {
            // Our lease ran out (the process was paused or cut off) and
            // another instance settled the stage: its record stands.
            tracing::warn!(order = %key, stage = %spec.name, outcome = %outcome.state, "late result ignored: the claim was taken over");
            return Ok(StageState::Unknown);
        }
        Ok(outcome.state)
    }

    /// Hands one message to the transport, to be transmitted once `release`
    /// says so, and classifies the result.
    async fn send(
        &self,
        out: &Outgoing,
        attempt: i64,
        now: DateTime<Utc>,
        release: impl std::future::Future<Output = bool>,
    ) -> Outcome {
        let started = Instant::now();
        let result = self.transport.send(out, release).await;
        let duration_ms = Some(started.elapsed().as_millis() as i64);
        let (state, retry_at, reason) = match &result {
            Ok(_) => (
                StageState::Sent,
                None,
                format!("sent at {}", now.to_rfc3339()),
            ),
            Err(e @ (SendError::Transient { .. } | SendError::Withheld))
                if attempt < i64::from(self.config.retry.max_attempts) =>
            {
                let attempt_number = u32::try_from(attempt).unwrap_or(u32::MAX);
                let retry_at = now + self.config.retry.delay(attempt_number, fastrand::f64());
                (
                    StageState::Retrying,
                    Some(retry_at),
                    format!("attempt {attempt} failed: {}", e.text()),
                )
            }
            Err(e @ (SendError::Transient { .. } | SendError::Withheld)) => (
                StageState::Failed,
                None,
                format!("gave up after {attempt} attempts: {e}"),
            ),
            Err(e @ SendError::Permanent { .. }) => (StageState::Failed, None, e.to_string()),
            Err(e @ SendError::InDoubt { .. }) => (
                StageState::Unknown,
                None,
                format!("{e}; not re-sent automatically"),
            ),
        };
        let (code, reply) = match &result {
            Ok(receipt) => (receipt.code, receipt.text.clone()),
            Err(e) => (e.code(), e.text().to_string()),
        };
        tracing::info!(order = %out.message_id, outcome = %state, attempt, smtp_code = ?code, "send attempt finished");
        Outcome {
            state,
            retry_at,
            reason,
            code,
            reply: Some(reply),
            detail: None,
            duration_ms,
        }
    }

    /// Settles stages left in `sending` by a process that died mid-send.
    /// Nobody knows whether the server took those messages, so they become
    /// `unknown` and are never re-sent, unless their stage opted into
    /// `on_unknown = "resend"`, in which case they are retried at once
    /// (same Message-ID, so the receiving side can spot the repeat).
    ///
    /// On SQLite the caller holds the database's only instance lock, so every
    /// claim found is abandoned; on PostgreSQL only those whose lease ran out
    /// (by the wall clock: leases are about live processes, not schedules).
    pub async fn recover_in_flight(&self, now: DateTime<Utc>) -> Result<u64, EngineError> {
        let cutoff = match self.store.backend() {
            crate::store::Backend::Sqlite => None,
            crate::store::Backend::Postgres => Some(Utc::now()),
        };
        let mut settled = 0;
        for (key, row, to) in self.store.abandoned_claims(cutoff).await? {
            let resend = self
                .config
                .stage(&row.stage)
                .is_some_and(|s| s.on_unknown == schedule::OnUnknown::Resend);
            let (state, reason, retry_at) = if resend {
                (StageState::Retrying, IN_DOUBT_RESEND, Some(now))
            } else {
                (
                    StageState::Unknown,
                    "the process stopped during the send; the server may or may not have the message",
                    None,
                )
            };
            let update = StageUpdate {
                stage: row.stage.clone(),
                expected: StageState::Sending,
                state,
                next_check_at: retry_at,
                retry_at,
                attempts: row.attempts,
                reason: Some(reason.to_string()),
                message_id: None,
            };
            let owner = row.claim_owner.clone().unwrap_or_default();
            let entry = NewLogEntry {
                at: now,
                to,
                message_id: row.message_id.clone(),
                attempt: row.attempts,
                status: StageState::Unknown,
                smtp_code: None,
                smtp_text: None,
                detail: Some(reason.to_string()),
                duration_ms: None,
                subject: None,
                message_ref: None,
            };
            // The state change and its log row go together, so a crash in
            // between cannot leave an attempt without its row.
            if self
                .store
                .finish_with_log(&key, &owner, row.claim_token, update, entry, false, now)
                .await?
            {
                tracing::warn!(order = %key, stage = %row.stage, outcome = %state, "in-doubt send settled");
                settled += 1;
            }
        }
        Ok(settled)
    }

    /// Sends one stage again on purpose, whatever its state, and logs it as
    /// a manual re-send. The message is composed afresh and linted like any
    /// other; the Message-ID stays the same.
    pub async fn resend(
        &self,
        order_id: &str,
        marketplace: Option<&str>,
        stage: &str,
        now: DateTime<Utc>,
    ) -> Result<StageState, EngineError> {
        let spec = self
            .config
            .stage(stage)
            .ok_or_else(|| EngineError::NoStage(stage.to_string()))?;
        let (order, rows) = self.find_order(order_id, marketplace).await?;
        let row = rows
            .into_iter()
            .find(|r| r.stage == stage)
            .ok_or_else(|| EngineError::NoStage(stage.to_string()))?;
        if row.state == StageState::Sending {
            return Err(EngineError::InFlight(format!("{}/{stage}", order.key)));
        }
        let note = format!("manual resend (was {})", row.state);
        self.deliver(
            &order,
            spec,
            &row,
            now,
            Some(&note),
            &TickControl::default(),
        )
        .await
    }

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
        self.store
            .for_each_order(|order, rows| {
                if only_order.is_some_and(|id| id != order.key.order_id.as_str()) {
                    return true;
                }
                plan_order(&config, &templates, &order, &rows, now)
                    .into_iter()
                    .all(&mut emit)
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

/// Notes where one stage of an order ended up in this pass: logged if it
/// changed, counted, and known to the stages evaluated after it.
fn settle(
    key: &OrderKey,
    row: &StageRow,
    state: StageState,
    states: &mut HashMap<String, StageState>,
    summary: &mut TickSummary,
) {
    if state != row.state {
        tracing::info!(order = %key, stage = %row.stage, outcome = %state, "stage updated");
    }
    summary.count(state);
    states.insert(row.stage.clone(), state);
}

/// Stage changes of one order waiting to be written together.
#[derive(Default)]
struct PendingChanges<'r> {
    rows: Vec<&'r StageRow>,
    updates: Vec<StageUpdate>,
}

impl PendingChanges<'_> {
    /// Whether a pending change moves `stage` to another state. (A next
    /// check leaves the state as it is, written or not, so a later stage
    /// evaluated against it needs no write first.)
    fn moves(&self, stage: &str) -> bool {
        self.updates
            .iter()
            .any(|u| u.stage == stage && u.state != u.expected)
    }
}

/// How one delivery attempt ended, ready to be recorded.
struct Outcome {
    state: StageState,
    retry_at: Option<DateTime<Utc>>,
    /// For the stage row.
    reason: String,
    code: Option<u16>,
    /// The server's reply text.
    reply: Option<String>,
    /// For the send log, when there was no reply (lint findings, errors).
    detail: Option<String>,
    duration_ms: Option<i64>,
}

impl Outcome {
    /// An attempt that ended before reaching the transport.
    fn without_reply(state: StageState, detail: String) -> Self {
        Self {
            state,
            retry_at: None,
            reason: detail.clone(),
            code: None,
            reply: None,
            detail: Some(detail),
            duration_ms: None,
        }
    }
}

/// Renders, lints and builds one stage's message.
fn compose(
    config: &Config,
    templates: &Templates,
    order: &Order,
    stage: &str,
    now: DateTime<Utc>,
) -> Result<Preview, ComposeError> {
    let sender = config.sender_for(order.key.marketplace.as_str());
    let zone = schedule::buyer_zone(order, &config.rules);
    let context = render::context(order, sender, stage, zone);
    let locale = order.locale.as_ref().map(|l| l.as_str());
    let rendered = templates.render(stage, locale, &context)?;
    let fields = order.text_fields();
    let findings = templates.lint(stage, &rendered, &config.forbidden, &fields)?;
    let outgoing = message::build(order, sender, stage, &rendered, now)?;
    let order_links: Vec<&str> = [&order.order_url, &order.tracking_url, &order.review_url]
        .into_iter()
        .flatten()
        .map(|l| l.as_str())
        .collect();
    let violations = crate::policy::check(
        &sender.policy,
        &crate::policy::MessageParts {
            subject: &rendered.subject,
            text: &rendered.text,
            html: rendered.html.as_deref(),
            html_text: rendered.html_text.as_deref(),
            raw: &outgoing.raw,
            order_id: order.key.order_id.as_str(),
            order_links: &order_links,
        },
    );
    Ok(Preview {
        outgoing,
        rendered,
        findings,
        violations,
    })
}

/// An order to work on, with its stage rows as read.
type Work = (Order, Vec<StageRow>);

/// The orders of `batch` not in `seen` (which takes them in), and how many
/// there were, counting those that could not be read: each of those is
/// reported and counted in `unreadable` instead, so one unreadable order
/// does not stop the others.
fn unseen_orders(
    batch: Vec<crate::store::DueOrder>,
    seen: &mut HashSet<(String, String)>,
    unreadable: &std::sync::atomic::AtomicU64,
) -> (Vec<Result<Work, EngineError>>, usize) {
    let mut fresh = Vec::new();
    let mut new = 0;
    for due in batch {
        if !seen.insert((due.marketplace.clone(), due.order_id.clone())) {
            continue;
        }
        new += 1;
        match due.loaded {
            Ok(order) => fresh.push(Ok(order)),
            Err(e) => {
                tracing::error!(order = %format!("{}/{}", due.marketplace, due.order_id), error = %e, "order could not be processed");
                unreadable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    (fresh, new)
}

/// Why a message could not be composed.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error(transparent)]
    Message(#[from] message::MessageError),
}

/// The scheduler's decision for one open stage, with the marketplace's
/// policy applied: a stage the policy disables is skipped, and a
/// prerequisite it disables does not hold a stage back (under the amazon
/// profile the feedback request goes without a follow-up).
fn evaluate_stage(
    config: &Config,
    order: &Order,
    spec: &StageSpec,
    row: &StageRow,
    state_of: impl Fn(&str) -> Option<StageState>,
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
    evaluation
}

/// This machine's name, for claim owners (falls back to "localhost").
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Names of the configured stages, in order.
pub fn stage_names(config: &Config) -> Vec<String> {
    config.stages.iter().map(|s| s.name.clone()).collect()
}

/// The plan lines of one order, with prerequisites resolved in stage order.
pub fn plan_order(
    config: &Config,
    templates: &Templates,
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
            locale: templates
                .select(&spec.name, order.locale.as_ref().map(|l| l.as_str()))
                .map(|(_, locale)| locale)
                .unwrap_or_default(),
        };
        if matches!(row.state, StageState::Scheduled | StageState::Retrying) {
            let evaluation =
                evaluate_stage(config, order, spec, row, |a| states.get(a).copied(), now);
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
