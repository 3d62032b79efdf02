//! One scheduling pass: read the due orders in batches, work on many at
//! once, and write what the scheduler decided for each stage (a send goes
//! through `deliver.rs`).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use super::deliver::{Outcome, IN_DOUBT_RESEND};
use super::plan::evaluate_stage;
use super::{Engine, EngineError, TickControl, TickSummary};
use crate::order::{Order, OrderKey};
use crate::schedule::{Decision, StageState};
use crate::store::{StageRow, StageUpdate};
use crate::suppress::{Address, Suppression};

/// Due stages looked at per scheduling query (their orders are loaded
/// whole: up to this many orders, at least this many divided by the number
/// of stages).
const CHECK_BATCH: i64 = 1_000;

/// Orders worked on at once, per message the transport may have in flight.
/// Most orders in a pass only need their next check written, which costs no
/// SMTP session; enough of them in flight keep the sessions busy and give
/// the group commit (`store::writer`) full batches.
const ORDERS_PER_SEND_SLOT: usize = 16;

impl Engine {
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
        // `followupd pause` holds every instance on this database.
        if self.store.paused().await?.is_some() {
            return Ok(TickSummary::default());
        }
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
                    let fresh = match self.with_suppressions(fresh).await {
                        Ok(fresh) => fresh,
                        Err(e) => return Some((vec![Err(e)], None)),
                    };
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
                let (order, rows, suppression) = match work {
                    Ok(work) => work,
                    Err(e) => return (None, Err(e)),
                };
                let result = self
                    .process_order_as(&order, &rows, suppression.as_ref(), now, control)
                    .await;
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

    /// The suppression-list entry of an order's buyer, if any.
    pub(super) async fn suppression_of(
        &self,
        order: &Order,
    ) -> Result<Option<Suppression>, EngineError> {
        match Address::parse(order.buyer_email.as_str()) {
            Ok(address) => Ok(self.store.suppression(&address).await?),
            Err(_) => Ok(None),
        }
    }

    /// A batch of due orders with their buyers' suppression-list entries,
    /// read in one statement for the whole batch rather than one for each
    /// order on the send path. An entry made after the read stops the
    /// order's stages from the next pass on.
    async fn with_suppressions(
        &self,
        fresh: Vec<Result<Work, EngineError>>,
    ) -> Result<Vec<Result<Suppressed, EngineError>>, EngineError> {
        let addresses: Vec<Option<Address>> = fresh
            .iter()
            .map(|w| {
                w.as_ref()
                    .ok()
                    .and_then(|(order, _)| Address::parse(order.buyer_email.as_str()).ok())
            })
            .collect();
        let wanted: Vec<Address> = addresses.iter().flatten().cloned().collect();
        let found = self.store.suppressions_among(&wanted).await?;
        Ok(fresh
            .into_iter()
            .zip(addresses)
            .map(|(work, address)| {
                work.map(|(order, rows)| {
                    // Two orders of one buyer in a batch share the entry.
                    let entry = address.and_then(|a| found.get(&a).cloned());
                    (order, rows, entry)
                })
            })
            .collect())
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
        let suppression = self.suppression_of(order).await?;
        self.process_order_as(order, rows, suppression.as_ref(), now, control)
            .await
    }

    /// [`Engine::process_order`] with the buyer's suppression-list entry
    /// already read.
    async fn process_order_as(
        &self,
        order: &Order,
        rows: &[StageRow],
        suppression: Option<&Suppression>,
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
                suppression,
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
            pending.updates.push(
                Outcome::decided(row, state, reason, next_check_at).stage_update(
                    &row.stage,
                    row.state,
                    row.attempts,
                ),
            );
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

/// An order to work on, with its stage rows as read.
type Work = (Order, Vec<StageRow>);
/// A due order with its buyer's suppression-list entry.
type Suppressed = (Order, Vec<StageRow>, Option<Suppression>);

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
