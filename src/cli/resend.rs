//! `followupd resend ORDER STAGE`: one stage again, on purpose.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use crate::engine::Engine;
use crate::schedule::StageState;

#[derive(Debug, Args)]
pub struct ResendArgs {
    /// Order id.
    order: String,
    /// Stage name.
    stage: String,
    /// Marketplace, when the order id exists on several.
    #[arg(long)]
    marketplace: Option<String>,
    /// The instant to record; default: now. RFC 3339, a date, or -3d/+2h.
    #[arg(long, value_parser = super::time::parse_time, allow_hyphen_values = true)]
    now: Option<DateTime<Utc>>,
}

pub(super) async fn run(args: ResendArgs, config: &Path) -> Result<ExitCode> {
    let engine = Engine::open(super::load(config)?).await?;
    super::check_stage(&engine.config, &args.stage)?;
    let state = engine
        .resend(
            &args.order,
            args.marketplace.as_deref(),
            &args.stage,
            args.now.unwrap_or_else(Utc::now),
        )
        .await?;
    println!("{} {}: {state}", args.order, args.stage);
    engine.transport.shutdown().await;
    Ok(super::exit(state == StageState::Sent))
}
