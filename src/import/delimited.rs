//! CSV split into records in bounded memory, each numbered by the physical
//! line it starts on.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader};

use super::mapping::{Columns, Target};
use super::parse::RowParser;
use super::values::{RowOutcome, RowValues};
use super::{Assembler, ImportError, Rejection, RowResult, Source, MAX_CSV_ROW};

/// The orders of a delimited file: the first record is the header, which
/// is laid out (and may stop the import) before any row is read.
pub(super) fn rows(
    reader: BufReader<File>,
    delimiter: u8,
    parser: RowParser,
    path: String,
) -> impl Iterator<Item = RowResult> {
    let source = parser.source;
    let quoting = !(parser.mapping.unquoted || source.is_some_and(Source::unquoted));
    let mut assembler: Option<Assembler> = None;
    let mut parser = Some(parser);
    let mut records = CsvRecords::with_format(reader, MAX_CSV_ROW, delimiter, quoting);
    let mut columns: Option<Columns> = None;
    let mut done = false;
    std::iter::from_fn(move || loop {
        if let Some(row) = assembler.as_mut().and_then(Assembler::pop) {
            return Some(row);
        }
        if done {
            return None;
        }
        let next = match records.next_record() {
            Ok(Some(next)) => next,
            Ok(None) => {
                done = true;
                if let Some(a) = assembler.as_mut() {
                    a.finish();
                }
                continue;
            }
            Err(e) => {
                done = true;
                return Some(Err(ImportError::Read {
                    path: path.clone(),
                    message: e.to_string(),
                }));
            }
        };
        let (Some(columns), Some(assembler)) = (&columns, assembler.as_mut()) else {
            // The first record is the header.
            let laid_out = csv_header(next)
                .map_err(|message| ImportError::Read {
                    path: path.clone(),
                    message,
                })
                .and_then(|header| layout(&header, source, parser.as_mut()));
            match laid_out {
                Ok(laid) => {
                    columns = Some(laid);
                    assembler = parser.take().map(Assembler::new);
                    continue;
                }
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            }
        };
        let row = match next {
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
            CsvRecord::Fields { line, record } => row_values(columns, record, line),
        };
        assembler.push(row);
    })
}

/// Lays out `header`: by the source's own mapping for its header, or by
/// the parser's mapping. Installs the mapping in the parser.
fn layout(
    header: &[String],
    source: Option<Source>,
    parser: Option<&mut RowParser>,
) -> Result<Columns, ImportError> {
    let parser = parser.expect("the header is laid out once");
    let status: &[&str] = match source {
        Some(source) => {
            source.check_header(header)?;
            parser.mapping = source.mapping(Some(header));
            source.status_columns()
        }
        None => &[],
    };
    Columns::new(header, &parser.mapping, status)
}

/// One record's values, borrowed from the record.
fn row_values<'a>(columns: &Columns, record: CsvFields<'a>, line: u64) -> RowOutcome<'a> {
    let mut cells: Vec<&'a str> = Vec::with_capacity(record.len());
    for (name, raw) in columns.names.iter().zip(record.iter()) {
        let value = std::str::from_utf8(raw).map_err(|_| Rejection {
            line,
            reason: format!("field '{name}' is not valid UTF-8"),
        })?;
        cells.push(value);
    }
    let mut values = RowValues {
        line,
        ..RowValues::default()
    };
    for ((name, target), value) in columns.names.iter().zip(&columns.targets).zip(&cells) {
        match target {
            // A later column of the same name wins, as it always has.
            Target::Field(slot) => values.fields[*slot] = Cow::Borrowed(value),
            Target::Extra if !value.is_empty() => {
                values.extra.insert(name.clone(), value.to_string());
            }
            Target::Extra | Target::Dropped => {}
        }
    }
    values.status_cells = columns
        .status
        .iter()
        .map(|c| Cow::Borrowed(c.map_or("", |c| cells[c])))
        .collect();
    values.take_item();
    let key = columns.group.map(|g| cells[g].trim().to_string());
    Ok((key, values))
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
pub(super) enum CsvRecord<'a> {
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
pub(super) struct CsvFields<'a> {
    /// Every field's bytes, back to back.
    data: &'a [u8],
    /// Where each field ends in `data`.
    ends: &'a [usize],
}

impl<'a> CsvFields<'a> {
    /// The number of fields.
    pub(super) fn len(&self) -> usize {
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
    pub(super) fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
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
    #[cfg(test)]
    fn new(reader: R, limit: usize) -> Self {
        Self::with_format(reader, limit, b',', true)
    }

    /// A reader of fields separated by `delimiter`, with `"` quoting them
    /// or (without `quoting`) as part of the value.
    fn with_format(reader: R, limit: usize, delimiter: u8, quoting: bool) -> Self {
        Self {
            reader,
            parser: csv_core::ReaderBuilder::new()
                .delimiter(delimiter)
                .quoting(quoting)
                .build(),
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
