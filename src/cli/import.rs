//! `followupd import FILE…`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use clap::Args;

use crate::engine::{Engine, ImportSummary};
use crate::import::{Format, ReadOptions, Source};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Files to import.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// File format, when the extension does not say.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// A column mapping from [mappings.NAME] in config.toml.
    #[arg(long, conflicts_with = "from")]
    mapping: Option<String>,
    /// The export these files are, as downloaded: shopify (Export orders
    /// CSV), amazon (Order Report .txt), woocommerce (REST orders JSON).
    #[arg(long, value_enum)]
    from: Option<Source>,
}

/// The figures of every file imported, for the one summary line.
#[derive(Debug, Default)]
struct Totals {
    imported: u64,
    updated: u64,
    rejected: u64,
}

impl Totals {
    fn add(&mut self, summary: &ImportSummary) {
        self.imported += summary.imported;
        self.updated += summary.updated;
        self.rejected += summary.rejected.len() as u64;
    }
}

pub(super) async fn run(args: ImportArgs, config: &Path) -> Result<ExitCode> {
    let engine = Engine::open(super::load(config)?).await?;
    let mut totals = Totals::default();
    let mut unreadable = 0;
    for file in &args.files {
        let options = ReadOptions {
            format: args.format,
            mapping: args.mapping.as_deref(),
            source: args.from,
        };
        // One file that cannot be read does not lose the others' work.
        let summary = match engine.import_file_with(file, options, Utc::now()).await {
            Ok(summary) => summary,
            Err(e) => {
                eprintln!("error: {e}");
                unreadable += 1;
                continue;
            }
        };
        for r in &summary.rejected {
            eprintln!("{}:{}: {}", file.display(), r.line, r.reason);
        }
        totals.add(&summary);
    }
    println!(
        "imported {}, updated {}, rejected {}{}",
        totals.imported,
        totals.updated,
        totals.rejected,
        match unreadable {
            0 => String::new(),
            n => format!("; {n} of {} files not imported", args.files.len()),
        }
    );
    if unreadable > 0 {
        return Ok(ExitCode::from(2));
    }
    Ok(super::exit(totals.rejected == 0))
}
