//! Reloads: config.toml and the templates re-read and swapped in whole, or
//! refused with the reason while the running set stays.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sd_notify::NotifyState;
use tokio::sync::mpsc;

use super::systemd::notify;
use super::{status_line, Wake};
use crate::config::{Config, ConfigError};
use crate::engine::Engine;
use crate::render::{RenderError, Templates};
use crate::store::StoreError;
use crate::transport::smtp::SmtpSetupError;
use crate::transport::Transport;

/// Template files whose own text holds a forbidden word, one
/// `FILE:LINE:COL: …` line each.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ForbiddenText(pub Vec<String>);

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Templates(#[from] RenderError),
    #[error(transparent)]
    Forbidden(#[from] ForbiddenText),
    #[error(transparent)]
    Transport(#[from] SmtpSetupError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A template set whose own text holds a forbidden word is not accepted:
/// every message from it would be blocked.
pub(super) fn refuse_forbidden_template_text(templates: &Templates) -> Result<(), ForbiddenText> {
    let hits = templates.own_hits();
    if hits.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = hits
        .iter()
        .map(|(file, hit)| {
            format!(
                "{file}:{}:{}: forbidden word '{}' (matches '{}')",
                hit.line, hit.column, hit.word, hit.pattern
            )
        })
        .collect();
    Err(ForbiddenText(lines))
}

/// Re-reads config.toml and the templates and swaps them in, or keeps the
/// running set and says why.
pub(super) async fn reload(engine: &mut Engine, config_path: &Path, why: &str) {
    let monotonic = NotifyState::monotonic_usec_now();
    let mut states = vec![NotifyState::Reloading];
    if let Ok(m) = monotonic {
        states.push(m);
    }
    notify(&states);
    tracing::info!(trigger = why, "reloading configuration and templates");
    match load_new_set(engine, config_path).await {
        Ok(()) => {
            tracing::info!("reload done");
            replan(engine).await;
            let status = status_line(engine, "reloaded").await;
            notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
        }
        Err(error) => {
            // One line, no secret: a TOML error or a database URL can quote
            // one (src/redact.rs).
            let message = crate::redact::text(&error.to_string());
            tracing::error!(error = %message, "reload refused; still running on the previous configuration and templates");
            let first = message.lines().next().unwrap_or_default().to_string();
            let status = format!("reload failed, running on previous set: {first}");
            notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
        }
    }
}

/// Looks at every open stage again under the new settings, and composes
/// blocked stages again if the templates or forbidden lists changed.
async fn replan(engine: &Engine) {
    match engine.replan().await {
        Ok(flagged) => tracing::info!(flagged, "open stages re-planned under the new settings"),
        Err(e) => tracing::error!(error = %e, "cannot re-plan open stages"),
    }
    if let Err(e) = engine.requeue_blocked_if_content_changed(Utc::now()).await {
        tracing::error!(error = %e, "cannot requeue blocked stages");
    }
}

async fn load_new_set(engine: &mut Engine, config_path: &Path) -> Result<(), ReloadError> {
    let mut config = Config::load(config_path)?;
    let templates = Templates::for_config(&config)?;
    refuse_forbidden_template_text(&templates)?;
    if config.database_url != engine.config.database_url {
        tracing::warn!("database.url changed: that takes a restart; keeping the current database");
        config.database_url = engine.config.database_url.clone();
    }
    let transport = if config.transport != engine.config.transport {
        Some(Transport::new(&config.transport)?)
    } else {
        None
    };
    engine
        .store
        .ensure_stage_rows(&crate::engine::stage_names(&config))
        .await?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    engine.config = Arc::new(config);
    engine.templates = Arc::new(templates);
    if let Some(t) = transport {
        let old = engine.replace_transport(t);
        old.shutdown().await;
    }
    Ok(())
}

/// Watches the templates folder (when enabled) and asks for a reload after
/// edits settle for half a second, so a shop person only has to save.
pub(super) fn watch_templates(
    config: &Config,
    wakes: mpsc::UnboundedSender<Wake>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    if !config.daemon.watch_templates {
        return None;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })
    .ok()?;
    if let Err(e) = watcher.watch(&config.templates_dir, notify::RecursiveMode::Recursive) {
        tracing::warn!(error = %e, dir = %config.templates_dir.display(), "cannot watch templates; use systemctl reload after edits");
        return None;
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Let an editor finish writing (and renaming) before reloading.
            loop {
                match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if wakes.send(Wake::Reload("a template changed")).is_err() {
                return;
            }
        }
    });
    Some(watcher)
}
