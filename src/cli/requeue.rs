//! `followupd requeue --state blocked`: ended stages back in the queue,
//! for the cases a person decides (a fixed template or list, a relay that
//! refused everything while misconfigured).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};

use crate::schedule::StageState;
use crate::store::{RequeueFilter, Store};

#[derive(Debug, Args)]
pub struct RequeueArgs {
    /// Which ended stages.
    #[arg(long, value_enum)]
    state: RequeueState,
    /// Only this stage.
    #[arg(long)]
    stage: Option<String>,
    /// Only stages that ended at or after this instant.
    #[arg(long, value_parser = super::time::parse_time, allow_hyphen_values = true)]
    since: Option<DateTime<Utc>>,
    /// Say which stages would be requeued, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The instant to record; default: now.
    #[arg(long, value_parser = super::time::parse_time, allow_hyphen_values = true)]
    now: Option<DateTime<Utc>>,
}

/// The ended states a stage can be requeued from (`sent` is `resend`'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RequeueState {
    Blocked,
    Failed,
    Expired,
    Skipped,
    /// In doubt: the buyer may already have the message.
    Unknown,
}

impl From<RequeueState> for StageState {
    fn from(s: RequeueState) -> Self {
        match s {
            RequeueState::Blocked => StageState::Blocked,
            RequeueState::Failed => StageState::Failed,
            RequeueState::Expired => StageState::Expired,
            RequeueState::Skipped => StageState::Skipped,
            RequeueState::Unknown => StageState::Unknown,
        }
    }
}

pub(super) async fn run(args: RequeueArgs, config: &Path) -> Result<ExitCode> {
    let config = super::load(config)?;
    if let Some(stage) = &args.stage {
        super::check_stage(&config, stage)?;
    }
    let state = StageState::from(args.state);
    let store = Store::open(&config.database_url).await?;
    let filter = RequeueFilter {
        state,
        stage: args.stage.clone(),
        since: args.since,
    };
    let now = args.now.unwrap_or_else(Utc::now);
    let requeued = store.requeue(&filter, now, args.dry_run).await;
    store.close().await;
    let requeued = requeued?;
    for r in &requeued {
        println!("{}/{} {}", r.marketplace, r.order_id, r.stage);
    }
    let verb = if args.dry_run {
        "would requeue"
    } else {
        "requeued"
    };
    if requeued.is_empty() {
        eprintln!("no {state} stages match; nothing {verb}");
        return Ok(ExitCode::from(1));
    }
    eprintln!(
        "{verb} {} {state} stages; the next pass composes them again and sends those whose window is open",
        requeued.len()
    );
    if state == StageState::Unknown {
        eprintln!(
            "note: an unknown stage may have reached the buyer already; they may get it twice"
        );
    }
    Ok(ExitCode::SUCCESS)
}
