//! One order's values as read, before they are parsed: the fields in fixed
//! slots, its line items, its extras; and the merging of the rows of one
//! order (Shopify writes a row per line item) into one.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::mapping::{slot_of, ITEM_FIELDS, SLOTS};
use super::Rejection;

/// One line item as read: name, quantity, sku, price.
pub(super) type RawItem = [String; 4];

/// One order's values. Cells are borrowed from the reader's buffer where
/// they can be (a row that is not grouped with others is parsed before the
/// next is read).
#[derive(Debug, Default)]
pub(super) struct RowValues<'a> {
    /// The line the order starts on.
    pub(super) line: u64,
    pub(super) fields: [Cow<'a, str>; SLOTS],
    pub(super) items: Vec<RawItem>,
    pub(super) extra: BTreeMap<String, String>,
    /// The cells a source reads its status from (see `sources`).
    pub(super) status_cells: Vec<Cow<'a, str>>,
}

impl RowValues<'_> {
    /// A value with no borrow, to be kept while the next rows are read.
    pub(super) fn into_owned(self) -> RowValues<'static> {
        RowValues {
            line: self.line,
            fields: self.fields.map(|f| Cow::Owned(f.into_owned())),
            items: self.items,
            extra: self.extra,
            status_cells: self
                .status_cells
                .into_iter()
                .map(|c| Cow::Owned(c.into_owned()))
                .collect(),
        }
    }

    /// Moves the row's `item_*` cells into one item, if it names one.
    pub(super) fn take_item(&mut self) {
        let name = slot_of("item_name");
        if self.fields[name].trim().is_empty() {
            return;
        }
        let item = ITEM_FIELDS.map(|f| std::mem::take(&mut self.fields[slot_of(f)]).into_owned());
        self.items.push(item);
    }

    /// Adds a later row of the same order: its items are appended, and its
    /// cells fill only what the rows before left empty (Shopify repeats a
    /// few cells on every row and leaves the rest empty).
    pub(super) fn absorb(&mut self, later: RowValues<'_>) {
        for (mine, theirs) in self.fields.iter_mut().zip(later.fields) {
            if mine.trim().is_empty() && !theirs.trim().is_empty() {
                *mine = Cow::Owned(theirs.into_owned());
            }
        }
        self.items.extend(later.items);
        for (name, value) in later.extra {
            self.extra.entry(name).or_insert(value);
        }
        for (i, cell) in later.status_cells.into_iter().enumerate() {
            match self.status_cells.get_mut(i) {
                Some(mine) if mine.trim().is_empty() => *mine = Cow::Owned(cell.into_owned()),
                Some(_) => {}
                None => self.status_cells.push(Cow::Owned(cell.into_owned())),
            }
        }
    }
}

/// A row as the readers yield it: its values and the key that groups it
/// with its neighbours (`None` when the import does not group).
pub(super) type Keyed<'a> = (Option<String>, RowValues<'a>);

/// Merges adjacent rows with the same key into one order. Holds at most
/// one order's rows; a rejected row is passed on in its place in the file.
pub(super) struct Grouper {
    pending: Option<(String, RowValues<'static>)>,
}

impl Grouper {
    pub(super) fn new() -> Self {
        Self { pending: None }
    }

    /// Takes the next row; returns the order it completed, if any.
    pub(super) fn push(&mut self, key: String, row: RowValues<'_>) -> Option<RowValues<'static>> {
        match &mut self.pending {
            Some((pending_key, values)) if *pending_key == key => {
                values.absorb(row);
                None
            }
            _ => self
                .pending
                .replace((key, row.into_owned()))
                .map(|(_, values)| values),
        }
    }

    /// The last order, at the end of the file.
    pub(super) fn finish(&mut self) -> Option<RowValues<'static>> {
        self.pending.take().map(|(_, values)| values)
    }
}

/// What a reader makes of one record.
pub(super) type RowOutcome<'a> = Result<Keyed<'a>, Rejection>;

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: u64, cells: &[(&str, &str)]) -> RowValues<'static> {
        let mut values = RowValues {
            line,
            ..RowValues::default()
        };
        for (field, value) in cells {
            values.fields[slot_of(field)] = Cow::Owned(value.to_string());
        }
        values.take_item();
        values
    }

    #[test]
    fn adjacent_rows_of_one_order_become_one_with_every_item() {
        let mut grouper = Grouper::new();
        let first = row(
            2,
            &[
                ("order_id", "#1"),
                ("buyer_email", "a@x.example"),
                ("item_name", "Cot"),
            ],
        );
        assert!(grouper.push("#1".into(), first).is_none());
        let second = row(3, &[("buyer_email", "a@x.example"), ("item_name", "Sheet")]);
        assert!(grouper.push("#1".into(), second).is_none());
        let next = row(4, &[("order_id", "#2"), ("item_name", "Lamp")]);
        let done = grouper.push("#2".into(), next).unwrap();
        assert_eq!(done.line, 2);
        assert_eq!(done.fields[slot_of("order_id")], "#1");
        let names: Vec<&str> = done.items.iter().map(|i| i[0].as_str()).collect();
        assert_eq!(names, ["Cot", "Sheet"]);
        let last = grouper.finish().unwrap();
        assert_eq!(last.items.len(), 1);
        assert!(grouper.finish().is_none());
    }
}
