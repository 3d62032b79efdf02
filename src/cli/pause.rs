//! `followupd pause`: stop sending on every instance sharing the database.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use clap::Args;

use crate::store::Store;

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Why, for the others (shown by check and in the service status).
    #[arg(long, default_value = "")]
    reason: String,
}

pub(super) async fn run(args: PauseArgs, config: &Path) -> Result<ExitCode> {
    let config = super::load(config)?;
    let store = Store::open(&config.database_url).await?;
    let result = store.pause(args.reason.trim(), Utc::now()).await;
    store.close().await;
    result?;
    println!(
        "sending paused on {} for every instance (imports and plans go on); followupd resume to undo",
        crate::config::redact_url(&config.database_url)
    );
    Ok(ExitCode::SUCCESS)
}
