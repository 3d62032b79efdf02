//! `followupd show ID`: a stored message.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::store::Store;

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// An id from `followupd logs`.
    id: i64,
}

pub(super) async fn run(args: ShowArgs, config: &Path) -> Result<ExitCode> {
    let id = args.id;
    let config = super::load(config)?;
    let store = Store::open(&config.database_url).await?;
    let entry = store
        .log_entry(id)
        .await?
        .with_context(|| format!("no send-log entry {id} (see followupd logs)"))?;
    let Some(message_id) = entry.message_ref else {
        bail!(
            "entry {id} ({} {} {}) has no stored message: {}",
            entry.order_id,
            entry.stage,
            entry.status,
            entry.detail.unwrap_or_default()
        );
    };
    let message = store
        .message(message_id)
        .await?
        .with_context(|| format!("stored message {message_id} is missing"))?;
    eprintln!(
        "# entry {id}: {} {} to {}, {} at {}",
        entry.order_id,
        entry.stage,
        entry.to,
        entry.status,
        entry.at.to_rfc3339()
    );
    std::io::stdout().write_all(&message.raw)?;
    Ok(ExitCode::SUCCESS)
}
