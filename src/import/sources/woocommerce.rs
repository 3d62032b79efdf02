//! WooCommerce REST API orders (`GET /wp-json/wc/v3/orders`), as the API
//! returns them: nested `billing` and `shipping` addresses, `line_items`,
//! times in `*_gmt` fields without an offset (UTC), and product names with
//! HTML character references (`Ship Your Idea &ndash; Color: Black`).

use serde_json::{Map, Value};

use crate::order::{FieldError, OrderStatus};

use super::super::mapping::Mapping;
use super::{columns, names, unknown};

pub(super) const STATUS_COLUMNS: [&str; 1] = ["status"];

/// Keys [`prepare`] adds: the buyer's name and the address the zone is read
/// from, each taken from the shipping address or else the billing one.
const NAME: &str = "followupd_buyer_name";
const COUNTRY: &str = "followupd_ship_country";
const REGION: &str = "followupd_ship_region";

pub(super) fn mapping() -> Mapping {
    Mapping {
        columns: columns(&[
            ("order_id", &["number", "id"]),
            ("buyer_email", &["billing.email"]),
            ("buyer_name", &[NAME]),
            ("shipped_at", &["date_completed_gmt"]),
            ("ship_country", &[COUNTRY]),
            ("ship_region", &[REGION]),
            ("item_name", &["line_items.name"]),
            ("item_quantity", &["line_items.quantity"]),
            ("item_sku", &["line_items.sku"]),
            ("item_price", &["line_items.price"]),
        ]),
        date_formats: names(&["%Y-%m-%dT%H:%M:%S"]),
        naive_utc: true,
        extras: Some(names(&[
            "currency",
            "total",
            "customer_note",
            "payment_method_title",
            "date_created_gmt",
        ])),
        ..Mapping::default()
    }
}

/// WooCommerce's order statuses: an order is shipped once it is completed.
pub(super) fn status(value: &str) -> Result<OrderStatus, FieldError> {
    Ok(match value.to_ascii_lowercase().as_str() {
        "pending" | "processing" | "on-hold" | "checkout-draft" => OrderStatus::Pending,
        "completed" => OrderStatus::Shipped,
        "refunded" => OrderStatus::Refunded,
        "cancelled" | "failed" | "trash" => OrderStatus::Cancelled,
        _ => {
            return Err(unknown(
                value,
                "status pending, processing, on-hold, completed, cancelled, refunded, \
                 failed, checkout-draft or trash",
            ))
        }
    })
}

/// Adds the keys the mapping reads ([`NAME`], [`COUNTRY`], [`REGION`]) and
/// decodes the character references in the line items' names.
pub(super) fn prepare(object: &mut Map<String, Value>) {
    let part = |object: &Map<String, Value>, address: &str, key: &str| -> String {
        object
            .get(address)
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let pick = |object: &Map<String, Value>, key: &str| {
        let shipping = part(object, "shipping", key);
        if shipping.is_empty() {
            part(object, "billing", key)
        } else {
            shipping
        }
    };
    let full_name = |object: &Map<String, Value>, address: &str| {
        let first = part(object, address, "first_name");
        let last = part(object, address, "last_name");
        format!("{first} {last}").trim().to_string()
    };
    let mut name = full_name(object, "shipping");
    if name.is_empty() {
        name = full_name(object, "billing");
    }
    let (country, region) = (pick(object, "country"), pick(object, "state"));
    object.insert(NAME.into(), Value::String(decode_entities(&name)));
    object.insert(COUNTRY.into(), Value::String(country));
    object.insert(REGION.into(), Value::String(region));
    if let Some(Value::Array(items)) = object.get_mut("line_items") {
        for item in items {
            if let Some(Value::String(name)) = item.get_mut("name") {
                *name = decode_entities(name);
            }
        }
    }
}

/// `text` with its HTML character references decoded as a browser decodes
/// them (WooCommerce stores product names HTML-escaped).
pub fn decode_entities(text: &str) -> String {
    use html5gum::{Token, Tokenizer};
    if !text.contains('&') {
        return text.to_string();
    }
    // Only references are wanted: a `<` is text here, not a tag.
    let escaped = text.replace('<', "&lt;");
    let mut out = String::with_capacity(text.len());
    for token in Tokenizer::new(&escaped) {
        let Ok(token) = token;
        if let Token::String(s) = token {
            out.push_str(&String::from_utf8_lossy(&s));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn character_references_in_names_are_decoded() {
        assert_eq!(
            decode_entities("Ship Your Idea &ndash; Color: Black"),
            "Ship Your Idea \u{2013} Color: Black"
        );
        assert_eq!(
            decode_entities("Tea &amp; Cups &#8482; <3"),
            "Tea & Cups \u{2122} <3"
        );
        assert_eq!(decode_entities("Plain"), "Plain");
    }

    #[test]
    fn statuses_map_and_completed_is_shipped() {
        assert_eq!(status("completed"), Ok(OrderStatus::Shipped));
        assert_eq!(status("processing"), Ok(OrderStatus::Pending));
        assert_eq!(status("on-hold"), Ok(OrderStatus::Pending));
        assert_eq!(status("failed"), Ok(OrderStatus::Cancelled));
        assert!(status("shipped").is_err());
    }
}
