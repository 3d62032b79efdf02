//! JSON files split into one text per order, in bounded memory: JSON Lines
//! (one object a line), or one JSON array of objects (what WooCommerce's
//! REST API returns), each numbered by the line it starts on.

use std::io::{BufRead, Read};

use super::MAX_JSON_LINE;

/// One object's text, or why it was rejected unread.
pub(super) type JsonText = (u64, Result<String, String>);

/// The objects of a JSON file, one at a time.
pub(super) enum JsonTexts<R> {
    Lines { reader: R, line: u64 },
    Array(ArrayElements<R>),
}

impl<R: BufRead> JsonTexts<R> {
    /// Reads `reader` as an array if its first character is `[`, as JSON
    /// Lines otherwise (or always, with `lines_only`).
    pub(super) fn new(mut reader: R, lines_only: bool) -> std::io::Result<Self> {
        if reader.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
            reader.consume(3);
        }
        let mut skipped_lines = 0;
        if !lines_only {
            // Whitespace before the first value; an array starts there.
            loop {
                let buf = reader.fill_buf()?;
                let Some(&first) = buf.first() else { break };
                if first == b'[' {
                    reader.consume(1);
                    return Ok(Self::Array(ArrayElements {
                        reader,
                        line: 1 + skipped_lines,
                        done: false,
                    }));
                }
                if !first.is_ascii_whitespace() {
                    break;
                }
                skipped_lines += u64::from(first == b'\n');
                reader.consume(1);
            }
        }
        Ok(Self::Lines {
            reader,
            line: skipped_lines,
        })
    }

    /// The next object's text, `None` at the end.
    pub(super) fn next_text(&mut self) -> std::io::Result<Option<JsonText>> {
        match self {
            Self::Lines { reader, line } => next_line(reader, line),
            Self::Array(elements) => elements.next_element(),
        }
    }
}

/// The next non-empty line.
fn next_line(reader: &mut impl BufRead, line: &mut u64) -> std::io::Result<Option<JsonText>> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        *line += 1;
        let read = reader
            .by_ref()
            .take(MAX_JSON_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if read == 0 {
            return Ok(None);
        }
        if buf.len() > MAX_JSON_LINE && buf.last() != Some(&b'\n') {
            skip_line(reader)?;
            let reason = format!("line longer than {MAX_JSON_LINE} bytes");
            return Ok(Some((*line, Err(reason))));
        }
        match std::str::from_utf8(&buf) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => return Ok(Some((*line, Ok(text.trim().to_string())))),
            Err(e) => return Ok(Some((*line, Err(format!("not valid UTF-8 ({e})"))))),
        }
    }
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

/// The elements of a top-level JSON array, found by following strings and
/// nesting (the elements are parsed later, one at a time).
pub(super) struct ArrayElements<R> {
    reader: R,
    /// The line of the next unread byte.
    line: u64,
    done: bool,
}

impl<R: BufRead> ArrayElements<R> {
    fn next_element(&mut self) -> std::io::Result<Option<JsonText>> {
        if self.done {
            return Ok(None);
        }
        // Up to the element: whitespace and the comma before it.
        loop {
            let Some(b) = self.peek()? else {
                self.done = true;
                return Ok(Some((
                    self.line,
                    Err("the array is not closed with ']'".into()),
                )));
            };
            match b {
                b',' | b' ' | b'\t' | b'\r' | b'\n' => self.bump(b),
                b']' => {
                    self.done = true;
                    return Ok(None);
                }
                _ => break,
            }
        }
        let start = self.line;
        let mut text = Vec::new();
        let mut too_long = false;
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        while let Some(b) = self.peek()? {
            if !in_string && depth == 0 && !text.is_empty() && matches!(b, b',' | b']') {
                break;
            }
            self.bump(b);
            if text.len() < MAX_JSON_LINE {
                text.push(b);
            } else {
                too_long = true;
            }
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if too_long {
            return Ok(Some((
                start,
                Err(format!("object longer than {MAX_JSON_LINE} bytes")),
            )));
        }
        Ok(Some(match String::from_utf8(text) {
            Ok(text) => (start, Ok(text.trim_end().to_string())),
            Err(e) => (start, Err(format!("not valid UTF-8 ({})", e.utf8_error()))),
        }))
    }

    fn peek(&mut self) -> std::io::Result<Option<u8>> {
        Ok(self.reader.fill_buf()?.first().copied())
    }

    fn bump(&mut self, b: u8) {
        self.line += u64::from(b == b'\n');
        self.reader.consume(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(input: &str) -> Vec<(u64, Result<String, String>)> {
        let mut texts = JsonTexts::new(input.as_bytes(), false).unwrap();
        let mut out = Vec::new();
        while let Some(text) = texts.next_text().unwrap() {
            out.push(text);
        }
        out
    }

    #[test]
    fn an_array_yields_each_element_with_its_line() {
        let got = texts("\u{feff}\n[\n  {\"a\": \"x,]}\\\"\"},\n  {\"b\": [1, {\"c\": 2}]}\n]\n");
        assert_eq!(
            got,
            [
                (3, Ok("{\"a\": \"x,]}\\\"\"}".to_string())),
                (4, Ok("{\"b\": [1, {\"c\": 2}]}".to_string()))
            ]
        );
        assert!(texts("[]").is_empty());
        assert_eq!(
            texts("[{\"a\":1}").len(),
            2,
            "an unclosed array is reported"
        );
    }

    #[test]
    fn lines_skip_blank_ones_and_count_them() {
        let got = texts("{\"a\":1}\n\n{\"b\":2}\r\n");
        assert_eq!(got[0].0, 1);
        assert_eq!(got[1], (3, Ok("{\"b\":2}".to_string())));
    }
}
