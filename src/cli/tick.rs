//! `followupd tick`: one scheduling pass, then exit.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use crate::engine::Engine;

#[derive(Debug, Args)]
pub struct TickArgs {
    /// The instant to act for; default: now. RFC 3339, a date, or -3d/+2h.
    #[arg(long, value_parser = super::time::parse_time, allow_hyphen_values = true)]
    now: Option<DateTime<Utc>>,
}

pub(super) async fn run(args: TickArgs, config: &Path) -> Result<ExitCode> {
    let config = super::load(config)?;
    // A running daemon owns a SQLite database; a parallel tick would
    // take its in-flight sends for crashed ones.
    let _lock = crate::daemon::InstanceLock::acquire(&config.database_url)?;
    let engine = Engine::open(config).await?;
    let summary = engine.tick(args.now.unwrap_or_else(Utc::now)).await?;
    engine.transport.shutdown().await;
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}
