//! `[mappings.NAME]`: how another export's columns map onto order fields.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::build::Builder;
use super::ConfigError;

/// The canonical order fields a mapping may name.
pub const CANONICAL_FIELDS: [&str; 16] = [
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
    "extra",
];

/// How another export's columns map onto followupd's canonical fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColumnMapping {
    /// Field name → the column names (or dotted JSON paths) it is read
    /// from, the first one the file has winning.
    pub columns: BTreeMap<String, Vec<String>>,
    /// Source status value (lower-cased) → canonical status.
    pub status: BTreeMap<String, crate::order::OrderStatus>,
    /// The byte between fields (by the file's type when not said).
    pub delimiter: Option<u8>,
    /// chrono formats for the time fields, tried after RFC 3339.
    pub date_formats: Vec<String>,
    /// The column whose equal values on adjacent rows make one order.
    pub group_by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMapping {
    #[serde(default)]
    pub(super) columns: BTreeMap<String, OneOrMore>,
    #[serde(default)]
    pub(super) status: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) delimiter: Option<String>,
    #[serde(default)]
    pub(super) date_formats: Vec<String>,
    #[serde(default)]
    pub(super) group_by: Option<String>,
}

/// A column name, or several tried in order.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMore {
    One(String),
    More(Vec<String>),
}

impl Builder<'_> {
    pub(super) fn mapping(
        &self,
        name: &str,
        raw: RawMapping,
    ) -> Result<ColumnMapping, ConfigError> {
        let mut columns = BTreeMap::new();
        for (field, names) in raw.columns {
            if crate::import::mapping::slot(&field).is_none() {
                return Err(self.invalid(
                    format!("mappings.{name}.columns.{field}"),
                    format!(
                        "is not an order field (expected one of {})",
                        crate::import::mapping::FIELDS.join(", ")
                    ),
                ));
            }
            let names = match names {
                OneOrMore::One(n) => vec![n],
                OneOrMore::More(n) if !n.is_empty() => n,
                OneOrMore::More(_) => {
                    return Err(self.invalid(
                        format!("mappings.{name}.columns.{field}"),
                        "names no column",
                    ))
                }
            };
            columns.insert(field, names);
        }
        let delimiter = match raw.delimiter.as_deref() {
            None => None,
            Some("tab" | "\t") => Some(b'\t'),
            Some(d) if d.len() == 1 && d != "\"" && d != "\n" && d != "\r" => Some(d.as_bytes()[0]),
            Some(d) => {
                return Err(self.invalid(
                    format!("mappings.{name}.delimiter"),
                    format!("'{d}' is not one character (write \"\\t\" or \"tab\" for a tab)"),
                ))
            }
        };
        for format in &raw.date_formats {
            let broken = chrono::format::StrftimeItems::new(format)
                .any(|item| matches!(item, chrono::format::Item::Error));
            if broken || format.is_empty() {
                return Err(self.invalid(
                    format!("mappings.{name}.date_formats"),
                    format!("'{format}' is not a chrono format (such as \"%d/%m/%Y %H:%M\")"),
                ));
            }
        }
        let mut status = BTreeMap::new();
        for (from, to) in raw.status {
            let parsed = to.parse().map_err(|e: crate::order::FieldError| {
                self.invalid(format!("mappings.{name}.status.{from}"), e.to_string())
            })?;
            status.insert(from.to_lowercase(), parsed);
        }
        Ok(ColumnMapping {
            columns,
            status,
            delimiter,
            date_formats: raw.date_formats,
            group_by: raw.group_by,
        })
    }
}
