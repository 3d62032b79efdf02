//! `[bounces] inbox`: bounce and complaint mail dropped into a folder (one
//! message a file, as a maildir's `new/` or a procmail rule leaves them) is
//! taken in by `followupd run`, then moved to `done/`, or to `rejected/`
//! with a `.errors` file saying why it could not be read. A message that
//! could not be recorded (the database is down) stays for the next pass.

use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::Utc;

use super::intake::{handle_mail, IntakeError};
use super::MAX_REPORT_BYTES;
use crate::store::Store;
use crate::suppress::SoftBounceLimit;

/// Files a delivery agent has finished writing: dot files and temporary
/// names are left alone until renamed.
fn ready_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            !name.starts_with('.')
                && ![".tmp", ".part", ".errors"]
                    .iter()
                    .any(|s| name.ends_with(s))
        })
        .collect();
    files.sort();
    files
}

/// Takes in every finished file of `dir`; returns how many were handled.
pub async fn process(store: &Store, limit: SoftBounceLimit, dir: &Path) -> usize {
    let mut handled = 0;
    for file in ready_files(dir) {
        let mut raw = Vec::new();
        let read = std::fs::File::open(&file)
            .and_then(|f| f.take(MAX_REPORT_BYTES as u64 + 1).read_to_end(&mut raw));
        if let Err(e) = read {
            tracing::error!(file = %file.display(), error = %e, "cannot read bounce file");
            continue;
        }
        let error = match handle_mail(store, limit, &raw, Utc::now()).await {
            Ok(result) => {
                for e in &result.effects {
                    tracing::info!(
                        file = %file.display(),
                        report = result.report,
                        kind = %e.kind,
                        address = e.address.as_deref().unwrap_or("-"),
                        status = e.status.as_deref().unwrap_or("-"),
                        order = e.order.as_deref().unwrap_or("-"),
                        suppressed = e.suppressed.map(|r| r.as_str()).unwrap_or("no"),
                        "bounce mail read"
                    );
                }
                None
            }
            Err(IntakeError::Unreadable(e)) => {
                tracing::warn!(file = %file.display(), error = %e, "bounce file unreadable");
                Some(e.to_string())
            }
            Err(IntakeError::Store(e)) => {
                tracing::error!(file = %file.display(), error = %e, "bounce not recorded, kept for the next pass");
                continue;
            }
        };
        handled += 1;
        if let Err(e) = move_away(dir, &file, error.as_deref()) {
            tracing::error!(file = %file.display(), error = %e, "cannot move bounce file");
        }
    }
    handled
}

/// Moves a handled file to `done/`, or with its reason to `rejected/`.
fn move_away(dir: &Path, file: &Path, error: Option<&str>) -> std::io::Result<()> {
    let target_dir = dir.join(if error.is_some() { "rejected" } else { "done" });
    std::fs::create_dir_all(&target_dir)?;
    let name = file.file_name().unwrap_or_default();
    let mut target = target_dir.join(name);
    if target.exists() {
        let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3f");
        target = target_dir.join(format!("{}.{stamp}", name.to_string_lossy()));
    }
    std::fs::rename(file, &target)?;
    if let Some(error) = error {
        std::fs::write(format!("{}.errors", target.display()), format!("{error}\n"))?;
    }
    Ok(())
}
