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
    let mut records = CsvRecords::new(BufReader::with_capacity(64 * 1024, file), MAX_CSV_ROW);
    let mut columns: Option<Vec<String>> = None;
    let mut failed = false;
    std::iter::from_fn(move || loop {
        if failed {
            return None;
        }
        let next = match records.next_record() {
            Ok(Some(next)) => next,
            Ok(None) => return None,
            Err(e) => {
                failed = true;
                return Some(Err(ImportError::Read {
                    path: path.clone(),
                    message: e.to_string(),
                }));
            }
        };
        let Some(columns) = &columns else {
            // The first record is the header.
            match csv_header(next) {
                Ok(header) => {
                    columns = Some(parser.canonical_columns(&header));
                    continue;
                }
                Err(message) => {
                    failed = true;
                    return Some(Err(ImportError::Read {
                        path: path.clone(),
                        message,
                    }));
                }
            }
        };
        return Some(Ok(match next {
            CsvRecord::TooLong { line } => Err(Rejection {
                line,
                reason: CsvRowError::TooLong { limit: MAX_CSV_ROW }.to_string(),
            }),
            CsvRecord::Fields { line, record } if record.len() != columns.len() => Err(Rejection {
                line,
                reason: CsvRowError::FieldCount {
                    expected: columns.len(),
                    found: record.len(),
                }
                .to_string(),
            }),
            CsvRecord::Fields { line, record } => parser.parse_csv_record(columns, record, line),
        }));
    })
}

/// The column names of a CSV header record, or why the file cannot be read.
fn csv_header(record: CsvRecord<'_>) -> Result<Vec<String>, String> {
    match record {
        CsvRecord::Fields { line, record } => record
            .iter()
            .map(|b| {
                std::str::from_utf8(b)
                    .map(|s| s.trim().to_string())
                    .map_err(|_| format!("line {line}: the header is not valid UTF-8"))
            })
            .collect(),
        CsvRecord::TooLong { line } => Err(format!(
            "line {line}: the header is longer than {MAX_CSV_ROW} bytes \
             (is this a CSV file with a header row?)"
        )),
    }
}

/// Why a CSV row was rejected for its shape, before any field was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum CsvRowError {
    #[error(
        "row longer than {limit} bytes (split the data, or look for a quoted field \
         missing its closing quote)"
    )]
    TooLong { limit: usize },
    #[error("expected {expected} fields, found {found}")]
    FieldCount { expected: usize, found: usize },
}

/// One CSV record as [`CsvRecords`] yields it, with the physical line it
/// starts on (1-based, counting LF line ends, so CRLF files count the same).
#[derive(Debug)]
enum CsvRecord<'a> {
    Fields {
        line: u64,
        record: &'a csv::ByteRecord,
    },
    /// Longer than the limit; its bytes were skipped, not kept.
    TooLong { line: u64 },
}

/// Where the record splitter is, byte by byte. The transitions are those of
/// the csv crate's reader with its default settings (`,` between fields,
/// `"` quotes with `""` inside them, CR, LF or CRLF ending a record, empty
/// lines skipped, a UTF-8 BOM at the start ignored), so a file reads the same
/// as before; what this adds is a size limit and exact line numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CsvState {
    /// Between records: line ends are skipped.
    StartRecord,
    StartField,
    /// In an unquoted field.
    InField,
    /// Inside quotes.
    InQuoted,
    /// After a quote inside quotes: `"` again is a literal quote, anything
    /// else closes the quotes.
    AfterQuote,
}

/// Splits CSV into records in bounded memory.
///
/// The csv crate reads a whole record into memory however long it is, and
/// its line numbers are one too low after CRLF line ends; this reader keeps
/// at most `limit` bytes of a record (a longer one is skipped to its end and
/// reported as [`CsvRecord::TooLong`]) and counts the line each record
/// starts on itself.
struct CsvRecords<R> {
    reader: R,
    limit: usize,
    /// The physical line of the next byte.
    line: u64,
    /// Whether the start of the input (and a BOM there) was looked at.
    started: bool,
    record: csv::ByteRecord,
    field: Vec<u8>,
}

impl<R: BufRead> CsvRecords<R> {
    fn new(reader: R, limit: usize) -> Self {
        Self {
            reader,
            limit,
            line: 1,
            started: false,
            record: csv::ByteRecord::new(),
            field: Vec::new(),
        }
    }

    /// The next record, or `None` at the end of the input.
    fn next_record(&mut self) -> std::io::Result<Option<CsvRecord<'_>>> {
        if !self.started {
            self.started = true;
            skip_bom(&mut self.reader)?;
        }
        self.record.clear();
        self.field.clear();
        let mut state = CsvState::StartRecord;
        let mut start_line = self.line;
        // Bytes of the record so far (quotes and separators included).
        let mut size: usize = 0;
        let mut too_long = false;
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                break;
            }
            let mut i = 0;
            let mut ended = false;
            while i < buf.len() && !ended {
                let b = buf[i];
                // Runs of ordinary bytes are taken in one step.
                let run = match state {
                    CsvState::InField => buf[i..]
                        .iter()
                        .position(|c| matches!(c, b',' | b'\r' | b'\n'))
                        .unwrap_or(buf.len() - i),
                    CsvState::InQuoted => buf[i..]
                        .iter()
                        .position(|c| *c == b'"')
                        .unwrap_or(buf.len() - i),
                    _ => 0,
                };
                if run > 0 {
                    let bytes = &buf[i..i + run];
                    self.line += bytes.iter().filter(|c| **c == b'\n').count() as u64;
                    size = size.saturating_add(run);
                    if !too_long {
                        self.field.extend_from_slice(bytes);
                    }
                    i += run;
                } else {
                    i += 1;
                    if b == b'\n' {
                        self.line += 1;
                    }
                    let terminator = b == b'\r' || b == b'\n';
                    if state == CsvState::StartRecord {
                        if terminator {
                            continue;
                        }
                        start_line = self.line;
                        state = CsvState::StartField;
                    }
                    if !terminator {
                        size = size.saturating_add(1);
                    }
                    match (state, b) {
                        (CsvState::StartField, b'"') => state = CsvState::InQuoted,
                        (CsvState::InQuoted, b'"') => state = CsvState::AfterQuote,
                        (CsvState::AfterQuote, b'"') => {
                            if !too_long {
                                self.field.push(b'"');
                            }
                            state = CsvState::InQuoted;
                        }
                        (_, b',') => {
                            if !too_long {
                                self.record.push_field(&self.field);
                            }
                            self.field.clear();
                            state = CsvState::StartField;
                        }
                        (_, b'\r' | b'\n') => ended = true,
                        (_, b) => {
                            if !too_long {
                                self.field.push(b);
                            }
                            state = CsvState::InField;
                        }
                    }
                }
                if size > self.limit && !too_long {
                    too_long = true;
                    self.field = Vec::new();
                    self.record = csv::ByteRecord::new();
                }
            }
            self.reader.consume(i);
            if ended {
                break;
            }
        }
        if state == CsvState::StartRecord {
            return Ok(None);
        }
        if too_long {
            return Ok(Some(CsvRecord::TooLong { line: start_line }));
        }
        self.record.push_field(&self.field);
        Ok(Some(CsvRecord::Fields {
            line: start_line,
            record: &self.record,
        }))
    }
}

/// Consumes a UTF-8 byte order mark at the start of the input, if any (as
/// the csv crate does: it has to be in the first buffer read).
fn skip_bom(reader: &mut impl BufRead) -> std::io::Result<()> {
    if reader.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    Ok(())
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
        buyer_email.check_deliverable()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every record of `input` as (line, fields), or (line, None) if too long.
    fn split(input: &[u8], limit: usize, buffer: usize) -> Vec<(u64, Option<Vec<Vec<u8>>>)> {
        let mut records = CsvRecords::new(BufReader::with_capacity(buffer, input), limit);
        let mut out = Vec::new();
        while let Some(record) = records.next_record().unwrap() {
            out.push(match record {
                CsvRecord::Fields { line, record } => {
                    (line, Some(record.iter().map(<[u8]>::to_vec).collect()))
                }
                CsvRecord::TooLong { line } => (line, None),
            });
        }
        out
    }

    fn lines(records: &[(u64, Option<Vec<Vec<u8>>>)]) -> Vec<u64> {
        records.iter().map(|(line, _)| *line).collect()
    }

    #[test]
    fn crlf_and_a_bom_keep_the_line_numbers_right() {
        for (bom, end) in [
            ("", "\n"),
            ("\u{feff}", "\n"),
            ("", "\r\n"),
            ("\u{feff}", "\r\n"),
        ] {
            let text = format!(
                "{bom}a,b{end}1,x{end}2,\"two\r\nlines\"{end}{end}3,\"say \"\"hi\"\"\"{end}4,y"
            );
            let records = split(text.as_bytes(), MAX_CSV_ROW, 8 * 1024);
            assert_eq!(lines(&records), [1, 2, 3, 6, 7], "{text:?}");
            assert_eq!(
                records[0].1.as_ref().unwrap()[0],
                b"a",
                "the BOM is not part of the first column name"
            );
            assert_eq!(records[2].1.as_ref().unwrap()[1], b"two\r\nlines");
            assert_eq!(records[3].1.as_ref().unwrap()[1], b"say \"hi\"");
        }
    }

    #[test]
    fn a_row_over_the_limit_is_rejected_by_line_in_bounded_memory() {
        let limit = 1024;
        let mut input = b"h1,h2\nA,good\nB,".to_vec();
        input.extend(std::iter::repeat_n(b'x', 1 << 20));
        input.extend_from_slice(b"\nC,\"");
        input.extend(std::iter::repeat_n(b'\n', 10_000));
        input.extend_from_slice(b"\"\nD,good\n");
        let mut records = CsvRecords::new(BufReader::with_capacity(4096, &input[..]), limit);
        let mut seen = Vec::new();
        while let Some(record) = records.next_record().unwrap() {
            seen.push(match record {
                CsvRecord::Fields { line, record } => (line, record.get(0).unwrap().to_vec()),
                CsvRecord::TooLong { line } => (line, b"too long".to_vec()),
            });
            assert!(
                records.field.capacity() <= limit + 4096,
                "{} bytes kept of a row over the limit",
                records.field.capacity()
            );
        }
        let want: Vec<(u64, Vec<u8>)> = vec![
            (1, b"h1".to_vec()),
            (2, b"A".to_vec()),
            (3, b"too long".to_vec()),
            (4, b"too long".to_vec()),
            (10_005, b"D".to_vec()),
        ];
        assert_eq!(seen, want);
        assert_eq!(
            CsvRowError::TooLong { limit }.to_string(),
            "row longer than 1024 bytes (split the data, or look for a quoted field missing its closing quote)"
        );
    }

    #[test]
    fn a_row_at_the_limit_is_kept() {
        let records = split(b"abcd,ef\nabcd,efg\n", 7, 3);
        assert_eq!(
            records[0],
            (1, Some(vec![b"abcd".to_vec(), b"ef".to_vec()]))
        );
        assert_eq!(records[1], (2, None));
    }

    fn csv_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            4 => proptest::collection::vec(prop::sample::select(b"ab ,\"\r\n".to_vec()), 0..6),
            1 => Just(b"\xEF\xBB\xBF".to_vec()),
            1 => Just("é".as_bytes().to_vec()),
            1 => proptest::collection::vec(any::<u8>(), 0..6),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|p| p.concat())
    }

    proptest! {
        // Failures are shown, not written to a file next to the sources.
        #![proptest_config(ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// The splitter reads every input as the csv crate does (same
        /// records, same fields), and puts each record at the line its
        /// first byte is on.
        #[test]
        fn records_match_the_csv_crate(input in csv_bytes(), buffer in 3usize..40) {
            let ours = split(&input, usize::MAX, buffer);
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(&input[..]);
            let mut theirs = Vec::new();
            let mut record = csv::ByteRecord::new();
            while reader.read_byte_record(&mut record).unwrap() {
                let mut start = record.position().unwrap().byte() as usize;
                if start == 0 && input.starts_with(b"\xEF\xBB\xBF") {
                    start = 3;
                }
                while matches!(input.get(start), Some(b'\r' | b'\n')) {
                    start += 1;
                }
                let line = 1 + input[..start].iter().filter(|b| **b == b'\n').count() as u64;
                theirs.push((line, Some(record.iter().map(<[u8]>::to_vec).collect())));
            }
            prop_assert_eq!(ours, theirs);
        }
    }
}
