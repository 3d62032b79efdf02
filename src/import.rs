//! Reading order exports: CSV or JSON Lines, streamed row by row.
//!
//! A file is never held in memory: [`read_orders`] yields one parsed row at a
//! time, and a bad row becomes a [`Rejection`] carrying its line number and
//! reason while the rows around it still go in. Column names are mapped onto
//! the canonical order fields (optionally through a `[mappings.NAME]` table
//! for a Shopify or Amazon export); columns followupd has no name for travel
//! along as `order.extra`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::config::{ColumnMapping, Config, CANONICAL_FIELDS};
use crate::order::{
    check_dates, parse_flag, parse_instant, parse_time_zone, parse_url, BuyerEmail, FieldError,
    Line, Order, OrderKey, OrderStatus,
};

/// Longest JSON line accepted; longer ones are rejected without being read
/// into memory whole.
pub const MAX_JSON_LINE: usize = 4 * 1024 * 1024;

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
    Ok(match format {
        Format::Csv => Box::new(csv_rows(file, parser, path.display().to_string())),
        Format::Jsonl => Box::new(json_rows(file, parser, path.display().to_string())),
    })
}

fn csv_rows(
    file: File,
    parser: RowParser,
    path: String,
) -> impl Iterator<Item = Result<Result<OrderRecord, Rejection>, ImportError>> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(file);
    let headers: Result<Vec<String>, ImportError> = reader
        .byte_headers()
        .map_err(|e| ImportError::Read {
            path: path.clone(),
            message: e.to_string(),
        })
        .and_then(|h| {
            h.iter()
                .map(|b| {
                    String::from_utf8(b.to_vec())
                        .map(|s| s.trim().to_string())
                        .map_err(|_| ImportError::Read {
                            path: path.clone(),
                            message: "line 1: the header is not valid UTF-8".into(),
                        })
                })
                .collect()
        });
    let mut headers = Some(headers);
    let mut columns: Vec<String> = Vec::new();
    let mut records = reader.into_byte_records();
    std::iter::from_fn(move || {
        if let Some(h) = headers.take() {
            match h {
                Ok(h) => columns = parser.canonical_columns(&h),
                Err(e) => return Some(Err(e)),
            }
        }
        let record = records.next()?;
        Some(match record {
            Ok(record) => {
                let line = record.position().map(|p| p.line()).unwrap_or(0);
                Ok(parser.parse_csv_record(&columns, &record, line))
            }
            Err(e) => match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    pos,
                    expected_len,
                    len,
                } => Ok(Err(Rejection {
                    line: pos.as_ref().map(|p| p.line()).unwrap_or(0),
                    reason: format!("expected {expected_len} fields, found {len}"),
                })),
                csv::ErrorKind::Utf8 { pos, err } => Ok(Err(Rejection {
                    line: pos.as_ref().map(|p| p.line()).unwrap_or(0),
                    reason: format!("not valid UTF-8 ({err})"),
                })),
                _ => Err(ImportError::Read {
                    path: path.clone(),
                    message: e.to_string(),
                }),
            },
        })
    })
}

fn json_rows(
    file: File,
    parser: RowParser,
    path: String,
) -> impl Iterator<Item = Result<Result<OrderRecord, Rejection>, ImportError>> {
    let mut reader = BufReader::new(file);
    let mut line_number: u64 = 0;
    let mut buf = Vec::new();
    let mut failed = false;
    std::iter::from_fn(move || loop {
        if failed {
            return None;
        }
        buf.clear();
        line_number += 1;
        let read = (&mut reader)
            .take(MAX_JSON_LINE as u64 + 1)
            .read_until(b'\n', &mut buf);
        match read {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => {
                failed = true;
                return Some(Err(ImportError::Read {
                    path: path.clone(),
                    message: e.to_string(),
                }));
            }
        }
        if buf.len() > MAX_JSON_LINE && buf.last() != Some(&b'\n') {
            if let Err(e) = skip_line(&mut reader) {
                failed = true;
                return Some(Err(ImportError::Read {
                    path: path.clone(),
                    message: e.to_string(),
                }));
            }
            return Some(Ok(Err(Rejection {
                line: line_number,
                reason: format!("line longer than {MAX_JSON_LINE} bytes"),
            })));
        }
        let mut text = buf.as_slice();
        if line_number == 1 {
            text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        }
        let text = match std::str::from_utf8(text) {
            Ok(t) => t.trim(),
            Err(e) => {
                return Some(Ok(Err(Rejection {
                    line: line_number,
                    reason: format!("not valid UTF-8 ({e})"),
                })))
            }
        };
        if text.is_empty() {
            continue;
        }
        return Some(Ok(parser.parse_json_line(text, line_number)));
    })
}

/// Consumes the rest of an over-long line without keeping it.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(());
        }
        match available.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = available.len();
                reader.consume(n);
            }
        }
    }
}

/// Turns named values into an [`OrderRecord`].
struct RowParser {
    mapping: ColumnMapping,
    default_marketplace: String,
    default_zone: Tz,
    /// What a relative time such as `-3d` is measured back from.
    imported_at: DateTime<Utc>,
}

impl RowParser {
    /// The canonical name of each source column (or its own name, for extras).
    fn canonical_columns(&self, headers: &[String]) -> Vec<String> {
        headers.iter().map(|h| self.canonical_name(h)).collect()
    }

    fn canonical_name(&self, column: &str) -> String {
        if let Some((field, _)) = self
            .mapping
            .columns
            .iter()
            .find(|(_, c)| c.as_str() == column)
        {
            return field.clone();
        }
        column.to_string()
    }

    fn parse_csv_record(
        &self,
        columns: &[String],
        record: &csv::ByteRecord,
        line: u64,
    ) -> Result<OrderRecord, Rejection> {
        let mut values = HashMap::with_capacity(columns.len());
        for (name, raw) in columns.iter().zip(record.iter()) {
            let value = std::str::from_utf8(raw).map_err(|_| Rejection {
                line,
                reason: format!("field '{name}' is not valid UTF-8"),
            })?;
            values.insert(name.clone(), value.to_string());
        }
        self.parse(values).map_err(|e| Rejection {
            line,
            reason: e.to_string(),
        })
    }

    fn parse_json_line(&self, text: &str, line: u64) -> Result<OrderRecord, Rejection> {
        let reject = |reason: String| Rejection { line, reason };
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| reject(format!("invalid JSON: {e}")))?;
        let mut values = HashMap::with_capacity(object.len());
        for (key, value) in object {
            if key == "extra" {
                let serde_json::Value::Object(extra) = value else {
                    return Err(reject("'extra' must be an object".into()));
                };
                for (k, v) in extra {
                    values.insert(k, json_text(v));
                }
                continue;
            }
            values.insert(self.canonical_name(&key), json_text(value));
        }
        self.parse(values).map_err(|e| reject(e.to_string()))
    }

    fn parse(&self, mut values: HashMap<String, String>) -> Result<OrderRecord, FieldError> {
        let mut take = |name: &str| values.remove(name).unwrap_or_default();
        let order_id = Line::parse("order_id", &take("order_id"))?;
        let marketplace = Line::parse_optional("marketplace", &take("marketplace"))?
            .map(Ok)
            .unwrap_or_else(|| Line::parse("marketplace", &self.default_marketplace))?;
        let buyer_email = BuyerEmail::parse(&take("buyer_email"))?;
        let buyer_name = Line::parse_optional("buyer_name", &take("buyer_name"))?;
        let product_name = Line::parse("product_name", &take("product_name"))?;
        let locale = Line::parse_optional("locale", &take("locale"))?;
        let zone_text = take("time_zone");
        let time_zone = if zone_text.trim().is_empty() {
            None
        } else {
            Some(parse_time_zone(&zone_text)?)
        };
        let zone = time_zone.unwrap_or(self.default_zone);
        let imported_at = self.imported_at;
        let instant = |field: &'static str, text: String| -> Result<_, FieldError> {
            let text = text.trim();
            if text.is_empty() {
                Ok(None)
            } else if let Some(ago) = text.strip_prefix('-') {
                // "-3d": that long before the import. Real exports never
                // say this; demos and tests use it to stay current.
                let ago = humantime::parse_duration(ago.trim())
                    .ok()
                    .and_then(|d| chrono::Duration::from_std(d).ok())
                    .ok_or_else(|| FieldError::Time {
                        field,
                        value: text.to_string(),
                    })?;
                imported_at
                    .checked_sub_signed(ago)
                    .map(Some)
                    .ok_or_else(|| FieldError::Time {
                        field,
                        value: text.to_string(),
                    })
            } else {
                parse_instant(field, text, zone).map(Some)
            }
        };
        let shipped_at = instant("shipped_at", take("shipped_at"))?;
        let delivered_at = instant("delivered_at", take("delivered_at"))?;
        check_dates(shipped_at, delivered_at)?;
        let status_text = take("status");
        let status_given = !status_text.trim().is_empty();
        let status = if status_given {
            match self.mapping.status.get(&status_text.trim().to_lowercase()) {
                Some(s) => *s,
                None => status_text.parse::<OrderStatus>()?,
            }
        } else {
            OrderStatus::inferred(shipped_at.is_some(), delivered_at.is_some())
        };
        let complaint_text = take("complaint");
        let complaint_given = !complaint_text.trim().is_empty();
        let complaint = parse_flag("complaint", &complaint_text)?;
        let opted_out = parse_flag("opted_out", &take("opted_out"))?;
        let order_url = parse_url("order_url", &take("order_url"))?;
        let tracking_url = parse_url("tracking_url", &take("tracking_url"))?;
        let review_url = parse_url("review_url", &take("review_url"))?;
        let extra: BTreeMap<String, String> = values
            .into_iter()
            .filter(|(k, v)| {
                !k.is_empty() && !CANONICAL_FIELDS.contains(&k.as_str()) && !v.is_empty()
            })
            .collect();
        Ok(OrderRecord {
            order: Order {
                key: OrderKey {
                    marketplace,
                    order_id,
                },
                buyer_email,
                buyer_name,
                product_name,
                locale,
                time_zone,
                shipped_at,
                delivered_at,
                status,
                complaint,
                opted_out,
                order_url,
                tracking_url,
                review_url,
                extra,
            },
            status_given,
            complaint_given,
        })
    }
}

/// A JSON value as the text a CSV cell would hold.
fn json_text(value: serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}
