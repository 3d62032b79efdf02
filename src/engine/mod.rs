//! The work itself: import files, plan stages, and send what is due.
//!
//! An [`Engine`] ties the pure parts (schedule, lint) to the stateful ones
//! (store, templates, transport). Every entry point takes "now" as an
//! argument: the command line passes `--now` or the wall clock, the daemon
//! passes the wall clock, and tests pass whatever day they need.
//!
//! - `pass.rs`: one scheduling pass over the due orders ([`Engine::run_due`]);
//! - `deliver.rs`: one stage's delivery, composed → claimed → outcome →
//!   recorded, and the settling of sends left in doubt;
//! - `compose.rs`: rendering, linting and building one message;
//! - `plan.rs`: what `followupd plan` shows.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::import::{ImportError, Rejection};
use crate::order::{Order, OrderKey};
use crate::render::{self, Templates};
use crate::schedule::StageState;
use crate::store::{StageRow, Store, StoreError};
use crate::transport::Transport;

mod compose;
mod deliver;
mod importing;
mod pass;
mod plan;
mod requeue;

pub use compose::{ComposeError, Preview};
pub use plan::{plan_order, PlanLine};

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
    #[error(
        "{address} is on the suppression list ({reason} since {since}); if the buyer asked \
         for this message, `followupd suppress remove {address}` first"
    )]
    Suppressed {
        address: String,
        reason: crate::suppress::Reason,
        since: String,
    },
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
    /// Stopped before the end of the file (asked to stop); the rest is
    /// imported when the same file is imported again.
    pub stopped: bool,
}

/// Totals of one scheduling pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TickSummary {
    pub sent: u64,
    pub retrying: u64,
    pub failed: u64,
    /// Sends in doubt: the server may or may not have the message.
    pub unknown: u64,
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
            StageState::Unknown => self.unknown += 1,
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
        self.unknown += other.unknown;
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
            "sent {}, retrying {}, failed {}, unknown {}, blocked {}, skipped {}, expired {}, errors {}",
            self.sent,
            self.retrying,
            self.failed,
            self.unknown,
            self.blocked,
            self.skipped,
            self.expired,
            self.errors
        )
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

    /// Sends everything due at `now` and records every decision. In-doubt
    /// sends left by a dead process are settled first, and blocked stages
    /// requeued if the templates or forbidden lists changed.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickSummary, EngineError> {
        self.recover_in_flight(now).await?;
        self.requeue_blocked_if_content_changed(now).await?;
        self.run_due(now, &TickControl::default()).await
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
        // A resend is on purpose, but never to a buyer who said stop (a
        // transactional stage excepted, as in every pass).
        if let Some(entry) = self.suppression_of(&order).await? {
            if !spec.transactional {
                return Err(EngineError::Suppressed {
                    address: entry.address.to_string(),
                    reason: entry.reason,
                    since: entry.at.to_rfc3339(),
                });
            }
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
