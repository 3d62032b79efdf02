//! The order: the one piece of seller data followupd acts on.
//!
//! Every type here parses its input instead of validating it later: once an
//! [`Order`] exists, its buyer address is a real address, its times are
//! instants, its status is one we know and no field that can reach a mail
//! header holds a line break. Rows read back from the database go through the
//! same parsers, so a hand-edited row cannot smuggle in an invalid state.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

mod email;

pub use email::BuyerEmail;

/// Why a field could not be turned into part of an [`Order`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("missing required field '{0}'")]
    Missing(&'static str),
    #[error("field '{field}' contains a line break (it would reach a mail header)")]
    LineBreak { field: String },
    #[error("field '{field}' contains a control character")]
    ControlCharacter { field: String },
    #[error("invalid email address '{value}': {reason}")]
    Email { value: String, reason: String },
    #[error("unknown status '{0}' (expected pending, shipped, delivered, returned, partially_refunded, refunded or cancelled)")]
    Status(String),
    #[error("field '{field}': cannot read '{value}' as a time (expected RFC 3339 such as 2026-12-01T10:00:00Z, or YYYY-MM-DD)")]
    Time { field: &'static str, value: String },
    #[error("unknown time zone '{0}' (expected an IANA name such as Europe/Berlin)")]
    TimeZone(String),
    #[error("field '{field}': expected true or false, got '{value}'")]
    Bool { field: &'static str, value: String },
    #[error("delivered_at ({delivered}) is before shipped_at ({shipped})")]
    DeliveredBeforeShipped { shipped: String, delivered: String },
    #[error("field '{field}': '{value}' is not an http(s) URL")]
    Url { field: &'static str, value: String },
    #[error("field '{field}': cannot read '{value}' as a time (expected RFC 3339, YYYY-MM-DD or the mapping's date formats '{formats}')")]
    TimeFormat {
        field: &'static str,
        value: String,
        formats: String,
    },
    #[error("unknown status '{value}' (expected {known})")]
    SourceStatus { value: String, known: String },
    #[error("field '{field}': expected a whole number of at least 1, got '{value}'")]
    Quantity { field: &'static str, value: String },
}

/// Whether `c` is an invisible formatting character: zero-width spaces and
/// joiners, bidirectional marks, embeddings, overrides and isolates, the
/// word joiner and invisible operators, and the byte order mark. None of
/// them has a place in a name or an identifier, and each can make two
/// values that look the same compare different (`shop` and `shop\u{200b}`)
/// or make a name read backwards.
pub fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// `value` without invisible formatting characters ([`is_invisible_format`]);
/// borrowed when it had none.
pub fn strip_invisible(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains(is_invisible_format) {
        std::borrow::Cow::Owned(value.chars().filter(|c| !is_invisible_format(*c)).collect())
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// Rejects CR, LF and other control characters, which could forge mail
/// headers or corrupt the SMTP conversation if they reached a header.
pub fn single_line(field: &str, value: &str) -> Result<(), FieldError> {
    if value.contains(['\r', '\n']) {
        return Err(FieldError::LineBreak {
            field: field.to_string(),
        });
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(FieldError::ControlCharacter {
            field: field.to_string(),
        });
    }
    Ok(())
}

/// A single-line piece of text that is safe to place in a header.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Line(String);

impl Line {
    /// Parses a trimmed, non-empty, single-line value, invisible formatting
    /// characters removed.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, FieldError> {
        let value = strip_invisible(value);
        let value = value.trim();
        if value.is_empty() {
            return Err(FieldError::Missing(field));
        }
        single_line(field, value)?;
        Ok(Self(value.to_string()))
    }

    /// Like [`Line::parse`], but an empty value means "not given".
    pub fn parse_optional(field: &'static str, value: &str) -> Result<Option<Self>, FieldError> {
        if value.trim().is_empty() {
            Ok(None)
        } else {
            Self::parse(field, value).map(Some)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an order stands with the marketplace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Shipped,
    Delivered,
    Returned,
    /// Part of the order was refunded: the buyer keeps the rest, so the
    /// follow-up still goes, but a review request would be tactless.
    PartiallyRefunded,
    Refunded,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Returned => "returned",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status an order has when the source did not say: inferred from
    /// which dates are known.
    pub fn inferred(shipped: bool, delivered: bool) -> Self {
        match (shipped, delivered) {
            (_, true) => Self::Delivered,
            (true, false) => Self::Shipped,
            _ => Self::Pending,
        }
    }
}

impl FromStr for OrderStatus {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "pending" => Self::Pending,
            "shipped" => Self::Shipped,
            "delivered" => Self::Delivered,
            "returned" => Self::Returned,
            "partially_refunded" => Self::PartiallyRefunded,
            "refunded" => Self::Refunded,
            "cancelled" | "canceled" => Self::Cancelled,
            _ => return Err(FieldError::Status(s.trim().to_string())),
        })
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses an IANA time zone name.
pub fn parse_time_zone(value: &str) -> Result<Tz, FieldError> {
    value
        .trim()
        .parse::<Tz>()
        .map_err(|_| FieldError::TimeZone(value.trim().to_string()))
}

/// Parses RFC 3339, or a bare `YYYY-MM-DD` read as midnight in `zone`.
pub fn parse_instant(
    field: &'static str,
    value: &str,
    zone: Tz,
) -> Result<DateTime<Utc>, FieldError> {
    let value = value.trim();
    let error = || FieldError::Time {
        field,
        value: value.to_string(),
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| error())?;
    let midnight = date.and_hms_opt(0, 0, 0).ok_or_else(error)?;
    // A zone that skips midnight (some DST changes do) starts the day at the
    // first instant that exists.
    zone.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| {
            zone.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(error)
}

/// Parses `true`/`false` (and the usual spreadsheet spellings); empty is false.
pub fn parse_flag(field: &'static str, value: &str) -> Result<bool, FieldError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "false" | "no" | "0" | "n" => Ok(false),
        "true" | "yes" | "1" | "y" => Ok(true),
        _ => Err(FieldError::Bool {
            field,
            value: value.trim().to_string(),
        }),
    }
}

/// Parses an optional http(s) link.
pub fn parse_url(field: &'static str, value: &str) -> Result<Option<Line>, FieldError> {
    let Some(url) = Line::parse_optional(field, value)? else {
        return Ok(None);
    };
    let lower = url.as_str().to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://"))
        || url.as_str().contains(' ')
    {
        return Err(FieldError::Url {
            field,
            value: url.0,
        });
    }
    Ok(Some(url))
}

/// Identifies an order: the same id may exist on two marketplaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct OrderKey {
    pub marketplace: Line,
    pub order_id: Line,
}

impl fmt::Display for OrderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.marketplace, self.order_id)
    }
}

/// One line item of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub name: Line,
    pub quantity: u32,
    pub sku: Option<Line>,
    /// As the export wrote it (a price's format is the shop's business).
    pub price: Option<Line>,
}

impl Item {
    /// Parses one item; an empty quantity is 1.
    pub fn parse(name: &str, quantity: &str, sku: &str, price: &str) -> Result<Self, FieldError> {
        let quantity = quantity.trim();
        let quantity = if quantity.is_empty() {
            1
        } else {
            // Exports write whole numbers, some as "2.0".
            let whole = quantity.strip_suffix(".0").unwrap_or(quantity);
            whole
                .parse::<u32>()
                .ok()
                .filter(|q| *q >= 1)
                .ok_or_else(|| FieldError::Quantity {
                    field: "item_quantity",
                    value: quantity.to_string(),
                })?
        };
        Ok(Self {
            name: Line::parse("item_name", name)?,
            quantity,
            sku: Line::parse_optional("item_sku", sku)?,
            price: Line::parse_optional("item_price", price)?,
        })
    }
}

impl Item {
    /// Items as stored (the JSON array their `Serialize` writes), each
    /// parsed again.
    pub fn from_stored(json: &str) -> Result<Vec<Self>, String> {
        #[derive(serde::Deserialize)]
        struct Stored {
            name: String,
            quantity: u32,
            sku: Option<String>,
            price: Option<String>,
        }
        let stored: Vec<Stored> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        stored
            .into_iter()
            .map(|i| {
                let (sku, price) = (i.sku.unwrap_or_default(), i.price.unwrap_or_default());
                Self::parse(&i.name, &i.quantity.to_string(), &sku, &price)
                    .map_err(|e| e.to_string())
            })
            .collect()
    }
}

/// Where an order's time zone came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneSource {
    /// The order said.
    Order,
    /// Derived from the shipping address.
    Address,
    /// Neither: `[defaults] time_zone`.
    Default,
}

impl ZoneSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Address => "address",
            Self::Default => "default",
        }
    }
}

/// A valid order, as stored and as scheduled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Order {
    pub key: OrderKey,
    pub buyer_email: BuyerEmail,
    pub buyer_name: Option<Line>,
    pub product_name: Line,
    pub locale: Option<Line>,
    #[serde(serialize_with = "serialize_zone")]
    pub time_zone: Option<Tz>,
    /// Where `time_zone` came from: `Order` or `Address` when it is set,
    /// `Default` when it is not.
    pub time_zone_source: ZoneSource,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub status: OrderStatus,
    pub complaint: bool,
    pub opted_out: bool,
    pub order_url: Option<Line>,
    pub tracking_url: Option<Line>,
    pub review_url: Option<Line>,
    /// The line items, in the export's order; `product_name` is the first
    /// one's name. Empty for an order imported with a product name alone.
    pub items: Vec<Item>,
    /// Columns followupd has no name for, passed to templates as `order.extra`.
    /// Free text: may hold line breaks (a subject that uses one is refused
    /// when it is rendered).
    pub extra: BTreeMap<String, String>,
}

fn serialize_zone<S: serde::Serializer>(zone: &Option<Tz>, s: S) -> Result<S::Ok, S::Error> {
    match zone {
        Some(z) => s.serialize_some(z.name()),
        None => s.serialize_none(),
    }
}

/// Checks the relations between fields that no single field can check.
pub fn check_dates(
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
) -> Result<(), FieldError> {
    if let (Some(shipped), Some(delivered)) = (shipped_at, delivered_at) {
        if delivered < shipped {
            return Err(FieldError::DeliveredBeforeShipped {
                shipped: shipped.to_rfc3339(),
                delivered: delivered.to_rfc3339(),
            });
        }
    }
    Ok(())
}

impl Order {
    /// Fields whose text reaches a rendered message, with their names as
    /// templates see them. The lint uses this to say which field a forbidden
    /// word came from.
    pub fn text_fields(&self) -> Vec<(String, &str)> {
        let mut fields = vec![
            ("order.id".to_string(), self.key.order_id.as_str()),
            (
                "order.marketplace".to_string(),
                self.key.marketplace.as_str(),
            ),
            ("order.buyer_email".to_string(), self.buyer_email.as_str()),
            ("order.product_name".to_string(), self.product_name.as_str()),
        ];
        let optional = [
            ("order.buyer_name", &self.buyer_name),
            ("order.order_url", &self.order_url),
            ("order.tracking_url", &self.tracking_url),
            ("order.review_url", &self.review_url),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                fields.push((name.to_string(), v.as_str()));
            }
        }
        for (i, item) in self.items.iter().enumerate() {
            fields.push((format!("order.items[{i}].name"), item.name.as_str()));
        }
        for (name, value) in &self.extra {
            fields.push((format!("order.extra.{name}"), value.as_str()));
        }
        fields
    }

    /// The zone the buyer's local times are reckoned in.
    pub fn zone_or(&self, default: Tz) -> Tz {
        self.time_zone.unwrap_or(default)
    }
}

/// A complete, neutral order used to render templates for `followupd lint`:
/// every field is filled so that every template branch can be exercised.
pub fn sample_order(marketplace: &str) -> Order {
    let line = |field: &'static str, v: &str| {
        Line::parse(field, v).unwrap_or_else(|_| Line(v.to_string()))
    };
    let shipped = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).single();
    Order {
        key: OrderKey {
            marketplace: line("marketplace", marketplace),
            order_id: line("order_id", "SAMPLE-0001"),
        },
        buyer_email: BuyerEmail("sam.sample@example.com".into()),
        buyer_name: Some(line("buyer_name", "Sam Sample")),
        product_name: line("product_name", "Sample Teapot"),
        locale: None,
        time_zone: None,
        time_zone_source: ZoneSource::Default,
        shipped_at: shipped,
        delivered_at: shipped.map(|t| t + chrono::Duration::days(3)),
        status: OrderStatus::Delivered,
        complaint: false,
        opted_out: false,
        order_url: Some(line("order_url", "https://shop.example/orders/SAMPLE-0001")),
        tracking_url: Some(line(
            "tracking_url",
            "https://carrier.example/track/SAMPLE0001",
        )),
        review_url: Some(line(
            "review_url",
            "https://shop.example/feedback/SAMPLE-0001",
        )),
        items: vec![
            Item {
                name: line("item_name", "Sample Teapot"),
                quantity: 1,
                sku: Some(line("item_sku", "TEA-1")),
                price: Some(line("item_price", "24.00")),
            },
            Item {
                name: line("item_name", "Sample Tea Cups, set of two"),
                quantity: 2,
                sku: None,
                price: Some(line("item_price", "9.50")),
            },
        ],
        extra: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_only_is_midnight_in_the_given_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let t = parse_instant("shipped_at", "2026-12-01", berlin).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-30T23:00:00+00:00");
        let t = parse_instant("shipped_at", "2026-12-01T10:00:00+02:00", berlin).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-01T08:00:00+00:00");
        assert!(parse_instant("shipped_at", "01/12/2026", berlin).is_err());
    }

    #[test]
    fn status_is_one_of_the_known_ones() {
        assert_eq!("Refunded".parse::<OrderStatus>(), Ok(OrderStatus::Refunded));
        assert_eq!(
            "canceled".parse::<OrderStatus>(),
            Ok(OrderStatus::Cancelled)
        );
        assert!("lost".parse::<OrderStatus>().is_err());
    }

    #[test]
    fn invisible_formatting_is_removed_from_lines_and_addresses() {
        assert_eq!(
            Line::parse("marketplace", "shop\u{200b}").unwrap().as_str(),
            "shop"
        );
        assert_eq!(
            Line::parse("buyer_name", "\u{202e}Ann\u{2066} Lee\u{feff}")
                .unwrap()
                .as_str(),
            "Ann Lee"
        );
        assert!(matches!(
            Line::parse("order_id", "\u{200b}\u{200d}"),
            Err(FieldError::Missing("order_id"))
        ));
        assert_eq!(
            BuyerEmail::parse("ann\u{200b}@example.com")
                .unwrap()
                .as_str(),
            "ann@example.com"
        );
    }

    #[test]
    fn an_item_needs_a_name_and_a_whole_quantity() {
        let item = Item::parse(" Teapot ", "", "", "").unwrap();
        assert_eq!((item.name.as_str(), item.quantity), ("Teapot", 1));
        assert_eq!(
            Item::parse("Cup", "2.0", "C-1", "4.50").unwrap().quantity,
            2
        );
        assert!(Item::parse("Cup", "0", "", "").is_err());
        assert!(Item::parse("Cup", "1.5", "", "").is_err());
        assert!(matches!(
            Item::parse("Cup\nBcc: x", "1", "", ""),
            Err(FieldError::LineBreak { .. })
        ));
    }

    #[test]
    fn line_rejects_breaks_and_controls() {
        assert!(Line::parse("buyer_name", "Ann\nBcc: x").is_err());
        assert!(Line::parse("buyer_name", "Ann\0").is_err());
        assert_eq!(
            Line::parse("buyer_name", "  Ann  ").unwrap().as_str(),
            "Ann"
        );
    }
}
