//! The inbox: files dropped into a folder are imported, then moved to
//! `done/` or `rejected/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Notify;

use super::DaemonError;
use crate::engine::{Engine, ImportSummary, TickControl};
use crate::import::Format;

/// Imports one file and reports the outcome in the log. With `control`
/// (an inbox file) the import stops between batches when asked and resumes
/// where it stopped the next time the file is imported.
pub(super) async fn import_one(
    engine: &Engine,
    file: &Path,
    control: Option<&TickControl>,
) -> Result<ImportSummary, String> {
    let options = crate::import::ReadOptions {
        source: engine.config.inbox_source,
        ..Default::default()
    };
    let imported = match control {
        Some(control) => {
            engine
                .import_file_resumable(file, options, control, Utc::now())
                .await
        }
        None => engine.import_file_with(file, options, Utc::now()).await,
    };
    match imported {
        Ok(summary) if summary.stopped => {
            tracing::info!(
                file = %file.display(),
                imported = summary.imported,
                updated = summary.updated,
                "import stopped; the rest of the file is imported at the next start"
            );
            Ok(summary)
        }
        Ok(summary) => {
            for r in &summary.rejected {
                tracing::warn!(file = %file.display(), line = r.line, reason = %r.reason, "row rejected");
            }
            tracing::info!(
                file = %file.display(),
                imported = summary.imported,
                updated = summary.updated,
                rejected = summary.rejected.len(),
                "orders imported"
            );
            Ok(summary)
        }
        Err(e) => {
            tracing::error!(file = %file.display(), error = %e, "import failed");
            Err(e.to_string())
        }
    }
}

/// Files an exporter has finished writing: temporary names (dot files,
/// `.tmp`, `.part`, `.partial`) are left alone until renamed.
fn ready_files(inbox: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(inbox) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            !name.starts_with('.')
                && ![".tmp", ".part", ".partial", ".errors"]
                    .iter()
                    .any(|s| name.ends_with(s))
        })
        .collect();
    files.sort();
    files
}

/// Imports every finished file in the inbox, then moves it to `done/`, or
/// to `rejected/` with a `.errors` file listing each bad row (the good rows
/// of such a file are imported all the same). Once `control` says stop, a
/// file being imported stops after its current batch and stays in the inbox,
/// and no further file is started.
pub async fn process_inbox(engine: &Engine, inbox: &Path, control: &TickControl) {
    for file in ready_files(inbox) {
        if control.stopping() {
            return;
        }
        let name = file.file_name().unwrap_or_default().to_owned();
        let readable = Format::from_path(&file).is_some() || engine.config.inbox_source.is_some();
        let errors: Vec<String> = if !readable {
            vec![format!(
                "{}: unknown file type (expected .csv, .tsv, .txt, .json, .jsonl or .ndjson)",
                name.to_string_lossy()
            )]
        } else {
            match import_one(engine, &file, Some(control)).await {
                Ok(summary) if summary.stopped => return,
                Ok(summary) => summary
                    .rejected
                    .iter()
                    .map(|r| format!("{}:{}: {}", name.to_string_lossy(), r.line, r.reason))
                    .collect(),
                // A file that cannot be read at all (a mapped column missing
                // from its header, Amazon's All Orders report): why, in one
                // line.
                Err(e) => vec![format!("{}: {e}", name.to_string_lossy())],
            }
        };
        let folder = if errors.is_empty() {
            "done"
        } else {
            "rejected"
        };
        let target_dir = inbox.join(folder);
        let moved = std::fs::create_dir_all(&target_dir).and_then(|_| {
            let mut target = target_dir.join(&name);
            if target.exists() {
                let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3f");
                target = target_dir.join(format!("{}.{stamp}", name.to_string_lossy()));
            }
            std::fs::rename(&file, &target)?;
            if !errors.is_empty() {
                let mut report = errors.join("\n");
                report.push('\n');
                let errors_file = PathBuf::from(format!("{}.errors", target.display()));
                write_private(&errors_file, report.as_bytes())?;
            }
            Ok(target)
        });
        match moved {
            Ok(target) => {
                tracing::info!(file = %file.display(), to = %target.display(), "inbox file handled")
            }
            Err(e) => tracing::error!(file = %file.display(), error = %e, "cannot move inbox file"),
        }
    }
}

pub(super) fn watch_inbox(
    dir: &Path,
    wake: Arc<Notify>,
) -> Result<notify::RecommendedWatcher, DaemonError> {
    use notify::Watcher;
    std::fs::create_dir_all(dir).map_err(|source| DaemonError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        use notify::event::{AccessKind, AccessMode, EventKind};
        // Opening or reading the folder or a file in it (as the loop itself
        // does on every pass) is no news: waking on it would make the loop
        // spin. A file closed after writing is.
        let news = match event {
            Ok(e) => match e.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                EventKind::Access(_) => false,
                _ => true,
            },
            Err(_) => false,
        };
        if news {
            wake.notify_one();
        }
    })
    .map_err(|e| DaemonError::Io {
        path: dir.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    watcher
        .watch(dir, notify::RecursiveMode::NonRecursive)
        .map_err(|e| DaemonError::Io {
            path: dir.display().to_string(),
            source: std::io::Error::other(e),
        })?;
    Ok(watcher)
}

/// Writes `bytes` to a new file only its owner may read: a `.errors` file
/// quotes rejected rows' reasons, which can name buyers.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// Wakes the loop through `wake` when the SQLite file at `path` is removed,
/// renamed or created anew, so that a deleted database is noticed at once
/// rather than at the next due stage. Writes to the file (and its log
/// files) are no news.
pub(super) fn watch_database(path: &Path, wake: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::event::{EventKind, ModifyKind};
    use notify::Watcher;
    let name = path.file_name()?.to_owned();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let moved = matches!(
            event.kind,
            EventKind::Remove(_) | EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_))
        );
        if moved && event.paths.iter().any(|p| p.file_name() == Some(&name)) {
            wake.notify_one();
        }
    })
    .ok()?;
    if let Err(error) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(%error, dir = %dir.display(), "cannot watch the database's folder; a deleted database is noticed at the next wake-up");
        return None;
    }
    Some(watcher)
}
