//! How a file's columns (or a JSON object's keys and paths) become order
//! fields: the fields an import knows, a mapping from them to the file's
//! names, and where each column of a header goes.

use std::collections::BTreeMap;

use crate::config::ColumnMapping;
use crate::order::OrderStatus;

use super::ImportError;

/// The fields an import reads a row into, each in a fixed slot. The first
/// fifteen are the order's own; `ship_country` and `ship_region` give the
/// buyer's time zone when the order names none; the `item_*` fields make one
/// line item of the row (JSON paths through an array make one a element).
pub const FIELDS: [&str; 21] = [
    "order_id",
    "marketplace",
    "buyer_email",
    "buyer_name",
    "product_name",
    "locale",
    "time_zone",
    "shipped_at",
    "delivered_at",
    "status",
    "complaint",
    "opted_out",
    "order_url",
    "tracking_url",
    "review_url",
    "ship_country",
    "ship_region",
    "item_name",
    "item_quantity",
    "item_sku",
    "item_price",
];

/// The number of slots a row's values are read into.
pub const SLOTS: usize = FIELDS.len();

/// The slot of field `name`.
pub fn slot(name: &str) -> Option<usize> {
    FIELDS.iter().position(|f| *f == name)
}

/// The slot of a field known to exist.
pub(super) fn slot_of(name: &str) -> usize {
    slot(name).unwrap_or_else(|| panic!("'{name}' is an import field"))
}

/// The item fields, in the order of [`super::values::RawItem`].
pub(super) const ITEM_FIELDS: [&str; 4] = ["item_name", "item_quantity", "item_sku", "item_price"];

/// A mapping as an import uses it: from a `[mappings.NAME]` table, or one of
/// the built-in sources.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    /// Field → the names it may be read from, the first one the file has
    /// winning (a column header, or a dotted path into a JSON object).
    pub columns: BTreeMap<String, Vec<String>>,
    /// Source status value (lower-cased) → status.
    pub status: BTreeMap<String, OrderStatus>,
    /// The byte between fields of a delimited file (by the file's type
    /// unless said: `,` for .csv, tab for .tsv and .txt).
    pub delimiter: Option<u8>,
    /// A `"` is part of a value, not a quote (Amazon's flat files).
    pub unquoted: bool,
    /// chrono formats tried, in order, after RFC 3339 and `YYYY-MM-DD`. A
    /// format without an offset reads the time in the buyer's zone (or in
    /// UTC with `naive_utc`).
    pub date_formats: Vec<String>,
    /// Times without an offset are UTC (WooCommerce's `*_gmt` fields).
    pub naive_utc: bool,
    /// The column whose equal values on adjacent rows make one order.
    pub group_by: Option<String>,
    /// Only these columns travel along as `order.extra` (all when `None`).
    pub extras: Option<Vec<String>>,
}

impl Mapping {
    /// The mapping of a `[mappings.NAME]` table.
    pub fn from_config(config: &ColumnMapping) -> Self {
        Self {
            columns: config.columns.clone(),
            status: config.status.clone(),
            delimiter: config.delimiter,
            date_formats: config.date_formats.clone(),
            group_by: config.group_by.clone(),
            ..Self::default()
        }
    }

    /// The names field `name` may be read from.
    pub fn names_of(&self, field: &str) -> Option<&[String]> {
        self.columns.get(field).map(Vec::as_slice)
    }
}

/// Where the values of a column go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// A field's slot.
    Field(usize),
    /// `order.extra`, under the column's name.
    Extra,
    /// Nowhere.
    Dropped,
}

/// A delimited file's columns, read from its header.
#[derive(Debug)]
pub(super) struct Columns {
    /// Each column's name as the header wrote it.
    pub(super) names: Vec<String>,
    /// Where each column's values go.
    pub(super) targets: Vec<Target>,
    /// The column whose values group adjacent rows into one order.
    pub(super) group: Option<usize>,
    /// The columns a source reads its status from, in the source's order.
    pub(super) status: Vec<Option<usize>>,
}

impl Columns {
    /// Lays out `header` by `mapping`. Stops the import when a mapped
    /// column is missing (naming the nearest header names), when no column
    /// gives the buyer's email, or when the grouping column is missing.
    pub(super) fn new(
        header: &[String],
        mapping: &Mapping,
        status_columns: &[&str],
    ) -> Result<Self, ImportError> {
        let find = |name: &str| header.iter().position(|h| h == name);
        let mut targets = vec![Target::Extra; header.len()];
        for (i, name) in header.iter().enumerate() {
            let keep = match &mapping.extras {
                Some(extras) => extras.iter().any(|e| e == name),
                None => !name.is_empty() && slot(name).is_none() && name != "extra",
            };
            targets[i] = if keep { Target::Extra } else { Target::Dropped };
            // A canonical header needs no mapping, unless a mapping took
            // its field elsewhere.
            if let Some(s) = slot(name) {
                if !mapping.columns.contains_key(name.as_str()) {
                    targets[i] = Target::Field(s);
                }
            }
        }
        for (field, names) in &mapping.columns {
            let Some(s) = slot(field) else { continue };
            match names.iter().find_map(|n| find(n)) {
                Some(i) => targets[i] = Target::Field(s),
                None if mapping.extras.is_some() => {} // a source's optional column
                None => {
                    return Err(ImportError::MissingColumn {
                        field: field.clone(),
                        column: names.join("' or '"),
                        nearest: nearest(&names[0], header),
                    })
                }
            }
        }
        if !targets.contains(&Target::Field(slot_of("buyer_email"))) {
            return Err(ImportError::NoEmail {
                wanted: mapping
                    .names_of("buyer_email")
                    .map(|n| n.join("' or '"))
                    .unwrap_or_else(|| "buyer_email".into()),
                nearest: nearest("email", header),
            });
        }
        let group = match &mapping.group_by {
            Some(name) => Some(find(name).ok_or_else(|| ImportError::MissingColumn {
                field: "group_by".into(),
                column: name.clone(),
                nearest: nearest(name, header),
            })?),
            None => None,
        };
        Ok(Self {
            names: header.to_vec(),
            targets,
            group,
            status: status_columns.iter().map(|c| find(c)).collect(),
        })
    }
}

/// Up to three header names closest to `wanted` (case and spacing aside),
/// closest first: what a person most likely meant.
pub(super) fn nearest(wanted: &str, header: &[String]) -> Vec<String> {
    let norm = |s: &str| -> Vec<char> {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let want = norm(wanted);
    let mut scored: Vec<(usize, &String)> = header
        .iter()
        .filter(|h| !h.is_empty())
        .map(|h| {
            let have = norm(h);
            let mut score = distance(&want, &have);
            // A name that contains the wanted one (`Email` in `Buyer Email`)
            // is as good as a typo away.
            if !want.is_empty() && have.windows(want.len()).any(|w| w == want.as_slice()) {
                score = score.min(1);
            }
            (score, h)
        })
        .filter(|(score, _)| *score <= want.len().max(3) / 2 + 1)
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, h)| h.clone()).collect()
}

/// Levenshtein distance.
fn distance(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_typo_in_a_mapped_column_stops_the_import_naming_the_nearest() {
        let h = header(&["Name", "Email", "Fulfilled at", "Paid at", "Lineitem name"]);
        let mut mapping = Mapping::default();
        mapping
            .columns
            .insert("order_id".into(), vec!["Name".into()]);
        mapping
            .columns
            .insert("buyer_email".into(), vec!["Email".into()]);
        mapping
            .columns
            .insert("shipped_at".into(), vec!["Fulfilled At ".into()]);
        let err = Columns::new(&h, &mapping, &[]).unwrap_err().to_string();
        assert!(err.contains("'Fulfilled At '"), "{err}");
        assert!(err.contains("nearest: 'Fulfilled at'"), "{err}");
    }

    #[test]
    fn a_header_without_an_email_stops_the_import() {
        let h = header(&["order_id", "product_name", "Buyer E-Mail"]);
        let err = Columns::new(&h, &Mapping::default(), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no column gives the buyer's email"), "{err}");
        assert!(err.contains("'Buyer E-Mail'"), "{err}");
    }

    #[test]
    fn canonical_headers_need_no_mapping() {
        let h = header(&["order_id", "buyer_email", "Gift note", ""]);
        let columns = Columns::new(&h, &Mapping::default(), &[]).unwrap();
        assert_eq!(
            columns.targets,
            [
                Target::Field(0),
                Target::Field(2),
                Target::Extra,
                Target::Dropped
            ]
        );
    }
}
