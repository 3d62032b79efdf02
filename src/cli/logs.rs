//! `followupd logs`: the send log, newest first.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;

use crate::schedule::StageState;
use crate::store::{LogEntry, LogQuery, Store};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only this order id.
    #[arg(long)]
    order: Option<String>,
    /// Only this recipient address.
    #[arg(long)]
    email: Option<String>,
    /// Only this stage.
    #[arg(long)]
    stage: Option<String>,
    /// Only this outcome.
    #[arg(long, value_enum)]
    status: Option<StageState>,
    /// From this instant (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_parser = super::time::parse_bound)]
    since: Option<DateTime<Utc>>,
    /// Before this instant (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_parser = super::time::parse_bound)]
    until: Option<DateTime<Utc>>,
    /// At most this many rows.
    #[arg(long, default_value_t = 50)]
    limit: i64,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

impl From<LogsArgs> for LogQuery {
    fn from(args: LogsArgs) -> Self {
        let LogsArgs {
            order,
            email,
            stage,
            status,
            since,
            until,
            limit,
            json: _,
        } = args;
        LogQuery {
            order_id: order,
            email,
            stage,
            status: status.map(|s| s.as_str().to_string()),
            since,
            until,
            limit,
        }
    }
}

pub(super) async fn run(args: LogsArgs, config: &Path) -> Result<ExitCode> {
    let config = super::load(config)?;
    let store = Store::open(&config.database_url).await?;
    let json = args.json;
    let entries = store.logs(&args.into()).await?;
    print_logs(&entries, json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_logs(entries: &[LogEntry], json: bool) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        for e in entries {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        }
        return Ok(());
    }
    let rows: Vec<[String; 9]> = entries.iter().map(log_row).collect();
    let headers = [
        "ID", "AT (UTC)", "ORDER", "STAGE", "TO", "STATUS", "TRY", "SUBJECT", "REPLY",
    ];
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(|s| s.as_str()).collect()))?;
    }
    Ok(())
}

/// One entry's table cells.
fn log_row(e: &LogEntry) -> [String; 9] {
    let reply = match (&e.smtp_code, &e.smtp_text, &e.detail) {
        (Some(code), Some(text), _) => format!("{code} {text}"),
        (None, Some(text), None) => text.clone(),
        (_, _, Some(detail)) => detail.clone(),
        _ => String::new(),
    };
    [
        e.id.to_string(),
        e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
        e.order_id.clone(),
        e.stage.clone(),
        e.to.clone(),
        e.status.clone(),
        e.attempt.to_string(),
        e.subject.clone().unwrap_or_default(),
        reply.replace('\n', " "),
    ]
    .map(|cell| clip(&cell, 120))
}

/// Shortens a table cell to `max` characters (`--json` has the full text).
fn clip(cell: &str, max: usize) -> String {
    if cell.chars().count() <= max {
        cell.to_string()
    } else {
        let mut short: String = cell.chars().take(max - 1).collect();
        short.push('…');
        short
    }
}
