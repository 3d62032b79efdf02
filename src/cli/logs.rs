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
    /// Only this outcome: a stage state (sent, failed, blocked, …) or what
    /// came back later (bounced, complained, unsubscribed).
    #[arg(long, value_parser = statuses())]
    status: Option<String>,
    /// From this instant (RFC 3339, a date at midnight UTC, or -3d).
    #[arg(long, value_parser = super::time::parse_time, allow_hyphen_values = true)]
    since: Option<DateTime<Utc>>,
    /// Before this instant (RFC 3339, a date at midnight UTC, or -3d).
    #[arg(long, value_parser = super::time::parse_time, allow_hyphen_values = true)]
    until: Option<DateTime<Utc>>,
    /// At most this many rows (1 or more).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
    limit: i64,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

impl LogsArgs {
    /// The filters given, as the user wrote them, for "nothing matches".
    fn filters(&self) -> String {
        let mut given = Vec::new();
        let mut add = |flag: &str, value: Option<String>| {
            if let Some(v) = value {
                given.push(format!("--{flag} {v}"));
            }
        };
        add("order", self.order.clone());
        add("email", self.email.clone());
        add("stage", self.stage.clone());
        add("status", self.status.clone());
        add("since", self.since.map(|t| t.to_rfc3339()));
        add("until", self.until.map(|t| t.to_rfc3339()));
        given.join(" ")
    }
}

/// The send-log statuses: the stage states, then the events recorded
/// after a send.
fn statuses() -> clap::builder::PossibleValuesParser {
    let states = StageState::ALL.iter().map(|s| s.as_str());
    clap::builder::PossibleValuesParser::new(states.chain([
        "bounced",
        "complained",
        "unsubscribed",
    ]))
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
            status,
            since,
            until,
            limit,
        }
    }
}

pub(super) async fn run(args: LogsArgs, config: &Path) -> Result<ExitCode> {
    let config = super::load(config)?;
    if let Some(stage) = &args.stage {
        super::check_stage(&config, stage)?;
    }
    let store = Store::open(&config.database_url).await?;
    let json = args.json;
    let filters = args.filters();
    let entries = store.logs(&args.into()).await?;
    store.close().await;
    if entries.is_empty() {
        if filters.is_empty() {
            eprintln!("the send log is empty");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("no send-log entries match {filters}");
        return Ok(ExitCode::from(1));
    }
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
        // A note beside the server's reply (a manual resend says so).
        (Some(code), Some(text), Some(detail)) => format!("{code} {text} ({detail})"),
        (Some(code), Some(text), None) => format!("{code} {text}"),
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
