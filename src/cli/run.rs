//! `followupd run`: the service.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::UnboundedSender;

use crate::daemon::{RunOptions, Wake};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Import these files once at start (they are not moved).
    #[arg(long)]
    import: Vec<PathBuf>,
}

pub(super) async fn run(args: RunArgs, config: &Path) -> Result<ExitCode> {
    let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel();
    reload_on_hangup(wake_tx.clone())?;
    crate::daemon::run(
        config.to_path_buf(),
        RunOptions {
            import: args.import,
        },
        stop_signal()?,
        wake_rx,
        wake_tx,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Asks the daemon to reload on every SIGHUP, until it stops listening.
fn reload_on_hangup(wake: UnboundedSender<Wake>) -> Result<()> {
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if wake.send(Wake::Reload("SIGHUP")).is_err() {
                break;
            }
        }
    });
    Ok(())
}

/// Completes on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
fn stop_signal() -> Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
