//! `followupd run`: the long-running service.
//!
//! One loop does the work: settle in-doubt sends left by a previous run,
//! import files dropped into the inbox, send what is due, then sleep until
//! the next stage is due or something wakes it (a new inbox file, a reload,
//! a stop request). The loop reads the wall clock once a pass and hands
//! that instant to the engine, which schedules by it alone (the command
//! line passes `--now` instead). The wall clock is read elsewhere only for
//! liveness, never for a schedule: claim leases (engine) and how recent
//! the last database error is (store).
//!
//! It speaks systemd's notify protocol (READY, STATUS, WATCHDOG, RELOADING,
//! STOPPING), reloads config and templates atomically on SIGHUP or when a
//! template changes (an invalid new set is refused and the old one keeps
//! running), and on SIGTERM stops taking new work, lets in-flight sends
//! finish within a grace period and exits cleanly.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use sd_notify::NotifyState;
use tokio::sync::{mpsc, Notify};

use crate::config::{Config, ConfigError};
use crate::engine::{Engine, EngineError, TickControl, TickSummary};

mod inbox;
mod lock;
mod reload;
mod systemd;

pub use inbox::process_inbox;
pub use lock::InstanceLock;
pub use reload::ForbiddenText;

use inbox::{import_one, watch_database, watch_inbox};
use reload::{refuse_forbidden_template_text, reload, watch_templates};
use systemd::{notify, Watchdog};

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Locked(String),
    #[error(transparent)]
    Templates(#[from] ForbiddenText),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error(
        "{path}: cannot write there ({source}); followupd keeps its database and the \
         database's log files in that folder: give the service's user write access to it"
    )]
    NotWritable {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Something the loop should react to besides time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Re-read config and templates (SIGHUP, or a template changed).
    Reload(&'static str),
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
    let (mut engine, _lock) = start(&config_path, &options).await?;
    let inbox_wake = Arc::new(Notify::new());
    let _inbox_watcher = match &engine.config.inbox {
        Some(dir) => Some(watch_inbox(dir, Arc::clone(&inbox_wake))?),
        None => None,
    };
    let _bounce_watcher = match &engine.config.bounces.inbox {
        Some(dir) => Some(watch_inbox(dir, Arc::clone(&inbox_wake))?),
        None => None,
    };
    let _database_watcher = engine
        .store
        .sqlite_path()
        .and_then(|path| watch_database(path, Arc::clone(&inbox_wake)));
    let http = start_http(&engine, &inbox_wake).await?;
    let mut template_watcher = watch_templates(&engine.config, wake_sender.clone());
    let watchdog = Watchdog::from_env();

    let mut shutdown = std::pin::pin!(shutdown.fuse());
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&status_line(&engine, "running").await),
    ]);
    tracing::info!(
        config = %config_path.display(),
        database = %crate::config::redact_url(&engine.config.database_url),
        transport = %engine.config.transport,
        "followupd is running"
    );

    let mut rounds = Rounds::default();
    loop {
        watchdog.beat_now();
        let Some(sleep_until) = one_round(
            &engine,
            &mut rounds,
            &watchdog,
            http.as_ref(),
            &mut shutdown,
        )
        .await
        else {
            break;
        };
        let heartbeat = watchdog.every.unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = &mut shutdown => {
                if let Some(http) = &http {
                    http.begin_shutdown();
                }
                notify(&[NotifyState::Stopping]);
                break;
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

/// Loads the config, takes the instance lock (held while the returned lock
/// lives), opens the engine, settles the sends the previous run left in
/// doubt and imports the files named on the command line.
async fn start(
    config_path: &Path,
    options: &RunOptions,
) -> Result<(Engine, Option<InstanceLock>), DaemonError> {
    let config = Config::load(config_path)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    check_folder_writable(&config.database_url)?;
    let lock = InstanceLock::acquire(&config.database_url)?;
    let engine = Engine::open(config).await?;
    refuse_forbidden_template_text(&engine.templates)?;
    let settled = engine.recover_in_flight(Utc::now()).await?;
    if settled > 0 {
        tracing::warn!(settled, "settled sends left in doubt by the previous run");
    }
    check_database_writable(&engine).await?;
    engine.settle_clock(Utc::now(), false).await?;
    engine
        .requeue_blocked_if_content_changed(Utc::now())
        .await?;
    for file in &options.import {
        // Logged by import_one; a bad start file does not stop the service.
        let _ = import_one(&engine, file, None).await;
    }
    Ok((engine, lock))
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
    Ok(Some(crate::http::HttpServer::start(http, listener, parts)?))
}

/// Fails start-up, naming the folder, if the service cannot write in the
/// SQLite file's folder: SQLite creates the database's log files there, and
/// running on would only fail every send later.
fn check_folder_writable(database_url: &str) -> Result<(), DaemonError> {
    let Some(file) = crate::store::sqlite_path_of(database_url) else {
        return Ok(());
    };
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        // Created (or refused, naming it) when the store opens.
        return Ok(());
    }
    let probe = dir.join(format!(".followupd-write-check-{}", std::process::id()));
    std::fs::File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|source| DaemonError::NotWritable {
            path: dir.display().to_string(),
            source,
        })
}

/// Fails start-up if the database refuses a write (a read-only file or
/// database user).
async fn check_database_writable(engine: &Engine) -> Result<(), DaemonError> {
    engine
        .store
        .set_setting("last_started_at", &Utc::now().to_rfc3339())
        .await
        .map_err(|e| DaemonError::Engine(e.into()))
}

/// What the loop carries from one round to the next.
#[derive(Debug, Default)]
struct Rounds {
    /// Passes in a row that could not process every due order.
    troubled_passes: u32,
    /// The wall clock at the last pass, to notice it going back.
    last_now: Option<DateTime<Utc>>,
    /// When the loop last said that the database file is gone (it says so
    /// again every [`HALTED_REMINDER`] while it is).
    halted_said: Option<std::time::Instant>,
}

/// How often a service whose database file is gone says so again.
const HALTED_REMINDER: Duration = Duration::from_secs(60);

/// How often a service whose database file is gone looks again.
const HALTED_RECHECK: Duration = Duration::from_secs(5);

/// How far back the wall clock may step between passes before the plan is
/// settled again ([`Engine::settle_clock`]); small steps are NTP's.
const CLOCK_STEP_BACK: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// One round of the loop: unless the database file is gone, import the
/// inbox and run a pass. Returns how long to sleep after it, or `None` when
/// the service is stopping.
async fn one_round(
    engine: &Engine,
    rounds: &mut Rounds,
    watchdog: &Arc<Watchdog>,
    http: Option<&crate::http::HttpServer>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Option<Duration> {
    if let Err(e) = engine.store.check_file() {
        // Sending on a file nobody else sees would lose its record (and
        // send again after a restart): stop, loudly, until restarted.
        if rounds
            .halted_said
            .is_none_or(|t| t.elapsed() >= HALTED_REMINDER)
        {
            tracing::error!(error = %e, "database file gone: not sending");
            notify(&[NotifyState::Status(&format!("NOT SENDING: {e}"))]);
            rounds.halted_said = Some(std::time::Instant::now());
        }
        return Some(HALTED_RECHECK);
    }
    if let Some(inbox) = engine.config.inbox.clone() {
        if import_inbox(engine, &inbox, watchdog, shutdown).await {
            if let Some(http) = http {
                http.begin_shutdown();
            }
            return None;
        }
    }
    if let Some(dir) = engine.config.bounces.inbox.clone() {
        crate::bounce::inbox::process(&engine.store, engine.config.bounces.soft, &dir).await;
    }
    let now = Utc::now();
    if rounds
        .last_now
        .is_some_and(|last| now < last - CLOCK_STEP_BACK)
    {
        tracing::warn!(now = %now.to_rfc3339(), "the wall clock went back: re-planning");
        if let Err(e) = engine.settle_clock(now, true).await {
            tracing::error!(error = %e, "cannot re-plan after the clock went back");
        }
    }
    rounds.last_now = Some(now);
    let (result, end) = pass(engine, now, watchdog, http, shutdown).await;
    if end == PassEnd::Abandoned {
        tracing::warn!(
            grace = ?engine.config.daemon.shutdown_grace,
            "grace period over: sends still in flight are left in doubt"
        );
        return None;
    }
    rounds.troubled_passes = report_pass(result, rounds.troubled_passes);
    if end == PassEnd::Stopping {
        return None;
    }
    notify(&[NotifyState::Status(&status_line(engine, "running").await)]);
    Some(
        next_wake(engine, now)
            .await
            .max(error_backoff(rounds.troubled_passes)),
    )
}

/// Imports the inbox; a long import keeps the watchdog fed, and if
/// `shutdown` fires meanwhile it stops after the batch under way (the file
/// resumes from there at the next start). Returns whether it was stopped.
async fn import_inbox(
    engine: &Engine,
    inbox: &Path,
    watchdog: &Arc<Watchdog>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> bool {
    let control = {
        let watchdog = Arc::clone(watchdog);
        TickControl::with_heartbeat(move || watchdog.beat())
    };
    let importing = process_inbox(engine, inbox, &control);
    let mut importing = std::pin::pin!(importing);
    tokio::select! {
        () = &mut importing => false,
        () = shutdown => {
            control.stop();
            tracing::info!("stopping: letting the import finish its batch");
            notify(&[NotifyState::Stopping]);
            importing.await;
            true
        }
    }
}

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassEnd {
    /// It worked through everything due.
    Finished,
    /// A stop was asked for; the sends under way finished in time.
    Stopping,
    /// A stop was asked for and the grace period ran out first.
    Abandoned,
}

/// One pass over what is due at `now`. If `shutdown` fires meanwhile, no
/// new send starts and the sends under way get the grace period to finish.
async fn pass(
    engine: &Engine,
    now: DateTime<Utc>,
    watchdog: &Arc<Watchdog>,
    http: Option<&crate::http::HttpServer>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> (Result<TickSummary, EngineError>, PassEnd) {
    // Instances sharing PostgreSQL take over the sends of one that died,
    // once its claims' leases run out.
    if engine.store.backend() == crate::store::Backend::Postgres {
        if let Err(e) = engine.recover_in_flight(now).await {
            tracing::error!(error = %e, "cannot settle abandoned claims");
        }
    }
    let control = {
        let watchdog = Arc::clone(watchdog);
        TickControl::with_heartbeat(move || watchdog.beat())
    };
    let pass = engine.run_due(now, &control);
    let mut pass = std::pin::pin!(pass);
    tokio::select! {
        r = &mut pass => (r, PassEnd::Finished),
        _ = shutdown => {
            if let Some(http) = http {
                http.begin_shutdown();
            }
            control.stop();
            tracing::info!("stopping: letting in-flight sends finish");
            notify(&[NotifyState::Stopping]);
            match tokio::time::timeout(engine.config.daemon.shutdown_grace, &mut pass).await {
                Ok(r) => (r, PassEnd::Stopping),
                Err(_) => (Ok(Default::default()), PassEnd::Abandoned),
            }
        }
    }
}

/// Logs how a pass went; returns how many passes in a row have now had
/// trouble (orders that could not be processed, or a failed pass).
fn report_pass(result: Result<TickSummary, EngineError>, troubled_before: u32) -> u32 {
    let troubled = match &result {
        Ok(summary) if summary.errors == 0 => 0,
        _ => troubled_before.saturating_add(1),
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
    troubled
}

/// How long to sleep: until the next stage wants looking at, but at least
/// every `idle_recheck` (orders may arrive through another process).
async fn next_wake(engine: &Engine, now: DateTime<Utc>) -> Duration {
    let cap = engine.config.daemon.idle_recheck;
    // While paused, due stages stay due: look again for `resume` every few
    // seconds instead of at once.
    if matches!(engine.store.paused().await, Ok(Some(_))) {
        return PAUSED_RECHECK.min(cap);
    }
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

/// How often a paused service looks whether it was resumed.
const PAUSED_RECHECK: Duration = Duration::from_secs(5);

pub(super) async fn status_line(engine: &Engine, prefix: &str) -> String {
    let now = Utc::now();
    let midnight = now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
    let prefix = match engine.store.paused().await {
        Ok(Some(paused)) => format!("{prefix}, sending {paused}"),
        _ => prefix.to_string(),
    };
    match engine.store.status_summary(now, midnight).await {
        Ok(s) => format!("{prefix}: {s}"),
        Err(e) => format!("{prefix}: status unavailable ({e})"),
    }
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
