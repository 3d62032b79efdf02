//! Parsing ahead: rows are read and parsed on a thread of their own while
//! the caller stores the ones before.

use super::{ImportError, OrderRecord, Rejection, Rows};

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
pub(super) fn parse_ahead(rows: Rows) -> Result<Rows, ImportError> {
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
