//! After new settings load: open stages planned under the old ones are
//! looked at again, and stages blocked by a template error or the lint are
//! composed again once the template set or the forbidden lists change, for
//! as long as their windows are open.

use std::hash::{DefaultHasher, Hasher};
use std::path::Path;

use chrono::{DateTime, Utc};

use super::deliver::Outcome;
use super::{Engine, EngineError};
use crate::schedule::{self, SkipReason, StageState};

/// Where the fingerprint of the last template set and forbidden lists
/// blocked stages were requeued for is kept (`settings` table).
const CONTENT_KEY: &str = "content_fingerprint";

/// Orders looked at per query while requeueing.
const REQUEUE_BATCH: i64 = 500;

/// The reason a requeued stage carries until the next pass decides again.
const REQUEUED: &str = "composed again: a new template set or forbidden list was loaded";

impl Engine {
    /// Flags every open stage for the next pass, so that a reload's sending
    /// hours and windows apply at once instead of at the next send time
    /// worked out under the old ones.
    pub async fn replan(&self) -> Result<u64, EngineError> {
        Ok(self.store.replan_open_stages().await?)
    }

    /// Undoes what a wall clock that jumped forward and back did to the
    /// plan: no retry waits longer than the longest backoff from `now`.
    /// Every open stage is looked at again too when the clock is known to
    /// have gone back (`went_back`) or a retry had to be brought forward,
    /// since next checks worked out at the false time are wrong as well.
    /// Returns how many retries were brought forward.
    pub async fn settle_clock(
        &self,
        now: DateTime<Utc>,
        went_back: bool,
    ) -> Result<u64, EngineError> {
        let latest = now + self.config.retry.delay(u32::MAX, 1.0);
        let clamped = self.store.clamp_retries(latest).await?;
        if clamped > 0 {
            tracing::warn!(clamped, latest = %latest.to_rfc3339(), "retries planned further ahead than the longest backoff brought forward (the clock went back)");
        }
        if went_back || clamped > 0 {
            self.replan().await?;
        }
        Ok(clamped)
    }

    /// Requeues blocked stages (see [`Engine::requeue_blocked`]) if the
    /// template files or the forbidden lists differ from those of the last
    /// requeue, and remembers the new ones. Returns how many were requeued.
    pub async fn requeue_blocked_if_content_changed(
        &self,
        now: DateTime<Utc>,
    ) -> Result<u64, EngineError> {
        let fingerprint = self.content_fingerprint();
        if self.store.setting(CONTENT_KEY).await?.as_deref() == Some(fingerprint.as_str()) {
            return Ok(0);
        }
        let requeued = self.requeue_blocked(now).await?;
        self.store.set_setting(CONTENT_KEY, &fingerprint).await?;
        if requeued > 0 {
            tracing::info!(
                requeued,
                "blocked stages composed again: a new template set or forbidden list was loaded"
            );
        }
        Ok(requeued)
    }

    /// Schedules every blocked stage whose window is still open again, for
    /// the next pass to compose afresh, together with the later stages that
    /// were skipped only because that one was blocked.
    pub async fn requeue_blocked(&self, now: DateTime<Utc>) -> Result<u64, EngineError> {
        let mut requeued = 0;
        let mut after: Option<(String, String)> = None;
        loop {
            let batch = self
                .store
                .blocked_orders(
                    after.as_ref().map(|(m, o)| (m.as_str(), o.as_str())),
                    REQUEUE_BATCH,
                )
                .await?;
            let Some(last) = batch.last() else {
                return Ok(requeued);
            };
            after = Some((last.marketplace.clone(), last.order_id.clone()));
            for due in batch {
                let Ok((order, rows)) = due.loaded else {
                    continue;
                };
                let mut updates = Vec::new();
                let mut revived: Vec<&str> = Vec::new();
                for spec in &self.config.stages {
                    let Some(row) = rows.iter().find(|r| r.stage == spec.name) else {
                        continue;
                    };
                    let open = schedule::window(&order, spec, &self.config.rules)
                        .is_some_and(|w| now < w.closes);
                    let blocked_before = spec.after.as_deref().is_some_and(|a| {
                        revived.contains(&a)
                            && row.reason.as_deref()
                                == Some(
                                    SkipReason::PrerequisiteNotSent {
                                        stage: a.to_string(),
                                        state: StageState::Blocked,
                                    }
                                    .to_string()
                                    .as_str(),
                                )
                    });
                    let requeue = match row.state {
                        StageState::Blocked => true,
                        StageState::Skipped => blocked_before,
                        _ => false,
                    };
                    if !requeue || !open {
                        continue;
                    }
                    revived.push(&spec.name);
                    updates.push(
                        Outcome::decided(row, StageState::Scheduled, REQUEUED.into(), Some(now))
                            .stage_update(&row.stage, row.state, row.attempts),
                    );
                }
                if updates.is_empty() {
                    continue;
                }
                let applied = self.store.update_stages(&order.key, updates, now).await?;
                for (stage, applied) in revived.iter().zip(applied) {
                    if applied {
                        tracing::info!(order = %order.key, stage, "stage requeued to be composed again");
                        requeued += 1;
                    }
                }
            }
        }
    }

    /// A fingerprint of the template files and the forbidden lists.
    fn content_fingerprint(&self) -> String {
        let mut hasher = DefaultHasher::new();
        hash_files(&self.config.templates_dir, &mut hasher);
        hasher.write(format!("{:?}", self.config.forbidden).as_bytes());
        format!("{:016x}", hasher.finish())
    }
}

/// Feeds every file under `dir` (names and contents, in name order) to
/// `hasher`; unreadable entries count as absent.
fn hash_files(dir: &Path, hasher: &mut DefaultHasher) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        hasher.write(entry.file_name().as_encoded_bytes());
        if kind.is_dir() {
            hash_files(&entry.path(), hasher);
        } else if let Ok(bytes) = std::fs::read(entry.path()) {
            hasher.write(&bytes);
        }
    }
}
