//! `followupd resume`: sending goes on after `pause`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::store::Store;

pub(super) async fn run(config: &Path) -> Result<ExitCode> {
    let config = super::load(config)?;
    let store = Store::open(&config.database_url).await?;
    let result = store.resume().await;
    store.close().await;
    if result? {
        println!("sending resumed; a running service picks it up at its next pass");
    } else {
        println!("sending was not paused");
    }
    Ok(ExitCode::SUCCESS)
}
