//! Reading order exports: CSV or JSON Lines, streamed row by row.
//!
//! A file is never held in memory: [`read_orders`] yields one parsed row at a
//! time, and a bad row becomes a [`Rejection`] carrying its line number and
//! reason while the rows around it still go in. Column names are mapped onto
//! the canonical order fields (optionally through a `[mappings.NAME]` table
//! for a Shopify or Amazon export); columns followupd has no name for travel
//! along as `order.extra`.
//!
//! The parts: `delimited` splits CSV into records in bounded memory,
//! `jsonl` reads JSON Lines, `mapping` turns one row's named values into an
//! order, and `ahead` parses on a thread of its own while the caller stores.

mod ahead;
mod delimited;
mod jsonl;
mod mapping;

use std::fs::File;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::order::Order;

use mapping::RowParser;

/// Longest JSON line accepted; longer ones are rejected without being read
/// into memory whole.
pub const MAX_JSON_LINE: usize = 4 * 1024 * 1024;

/// Longest CSV row accepted, in bytes as written (quotes and commas
/// included, the line end not): the same limit as a JSON line. A longer row
/// is rejected by its line without being read into memory whole.
pub const MAX_CSV_ROW: usize = MAX_JSON_LINE;

/// One good row, with which optional facts it actually stated: an empty cell
/// never erases what an earlier import said.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRecord {
    pub order: Order,
    /// Whether the row named a status (otherwise it was inferred).
    pub status_given: bool,
    /// Whether the row stated the complaint flag.
    pub complaint_given: bool,
}

/// A row that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub line: u64,
    pub reason: String,
}

/// A failure that stops the whole file (it cannot be read at all).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: cannot read: {message}")]
    Read { path: String, message: String },
    #[error("{0}: unknown file type (expected .csv, .jsonl or .ndjson; or pass --format)")]
    UnknownFormat(String),
    #[error("unknown mapping '{0}' (define it under [mappings.{0}] in config.toml)")]
    UnknownMapping(String),
    #[error(
        "cannot start a thread to read the file: {0} (the system is short of memory \
         or processes; try again when it is less busy)"
    )]
    Thread(std::io::Error),
}

/// The two file formats followupd reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// Guesses the format from the file name.
    pub fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".csv") {
            Some(Self::Csv)
        } else if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
            Some(Self::Jsonl)
        } else {
            None
        }
    }
}

/// Each row, parsed or rejected, in file order.
pub type Rows =
    Box<dyn Iterator<Item = Result<Result<OrderRecord, Rejection>, ImportError>> + Send>;

/// Parses one order written as a JSON object in followupd's own field
/// names, exactly as a JSON Lines row is read (the orders API takes these).
/// The error is the reason a row would be rejected for.
pub fn parse_json_order(
    text: &str,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<OrderRecord, String> {
    let parser = RowParser {
        mapping: crate::config::ColumnMapping::default(),
        default_marketplace: config.default_marketplace.clone(),
        default_zone: config.rules.default_zone,
        imported_at: now,
    };
    parser.parse_json_line(text, 0).map_err(|r| r.reason)
}

/// Opens `path` and streams its rows.
pub fn read_orders(
    path: &Path,
    format: Option<Format>,
    mapping: Option<&str>,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Rows, ImportError> {
    let format = format
        .or_else(|| Format::from_path(path))
        .ok_or_else(|| ImportError::UnknownFormat(path.display().to_string()))?;
    let mapping = match mapping {
        Some(name) => Some(
            config
                .mappings
                .get(name)
                .cloned()
                .ok_or_else(|| ImportError::UnknownMapping(name.to_string()))?,
        ),
        None => None,
    };
    let file = File::open(path).map_err(|source| ImportError::Open {
        path: path.display().to_string(),
        source,
    })?;
    let parser = RowParser {
        mapping: mapping.unwrap_or_default(),
        default_marketplace: config.default_marketplace.clone(),
        default_zone: config.rules.default_zone,
        imported_at: now,
    };
    let rows: Rows = match format {
        Format::Csv => Box::new(delimited::csv_rows(
            file,
            parser,
            path.display().to_string(),
        )),
        Format::Jsonl => Box::new(jsonl::json_rows(file, parser, path.display().to_string())),
    };
    ahead::parse_ahead(rows)
}
