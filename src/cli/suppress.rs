//! `followupd suppress add|remove|list|import`: the suppression list by
//! hand.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::Utc;
use clap::{Args, Subcommand};

use crate::store::Store;
use crate::suppress::{Address, Reason, Suppression};

#[derive(Debug, Args)]
pub struct SuppressArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Put addresses on the list: they get no further message.
    Add {
        #[arg(required = true)]
        addresses: Vec<String>,
        /// Why: unsubscribed, bounced, complained or manual.
        #[arg(long, default_value = "manual", value_parser = parse_reason)]
        reason: Reason,
        /// A note kept with the entry.
        #[arg(long)]
        note: Option<String>,
    },
    /// Take addresses off the list.
    Remove {
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// The list, newest first.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Add the addresses of a file: one a line, optionally `address,reason[,note]`
    /// (`#` starts a comment; a header line `address…` is skipped).
    Import { file: PathBuf },
}

fn parse_reason(s: &str) -> Result<Reason, String> {
    s.parse()
}

pub(super) async fn run(args: SuppressArgs, config: &Path) -> Result<ExitCode> {
    let config = super::load(config)?;
    let store = Store::open(&config.database_url).await?;
    let now = Utc::now();
    let code = match args.action {
        Action::Add {
            addresses,
            reason,
            note,
        } => {
            let mut bad = false;
            for raw in addresses {
                let Some(address) = parse_or_report(&raw, None, &mut bad) else {
                    continue;
                };
                let entry = Suppression {
                    address: address.clone(),
                    reason,
                    detail: note.clone(),
                    at: now,
                };
                if store.suppress(&entry).await? {
                    println!("suppressed {address} ({reason})");
                } else {
                    println!("{address} was already suppressed");
                }
            }
            super::exit(!bad)
        }
        Action::Remove { addresses } => {
            let mut bad = false;
            for raw in addresses {
                let Some(address) = parse_or_report(&raw, None, &mut bad) else {
                    continue;
                };
                if store.unsuppress(&address).await? {
                    println!("removed {address}");
                } else {
                    println!("{address} was not on the list");
                }
            }
            super::exit(!bad)
        }
        Action::List { json } => {
            list(&store, json).await?;
            ExitCode::SUCCESS
        }
        Action::Import { file } => import(&store, &file, now).await?,
    };
    store.close().await;
    Ok(code)
}

/// The normal form of `raw`, or `None` after saying on stderr what is
/// wrong with it (with the file and line it came from, if any).
fn parse_or_report(raw: &str, place: Option<(&Path, usize)>, bad: &mut bool) -> Option<Address> {
    match Address::parse(raw) {
        Ok(address) => Some(address),
        Err(e) => {
            match place {
                Some((file, line)) => eprintln!("{}:{line}: {e}", file.display()),
                None => eprintln!("{e}"),
            }
            *bad = true;
            None
        }
    }
}

async fn list(store: &Store, json: bool) -> Result<()> {
    let entries = store.suppressions().await?;
    let mut out = std::io::stdout().lock();
    if json {
        for entry in &entries {
            serde_json::to_writer(&mut out, entry)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<40} {:<13} {:<25} DETAIL",
        "ADDRESS", "REASON", "SINCE"
    )?;
    for e in &entries {
        writeln!(
            out,
            "{:<40} {:<13} {:<25} {}",
            e.address,
            e.reason,
            e.at.to_rfc3339(),
            e.detail.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

/// Lines of `file` into entries, all stored in one transaction; each line
/// that cannot be read is reported as `FILE:LINE: reason` and makes the
/// exit code 1.
async fn import(store: &Store, file: &Path, now: chrono::DateTime<Utc>) -> Result<ExitCode> {
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let mut entries = Vec::new();
    let mut bad = false;
    for (i, line) in reader.lines().enumerate() {
        let number = i + 1;
        let line = line.with_context(|| format!("{}:{number}: cannot read", file.display()))?;
        let line = line.trim().trim_start_matches('\u{feff}');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, ',').map(str::trim);
        let raw = fields.next().unwrap_or_default();
        if number == 1 && (raw.eq_ignore_ascii_case("address") || raw.eq_ignore_ascii_case("email"))
        {
            continue;
        }
        let reason = match fields.next().filter(|r| !r.is_empty()) {
            None => Reason::Manual,
            Some(r) => match r.parse::<Reason>() {
                Ok(reason) => reason,
                Err(e) => {
                    eprintln!("{}:{number}: {e}", file.display());
                    bad = true;
                    continue;
                }
            },
        };
        let Some(address) = parse_or_report(raw, Some((file, number)), &mut bad) else {
            continue;
        };
        entries.push(Suppression {
            address,
            reason,
            detail: fields.next().filter(|n| !n.is_empty()).map(str::to_string),
            at: now,
        });
    }
    let added = store.suppress_all(&entries).await?;
    println!(
        "suppressed {added}, already on the list {}",
        entries.len() as u64 - added
    );
    Ok(super::exit(!bad))
}
