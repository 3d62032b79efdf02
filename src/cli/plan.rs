//! `followupd plan`: every stage of every order and why.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use crate::engine::{Engine, PlanLine};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The instant to plan for (RFC 3339); default: now.
    #[arg(long, value_parser = super::time::parse_now)]
    now: Option<DateTime<Utc>>,
    /// Only this order id.
    #[arg(long)]
    order: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: PlanArgs, config: &Path) -> Result<ExitCode> {
    let engine = Engine::open(super::load(config)?).await?;
    let now = args.now.unwrap_or_else(Utc::now);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !args.json {
        writeln!(
            out,
            "{:<20} {:<14} {:<12} {:<5} {:<12} {:<36} {:<20} REASON",
            "ORDER", "STAGE", "STATE", "LANG", "ANCHOR", "WINDOW (UTC)", "NEXT SEND (UTC)"
        )?;
    }
    let mut write_error = None;
    engine
        .plan(now, args.order.as_deref(), |line| {
            let result = if args.json {
                serde_json::to_string(&line)
                    .map_err(std::io::Error::other)
                    .and_then(|s| writeln!(out, "{s}"))
            } else {
                writeln!(out, "{}", plan_row(&line))
            };
            match result {
                Ok(()) => true,
                Err(e) => {
                    write_error.get_or_insert(e);
                    false
                }
            }
        })
        .await?;
    match write_error {
        // `plan | head` closing the pipe early is not an error.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Some(e) => return Err(e.into()),
        None => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn plan_row(line: &PlanLine) -> String {
    let (anchor, window) = match &line.window {
        Some(w) => (
            w.anchor.as_str().to_string(),
            format!(
                "{} .. {}",
                w.opens.format("%Y-%m-%d %H:%M"),
                w.closes.format("%Y-%m-%d %H:%M")
            ),
        ),
        None => ("-".into(), "-".into()),
    };
    let next = line
        .next_send
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into());
    format!(
        "{:<20} {:<14} {:<12} {:<5} {:<12} {:<36} {:<20} {}",
        line.order_id,
        line.stage,
        line.state,
        line.locale,
        anchor.split(' ').next().unwrap_or("-"),
        window,
        next,
        line.reason
    )
}
