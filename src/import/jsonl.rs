//! JSON Lines: one object a line, each line capped in length.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};

use super::mapping::RowParser;
use super::{ImportError, OrderRecord, Rejection, MAX_JSON_LINE};

pub(super) fn json_rows(
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
