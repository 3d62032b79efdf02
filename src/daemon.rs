//! `followupd run`: the long-running service.
//!
//! One loop does the work: settle in-doubt sends left by a previous run,
//! import files dropped into the inbox, send what is due, then sleep until
//! the next stage is due or something wakes it (a new inbox file, a reload,
//! a stop request). It is the only place that reads the wall clock.
//!
//! It speaks systemd's notify protocol (READY, STATUS, WATCHDOG, RELOADING,
//! STOPPING), reloads config and templates atomically on SIGHUP or when a
//! template changes (an invalid new set is refused and the old one keeps
//! running), and on SIGTERM stops taking new work, lets in-flight sends
//! finish within a grace period and exits cleanly.

use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use sd_notify::NotifyState;
use tokio::sync::{mpsc, Notify};

use crate::config::{Config, ConfigError};
use crate::engine::{Engine, EngineError, TickControl};
use crate::import::Format;
use crate::render::Templates;
use crate::transport::Transport;

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Locked(String),
    #[error("{0}")]
    Templates(String),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Holds the one-instance lock on a SQLite database for as long as it lives.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    /// Takes the lock beside a SQLite database file; PostgreSQL needs none
    /// (several instances share the work there). Fails at once, naming the
    /// holder, when another process has it.
    pub fn acquire(database_url: &str) -> Result<Option<Self>, DaemonError> {
        let Some(rest) = database_url.strip_prefix("sqlite://") else {
            return Ok(None);
        };
        let db = rest.split('?').next().unwrap_or(rest);
        if db.is_empty() || db == ":memory:" {
            return Ok(None);
        }
        let path = PathBuf::from(format!("{db}.lock"));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| DaemonError::Io {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let io = |source| DaemonError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if file.try_lock().is_err() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(DaemonError::Locked(format!(
                "another followupd ({}) is already using {db}; only one process may send from a \
                 SQLite database (lock: {})",
                if holder.is_empty() {
                    "unknown pid".to_string()
                } else {
                    holder.to_string()
                },
                path.display()
            )));
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "pid {}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Some(Self { _file: file }))
    }
}

/// Something the loop should react to besides time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Re-read config and templates (SIGHUP, or a template changed).
    Reload(&'static str),
}

/// Sends a systemd notification; without `NOTIFY_SOCKET` it does nothing.
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Pings the systemd watchdog at most every half interval.
struct Watchdog {
    every: Option<Duration>,
    last: std::sync::Mutex<Instant>,
}

impl Watchdog {
    fn from_env() -> Arc<Self> {
        Arc::new(Self {
            every: sd_notify::watchdog_enabled().map(|d| d / 2),
            last: std::sync::Mutex::new(Instant::now()),
        })
    }

    fn beat(&self) {
        let Some(every) = self.every else { return };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= every {
            notify(&[NotifyState::Watchdog]);
            *last = Instant::now();
        }
    }

    fn beat_now(&self) {
        if self.every.is_some() {
            notify(&[NotifyState::Watchdog]);
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
    }
}

/// Settings for [`run`] that come from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Files to import once at start (they are left where they are).
    pub import: Vec<PathBuf>,
}

/// Runs the service until `shutdown` completes. `wakes` carries reload
/// requests (main turns SIGHUP into one).
pub async fn run(
    config_path: PathBuf,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
    mut wakes: mpsc::UnboundedReceiver<Wake>,
    wake_sender: mpsc::UnboundedSender<Wake>,
) -> Result<(), DaemonError> {
    let config = Config::load(&config_path)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let _lock = InstanceLock::acquire(&config.database_url)?;
    let mut engine = Engine::open(config).await?;
    refuse_forbidden_template_text(&engine.templates)?;
    let settled = engine.recover_in_flight(Utc::now()).await?;
    if settled > 0 {
        tracing::warn!(settled, "settled sends left in doubt by the previous run");
    }
    for file in &options.import {
        import_one(&engine, file).await;
    }

    let inbox_wake = Arc::new(Notify::new());
    let _inbox_watcher = match &engine.config.inbox {
        Some(dir) => Some(watch_inbox(dir, Arc::clone(&inbox_wake))?),
        None => None,
    };
    let http = start_http(&engine, &inbox_wake).await?;
    let mut template_watcher = watch_templates(&engine.config, wake_sender.clone());
    let watchdog = Watchdog::from_env();

    let mut shutdown = std::pin::pin!(shutdown.fuse());
    let mut stopping = false;
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&status_line(&engine, "running").await),
    ]);
    tracing::info!(config = %config_path.display(), "followupd is running");

    let mut troubled_passes = 0u32;
    while !stopping {
        watchdog.beat_now();
        if let Some(inbox) = engine.config.inbox.clone() {
            process_inbox(&engine, &inbox).await;
        }
        let now = Utc::now();
        // Instances sharing PostgreSQL take over the sends of one that died,
        // once its claims' leases run out.
        if engine.store.backend() == crate::store::Backend::Postgres {
            if let Err(e) = engine.recover_in_flight(now).await {
                tracing::error!(error = %e, "cannot settle abandoned claims");
            }
        }
        let control = {
            let watchdog = Arc::clone(&watchdog);
            TickControl::with_heartbeat(move || watchdog.beat())
        };
        let (result, abandoned) = {
            let pass = engine.run_due(now, &control);
            let mut pass = std::pin::pin!(pass);
            tokio::select! {
                r = &mut pass => (r, false),
                _ = &mut shutdown => {
                    stopping = true;
                    if let Some(http) = &http {
                        http.begin_shutdown();
                    }
                    control.stop();
                    tracing::info!("stopping: letting in-flight sends finish");
                    notify(&[NotifyState::Stopping]);
                    match tokio::time::timeout(engine.config.daemon.shutdown_grace, &mut pass).await {
                        Ok(r) => (r, false),
                        Err(_) => (Ok(Default::default()), true),
                    }
                }
            }
        };
        if abandoned {
            tracing::warn!(
                grace = ?engine.config.daemon.shutdown_grace,
                "grace period over: sends still in flight are left in doubt"
            );
            break;
        }
        troubled_passes = match &result {
            Ok(summary) if summary.errors == 0 => 0,
            _ => troubled_passes.saturating_add(1),
        };
        match result {
            Ok(summary) if summary != Default::default() => {
                tracing::info!(%summary, "pass finished");
            }
            Ok(_) => {}
            // A database hiccup must not kill the service: log it and try
            // again on the next wake-up.
            Err(e) => tracing::error!(error = %e, "pass failed"),
        }
        if stopping {
            break;
        }
        notify(&[NotifyState::Status(&status_line(&engine, "running").await)]);

        let sleep_until = next_wake(&engine, now)
            .await
            .max(error_backoff(troubled_passes));
        let heartbeat = watchdog.every.unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = &mut shutdown => {
                stopping = true;
                if let Some(http) = &http {
                    http.begin_shutdown();
                }
                notify(&[NotifyState::Stopping]);
            }
            wake = wakes.recv() => {
                if let Some(Wake::Reload(why)) = wake {
                    reload(&mut engine, &config_path, why).await;
                    template_watcher = watch_templates(&engine.config, wake_sender.clone());
                }
            }
            _ = inbox_wake.notified() => {}
            _ = tokio::time::sleep(sleep_until) => {}
            _ = tokio::time::sleep(heartbeat) => {}
        }
    }
    drop(template_watcher);
    notify(&[NotifyState::Stopping]);
    // Requests in flight are answered (their changes committed) before the
    // sender and the database close.
    if let Some(http) = http {
        http.finish(engine.config.daemon.shutdown_grace).await;
    }
    engine.transport.shutdown().await;
    engine.store.close().await;
    tracing::info!("followupd stopped");
    Ok(())
}

/// Starts the HTTP listener when `[http] listen` is set. Its committed
/// changes wake the loop through `wake`, as a file in the inbox does.
async fn start_http(
    engine: &Engine,
    wake: &Arc<Notify>,
) -> Result<Option<crate::http::HttpServer>, DaemonError> {
    let Some(http) = engine.config.http.clone() else {
        return Ok(None);
    };
    let listener = crate::http::bind(&http).await?;
    let changes = engine.store.change_writer(
        &engine.config.database_url,
        crate::engine::stage_names(&engine.config),
    );
    let parts = crate::http::HttpParts {
        config: Arc::clone(&engine.config),
        store: engine.store.clone(),
        changes,
        metrics: Arc::new(crate::http::Metrics::new()),
        wake: Arc::clone(wake),
    };
    Ok(Some(crate::http::HttpServer::start(http, listener, parts)))
}

/// How long to sleep: until the next stage wants looking at, but at least
/// every `idle_recheck` (orders may arrive through another process).
async fn next_wake(engine: &Engine, now: DateTime<Utc>) -> Duration {
    let cap = engine.config.daemon.idle_recheck;
    match engine.store.next_check().await {
        Ok(Some(next)) => (next - now).to_std().unwrap_or(Duration::ZERO).min(cap),
        Ok(None) => cap,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the next due time");
            Duration::from_secs(5).min(cap)
        }
    }
    // Never spin: a stage due "now" that could not be sent waits a moment.
    .max(Duration::from_millis(200))
}

/// How long to wait at least after `passes` passes in a row that could not
/// process every due order (the database failing, say): 1 s, doubling to
/// 32 s. Orders that failed stay due, so without this the service would
/// retry them, and log each failure, several times a second.
fn error_backoff(passes: u32) -> Duration {
    match passes {
        0 => Duration::ZERO,
        n => Duration::from_secs(1 << (n - 1).min(5)),
    }
}

async fn status_line(engine: &Engine, prefix: &str) -> String {
    let now = Utc::now();
    let midnight = now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
    match engine.store.status_summary(now, midnight).await {
        Ok(s) => format!("{prefix}: {s}"),
        Err(e) => format!("{prefix}: status unavailable ({e})"),
    }
}

/// A template set whose own text holds a forbidden word is not accepted:
/// every message from it would be blocked.
fn refuse_forbidden_template_text(templates: &Templates) -> Result<(), DaemonError> {
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
    Err(DaemonError::Templates(lines.join("\n")))
}

/// Re-reads config.toml and the templates and swaps them in, or keeps the
/// running set and says why.
async fn reload(engine: &mut Engine, config_path: &Path, why: &str) {
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
            let status = status_line(engine, "reloaded").await;
            notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
        }
        Err(message) => {
            tracing::error!(error = %message, "reload refused; still running on the previous configuration and templates");
            let first = message.lines().next().unwrap_or_default().to_string();
            let status = format!("reload failed, running on previous set: {first}");
            notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
        }
    }
}

async fn load_new_set(engine: &mut Engine, config_path: &Path) -> Result<(), String> {
    let mut config = Config::load(config_path).map_err(|e| e.to_string())?;
    let templates = Templates::for_config(&config).map_err(|e| e.to_string())?;
    refuse_forbidden_template_text(&templates).map_err(|e| e.to_string())?;
    if config.database_url != engine.config.database_url {
        tracing::warn!("database.url changed: that takes a restart; keeping the current database");
        config.database_url = engine.config.database_url.clone();
    }
    let transport = if config.transport != engine.config.transport {
        Some(Transport::new(&config.transport).map_err(|e| e.to_string())?)
    } else {
        None
    };
    engine
        .store
        .ensure_stage_rows(&crate::engine::stage_names(&config))
        .await
        .map_err(|e| e.to_string())?;
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

/// Imports one file and reports the outcome in the log.
async fn import_one(engine: &Engine, file: &Path) -> Option<crate::engine::ImportSummary> {
    let options = crate::import::ReadOptions {
        source: engine.config.inbox_source,
        ..Default::default()
    };
    match engine.import_file_with(file, options, Utc::now()).await {
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
            Some(summary)
        }
        Err(e) => {
            tracing::error!(file = %file.display(), error = %e, "import failed");
            None
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
/// of such a file are imported all the same).
pub async fn process_inbox(engine: &Engine, inbox: &Path) {
    for file in ready_files(inbox) {
        let name = file.file_name().unwrap_or_default().to_owned();
        let readable = Format::from_path(&file).is_some() || engine.config.inbox_source.is_some();
        let errors: Vec<String> = if !readable {
            vec![format!(
                "{}: unknown file type (expected .csv, .tsv, .txt, .json, .jsonl or .ndjson)",
                name.to_string_lossy()
            )]
        } else {
            match import_one(engine, &file).await {
                Some(summary) => summary
                    .rejected
                    .iter()
                    .map(|r| format!("{}:{}: {}", name.to_string_lossy(), r.line, r.reason))
                    .collect(),
                // A file that cannot be read at all stays for the next pass
                // unless it is simply malformed.
                None => vec![format!(
                    "{}: could not be imported (see the service log)",
                    name.to_string_lossy()
                )],
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
                std::fs::write(errors_file, report)?;
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

fn watch_inbox(dir: &Path, wake: Arc<Notify>) -> Result<notify::RecommendedWatcher, DaemonError> {
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

/// Watches the templates folder (when enabled) and asks for a reload after
/// edits settle for half a second, so a shop person only has to save.
fn watch_templates(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_backoff_doubles_from_a_second_and_stops_growing() {
        let waits: Vec<u64> = (0..9).map(|n| error_backoff(n).as_secs()).collect();
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 32, 32, 32]);
        assert_eq!(error_backoff(u32::MAX), Duration::from_secs(32));
    }
}
