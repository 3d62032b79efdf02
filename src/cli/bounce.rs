//! `followupd bounce [FILE…]`: takes in bounce and complaint mail, from
//! files or from standard input (an MTA's pipe or alias).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;

use crate::bounce::intake::{handle_mail, Handled, IntakeError};
use crate::bounce::MAX_REPORT_BYTES;
use crate::store::Store;

/// sysexits.h's EX_TEMPFAIL: an MTA piping a bounce in keeps the message
/// and tries again later, instead of losing it to a database outage.
const EX_TEMPFAIL: u8 = 75;

#[derive(Debug, Args)]
pub struct BounceArgs {
    /// Files holding one message each; standard input when none.
    files: Vec<PathBuf>,
    /// The instant to record (RFC 3339); default: now.
    #[arg(long, value_parser = super::time::parse_time, allow_hyphen_values = true)]
    now: Option<DateTime<Utc>>,
    /// One JSON object per message.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: BounceArgs, config: &Path) -> Result<ExitCode> {
    let config = super::load(config)?;
    let store = match Store::open(&config.database_url).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("error: {e} (try again later)");
            return Ok(ExitCode::from(EX_TEMPFAIL));
        }
    };
    let now = args.now.unwrap_or_else(Utc::now);
    let inputs: Vec<Option<PathBuf>> = if args.files.is_empty() {
        vec![None]
    } else {
        args.files.into_iter().map(Some).collect()
    };
    let mut unreadable = false;
    let mut code = None;
    for input in inputs {
        let name = input
            .as_deref()
            .map_or("-".to_string(), |p| p.display().to_string());
        let raw = read(input.as_deref())?;
        match handle_mail(&store, config.bounces.soft, &raw, now).await {
            Ok(handled) => print(&name, &handled, args.json)?,
            Err(IntakeError::Unreadable(e)) => {
                eprintln!("{name}: {e}");
                unreadable = true;
            }
            Err(IntakeError::Store(e)) => {
                eprintln!("{name}: {e} (try again later)");
                code = Some(ExitCode::from(EX_TEMPFAIL));
                break;
            }
        }
    }
    store.close().await;
    Ok(code.unwrap_or(super::exit(!unreadable)))
}

/// One message's bytes, at most one byte past the limit (so that the
/// parser can say it is too large without reading all of it).
fn read(path: Option<&Path>) -> Result<Vec<u8>> {
    let limit = MAX_REPORT_BYTES as u64 + 1;
    let mut raw = Vec::new();
    match path {
        Some(path) => std::fs::File::open(path)
            .with_context(|| format!("cannot open {}", path.display()))?
            .take(limit)
            .read_to_end(&mut raw),
        None => std::io::stdin().lock().take(limit).read_to_end(&mut raw),
    }
    .context("cannot read the message")?;
    Ok(raw)
}

fn print(name: &str, handled: &Handled, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let mut value = serde_json::to_value(handled)?;
        value["file"] = name.into();
        serde_json::to_writer(&mut out, &value)?;
        writeln!(out)?;
        return Ok(());
    }
    for e in &handled.effects {
        let mut line = format!(
            "{name}: {} {} {}",
            handled.report,
            e.kind,
            e.address.as_deref().unwrap_or("-")
        );
        if let Some(status) = &e.status {
            line.push_str(&format!(" {status}"));
        }
        if let (Some(order), Some(stage)) = (&e.order, &e.stage) {
            line.push_str(&format!(", order {order} {stage}"));
        }
        if let Some(reason) = e.suppressed {
            line.push_str(&format!(", suppressed ({reason})"));
        }
        if !e.note.is_empty() {
            line.push_str(&format!(", {}", e.note));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}
