//! From one row's named values to an order: column names mapped onto the
//! canonical fields, each field parsed, the rest kept as `order.extra`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::config::{ColumnMapping, CANONICAL_FIELDS};
use crate::order::{
    check_dates, parse_flag, parse_instant, parse_time_zone, parse_url, BuyerEmail, FieldError,
    Line, Order, OrderKey, OrderStatus,
};

use super::delimited::CsvFields;
use super::{OrderRecord, Rejection};

/// Turns named values into an [`OrderRecord`].
pub(super) struct RowParser {
    pub(super) mapping: ColumnMapping,
    pub(super) default_marketplace: String,
    pub(super) default_zone: Tz,
    /// What a relative time such as `-3d` is measured back from.
    pub(super) imported_at: DateTime<Utc>,
}

impl RowParser {
    /// The canonical name of each source column (or its own name, for
    /// extras), and where each column's values go.
    pub(super) fn csv_columns(&self, headers: &[String]) -> CsvColumns {
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

    pub(super) fn parse_csv_record(
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

    pub(super) fn parse_json_line(&self, text: &str, line: u64) -> Result<OrderRecord, Rejection> {
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
pub(super) struct CsvColumns {
    /// Each column's canonical name (or its own, for extras).
    pub(super) names: Vec<String>,
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
