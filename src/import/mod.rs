//! Reading order exports, streamed: CSV or tab-separated files, JSON Lines
//! or a JSON array; the canonical columns, a `[mappings.NAME]` table, or a
//! source's own export as the seller downloads it (`--from shopify`).
//!
//! A file is never held in memory: [`read_orders`] yields one order at a
//! time, and a bad one becomes a [`Rejection`] carrying its line number and
//! reason while the orders around it still go in. Adjacent rows of one
//! order (a `group_by` column, as Shopify and Amazon write a row per line
//! item) become one order with all its items; columns followupd has no
//! name for travel along as `order.extra`.
//!
//! The parts: `delimited` splits CSV into records in bounded memory and
//! `jsonl` splits JSON into objects; `mapping` says where each column goes,
//! `object` reads a JSON object through dotted paths, `values` holds and
//! merges one order's values, `parse` makes the order; `sources` are the
//! exports known by name, `zone` the buyer's zone from the address, and
//! `ahead` parses on a thread of its own while the caller stores.

mod ahead;
mod delimited;
mod jsonl;
pub mod mapping;
mod object;
mod parse;
pub mod sources;
mod values;
pub mod zone;

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::order::Order;

pub use mapping::Mapping;
pub use sources::Source;

use parse::RowParser;
use values::{Grouper, RowOutcome, RowValues};

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
    #[error(
        "{0}: unknown file type (expected .csv, .tsv, .txt, .json, .jsonl or .ndjson; \
         or pass --format)"
    )]
    UnknownFormat(String),
    #[error(
        "the mapped column '{column}' (for {field}) is not in the file's header{}",
        nearest_names(nearest)
    )]
    MissingColumn {
        field: String,
        column: String,
        nearest: Vec<String>,
    },
    #[error(
        "no column gives the buyer's email (looked for '{wanted}'){}; map one with \
         [mappings.NAME.columns] buyer_email = \"COLUMN\"",
        nearest_names(nearest)
    )]
    NoEmail {
        wanted: String,
        nearest: Vec<String>,
    },
    #[error("{message}")]
    SourceWithoutEmail { message: String },
    #[error("unknown mapping '{0}' (define it under [mappings.{0}] in config.toml)")]
    UnknownMapping(String),
    #[error(
        "cannot start a thread to read the file: {0} (the system is short of memory \
         or processes; try again when it is less busy)"
    )]
    Thread(std::io::Error),
}

/// ", nearest: 'A', 'B'" when there are any.
fn nearest_names(names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!(" (nearest: {})", quoted.join(", "))
}

/// The file formats followupd reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated, with a header row.
    Csv,
    /// Tab-separated, with a header row (Amazon's flat files).
    Tsv,
    /// One JSON object a line.
    Jsonl,
    /// A JSON array of objects, or JSON Lines.
    Json,
}

impl Format {
    /// Guesses the format from the file name.
    pub fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let (_, extension) = name.rsplit_once('.')?;
        Some(match extension {
            "csv" => Self::Csv,
            "tsv" | "txt" => Self::Tsv,
            "jsonl" | "ndjson" => Self::Jsonl,
            "json" => Self::Json,
            _ => return None,
        })
    }
}

/// How to read a file: its format, a mapping or a source (all optional).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions<'a> {
    pub format: Option<Format>,
    pub mapping: Option<&'a str>,
    pub source: Option<Source>,
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
        mapping: Mapping::default(),
        source: None,
        default_marketplace: config.default_marketplace.clone(),
        default_zone: config.rules.default_zone,
        imported_at: now,
    };
    let object = json_object(text, 0, None).map_err(|r| r.reason)?;
    let (_, values) = object::values(object, &parser.mapping, &[], 0).map_err(|r| r.reason)?;
    parser.parse(values).map_err(|e| e.to_string())
}

/// Opens `path` and streams its orders (canonical columns, or `mapping`).
pub fn read_orders(
    path: &Path,
    format: Option<Format>,
    mapping: Option<&str>,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Rows, ImportError> {
    let options = ReadOptions {
        format,
        mapping,
        source: None,
    };
    read_orders_with(path, options, config, now)
}

/// Opens `path` and streams its orders, read as `options` say.
pub fn read_orders_with(
    path: &Path,
    options: ReadOptions<'_>,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Rows, ImportError> {
    // A source's own format wins over the file name: a seller may save
    // Amazon's report under any name.
    let format = options
        .format
        .or(options.source.map(Source::format))
        .or_else(|| Format::from_path(path))
        .ok_or_else(|| ImportError::UnknownFormat(path.display().to_string()))?;
    let mapping = match options.mapping {
        Some(name) => Some(
            config
                .mappings
                .get(name)
                .map(Mapping::from_config)
                .ok_or_else(|| ImportError::UnknownMapping(name.to_string()))?,
        ),
        None => None,
    };
    let file = File::open(path).map_err(|source| ImportError::Open {
        path: path.display().to_string(),
        source,
    })?;
    let source = options.source;
    let parser = RowParser {
        mapping: mapping.unwrap_or_default(),
        source,
        default_marketplace: source
            .and_then(Source::marketplace)
            .map(str::to_string)
            .unwrap_or_else(|| config.default_marketplace.clone()),
        default_zone: config.rules.default_zone,
        imported_at: now,
    };
    let path = path.display().to_string();
    let reader = BufReader::with_capacity(64 * 1024, file);
    let rows: Rows = match format {
        Format::Csv | Format::Tsv => {
            let by_format = if format == Format::Tsv { b'\t' } else { b',' };
            let delimiter = parser.mapping.delimiter.unwrap_or(by_format);
            Box::new(delimited::rows(reader, delimiter, parser, path))
        }
        Format::Jsonl | Format::Json => {
            Box::new(json_rows(reader, format == Format::Jsonl, parser, path)?)
        }
    };
    ahead::parse_ahead(rows)
}

/// One order as [`Rows`] yields it.
type RowResult = Result<Result<OrderRecord, Rejection>, ImportError>;

/// Turns rows into orders: rows of one order merged, each order parsed.
/// Keeps at most one order's rows and the orders ready to hand out.
struct Assembler {
    parser: RowParser,
    grouper: Option<Grouper>,
    ready: VecDeque<RowResult>,
}

impl Assembler {
    fn new(parser: RowParser) -> Self {
        let grouper = parser.mapping.group_by.as_ref().map(|_| Grouper::new());
        Self {
            parser,
            grouper,
            ready: VecDeque::new(),
        }
    }

    /// Takes one row (or its rejection).
    fn push(&mut self, row: RowOutcome<'_>) {
        match row {
            Err(rejection) => self.ready.push_back(Ok(Err(rejection))),
            Ok((Some(key), values)) if self.grouper.is_some() => {
                let done = self.grouper.as_mut().and_then(|g| g.push(key, values));
                if let Some(values) = done {
                    self.parse(values);
                }
            }
            Ok((_, values)) => self.parse(values),
        }
    }

    /// The end of the file: the last order is complete.
    fn finish(&mut self) {
        if let Some(values) = self.grouper.as_mut().and_then(Grouper::finish) {
            self.parse(values);
        }
    }

    fn parse(&mut self, values: RowValues<'_>) {
        let line = values.line;
        let parsed = self.parser.parse(values).map_err(|e| Rejection {
            line,
            reason: e.to_string(),
        });
        self.ready.push_back(Ok(parsed));
    }

    fn pop(&mut self) -> Option<RowResult> {
        self.ready.pop_front()
    }
}

/// The orders of a JSON file (`lines_only`: JSON Lines even if it starts
/// with `[`).
fn json_rows(
    reader: BufReader<File>,
    lines_only: bool,
    parser: RowParser,
    path: String,
) -> Result<impl Iterator<Item = RowResult>, ImportError> {
    let read_error = |e: std::io::Error, path: &str| ImportError::Read {
        path: path.to_string(),
        message: e.to_string(),
    };
    let mut texts = jsonl::JsonTexts::new(reader, lines_only).map_err(|e| read_error(e, &path))?;
    let status_paths: &[&str] = parser.source.map(Source::status_columns).unwrap_or(&[]);
    let source = parser.source;
    let mapping = match source {
        Some(s) => s.mapping(None),
        None => parser.mapping.clone(),
    };
    let mut assembler = Assembler::new(RowParser { mapping, ..parser });
    let mut done = false;
    Ok(std::iter::from_fn(move || loop {
        if let Some(row) = assembler.pop() {
            return Some(row);
        }
        if done {
            return None;
        }
        match texts.next_text() {
            Err(e) => {
                done = true;
                return Some(Err(read_error(e, &path)));
            }
            Ok(None) => {
                done = true;
                assembler.finish();
            }
            Ok(Some((line, text))) => {
                let row = text
                    .map_err(|reason| Rejection { line, reason })
                    .and_then(|t| json_object(&t, line, source))
                    .and_then(|o| object::values(o, &assembler.parser.mapping, status_paths, line));
                assembler.push(row);
            }
        }
    }))
}

/// Parses one object's text.
fn json_object(
    text: &str,
    line: u64,
    source: Option<Source>,
) -> Result<serde_json::Map<String, serde_json::Value>, Rejection> {
    let reject = |reason: String| Rejection { line, reason };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| reject(format!("invalid JSON: {e}")))?;
    let mut object = match value {
        serde_json::Value::Object(object) => object,
        // Still "invalid JSON" to the reader of the .errors file: a row is an object.
        other => {
            let kind = match other {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::String(_) => "a string",
                _ => "an array",
            };
            return Err(reject(format!(
                "invalid JSON: expected an object, not {kind}"
            )));
        }
    };
    if let Some(source) = source {
        source.prepare(&mut object);
    }
    Ok(object)
}
