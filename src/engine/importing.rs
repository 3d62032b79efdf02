//! Importing order files: rows parsed by `crate::import`, written in
//! batches, and (for the daemon's inbox) stopped between batches on request
//! and resumed where a stopped or killed import left off.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::{stage_names, Engine, EngineError, ImportSummary, TickControl};
use crate::import::{self, Format, OrderRecord};
use crate::store::Setting;

/// Rows written per import transaction: large enough to amortise the commit
/// and the index pages it rewrites, small enough that the write lock is held
/// for a fraction of a second and memory stays bounded (the figures behind
/// the choice: bench/README.md, "Importing").
pub(super) const IMPORT_BATCH: usize = 5_000;

impl Engine {
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
        self.import_rows(path, options, None, &TickControl::default(), now)
            .await
    }

    /// [`Self::import_file_with`] for a file that stays where it is until
    /// imported whole (the daemon's inbox): after each batch `control`'s
    /// heartbeat is called and, if it says stop, the import stops there.
    /// How far it got is committed with each batch, so importing the same
    /// file again (same path, size and modification time) resumes after
    /// the last committed row, even after a kill: no row is written twice.
    pub async fn import_file_resumable(
        &self,
        path: &Path,
        options: import::ReadOptions<'_>,
        control: &TickControl,
        now: DateTime<Utc>,
    ) -> Result<ImportSummary, EngineError> {
        let key = progress_key(path);
        let summary = self
            .import_rows(path, options, key.as_deref(), control, now)
            .await?;
        if let Some(key) = key.filter(|_| !summary.stopped) {
            self.store.delete_setting(&key).await?;
        }
        Ok(summary)
    }

    /// Reads `path` and writes its good rows in batches, each with the
    /// count of rows read so far under `progress` (if given); rows up to
    /// the count already stored there are skipped (their rejections are
    /// reported again, since they were never stored).
    async fn import_rows(
        &self,
        path: &Path,
        options: import::ReadOptions<'_>,
        progress: Option<&str>,
        control: &TickControl,
        now: DateTime<Utc>,
    ) -> Result<ImportSummary, EngineError> {
        let done_before = match progress {
            Some(key) => self.store.setting(key).await?.and_then(|v| v.parse().ok()),
            None => None,
        }
        .unwrap_or(0u64);
        if done_before > 0 {
            tracing::info!(file = %path.display(), rows = done_before, "resuming an import");
        }
        let rows = import::read_orders_with(path, options, &self.config, now)?;
        let stages = stage_names(&self.config);
        let mut summary = ImportSummary::default();
        let mut batch: Vec<OrderRecord> = Vec::with_capacity(IMPORT_BATCH);
        let mut read = 0u64;
        let mark = |read: u64| {
            progress.map(|key| Setting {
                key: key.to_string(),
                value: read.to_string(),
            })
        };
        for row in rows {
            read += 1;
            match row? {
                Ok(_) if read <= done_before => continue,
                Ok(record) => batch.push(record),
                Err(rejection) => summary.rejected.push(rejection),
            }
            if batch.len() == IMPORT_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(IMPORT_BATCH));
                let (i, u) = self
                    .store
                    .upsert_orders(full, &stages, mark(read), now)
                    .await?;
                summary.imported += i;
                summary.updated += u;
                tracing::debug!(file = %path.display(), rows = read, "import progress");
                control.beat();
                if control.stopping() {
                    summary.stopped = true;
                    return Ok(summary);
                }
            }
        }
        if !batch.is_empty() {
            let (i, u) = self
                .store
                .upsert_orders(batch, &stages, mark(read), now)
                .await?;
            summary.imported += i;
            summary.updated += u;
        }
        Ok(summary)
    }
}

/// The `settings` key an import of `path` keeps its progress under: the
/// file's path, size and modification time, so that a different file at
/// the same path starts from its beginning.
fn progress_key(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    let path = std::fs::canonicalize(path).ok()?;
    Some(format!(
        "import:{}:{}:{modified}",
        path.display(),
        meta.len()
    ))
}
