//! Reading order exports: CSV or JSON Lines, streamed row by row.
//!
//! A file is never held in memory: [`read_orders`] yields one parsed row at a
//! time, and a bad row becomes a [`Rejection`] carrying its line number and
//! reason while the rows around it still go in. Column names are mapped onto
//! the canonical order fields (optionally through a `[mappings.NAME]` table
//! for a Shopify or Amazon export); columns followupd has no name for travel
//! along as `order.extra`.

use std::borrow::Cow;
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
        Format::Csv => Box::new(csv_rows(file, parser, path.display().to_string())),
        Format::Jsonl => Box::new(json_rows(file, parser, path.display().to_string())),
    };
    parse_ahead(rows)
}

/// One row as [`Rows`] yields it.
type RowResult = Result<Result<OrderRecord, Rejection>, ImportError>;

/// Rows handed over from the parsing thread at a time.
const PARSE_AHEAD_BATCH: usize = 64;

/// Batches the parsing thread may run ahead by: enough to keep both sides
/// busy, few enough that memory stays bounded.
const PARSE_AHEAD_BATCHES: usize = 2;

/// Reads and parses `rows` on a thread of its own, so that the next rows are
/// parsed while the caller stores the last ones (the import is otherwise
/// parse, then store, then parse again, each waiting for the other). Rows
/// come out in file order, exactly as `rows` yields them.
fn parse_ahead(rows: Rows) -> Result<Rows, ImportError> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(PARSE_AHEAD_BATCHES);
    let thread = std::thread::Builder::new()
        .name("followupd-import".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(PARSE_AHEAD_BATCH);
            for row in rows {
                batch.push(row);
                if batch.len() == PARSE_AHEAD_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(PARSE_AHEAD_BATCH));
                    if sender.send(full).is_err() {
                        // The caller stopped reading.
                        return;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = sender.send(batch);
            }
        })
        .map_err(ImportError::Thread)?;
    Ok(Box::new(ParseAhead {
        receiver,
        batch: Vec::new().into_iter(),
        thread: Some(thread),
    }))
}

/// The receiving end of [`parse_ahead`].
struct ParseAhead {
    receiver: std::sync::mpsc::Receiver<Vec<RowResult>>,
    batch: std::vec::IntoIter<RowResult>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Iterator for ParseAhead {
    type Item = RowResult;

    fn next(&mut self) -> Option<RowResult> {
        loop {
            if let Some(row) = self.batch.next() {
                return Some(row);
            }
            match self.receiver.recv() {
                Ok(batch) => self.batch = batch.into_iter(),
                Err(_) => {
                    // Every row was sent, or the thread panicked: a panic is
                    // passed on rather than taken for the end of the file.
                    if let Some(thread) = self.thread.take() {
                        if let Err(panic) = thread.join() {
                            std::panic::resume_unwind(panic);
                        }
                    }
                    return None;
                }
            }
        }
    }
}

fn csv_rows(
    file: File,
    parser: RowParser,
    path: String,
) -> impl Iterator<Item = Result<Result<OrderRecord, Rejection>, ImportError>> {
    let mut records = CsvRecords::new(BufReader::with_capacity(64 * 1024, file), MAX_CSV_ROW);
    let mut columns: Option<CsvColumns> = None;
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
                    columns = Some(parser.csv_columns(&header));
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
            CsvRecord::Fields { line, record } if record.len() != columns.names.len() => {
                Err(Rejection {
                    line,
                    reason: CsvRowError::FieldCount {
                        expected: columns.names.len(),
                        found: record.len(),
                    }
                    .to_string(),
                })
            }
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
        record: CsvFields<'a>,
    },
    /// Longer than the limit; its bytes were skipped, not kept.
    TooLong {
        line: u64,
    },
}

/// The unescaped fields of one record, borrowed from the reader's buffers.
#[derive(Debug, Clone, Copy)]
struct CsvFields<'a> {
    /// Every field's bytes, back to back.
    data: &'a [u8],
    /// Where each field ends in `data`.
    ends: &'a [usize],
}

impl<'a> CsvFields<'a> {
    /// The number of fields.
    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Field `i`, if there is one.
    #[cfg(test)]
    fn get(&self, i: usize) -> Option<&'a [u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.data[start..end])
    }

    /// The fields in order.
    fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let (data, ends) = (self.data, self.ends);
        ends.iter().scan(0, move |start, &end| {
            let field = &data[*start..end];
            *start = end;
            Some(field)
        })
    }
}

/// Splits CSV into records in bounded memory, with `csv_core` doing the
/// parsing (the csv crate's own state machine: `,` between fields, `"`
/// quotes with `""` inside them, CR, LF or CRLF ending a record, empty lines
/// skipped, a UTF-8 BOM at the start ignored), so a file reads exactly as
/// the csv crate reads it.
///
/// What this adds: the csv crate reads a whole record into memory however
/// long it is, and its line numbers are one too low after CRLF line ends.
/// This reader keeps at most `limit` bytes of a record (a longer one is
/// still parsed to its end, but its output is dropped, and it is reported as
/// [`CsvRecord::TooLong`]) and counts the line each record starts on itself.
struct CsvRecords<R> {
    reader: R,
    parser: csv_core::Reader,
    limit: usize,
    /// The physical line of the next unconsumed byte.
    line: u64,
    /// Whether the start of the input (and a BOM there) was looked at.
    started: bool,
    /// Unescaped field bytes of the current record; grows up to `limit`.
    output: Vec<u8>,
    /// Field end offsets of the current record.
    ends: Vec<usize>,
}

/// First size of the output buffer; it doubles as records need, up to the
/// limit.
const CSV_OUTPUT_START: usize = 4 * 1024;

impl<R: BufRead> CsvRecords<R> {
    fn new(reader: R, limit: usize) -> Self {
        Self {
            reader,
            parser: csv_core::Reader::new(),
            limit,
            line: 1,
            started: false,
            output: vec![0; CSV_OUTPUT_START.min(limit.max(1))],
            ends: vec![0; 64],
        }
    }

    /// The next record, or `None` at the end of the input.
    fn next_record(&mut self) -> std::io::Result<Option<CsvRecord<'_>>> {
        use csv_core::ReadRecordResult;
        if !self.started {
            self.started = true;
            skip_bom(&mut self.reader)?;
            // csv_core strips a BOM from the first input it is given, and
            // takes a first input of just the BOM for the end of the file; a
            // line end, which it skips between records anyway, makes it stop
            // looking.
            let (result, _, _, _) = self.parser.read_record(b"\n", &mut [0], &mut [0]);
            debug_assert_eq!(result, ReadRecordResult::InputEmpty);
        }
        // Where the record starts, once its first byte has been seen.
        let mut start_line: Option<u64> = None;
        // Bytes of the record so far, as written (quotes and separators
        // included, the line end not).
        let mut size: usize = 0;
        let mut too_long = false;
        let (mut nout, mut nend) = (0, 0);
        loop {
            let input = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let at_end = input.is_empty();
            let (result, nin, out, end) =
                self.parser
                    .read_record(input, &mut self.output[nout..], &mut self.ends[nend..]);
            nout += out;
            nend += end;
            let read = &input[..nin];
            if start_line.is_none() {
                // Line ends before a record are skipped, never part of it.
                if let Some(first) = read.iter().position(|b| !matches!(b, b'\r' | b'\n')) {
                    let skipped = &read[..first];
                    start_line =
                        Some(self.line + skipped.iter().filter(|b| **b == b'\n').count() as u64);
                    size = read.len() - first;
                }
            } else {
                size = size.saturating_add(read.len());
            }
            self.line += read.iter().filter(|b| **b == b'\n').count() as u64;
            self.reader.consume(nin);
            match result {
                ReadRecordResult::End => return Ok(None),
                ReadRecordResult::Record => {
                    // A record read from input ends on the CR or LF just
                    // consumed; one ended by the end of the input has no
                    // line end.
                    if !at_end {
                        size -= 1;
                    }
                    break;
                }
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull if !too_long && nout < self.limit => {
                    let grown = (self.output.len() * 2).clamp(1, self.limit);
                    self.output.resize(grown, 0);
                }
                // Output is never longer than the input it came from: a
                // record whose output fills `limit` bytes is over it.
                ReadRecordResult::OutputFull => too_long = true,
                ReadRecordResult::OutputEndsFull => {
                    if !too_long {
                        let grown = self.ends.len() * 2;
                        self.ends.resize(grown, 0);
                    }
                }
            }
            if size > self.limit {
                too_long = true;
            }
            if too_long {
                // Keep parsing to the end of the record, dropping what it
                // holds.
                nout = 0;
                nend = 0;
            }
        }
        let line = start_line.unwrap_or(self.line);
        if too_long || size > self.limit {
            return Ok(Some(CsvRecord::TooLong { line }));
        }
        Ok(Some(CsvRecord::Fields {
            line,
            record: CsvFields {
                data: &self.output[..nout],
                ends: &self.ends[..nend],
            },
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
    /// The canonical name of each source column (or its own name, for
    /// extras), and where each column's values go.
    fn csv_columns(&self, headers: &[String]) -> CsvColumns {
        let names: Vec<String> = headers.iter().map(|h| self.canonical_name(h)).collect();
        let targets = names.iter().map(|name| Target::of(name)).collect();
        CsvColumns { names, targets }
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
        columns: &CsvColumns,
        record: CsvFields<'_>,
        line: u64,
    ) -> Result<OrderRecord, Rejection> {
        // Values are borrowed from the record; only extras are copied.
        let mut values = RowValues::default();
        for ((name, target), raw) in columns
            .names
            .iter()
            .zip(&columns.targets)
            .zip(record.iter())
        {
            let value = std::str::from_utf8(raw).map_err(|_| Rejection {
                line,
                reason: format!("field '{name}' is not valid UTF-8"),
            })?;
            match target {
                // A later column of the same name wins, as it always has.
                Target::Field(slot) => values.fields[*slot] = Cow::Borrowed(value),
                Target::Extra => {
                    values.extra.insert(name.clone(), value.to_string());
                }
                Target::Dropped => {}
            }
        }
        values.extra.retain(|_, v| !v.is_empty());
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
        self.parse(RowValues::from_map(values))
            .map_err(|e| reject(e.to_string()))
    }

    fn parse(&self, values: RowValues<'_>) -> Result<OrderRecord, FieldError> {
        let RowValues { mut fields, extra } = values;
        let mut take = |name: &str| {
            let slot = field_slot(name).expect("a canonical field");
            std::mem::take(&mut fields[slot])
        };
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
        let instant = |field: &'static str, text: Cow<'_, str>| -> Result<_, FieldError> {
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

/// The canonical fields a row's values are read into (every one but
/// `extra`, which is not a column), in the order of [`CANONICAL_FIELDS`].
const ROW_FIELDS: usize = CANONICAL_FIELDS.len() - 1;

/// The slot of canonical field `name` in [`RowValues::fields`].
fn field_slot(name: &str) -> Option<usize> {
    CANONICAL_FIELDS[..ROW_FIELDS]
        .iter()
        .position(|f| *f == name)
}

/// One row's values: the canonical fields in fixed slots (empty when
/// absent), and the extras, empty ones left out.
#[derive(Debug, Default)]
struct RowValues<'a> {
    fields: [Cow<'a, str>; ROW_FIELDS],
    extra: BTreeMap<String, String>,
}

impl RowValues<'static> {
    /// Sorts named values into slots and extras. Names that are neither a
    /// field nor an extra (empty, or `extra` itself) are dropped.
    fn from_map(values: HashMap<String, String>) -> Self {
        let mut row = Self::default();
        for (name, value) in values {
            match Target::of(&name) {
                Target::Field(slot) => row.fields[slot] = Cow::Owned(value),
                Target::Extra if !value.is_empty() => {
                    row.extra.insert(name, value);
                }
                Target::Extra | Target::Dropped => {}
            }
        }
        row
    }
}

/// Where the values of a column (or JSON key) go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A canonical field's slot.
    Field(usize),
    /// `order.extra`, under the column's name.
    Extra,
    /// Nowhere: an empty name, or `extra` (not a column).
    Dropped,
}

impl Target {
    fn of(name: &str) -> Self {
        if let Some(slot) = field_slot(name) {
            Self::Field(slot)
        } else if name.is_empty() || CANONICAL_FIELDS.contains(&name) {
            Self::Dropped
        } else {
            Self::Extra
        }
    }
}

/// A CSV file's columns, read from its header.
#[derive(Debug)]
struct CsvColumns {
    /// Each column's canonical name (or its own, for extras).
    names: Vec<String>,
    /// Where each column's values go.
    targets: Vec<Target>,
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
                records.output.capacity() <= limit + 4096,
                "{} bytes kept of a row over the limit",
                records.output.capacity()
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

    #[test]
    fn the_limit_counts_a_row_as_written_without_its_line_end() {
        // CRLF ends a row like LF; the last row of a file may have no line
        // end; quotes count, though they are not part of the value.
        let records = split(b"abcd,ef\r\nabcd,efg\r\n\"ab\",cde\r\nabc,def", 7, 3);
        assert_eq!(lines(&records), [1, 2, 3, 4]);
        assert_eq!(records[0].1, Some(vec![b"abcd".to_vec(), b"ef".to_vec()]));
        assert_eq!(records[1].1, None);
        assert_eq!(
            records[2].1, None,
            "8 bytes as written, 5 without the quotes"
        );
        assert_eq!(records[3].1, Some(vec![b"abc".to_vec(), b"def".to_vec()]));
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
