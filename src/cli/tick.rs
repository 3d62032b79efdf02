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
    /// Say what the pass would send, skip and expire, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(super) async fn run(args: TickArgs, config: &Path) -> Result<ExitCode> {
    let config = super::load(config)?;
    let now = args.now.unwrap_or_else(Utc::now);
    if args.dry_run {
        return dry_run(Engine::open(config).await?, now).await;
    }
    // A running daemon owns a SQLite database; a parallel tick would
    // take its in-flight sends for crashed ones.
    let _lock = crate::daemon::InstanceLock::acquire(&config.database_url)?;
    let engine = Engine::open(config).await?;
    if let Some(paused) = engine.store.paused().await? {
        println!("sending {paused}; nothing sent (followupd resume)");
        return Ok(ExitCode::SUCCESS);
    }
    let summary = engine.tick(now).await?;
    engine.transport.shutdown().await;
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

/// What a pass at `now` would do, from the plan: it reads, claims nothing
/// and sends nothing, so it may run beside the service.
async fn dry_run(engine: Engine, now: DateTime<Utc>) -> Result<ExitCode> {
    let (mut send, mut skip, mut expire) = (0u64, 0u64, 0u64);
    engine
        .plan(now, None, |line| {
            let verb = match line.state.as_str() {
                "due" => {
                    send += 1;
                    "would send"
                }
                "will_skip" => {
                    skip += 1;
                    "would skip"
                }
                "will_expire" => {
                    expire += 1;
                    "would expire"
                }
                _ => return true,
            };
            println!(
                "{verb:<12} {}/{} {}: {}",
                line.marketplace, line.order_id, line.stage, line.reason
            );
            true
        })
        .await?;
    println!("dry run: would send {send}, skip {skip}, expire {expire}; nothing was changed");
    Ok(ExitCode::SUCCESS)
}
