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
    /// Canonical field name → column name in the source file.
    pub columns: BTreeMap<String, String>,
    /// Source status value (lower-cased) → canonical status.
    pub status: BTreeMap<String, crate::order::OrderStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMapping {
    #[serde(default)]
    pub(super) columns: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) status: BTreeMap<String, String>,
}

impl Builder<'_> {
    pub(super) fn mapping(
        &self,
        name: &str,
        raw: RawMapping,
    ) -> Result<ColumnMapping, ConfigError> {
        for field in raw.columns.keys() {
            if !CANONICAL_FIELDS.contains(&field.as_str()) || field == "extra" {
                return Err(self.invalid(
                    format!("mappings.{name}.columns.{field}"),
                    "is not an order field",
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
            columns: raw.columns,
            status,
        })
    }
}
